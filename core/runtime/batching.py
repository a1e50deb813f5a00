"""Length-sorted, bounded batching with the caller's order restored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from .validation import check_int

__all__ = ["length_sorted_batches", "run_sorted"]

T = TypeVar("T")


def length_sorted_batches(
    lengths: Sequence[int], *, max_batch_size: int = 32, max_batch_tokens: int | None = None
) -> list[list[int]]:
    """Group item positions into batches of similar length, longest first.

    Each batch holds at most ``max_batch_size`` items and, when
    ``max_batch_tokens`` is set, at most that many padded tokens
    (``len(batch) * longest``), so memory stays flat however many items come
    in.  An item longer than ``max_batch_tokens`` gets a batch of its own.
    """
    max_batch_size = check_int("max_batch_size", max_batch_size, min=1)
    max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1, allow_none=True)
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = int(lengths[i])
        new_longest = max(longest, n)
        too_many = len(current) >= max_batch_size
        too_big = max_batch_tokens is not None and current and new_longest * (len(current) + 1) > max_batch_tokens
        if current and (too_many or too_big):
            batches.append(current)
            current, new_longest = [], n
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def run_sorted(
    items: Sequence[T],
    lengths: Sequence[int],
    fn: Callable[[list[T]], Sequence[object]],
    *,
    max_batch_size: int = 32,
    max_batch_tokens: int | None = None,
) -> list[object]:
    """Apply ``fn`` to length-sorted batches of ``items``; results in input order."""
    out: list[object] = [None] * len(items)
    for batch in length_sorted_batches(lengths, max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens):
        results = fn([items[i] for i in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        for i, r in zip(batch, results, strict=True):
            out[i] = r
    return out

"""Length-sorted, bounded batching with the caller's order restored.

:func:`length_sorted_batches` bounds a batch's size and padded tokens;
:func:`packed_batches` also bounds the share of padding in each batch (a new
batch starts where lengths drift apart), and :class:`PaddingStats` counts the
real and padded tokens a set of batches feeds.  :class:`PaddingCounter` sums those
statistics across calls and threads, and :func:`default_batch_tokens` is the
device-aware token cap the model-backed stages batch under by default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np

from .locks import TokenizerLock
from .validation import check_int, check_number

__all__ = ["MAX_PADDING", "PackedBatching", "PaddingCounter", "PaddingStats", "default_batch_tokens",
           "length_sorted_batches", "packed_batches", "run_sorted"]

MAX_PADDING = 0.1  # most padded share of the tokens of one forward batch (the model-backed stages' default)
BATCH_TOKENS = {"cpu": 2048}  # default padded tokens per forward batch, by device type
GPU_BATCH_TOKENS = 16384  # ... on GPUs (and any device type not in BATCH_TOKENS)

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


def packed_batches(
    lengths: Sequence[int], *, max_batch_size: int = 32, max_batch_tokens: int | None = None,
    max_padding: float = 0.1,
) -> list[list[int]]:
    """Length-sorted batches, bounded as :func:`length_sorted_batches`, that pad little.

    Each batch holds items adjacent in length order, at most ``max_batch_size``
    of them and at most ``max_batch_tokens`` padded tokens (``len(batch) *
    longest``; an item longer than that gets a batch of its own), and pads at
    most ``max_padding`` of its padded tokens, so all batches together pad at
    most that share too.  Among such cuts, the one with the fewest batches
    (fewest forward passes), then the fewest padded tokens, is returned,
    longest items first.
    """
    max_batch_size = check_int("max_batch_size", max_batch_size, min=1)
    max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1, allow_none=True)
    max_padding = check_number("max_padding", max_padding, min=0.0, max=1.0)
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    sizes = [int(lengths[i]) for i in order]
    cap = max_batch_tokens if max_batch_tokens is not None else float("inf")
    # best[j]: (batches, padded tokens) of the best cut of the j longest items; start[j]: where its last batch starts
    best: list[tuple[int, int]] = [(0, 0)] + [(len(sizes) + 1, 0)] * len(sizes)
    start = [0] * (len(sizes) + 1)
    for i in range(len(sizes)):
        for j, padded in _batch_ends(sizes, i, max_batch_size, cap, max_padding):
            cost = (best[i][0] + 1, best[i][1] + padded)
            if cost < best[j]:
                best[j], start[j] = cost, i
    cuts = [len(sizes)]
    while cuts[-1] > 0:
        cuts.append(start[cuts[-1]])
    cuts.reverse()
    return [order[a:b] for a, b in pairwise(cuts)]


def _batch_ends(sizes: list[int], i: int, max_batch_size: int, cap: float,
                max_padding: float) -> list[tuple[int, int]]:
    """``(j, padded tokens)`` for each allowed batch ``sizes[i:j]`` (``sizes`` sorted longest first)."""
    longest = sizes[i]
    out = [(i + 1, 0)]
    real = longest
    for j in range(i + 2, min(len(sizes), i + max_batch_size) + 1):
        fed = longest * (j - i)
        real += sizes[j - 1]
        if fed > cap or fed - real > max_padding * fed:
            break  # both only grow with j: no longer batch from i is allowed
        out.append((j, fed - real))
    return out


@dataclass(frozen=True, slots=True)
class PaddingStats:
    """Tokens fed to a model in padded batches: ``real`` ones and ``fed`` ones (padding
    included), over ``items`` sequences in ``batches`` batches."""

    real: int = 0
    fed: int = 0
    items: int = 0
    batches: int = 0

    @classmethod
    def of(cls, lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> PaddingStats:
        """What feeding ``batches`` (positions into ``lengths``), each padded to its longest, costs."""
        real = sum(int(lengths[i]) for b in batches for i in b)
        fed = sum(len(b) * max(int(lengths[i]) for i in b) for b in batches if b)
        return cls(real, fed, sum(len(b) for b in batches), sum(1 for b in batches if b))

    @property
    def padded(self) -> int:
        return self.fed - self.real

    @property
    def padding_share(self) -> float:
        """Padded tokens / tokens fed (0 when nothing was fed)."""
        return self.padded / self.fed if self.fed else 0.0

    def __add__(self, other: PaddingStats) -> PaddingStats:
        return PaddingStats(self.real + other.real, self.fed + other.fed, self.items + other.items,
                            self.batches + other.batches)


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


def default_batch_tokens(device: Any) -> int:
    """Default padded tokens per forward batch on ``device`` (a ``torch.device``, or its type as a string):
    2048 on CPU, where bigger batches gain nothing, 16384 on GPUs and other accelerators."""
    kind = device if isinstance(device, str) else getattr(device, "type", str(device))
    return BATCH_TOKENS.get(kind.split(":")[0], GPU_BATCH_TOKENS)


class PaddingCounter(TokenizerLock):
    """Thread-safe running total of :class:`PaddingStats` (what a model was fed, call after call).

    A pickled or copied counter keeps its totals and gets a fresh lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = PaddingStats()

    def add(self, lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> None:
        """Count feeding ``batches`` (positions into ``lengths``), each padded to its longest item."""
        stats = PaddingStats.of(lengths, batches)
        with self._lock:
            self._stats += stats

    def get(self, *, reset: bool = False) -> PaddingStats:
        """The totals so far (then zeroed if ``reset``)."""
        with self._lock:
            stats = self._stats
            if reset:
                self._stats = PaddingStats()
        return stats


class PackedBatching:
    """Mixin of a model wrapper that feeds items in packed batches and counts the padding it feeds.

    :meth:`batches` cuts items of given lengths (special tokens included) into
    forward passes: longest first, at most ``batch_size`` items and
    ``max_batch_tokens`` tokens (padding included) each, each padding at most
    :data:`MAX_PADDING` of its tokens, in as few batches as that allows
    (:func:`packed_batches`).  ``max_batch_tokens`` defaults to
    :func:`default_batch_tokens` of the model's device.  :meth:`padding_stats`
    counts what the batches cut by :meth:`_counted_batches` fed.

    ``_legacy_batching = True`` (for benchmarks) restores the batching before
    packing, :meth:`_legacy_batches` (by default: cut by ``batch_size`` and the
    ``max_batch_tokens`` the caller gave, if any, only).
    """

    batch_size: int
    max_batch_tokens: int
    _requested_batch_tokens: int | None
    _legacy_batching: bool
    _padding: PaddingCounter

    def _init_packing(self, batch_size: int, max_batch_tokens: int | None, device: Any) -> None:
        """Set the bounds (``max_batch_tokens=None``: the default of ``device``) and zero the counts."""
        self.batch_size = batch_size
        self._requested_batch_tokens = max_batch_tokens
        self.max_batch_tokens = default_batch_tokens(device) if max_batch_tokens is None else max_batch_tokens
        self._legacy_batching = False  # benchmarks: the previous batching (see _legacy_batches)
        self._padding = PaddingCounter()

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Positions of items of ``lengths`` tokens grouped into forward passes, longest first."""
        if self._legacy_batching:
            return self._legacy_batches(lengths)
        return packed_batches(lengths, max_batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens,
                              max_padding=MAX_PADDING)

    def _legacy_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """The batching before packing, kept to compare against."""
        return length_sorted_batches(lengths, max_batch_size=self.batch_size,
                                     max_batch_tokens=self._requested_batch_tokens)

    def _counted_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """:meth:`batches` of ``lengths``, counted in :meth:`padding_stats`."""
        batches = self.batches(lengths)
        self._padding.add(lengths, batches)
        return batches

    def padding_stats(self, *, reset: bool = False) -> PaddingStats:
        """Real and padded tokens fed to the model so far (by all calls; then zeroed if ``reset``)."""
        return self._padding.get(reset=reset)

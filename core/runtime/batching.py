"""Length-sorted, bounded batching with the caller's order restored.

:func:`length_sorted_batches` bounds a batch's size and padded tokens;
:func:`packed_batches` also bounds the share of padding in each batch (a new
batch starts where lengths drift apart), and :class:`PaddingStats` counts the
real and padded tokens a set of batches feeds.  :class:`PaddingCounter` sums those
statistics across calls and threads, and :func:`default_batch_tokens` is the
device-aware token cap the model-backed stages batch under by default.

On accelerators every new batch shape can pay for its first kernels (half precision
above all), so there :class:`ShapeBuckets` bounds the shapes: batch widths are rounded up
to a short ladder of lengths and batch row counts are taken from a short ladder too, and
:meth:`PackedBatching.warmup` runs each shape once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np

from .locks import TokenizerLock
from .validation import check_int, check_number

__all__ = ["MAX_PADDING", "PackedBatching", "PaddingCounter", "PaddingStats", "ShapeBuckets",
           "default_batch_tokens", "length_sorted_batches", "packed_batches", "resolve_shape_buckets", "run_sorted"]

MAX_PADDING = 0.1  # most padded share of the tokens of one forward batch (the model-backed stages' default)
BATCH_TOKENS = {"cpu": 2048}  # default padded tokens per forward batch, by device type
GPU_BATCH_TOKENS = 16384  # ... on GPUs (and any device type not in BATCH_TOKENS) whose memory is unknown
GPU_BATCH_TOKENS_RANGE = (8192, 65536)  # ... on CUDA: 1,024 per GiB of the GPU's memory (rounded down to a
# power of two) within these bounds

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ShapeBuckets:
    """A bounded set of batch shapes ``(rows, width)``: what an accelerator's kernels see.

    A batch of items at most ``n`` tokens long is padded to :meth:`width` ``(n)``: a
    multiple of ``multiple`` up to ``multiple * steps``, then ``steps`` evenly spaced
    widths per doubling (so rounding adds at most ``1/steps`` of a width: 12.5% with
    the default ``steps=8``), never beyond the model's ``limit``.  Batches hold a row
    count of :meth:`allowed_rows` (1, 2, 3, 4, 6, 8, 12, 16, 24, ...: powers of two and
    their 1.5 multiples).  Items of up to 512 tokens then fall in 32 widths, and every
    call of every size in shapes from one short list (:meth:`shapes`), which a
    warm-up runs once.
    """

    steps: int = 8
    multiple: int = 8

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min=1)
        check_int("multiple", self.multiple, min=1)

    def width(self, n: int, limit: int | None = None) -> int:
        """The padded width of a batch whose longest item holds ``n`` tokens (at most ``limit``, if given,
        and never less than ``n``)."""
        small = self.multiple * self.steps
        if n <= small:
            out = -(-n // self.multiple) * self.multiple
        else:  # n in (2**k, 2**(k+1)]: steps of 2**k / steps, the octave's end a width too
            octave = 1 << ((n - 1).bit_length() - 1)
            step = max(self.multiple, octave // self.steps)
            out = min(-(-n // step) * step, 2 * octave)
        return max(n, min(out, limit)) if limit is not None else out

    def widths(self, limit: int) -> list[int]:
        """Every width up to ``limit`` tokens, ascending (``limit`` itself among them)."""
        out, n = [], 1
        while n <= limit:
            w = self.width(n, limit)
            out.append(w)
            n = w + 1
        return out

    @staticmethod
    def allowed_rows(rows: int) -> bool:
        """Whether a batch may hold ``rows`` items: a power of two or 1.5 times one."""
        return rows >= 1 and (rows & (rows - 1) == 0 or (rows % 3 == 0 and (r := rows // 3) & (r - 1) == 0))

    def shapes(self, limit: int, *, max_tokens: int, max_rows: int | None = None) -> Iterator[tuple[int, int]]:
        """Every ``(rows, width)`` a batch can take: widths up to ``limit`` tokens, at most ``max_tokens``
        tokens (one row of any width always) and ``max_rows`` rows, widest first."""
        for w in reversed(self.widths(limit)):
            cap = max(1, max_tokens // w) if max_rows is None else max(1, min(max_rows, max_tokens // w))
            yield from ((r, w) for r in range(1, cap + 1) if self.allowed_rows(r))


def resolve_shape_buckets(shape_buckets: bool | ShapeBuckets | None, device: Any) -> ShapeBuckets | None:
    """``None`` (auto): :class:`ShapeBuckets` on accelerators, none on CPU (where padding is all they
    would add); ``True``/``False``: always/never; a :class:`ShapeBuckets`: that one."""
    if isinstance(shape_buckets, ShapeBuckets):
        return shape_buckets
    if shape_buckets is None:
        return None if _device_kind(device) == "cpu" else ShapeBuckets()
    if not isinstance(shape_buckets, bool):
        raise TypeError(f"shape_buckets must be None, a bool or a ShapeBuckets, got {type(shape_buckets).__name__}")
    return ShapeBuckets() if shape_buckets else None


def _device_kind(device: Any) -> str:
    kind = device if isinstance(device, str) else getattr(device, "type", str(device))
    return str(kind).split(":")[0]


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
    lengths: Sequence[int], *, max_batch_size: int | None = 32, max_batch_tokens: int | None = None,
    max_padding: float = 0.1, shapes: ShapeBuckets | None = None, limit: int | None = None,
) -> list[list[int]]:
    """Length-sorted batches, bounded as :func:`length_sorted_batches`, that pad little.

    Each batch holds items adjacent in length order, at most ``max_batch_size``
    of them and at most ``max_batch_tokens`` padded tokens (``len(batch) *
    longest``; an item longer than that gets a batch of its own), and pads at
    most ``max_padding`` of its padded tokens, so all batches together pad at
    most that share too.  Among such cuts, the one with the fewest batches
    (fewest forward passes), then the fewest padded tokens, is returned,
    longest items first.  ``max_batch_size=None`` bounds batches by tokens only.

    With ``shapes``, each batch is padded to ``shapes.width(longest, limit)`` (the
    rounding counts as padding; a batch of one may pad more than ``max_padding``) and
    holds a row count ``shapes`` allows.
    """
    max_batch_size = check_int("max_batch_size", max_batch_size, min=1, allow_none=True)
    max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1, allow_none=True)
    max_padding = check_number("max_padding", max_padding, min=0.0, max=1.0)
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    sizes = [int(lengths[i]) for i in order]
    cap = max_batch_tokens if max_batch_tokens is not None else math.inf
    rows = max_batch_size if max_batch_size is not None else len(sizes)
    # best[j]: (batches, padded tokens) of the best cut of the j longest items; start[j]: where its last batch starts
    best: list[tuple[int, int]] = [(0, 0)] + [(len(sizes) + 1, 0)] * len(sizes)
    start = [0] * (len(sizes) + 1)
    for i in range(len(sizes)):
        for j, padded in _batch_ends(sizes, i, rows, cap, max_padding, shapes, limit):
            cost = (best[i][0] + 1, best[i][1] + padded)
            if cost < best[j]:
                best[j], start[j] = cost, i
    cuts = [len(sizes)]
    while cuts[-1] > 0:
        cuts.append(start[cuts[-1]])
    cuts.reverse()
    return [order[a:b] for a, b in pairwise(cuts)]


def _batch_ends(sizes: list[int], i: int, max_batch_size: int, cap: float, max_padding: float,
                shapes: ShapeBuckets | None, limit: int | None) -> list[tuple[int, int]]:
    """``(j, padded tokens)`` for each allowed batch ``sizes[i:j]`` (``sizes`` sorted longest first)."""
    longest = sizes[i] if shapes is None else shapes.width(sizes[i], limit)
    out = [(i + 1, longest - sizes[i])]
    real = sizes[i]
    for j in range(i + 2, min(len(sizes), i + max_batch_size) + 1):
        fed = longest * (j - i)
        real += sizes[j - 1]
        if fed > cap or fed - real > max_padding * fed:
            break  # both only grow with j: no longer batch from i is allowed
        if shapes is None or shapes.allowed_rows(j - i):
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
    def of(cls, lengths: Sequence[int], batches: Sequence[Sequence[int]],
           width: Callable[[int], int] | None = None) -> PaddingStats:
        """What feeding ``batches`` (positions into ``lengths``), each padded to its longest (or to
        ``width(longest)``), costs."""
        real = sum(int(lengths[i]) for b in batches for i in b)
        pad_to = width if width is not None else (lambda n: n)
        fed = sum(len(b) * pad_to(max(int(lengths[i]) for i in b)) for b in batches if b)
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
    """Default padded tokens per forward batch on ``device`` (a ``torch.device``, or its name):
    2048 on CPU, where bigger batches gain nothing; on a CUDA device 1,024 per GiB of its memory,
    rounded down to a power of two, from 8,192 to 65,536 (65,536 from 64 GiB on); 16384 on other
    accelerators (and for a name whose memory is not asked)."""
    kind = _device_kind(device)
    if kind in BATCH_TOKENS:
        return BATCH_TOKENS[kind]
    if kind == "cuda" and not isinstance(device, str):
        import torch

        if not torch.cuda.is_available():
            return GPU_BATCH_TOKENS
        gib = torch.cuda.get_device_properties(device).total_memory / 2**30
        lo, hi = GPU_BATCH_TOKENS_RANGE
        return int(min(hi, max(lo, 1024 * 2 ** int(math.log2(max(gib, 1.0))))))
    return GPU_BATCH_TOKENS


class PaddingCounter(TokenizerLock):
    """Thread-safe running total of :class:`PaddingStats` (what a model was fed, call after call).

    A pickled or copied counter keeps its totals and gets a fresh lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = PaddingStats()

    def add(self, lengths: Sequence[int], batches: Sequence[Sequence[int]],
            width: Callable[[int], int] | None = None) -> None:
        """Count feeding ``batches`` (positions into ``lengths``), each padded to its longest item (or to
        ``width(longest)``)."""
        stats = PaddingStats.of(lengths, batches, width)
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
    forward passes: longest first, at most ``batch_size`` items (``None``: as many
    as the token cap allows) and ``max_batch_tokens`` tokens (padding included)
    each, each padding at most :data:`MAX_PADDING` of its tokens, in as few
    batches as that allows (:func:`packed_batches`).  ``max_batch_tokens``
    defaults to :func:`default_batch_tokens` of the model's device.  With
    :attr:`shapes` (by default on accelerators, :func:`resolve_shape_buckets`)
    batches take shapes from a bounded set: each is padded to :meth:`pad_width`
    of its longest item, and :meth:`warmup` runs every shape once.
    :meth:`padding_stats` counts what the batches cut by :meth:`_counted_batches` fed.

    ``_legacy_batching = True`` (for benchmarks) restores the batching before
    packing, :meth:`_legacy_batches` (by default: cut by ``batch_size``, or
    ``_legacy_batch_size`` when it is ``None``, and the ``max_batch_tokens`` the
    caller gave, if any, only).
    """

    batch_size: int | None
    max_batch_tokens: int
    shapes: ShapeBuckets | None
    _requested_batch_tokens: int | None
    _legacy_batching: bool
    _legacy_batch_size: int = 32
    _padding: PaddingCounter

    def _init_packing(self, batch_size: int | None, max_batch_tokens: int | None, device: Any,
                      shape_buckets: bool | ShapeBuckets | None = None) -> None:
        """Set the bounds (``max_batch_tokens=None``: the default of ``device``; ``shape_buckets``: see
        :func:`resolve_shape_buckets`) and zero the counts."""
        self.batch_size = batch_size
        self._requested_batch_tokens = max_batch_tokens
        self.max_batch_tokens = default_batch_tokens(device) if max_batch_tokens is None else max_batch_tokens
        self.shapes = resolve_shape_buckets(shape_buckets, device)
        self._legacy_batching = False  # benchmarks: the previous batching (see _legacy_batches)
        self._padding = PaddingCounter()

    def _width_limit(self) -> int | None:
        """The widest batch the model takes (its ``max_length``, when it has one)."""
        limit = getattr(self, "max_length", None)
        return limit if isinstance(limit, int) else None

    def pad_width(self, longest: int) -> int:
        """The width a batch whose longest item holds ``longest`` tokens is padded to."""
        if self.shapes is None or self._legacy_batching:
            return longest
        return self.shapes.width(longest, self._width_limit())

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Positions of items of ``lengths`` tokens grouped into forward passes, longest first."""
        if self._legacy_batching:
            return self._legacy_batches(lengths)
        return packed_batches(lengths, max_batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens,
                              max_padding=MAX_PADDING, shapes=self.shapes, limit=self._width_limit())

    def _legacy_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """The batching before packing, kept to compare against."""
        size = self.batch_size if self.batch_size is not None else self._legacy_batch_size
        return length_sorted_batches(lengths, max_batch_size=size, max_batch_tokens=self._requested_batch_tokens)

    def _counted_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """:meth:`batches` of ``lengths``, counted in :meth:`padding_stats`."""
        batches = self.batches(lengths)
        self._padding.add(lengths, batches, self.pad_width)
        return batches

    def padding_stats(self, *, reset: bool = False) -> PaddingStats:
        """Real and padded tokens fed to the model so far (by all calls; then zeroed if ``reset``)."""
        return self._padding.get(reset=reset)

    def warmup(self) -> int:
        """Run one forward pass of every batch shape :attr:`shapes` allows, so that no call pays for a
        shape's first kernels; returns how many ran (0 without shape buckets, as on CPU by default)."""
        limit = self._width_limit()
        if self.shapes is None or limit is None:
            return 0
        count = 0
        for rows, width in self.shapes.shapes(limit, max_tokens=self.max_batch_tokens, max_rows=self.batch_size):
            self._warm(rows, width)
            count += 1
        return count

    def _warm(self, rows: int, width: int) -> None:
        """One forward pass of ``rows`` items padded to ``width`` tokens (their content does not matter)."""
        raise NotImplementedError(f"{type(self).__name__} has no warm-up")

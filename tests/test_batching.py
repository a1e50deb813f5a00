"""Length-sorted batching: bounds, padding, and the order of results."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragprune.runtime.batching import (
    PaddingStats,
    ShapeBuckets,
    length_sorted_batches,
    packed_batches,
    run_sorted,
)


def greedy(lengths: list[int], max_batch_size: int, cap: int | None, max_padding: float) -> list[list[int]]:
    """The obvious cut: longest first, a new batch as soon as a bound would be crossed."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        if out:
            b = out[-1]
            fed = lengths[b[0]] * (len(b) + 1)
            real = sum(lengths[k] for k in b) + lengths[i]
            if len(b) < max_batch_size and (cap is None or fed <= cap) and fed - real <= max_padding * fed:
                b.append(i)
                continue
        out.append([i])
    return out


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=300), max_size=60),
    max_batch_size=st.integers(min_value=1, max_value=20),
    cap=st.none() | st.integers(min_value=1, max_value=3000),
    max_padding=st.floats(min_value=0.0, max_value=1.0),
)
def test_packed_batches_bounds_and_padding(lengths: list[int], max_batch_size: int, cap: int | None,
                                           max_padding: float) -> None:
    batches = packed_batches(lengths, max_batch_size=max_batch_size, max_batch_tokens=cap, max_padding=max_padding)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each item once
    for b in batches:
        assert b and len(b) <= max_batch_size
        longest = max(lengths[i] for i in b)
        assert lengths[b[0]] == longest  # longest first
        fed, real = longest * len(b), sum(lengths[i] for i in b)
        assert len(b) == 1 or cap is None or fed <= cap
        assert fed - real <= max_padding * fed + 1e-9
    for first, second in pairwise(batches):  # batches follow the length order
        assert min(lengths[i] for i in first) >= max(lengths[i] for i in second)
    stats = PaddingStats.of(lengths, batches)
    assert stats.padding_share <= max_padding + 1e-9
    assert stats.items == len(lengths) and stats.batches == len(batches)
    # as few batches as the bounds allow: never more than the greedy cut, and with no
    # padding bound exactly as many as length_sorted_batches
    assert len(batches) <= len(greedy(lengths, max_batch_size, cap, max_padding))
    if max_padding == 1.0:
        plain = length_sorted_batches(lengths, max_batch_size=max_batch_size, max_batch_tokens=cap)
        assert len(batches) == len(plain)


def test_packed_batches_pad_little_where_one_batch_pads_much() -> None:
    rng = random.Random(0)
    # windows of one call: full windows of long passages and single windows of short ones
    lengths = [256] * 12 + [rng.randint(30, 250) for _ in range(40)]
    plain = PaddingStats.of(lengths, length_sorted_batches(lengths, max_batch_size=16, max_batch_tokens=4096))
    packed = PaddingStats.of(lengths, packed_batches(lengths, max_batch_size=16, max_batch_tokens=4096))
    assert plain.padding_share > 0.1
    assert packed.padding_share < 0.1
    assert packed.real == plain.real == sum(lengths) and packed.fed < plain.fed


def test_packed_batches_fewest_batches_then_least_padding() -> None:
    # longest first, the greedy cut takes a 60 into the first batch and needs three batches
    lengths = [90, 90, 60, 60, 90, 50, 50]
    assert greedy(lengths, 16, None, 0.1) == [[0, 1, 4, 2], [3, 5], [6]]
    assert packed_batches(lengths, max_batch_size=16, max_padding=0.1) == [[0, 1, 4], [2, 3, 5, 6]]
    # two batches either way: the one without padding
    lengths = [100] * 9 + [10, 10]
    assert greedy(lengths, 16, None, 0.1) == [list(range(10)), [10]]
    assert packed_batches(lengths, max_batch_size=16, max_padding=0.1) == [list(range(9)), [9, 10]]
    assert packed_batches([5, 5, 5], max_padding=0.0) == [[0, 1, 2]]
    assert packed_batches([6, 5, 4], max_padding=0.0) == [[0], [1], [2]]
    assert packed_batches([]) == []
    assert packed_batches([7, 300, 8], max_batch_tokens=100) == [[1], [2, 0]]  # too long: alone


@pytest.mark.parametrize(("bad", "error"), [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                          ("0.1", TypeError), (True, TypeError)])
def test_packed_batches_rejects_bad_padding(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_padding"):
        packed_batches([1, 2], max_padding=bad)  # type: ignore[arg-type]


def test_padding_stats() -> None:
    lengths = [10, 8, 5, 5]
    stats = PaddingStats.of(lengths, [[0, 1], [2, 3]])
    assert (stats.real, stats.fed, stats.items, stats.batches) == (28, 30, 4, 2)
    assert stats.padded == 2 and stats.padding_share == pytest.approx(2 / 30)
    total = stats + PaddingStats.of([4, 2], [[0, 1]])
    assert (total.real, total.fed, total.items, total.batches) == (34, 38, 6, 3)
    assert PaddingStats().padding_share == 0.0


def test_run_sorted_and_length_sorted_batches_unchanged() -> None:
    lengths = [3, 9, 1, 9, 4]
    assert length_sorted_batches(lengths, max_batch_size=2) == [[1, 3], [4, 0], [2]]
    assert length_sorted_batches(lengths, max_batch_size=8, max_batch_tokens=20) == [[1, 3], [4, 0, 2]]
    out = run_sorted(["c", "i", "a", "j", "d"], lengths, lambda b: [s.upper() for s in b], max_batch_size=2)
    assert out == ["C", "I", "A", "J", "D"]


# --------------------------------------------------------------------------- shape buckets


def test_shape_bucket_widths() -> None:
    b = ShapeBuckets()
    assert [b.width(n) for n in (1, 8, 9, 64, 65, 128, 129, 300, 512, 513)] == [8, 8, 16, 64, 72, 128, 144, 320,
                                                                                512, 576]
    assert b.width(500, limit=510) == 510 and b.width(510, limit=500) == 510  # never below n
    widths = b.widths(512)
    assert len(widths) == 32 and widths[-1] == 512 and widths == sorted(set(widths))
    assert b.widths(514)[-1] == 514  # a limit off the ladder is a width of its own
    assert [r for r in range(1, 100) if ShapeBuckets.allowed_rows(r)] == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64,
                                                                           96]
    assert not ShapeBuckets.allowed_rows(0)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(min_value=1, max_value=100_000), steps=st.integers(min_value=1, max_value=16),
       multiple=st.integers(min_value=1, max_value=64))
def test_shape_bucket_width_rounds_little_and_is_stable(n: int, steps: int, multiple: int) -> None:
    b = ShapeBuckets(steps=steps, multiple=multiple)
    w = b.width(n)
    assert w >= n and b.width(w) == w  # a width is its own bucket
    assert w - n < max(multiple, n / steps)  # rounding adds less than a step


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=600), max_size=80),
    max_batch_size=st.none() | st.integers(min_value=1, max_value=40),
    cap=st.none() | st.integers(min_value=1, max_value=8000),
)
def test_packed_batches_in_shape_buckets(lengths: list[int], max_batch_size: int | None, cap: int | None) -> None:
    b = ShapeBuckets()
    batches = packed_batches(lengths, max_batch_size=max_batch_size, max_batch_tokens=cap, shapes=b, limit=512)
    assert sorted(i for x in batches for i in x) == list(range(len(lengths)))
    shapes = set(b.shapes(512, max_tokens=cap, max_rows=max_batch_size)) if cap is not None else set()
    for x in batches:
        width = b.width(max(lengths[i] for i in x), 512)
        fed, real = width * len(x), sum(lengths[i] for i in x)
        assert ShapeBuckets.allowed_rows(len(x)) and (max_batch_size is None or len(x) <= max_batch_size)
        assert len(x) == 1 or fed - real <= 0.1 * fed + 1e-9
        if cap is not None and max(lengths[i] for i in x) <= 512:
            assert (len(x), width) in shapes
    stats = PaddingStats.of(lengths, batches, lambda n: b.width(n, 512))
    assert stats.fed >= PaddingStats.of(lengths, batches).fed


def test_shape_list_is_bounded() -> None:
    shapes = list(ShapeBuckets().shapes(512, max_tokens=16384))
    assert all(r * w <= 16384 for r, w in shapes) and len(shapes) == len(set(shapes))
    assert len(shapes) < 500 and (32, 512) in shapes and (48, 512) not in shapes

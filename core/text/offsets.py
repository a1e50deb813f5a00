"""The one map between a passage's ORIGINAL text and its rendered text.

A compressed passage's text is ``render_spans(original, spans)``: the kept pieces
in order, with one space inserted at a junction where a gap separates two
non-space characters of spaced scripts.  :class:`OffsetMap` holds where each
kept piece starts on both sides, derived from ``original`` and ``spans`` by the
same rule, and converts positions and spans in either direction with numpy
(one Python step per kept piece, never per token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .segment import Span, is_unspaced_char

__all__ = ["OffsetMap"]


def _joins_with_space(left: str, right: str) -> bool:
    return not (left.isspace() or right.isspace() or is_unspaced_char(left) or is_unspaced_char(right))


@dataclass(frozen=True, slots=True, eq=False)
class OffsetMap:
    """Start of each kept piece in ``original`` and in the rendered text, and its end in ``original``.

    Build it with :meth:`of` (or :meth:`ragprune.Passage.offset_map`).
    """

    original_starts: np.ndarray
    text_starts: np.ndarray
    original_ends: np.ndarray

    @classmethod
    def of(cls, original: str, spans: Sequence[Span]) -> OffsetMap:
        """The map for ``render_spans(original, spans)``."""
        n = len(spans)
        starts = np.zeros(n, dtype=np.int64)
        ends = np.zeros(n, dtype=np.int64)
        text_starts = np.zeros(n, dtype=np.int64)
        at, prev_end, last = 0, -1, ""
        for k, (a, b) in enumerate(spans):  # one step per kept piece
            starts[k], ends[k] = a, b
            if b <= a:  # an empty piece renders nothing
                text_starts[k] = at
                continue
            if at and a > prev_end and _joins_with_space(last, original[a]):
                at += 1
            text_starts[k] = at
            at += b - a
            prev_end, last = b, original[b - 1]
        return cls(starts, text_starts, ends)

    def _piece(self, positions: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return np.maximum(np.searchsorted(starts, positions, side="right") - 1, 0)

    def to_text(self, units: Sequence[Span] | np.ndarray) -> np.ndarray:
        """``(n, 2)`` offsets in the rendered text of ``units`` given in ``original``
        coordinates (each inside one kept piece)."""
        u = np.asarray(units, dtype=np.int64).reshape(-1, 2)
        if not len(u):
            return u
        k = self._piece(u[:, 0], self.original_starts)
        mapped: np.ndarray = u + (self.text_starts - self.original_starts)[k][:, None]
        return mapped

    def to_original(self, positions: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``original`` start of each text range ``[position, position + length)``, and
        whether the whole range lies inside one kept piece (a range over an inserted
        space or a junction has no single original span)."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        size = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if not len(pos) or not len(self.text_starts):
            return np.zeros(len(pos), dtype=np.int64), np.zeros(len(pos), dtype=bool)
        k = self._piece(pos, self.text_starts)
        start = pos - self.text_starts[k] + self.original_starts[k]
        inside = (start >= self.original_starts[k]) & (start + size <= self.original_ends[k])
        return start, inside

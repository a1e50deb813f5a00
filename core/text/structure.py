"""Stretches of text a cut must not fall inside: HTML tags, markdown table rows, fenced code blocks.

Budget truncation keeps a prefix of whole units; :func:`atomic_spans` tells where such
a prefix may not end, so a cut never leaves ``<table><tr><th>Name</th><``, half a table
row or a code block without its closing fence.  (Pruning by structure-aware units is a
separate, larger mechanism; this only keeps prefix cuts clean.)
"""

from __future__ import annotations

import bisect
import re

from .segment import Span

__all__ = ["atomic_spans", "inside"]

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}(?P=fence)[ \t]*$|\Z)", re.S | re.M)
_TABLE_ROW = re.compile(r"^[ \t]*\|[^\n]*$", re.M)
_TAG = re.compile(r"<[A-Za-z!/?][^<>]*>")


def atomic_spans(text: str) -> list[Span]:
    """Sorted, merged ``(start, end)`` spans of ``text`` that must stay whole."""
    found = [m.span() for pattern in (_FENCE, _TABLE_ROW, _TAG) for m in pattern.finditer(text)]
    merged: list[Span] = []
    for a, b in sorted(found):
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def inside(spans: list[Span], pos: int) -> bool:
    """Whether ``pos`` falls strictly inside one of ``spans`` (sorted, as :func:`atomic_spans` returns)."""
    k = bisect.bisect_right(spans, (pos, pos)) - 1
    if k >= 0 and spans[k][0] < pos < spans[k][1]:
        return True
    return k + 1 < len(spans) and spans[k + 1][0] < pos < spans[k + 1][1]

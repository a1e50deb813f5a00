"""JSON units: leaves addressed by their path, text strings by their sentences.

The text is parsed once with the standard ``json`` module (its string scanner and
``raw_decode`` read every token; this module only follows the brackets), keeping the
character extent of every value, key and separator.  Units are:

* each sentence of a text string (one of at least :data:`TEXT_WORDS` words), so that a
  search result's snippet is pruned like prose;
* a whole leaf otherwise (a number, ``true``/``false``/``null``, a short string, an
  empty object or array), except the *fields* of an object that holds text: its other
  scalar members (a title, a url, an id) are no units of their own but come along with
  any kept sentence of that object, so a kept snippet keeps its source.

Keeping units keeps, for every kept leaf, its key and the brackets and keys of all its
ancestors, with one original comma between two kept members of the same container.
The result is the input with members (and sentences inside text strings) removed, so it
parses as JSON.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .segment import Span, merge_spans, sentence_spans
from .units import Layout

__all__ = ["TEXT_WORDS", "json_layout", "json_path_of"]

TEXT_WORDS = 5
"""A string of at least this many space-separated words is text, split into sentences."""

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass(eq=False)
class _Node:
    start: int
    end: int
    path: tuple[str | int, ...]
    members: list[tuple[int, _Node]] = field(default_factory=list)  # (start of key or value, value)
    leaf: int = -1  # leaf number, -1 for a non-empty container
    first: int = 0  # leaves first..last-1 lie under this node
    last: int = 0
    long: bool = False  # a text string, split into sentence units


class _Parser:
    """Builds the position tree of a valid JSON text (checked by ``json.loads`` first)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.leaves: list[_Node] = []

    def ws(self, i: int) -> int:
        m = _WS.match(self.s, i)
        return m.end() if m else i

    def value(self, i: int, path: tuple[str | int, ...]) -> _Node:
        c = self.s[i]
        if c in "{[":
            return self.container(i, path)
        if c == '"':
            _, end = json.decoder.scanstring(self.s, i + 1)  # type: ignore[attr-defined]
            node = _Node(i, end, path, long=self.s.count(" ", i, end) >= TEXT_WORDS - 1)
        else:
            _, end = _DECODER.raw_decode(self.s, i)
            node = _Node(i, end, path)
        return self._leaf(node)

    def _leaf(self, node: _Node) -> _Node:
        node.leaf = node.first = len(self.leaves)
        node.last = node.first + 1
        self.leaves.append(node)
        return node

    def container(self, i: int, path: tuple[str | int, ...]) -> _Node:
        close = "}" if self.s[i] == "{" else "]"
        node = _Node(i, i, path, first=len(self.leaves))
        j = self.ws(i + 1)
        if self.s[j] == close:
            node.end = j + 1
            return self._leaf(node)
        n = 0
        while True:
            start = j
            key: str | int = n
            if close == "}":
                key, j = json.decoder.scanstring(self.s, j + 1)  # type: ignore[attr-defined]
                j = self.ws(self.ws(j) + 1)  # past the colon
            child = self.value(j, (*path, key))
            node.members.append((start, child))
            j = self.ws(child.end)
            n += 1
            if self.s[j] == close:
                node.end = j + 1
                node.last = len(self.leaves)
                return node
            j = self.ws(j + 1)  # past the comma


@dataclass(eq=False)
class _JsonLayout:
    text: str
    root: _Node
    leaves: list[_Node]
    unit_leaf: list[int]
    attached: dict[int, list[int]]
    starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.starts = [n.start for n in self.leaves]

    def close(self, ids: Sequence[int], pieces: Sequence[Span]) -> list[Span]:
        whole: set[int] = set()
        parts: dict[int, list[Span]] = {}
        for k in ids:
            leaf = self.unit_leaf[k]
            if self.leaves[leaf].long:
                parts.setdefault(leaf, [])
            else:
                whole.add(leaf)
            whole.update(self.attached.get(leaf, ()))
        for a, b in pieces:
            at = self._leaf_at(a)
            if at is not None and at in parts:
                parts[at].append((a, b))
        kept = sorted(whole | parts.keys())
        return list(merge_spans(self._spans(self.root, kept, whole, parts)))

    def _leaf_at(self, pos: int) -> int | None:
        k = bisect.bisect_right(self.starts, pos) - 1
        return k if k >= 0 and pos < self.leaves[k].end else None

    def _spans(self, node: _Node, kept: list[int], whole: set[int], parts: dict[int, list[Span]]) -> list[Span]:
        if node.leaf >= 0:
            if node.leaf in whole or not node.long:
                return [(node.start, node.end)]
            return [(node.start, node.start + 1), *parts[node.leaf], (node.end - 1, node.end)]
        members = node.members
        chosen = [m for m in range(len(members)) if _any_in(kept, members[m][1].first, members[m][1].last)]
        out: list[Span] = [(node.start, members[0][0])]
        prev = -1
        for m in chosen:
            start, child = members[m]
            if prev >= 0:  # one separator: the comma after the previous kept member
                out.append((members[prev][1].end, members[prev + 1][0]))
            out.append((start, child.start))
            out.extend(self._spans(child, kept, whole, parts))
            prev = m
        out.append((members[-1][1].end, node.end))
        return out


def _any_in(sorted_ids: list[int], first: int, last: int) -> bool:
    k = bisect.bisect_left(sorted_ids, first)
    return k < len(sorted_ids) and sorted_ids[k] < last


def _units(text: str, leaves: list[_Node], fields: set[int]) -> tuple[list[Span], list[int]]:
    units: list[Span] = []
    owner: list[int] = []
    for leaf in leaves:
        if leaf.leaf in fields:
            continue
        if not leaf.long:
            units.append((leaf.start, leaf.end))
            owner.append(leaf.leaf)
            continue
        a = leaf.start + 1
        for x, y in sentence_spans(text[a : leaf.end - 1]):
            if text[a + x : a + y].strip():
                units.append((a + x, a + y))
                owner.append(leaf.leaf)
    return units, owner


def _attached(root: _Node) -> dict[int, list[int]]:
    """For each text leaf: the other scalar members (fields) of the same object."""
    out: dict[int, list[int]] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        children = [child for _, child in node.members]
        stack.extend(c for c in children if c.leaf < 0)
        if node.members and isinstance(children[0].path[-1], str):
            short = [c.leaf for c in children if c.leaf >= 0 and not c.long]
            for c in children:
                if c.long and short:
                    out[c.leaf] = short
    return out


def json_layout(text: str) -> Layout:
    """The :class:`~ragprune.text.units.Layout` of a JSON text.

    ``ValueError`` when ``text`` is not valid JSON.  A document nested too deeply to
    walk is one unit (kept whole or dropped whole).
    """
    try:
        json.loads(text)
    except RecursionError:
        return Layout("json", ((0, len(text)),) if text.strip() else ())
    except ValueError as e:
        raise ValueError(f"text is not valid JSON (structure='json'): {e}") from None
    parser = _Parser(text)
    try:
        root = parser.value(parser.ws(0), ())
    except RecursionError:
        return Layout("json", ((0, len(text)),))
    attached = _attached(root)
    units, owner = _units(text, parser.leaves, {f for fs in attached.values() for f in fs})
    laid = _JsonLayout(text, root, parser.leaves, owner, attached)
    fields = sorted({(parser.leaves[f].start, parser.leaves[f].end) for fs in attached.values() for f in fs})
    return Layout("json", tuple(units), records=_records(root), context=tuple(fields), _close=laid.close)


def _records(root: _Node) -> tuple[Span, ...]:
    """The members of the first container, from the root down through single members, with several."""
    node = root
    while len(node.members) == 1 and node.members[0][1].members:
        node = node.members[0][1]
    if len(node.members) < 2:
        return ()
    return tuple((start, child.end) for start, child in node.members)


def json_path_of(text: str, span: Span) -> tuple[str | int, ...] | None:
    """The path (keys and array positions from the root) of the leaf that holds ``span``."""
    parser = _Parser(text)
    json.loads(text)
    parser.value(parser.ws(0), ())
    starts = [n.start for n in parser.leaves]
    k = bisect.bisect_right(starts, span[0]) - 1
    if k >= 0 and span[1] <= parser.leaves[k].end:
        return parser.leaves[k].path
    return None

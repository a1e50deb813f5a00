"""Markdown units, read with a CommonMark parser (markdown-it-py, with GFM tables).

Units follow the parser's blocks, in source lines:

* a heading, an HTML block: one unit each;
* a paragraph (also inside list items and quotes, with their markers): its sentences;
* a table row: one unit; a body row requires the table's header row and separator line,
  the header row its separator line;
* a code block: one unit per line; in a fenced block each line requires both fences.

Every unit requires the blank lines before its block, so that kept blocks stay apart (a
table kept after a list item does not read as the item's continuation); a sentence in a list
item or quote also requires the blank lines before its outermost list or quote, so that a later
sentence kept without its item's marker does not become a row of a table kept before it (the
marker itself is not required: it would cost a word of a word budget).
Other lines the parser does not put in a block (thematic breaks) are never units, so
pruning drops them.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from .segment import Span, sentence_spans
from .units import Layout

__all__ = ["markdown_layout", "has_structure"]

_NEWLINE = re.compile(r"\r\n?|\n")  # the line breaks the parser counts lines by
_CONTAINERS = ("bullet_list", "ordered_list", "blockquote")
_STRUCTURE = frozenset({"heading_open", "table_open", "bullet_list_open", "ordered_list_open", "fence",
                        "code_block", "blockquote_open", "html_block"})


def _parser() -> Any:
    try:
        from markdown_it import MarkdownIt
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ImportError("markdown units need markdown-it-py: pip install 'markdown-it-py>=3'") from e
    return MarkdownIt("commonmark").enable("table")


def _tokens(text: str) -> list[Any]:
    return list(_parser().parse(text))


def has_structure(text: str) -> bool:
    """Whether the CommonMark parse of ``text`` holds more than paragraphs."""
    return any(t.type in _STRUCTURE for t in _tokens(text))


class _Builder:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = [0, *(m.end() for m in _NEWLINE.finditer(text))]
        if self.lines[-1] != len(text):
            self.lines.append(len(text))
        self.units: list[Span] = []
        self.requires: list[tuple[Span, ...]] = []
        self.header: tuple[Span, ...] = ()
        self.containers: list[int] = []  # first lines of the lists and quotes open here, outermost first

    def span(self, first: int, last: int) -> Span:
        """Characters of source lines ``first`` to ``last - 1``."""
        n = len(self.lines) - 1
        return self.lines[min(first, n)], self.lines[min(last, n)]

    def gap(self, first: int) -> tuple[Span, ...]:
        """The blank lines just before line ``first``: every unit of the block that starts
        there requires them, so a kept block stays apart from what precedes it (a kept
        sentence does not become the continuation of a kept table row or list item)."""
        top = first = min(first, len(self.lines) - 1)
        while 0 < top and not self.text[self.lines[top - 1] : self.lines[top]].strip():
            top -= 1
        return ((self.lines[top], self.lines[first]),) if top < first else ()

    def add(self, span: Span, requires: tuple[Span, ...] = ()) -> None:
        if self.text[span[0] : span[1]].strip():
            self.units.append(span)
            self.requires.append(requires)

    def sentences(self, first: int, last: int) -> None:
        a, b = self.span(first, last)
        end = len(self.text[a:b].rstrip("\r\n")) + a
        # a kept sentence keeps its block's line break, so what follows it starts a line
        requires = (*self.gap(first), *(((end, b),) if b > end else ()))
        if self.containers:
            requires = (*requires, *self.gap(self.containers[0]))
        for x, y in sentence_spans(self.text[a:b]):
            self.add((a + x, a + y), requires)

    def fence(self, first: int, last: int, markup: str) -> None:
        closing = last - 1
        closed = closing > first and self.text[slice(*self.span(closing, last))].strip().startswith(markup)
        fences = (*self.gap(first), self.span(first, first + 1), *((self.span(closing, last),) if closed else ()))
        body = range(first + 1, closing if closed else last)
        if not body:
            self.add(self.span(first, last), self.gap(first))
        for line in body:
            self.add(self.span(line, line + 1), fences)

    def token(self, tok: Any, in_head: bool) -> None:
        first, last = tok.map or (0, 0)
        kind = tok.type
        if kind == "paragraph_open":
            self.sentences(first, last)
        elif kind in ("heading_open", "html_block"):
            self.add(self.span(first, last), self.gap(first))
        elif kind == "tr_open" and in_head:
            separator = self.span(last, last + 1)
            self.header = (*self.gap(first), self.span(first, last), separator)
            self.add(self.span(first, last), self.header)
        elif kind == "tr_open":
            self.add(self.span(first, last), self.header)
        elif kind == "fence":
            self.fence(first, last, tok.markup)
        elif kind == "code_block":
            gap = self.gap(first)
            for line in range(first, last):
                self.add(self.span(line, line + 1), gap)


def _records(b: _Builder, tokens: list[Any]) -> tuple[Span, ...]:
    """Sections (a heading to the next one) when there are headings, else top-level blocks."""
    tops = [t.map[0] for t in tokens if t.level == 0 and t.nesting >= 0 and t.map is not None and t.type != "hr"]
    heads = [t.map[0] for t in tokens if t.type == "heading_open" and t.level == 0 and t.map is not None]
    starts = sorted({0, *heads}) if heads else sorted(set(tops))
    bounds = [*starts, len(b.lines) - 1]
    out = [b.span(s, e) for s, e in itertools.pairwise(bounds) if e > s]
    return tuple(s for s in out if b.text[s[0] : s[1]].strip()) if len(out) > 1 else ()


def markdown_layout(text: str) -> Layout:
    """The :class:`~ragprune.text.units.Layout` of a markdown text."""
    b = _Builder(text)
    in_head = False
    tokens = _tokens(text)
    for tok in tokens:
        if tok.type in ("thead_open", "thead_close"):
            in_head = tok.type == "thead_open"
        elif tok.type.removesuffix("_close") in _CONTAINERS and tok.nesting < 0:
            b.containers.pop()
        elif tok.type.removesuffix("_open") in _CONTAINERS and tok.nesting > 0:
            b.containers.append(tok.map[0] if tok.map is not None else 0)
        elif tok.map is not None:
            b.token(tok, in_head)
    order = sorted(range(len(b.units)), key=lambda k: b.units[k])
    units = [b.units[k] for k in order]
    if units and not text[units[-1][1] :].strip():
        units[-1] = (units[-1][0], len(text))
    return Layout("markdown", tuple(units), tuple(b.requires[k] for k in order), _records(b, tokens))

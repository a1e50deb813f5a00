"""HTML units, read with the standard library's HTML tokenizer (``html.parser``).

The tokenizer gives every tag with its position; this module builds the element tree
with the implied end tags of HTML (a new ``<p>``, ``<li>``, ``<tr>``, ``<td>`` closes an
open one; a block element closes an open ``<p>``; an end tag closes what is open inside
it).  Units are:

* the sentences of the text runs of block elements (text and inline elements between
  block children); a sentence boundary never falls inside an inline element, a tag or
  a comment, so ``<a href="...">`` stays whole;
* each table row (``<tr>``) whole; a body row requires the table's first row when that
  one holds header cells.

Every unit requires the start and end tags of its ancestors, and the document's
declarations (``<!DOCTYPE html>``).  Scripts, styles, templates, navigation, asides,
footers and forms are never units: pruning drops them first.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from html.parser import HTMLParser

from .segment import Span, sentence_spans
from .units import Layout

__all__ = ["html_layout", "BOILERPLATE"]

VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
BLOCK = frozenset("""address article aside blockquote body caption center dd details dialog dir div dl dt
    fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html legend li main menu
    nav ol p pre section summary table tbody td tfoot th thead title tr ul""".split())
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
BOILERPLATE = frozenset("script style noscript template nav aside footer form iframe svg canvas object".split())
"""Elements whose content is never a unit (and so is dropped by any pruning)."""
_CLOSES_P = BLOCK - frozenset({"html", "body", "head", "title", "td", "th", "tr", "tbody", "thead", "tfoot",
                               "caption", "li", "dd", "dt"})
# a start tag closes an open element of these kinds, up to (not past) the given scopes
_IMPLIED = {
    "li": ({"li"}, {"ul", "ol", "menu"}),
    "dt": ({"dt", "dd"}, {"dl"}),
    "dd": ({"dt", "dd"}, {"dl"}),
    "tr": ({"tr", "td", "th"}, {"table", "tbody", "thead", "tfoot"}),
    "td": ({"td", "th"}, {"tr", "table"}),
    "th": ({"td", "th"}, {"tr", "table"}),
    "tbody": ({"tbody", "thead", "tfoot", "tr", "td", "th"}, {"table"}),
    "tfoot": ({"tbody", "thead", "tr", "td", "th"}, {"table"}),
    "option": ({"option"}, {"select"}),
}


@dataclass(eq=False)
class _El:
    tag: str
    start: int
    open_end: int  # end of the start tag
    parent: _El | None
    close_start: int = -1  # start of the end tag (-1: none, implied)
    end: int = -1
    children: list[_El] = field(default_factory=list)

    def tags(self) -> list[Span]:
        out = [(self.start, self.open_end)]
        if self.close_start >= 0:
            out.append((self.close_start, self.end))
        return out


class _TreeBuilder(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.line_starts = [0]
        self.line_starts.extend(i + 1 for i, c in enumerate(text) if c == "\n")
        self.root = _El("#root", 0, 0, None)
        self.stack = [self.root]
        self.atomic: list[Span] = []  # tags, comments, declarations: never cut inside
        self.decls: list[Span] = []

    def pos(self) -> int:
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def _pop_until(self, index: int, at: int) -> None:
        while len(self.stack) > index:
            self.stack.pop().end = at  # closed by implication: no end tag

    def _implied(self, tag: str, at: int) -> None:
        kinds, scopes = _IMPLIED.get(tag, (set(), set()))
        if tag in _CLOSES_P:
            kinds = kinds | {"p"}
        for i in range(len(self.stack) - 1, 0, -1):
            name = self.stack[i].tag
            if name in kinds:
                self._pop_until(i, at)
                return
            if name in scopes or (name in BLOCK and name != "p" and tag not in _IMPLIED):
                return

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self.pos()
        end = start + len(self.get_starttag_text() or "")
        self.atomic.append((start, end))
        self._implied(tag, start)
        el = _El(tag, start, end, self.stack[-1])
        self.stack[-1].children.append(el)
        if tag in VOID:
            el.end = end
        else:
            self.stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self.pos()
        end = start + len(self.get_starttag_text() or "")
        self.atomic.append((start, end))
        el = _El(tag, start, end, self.stack[-1], end=end)
        self.stack[-1].children.append(el)

    def handle_endtag(self, tag: str) -> None:
        start = self.pos()
        gt = self.text.find(">", start)
        end = len(self.text) if gt < 0 else gt + 1
        self.atomic.append((start, end))
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                self._pop_until(i + 1, start)
                el = self.stack.pop()
                el.close_start, el.end = start, end
                return
        # a stray end tag: ignored, like an HTML parser does

    def _other(self, length: int, *, decl: bool = False) -> None:
        start = self.pos()
        self.atomic.append((start, start + length))
        if decl:
            self.decls.append((start, start + length))

    def handle_comment(self, data: str) -> None:
        self._other(len(data) + 7)

    def handle_decl(self, decl: str) -> None:
        self._other(len(decl) + 3, decl=True)

    def handle_pi(self, data: str) -> None:
        self._other(len(data) + 3, decl=True)

    def finish(self) -> _El:
        self.close()
        self._pop_until(1, len(self.text))
        self.root.open_end, self.root.end = 0, len(self.text)
        return self.root


class _Units:
    def __init__(self, text: str, builder: _TreeBuilder) -> None:
        self.text = text
        self.atomic = sorted(builder.atomic)
        self.decls = tuple(builder.decls)
        self.units: list[Span] = []
        self.requires: list[tuple[Span, ...]] = []

    def ancestors(self, el: _El) -> tuple[Span, ...]:
        out: list[Span] = list(self.decls)
        node: _El | None = el
        while node is not None and node.tag != "#root":
            out.extend(node.tags())
            node = node.parent
        return tuple(out)

    def add(self, span: Span, requires: tuple[Span, ...]) -> None:
        if self._has_content(*span):
            self.units.append(span)
            self.requires.append(requires)

    def run(self, el: _El, a: int, b: int, requires: tuple[Span, ...]) -> None:
        """The sentences of ``text[a:b]``, merged where a boundary would cut an inline element."""
        inline = [(c.start, c.end) for c in el.children if a <= c.start and c.end <= b] + self._atomic_in(a, b)
        pieces: list[list[int]] = []
        for x, y in sentence_spans(self.text[a:b]):
            if pieces and any(s < a + x < e for s, e in inline):
                pieces[-1][1] = a + y
            else:
                pieces.append([a + x, a + y])
        for x, y in pieces:
            self.add((x, y), requires)

    def _has_content(self, a: int, b: int) -> bool:
        """Whether ``text[a:b]`` holds text outside tags, comments and declarations."""
        pos = a
        for s, e in self._atomic_in(a, b):
            if self.text[pos:s].strip():
                return True
            pos = max(pos, e)
        return bool(self.text[pos:b].strip())

    def _atomic_in(self, a: int, b: int) -> list[Span]:
        lo = bisect.bisect_left(self.atomic, (a, a))
        hi = bisect.bisect_left(self.atomic, (b, b))
        return [(s, e) for s, e in self.atomic[lo:hi] if e <= b]

    def element(self, el: _El, header: tuple[Span, ...] = ()) -> None:
        if el.tag in BOILERPLATE:
            return
        requires = self.ancestors(el)
        if el.tag == "tr":
            self.add((el.start, el.end), requires + header)
            return
        if el.tag == "table":
            self.table(el, requires)
            return
        pos = el.open_end
        close = el.close_start if el.close_start >= 0 else el.end
        for child in el.children:
            if child.tag in BLOCK or child.tag in BOILERPLATE:
                self.run(el, pos, child.start, requires)
                self.element(child)
                pos = child.end
        self.run(el, pos, close, requires)

    def table(self, el: _El, requires: tuple[Span, ...]) -> None:
        rows = _rows(el)
        header: tuple[Span, ...] = ()
        if rows and any(c.tag == "th" for c in rows[0].children):
            header = (rows[0].start, rows[0].end), *self.ancestors(rows[0])
        for child in el.children:
            if child.tag in ("thead", "tbody", "tfoot"):
                for row in child.children:
                    self.element(row, header if row is not rows[0] else ())
            else:
                self.element(child, header if child is not (rows[0] if rows else None) else ())


def _rows(table: _El) -> list[_El]:
    out: list[_El] = []
    for child in table.children:
        if child.tag == "tr":
            out.append(child)
        elif child.tag in ("thead", "tbody", "tfoot"):
            out.extend(c for c in child.children if c.tag == "tr")
    return out


def _records(root: _El) -> tuple[Span, ...]:
    """The block children of the body (or of the first element down from it with several)."""
    node = root
    while True:
        blocks = [c for c in node.children if c.tag in BLOCK and c.tag not in BOILERPLATE and c.tag != "head"]
        if len(blocks) != 1:
            break
        node = blocks[0]
    if len(blocks) < 2:
        return ()
    heads = [k for k, c in enumerate(blocks) if c.tag in _HEADINGS]
    if not heads:
        return tuple((c.start, c.end) for c in blocks)
    starts = sorted({0, *heads})  # a heading and the blocks up to the next one: one section
    ends = [*starts[1:], len(blocks)]
    return tuple((blocks[a].start, blocks[b - 1].end) for a, b in zip(starts, ends, strict=True))


def html_layout(text: str) -> Layout:
    """The :class:`~ragprune.text.units.Layout` of an HTML text (a page or a fragment)."""
    builder = _TreeBuilder(text)
    builder.feed(text)
    root = builder.finish()
    units = _Units(text, builder)
    units.element(root)
    order = sorted(range(len(units.units)), key=lambda k: units.units[k])
    return Layout("html", tuple(units.units[k] for k in order), tuple(units.requires[k] for k in order),
                  _records(root))

"""Units a stage keeps or drops, following the structure of the text.

A passage's *units* are what pruning stages score and select: sentences for prose;
for markdown, headings, paragraph sentences, list items, table rows and code lines;
for JSON, leaves (and the sentences of long strings) addressed by their path; for HTML,
the sentences of block elements and whole table rows.  Every unit is a character span
of the text, and units never overlap.

Keeping a unit may require other text, so that what is kept still parses:

* markdown: a table row needs its table's header row and separator line; a code line
  needs the opening and closing fences;
* JSON: a leaf needs the keys and brackets of its ancestors, and the commas between
  kept members (never a dangling one); short scalar members of an object (a title, a
  url, an id) come along with any long text of the same object;
* HTML: a unit needs the start and end tags of its ancestors (and the doctype); a
  table row needs the table's header row.  Scripts, styles, templates, navigation,
  asides and footers are never units, so they are dropped first.

:meth:`Layout.closure` turns the units a stage chose into the character spans to keep.
The result is always made of slices of the original text, so pruned JSON is the input
with whole members removed and still parses, and pruned HTML keeps every ancestor's
start and end tags.  :func:`layout_of` finds the format (``structure="auto"``) or takes
the one given; layouts are cached per text.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..runtime.validation import check_choice
from .segment import Span, merge_spans, sentence_spans

__all__ = ["STRUCTURES", "Layout", "ReadingView", "detect_structure", "layout_of", "intersect_spans",
           "reading_view"]

STRUCTURES = ("auto", "prose", "markdown", "json", "html")
"""What ``structure=`` accepts: ``"auto"`` detects the format from the text."""


@dataclass(frozen=True, eq=False)
class Layout:
    """The units of one text and what keeping each of them requires.

    Attributes:
        structure: ``"prose"``, ``"markdown"``, ``"json"`` or ``"html"``.
        units: the selectable units, sorted, non-overlapping character spans.
        requires: for each unit, the spans that must be kept with it.
        records: the document's records, for models that read one record at a time:
            the items of a JSON array of results (or of the first container with several
            members), the sections of a markdown document (its top-level blocks when it
            has no headings), the top-level blocks of an HTML page's body.  Empty for
            prose.  A model that reads a whole search-result list at once sees every
            result next to the relevant one; reading record by record scores each as a
            passage of its own.
        context: text that is no unit but helps a model read the units around it (the
            title and url fields of a JSON result); see :func:`reading_view`.
    """

    structure: str
    units: tuple[Span, ...]
    requires: tuple[tuple[Span, ...], ...] = ()
    records: tuple[Span, ...] = ()
    context: tuple[Span, ...] = ()
    _close: Callable[[Sequence[int], Sequence[Span]], list[Span]] | None = field(default=None, repr=False)

    def unit_of(self, span: Span) -> int | None:
        """The index of the unit that contains ``span`` (``None`` when no unit does)."""
        k = bisect.bisect_right(self.units, (span[0], float("inf"))) - 1
        if k >= 0 and self.units[k][0] <= span[0] and span[1] <= self.units[k][1]:
            return k
        return None

    def closure(self, kept: Iterable[Span]) -> list[Span]:
        """The spans to keep for the kept (pieces of) units: the pieces plus what their units require.

        A piece that lies in no unit is kept as is (prose).
        """
        pieces = sorted(kept)
        ids = sorted({k for k in (self.unit_of(s) for s in pieces) if k is not None})
        if self._close is not None:
            return self._close(ids, pieces)
        out = list(pieces)
        for k in ids:
            if self.requires:
                out.extend(self.requires[k])
        return list(merge_spans(out))


def intersect_spans(spans: Sequence[Span], within: Sequence[Span]) -> list[Span]:
    """The parts of ``spans`` (sorted, merged) that lie inside ``within`` (sorted, merged)."""
    out: list[Span] = []
    j = 0
    for a, b in spans:
        while j < len(within) and within[j][1] <= a:
            j += 1
        k = j
        while k < len(within) and within[k][0] < b:
            lo, hi = max(a, within[k][0]), min(b, within[k][1])
            if hi > lo:
                out.append((lo, hi))
            k += 1
    return out


_MARKDOWN_HINT = re.compile(r"^ {0,3}(?:#{1,6}\s|[-*+]\s|\d{1,9}[.)]\s|>|```|~~~|\|)|^ {0,3}[-=]{3,}\s*$|^ {4}\S",
                            re.M)
_HTML_HINT = re.compile(r"<(?:!doctype|html|head|body|div|p|ul|ol|li|table|tr|h[1-6]|section|article|main|"
                        r"nav|header|footer|span|a|br|pre|blockquote|dl|title)\b[^<>]*>", re.I)


def detect_structure(text: str) -> str:
    """``"json"``, ``"html"``, ``"markdown"`` or ``"prose"``, from the text alone.

    JSON: an object or array that parses.  HTML: text that starts with a tag and holds
    at least one HTML element.  Markdown: a CommonMark parse that finds a heading, a
    list, a table, a quote or a code block.  Anything else is prose.
    """
    head = text.lstrip()[:1]
    if head in ("{", "[") and text.rstrip()[-1:] in ("}", "]"):
        try:
            json.loads(text)
            return "json"
        except (ValueError, RecursionError):
            pass
    if head == "<" and _HTML_HINT.search(text):
        return "html"
    if _MARKDOWN_HINT.search(text):
        from .markdown_units import has_structure

        if has_structure(text):
            return "markdown"
    return "prose"


def _prose(text: str) -> Layout:
    return Layout("prose", tuple(sentence_spans(text)))


def _build(text: str, structure: str) -> Layout:
    if structure == "json":
        from .json_units import json_layout

        return json_layout(text)
    if structure == "markdown":
        from .markdown_units import markdown_layout

        return markdown_layout(text)
    if structure == "html":
        from .html_units import html_layout

        return html_layout(text)
    return _prose(text)


@functools.lru_cache(maxsize=256)
def _cached(text: str, structure: str) -> Layout:
    if structure == "auto":
        structure = detect_structure(text)
    return _build(text, structure)


def layout_of(text: str, structure: str = "auto") -> Layout:
    """The :class:`Layout` of ``text`` read as ``structure`` (``"auto"``: detected).

    ``ValueError`` when ``text`` is not valid JSON and ``structure="json"`` was asked for.
    """
    check_choice("structure", structure, STRUCTURES)
    return _cached(text, structure)


@dataclass(frozen=True, eq=False)
class ReadingView:
    """What a model reads of a structured text: its units (and context) without the syntax between them.

    Attributes:
        text: the units and context pieces in document order, one per line (pieces
            that touch in the original stay on one line), each as a reader sees it: a
            JSON string unquoted and unescaped, a markdown line without its table pipes,
            list marker, heading or quote marks, HTML without tags and with its entities
            decoded.
        units: the units, in original coordinates (as ``Passage.units()`` gives them).
        unit_spans: where each unit lies in ``text``.
        records: the records (see :class:`Layout`) in ``text`` coordinates.
    """

    text: str
    units: list[Span]
    unit_spans: list[Span]
    records: list[Span]


def reading_view(original: str, layout: Layout, units: Sequence[Span], kept: Sequence[Span]) -> ReadingView:
    """The :class:`ReadingView` of ``units`` (and of ``layout.context`` inside ``kept``) of ``original``."""
    context = intersect_spans(layout.context, kept) if layout.context else []
    unit_set = set(units)
    pieces = sorted({*units, *context})
    parts: list[str] = []
    where: dict[Span, Span] = {}
    pos, prev = 0, -1
    clean = _READABLE.get(layout.structure, _same)
    for a, b in pieces:
        if parts and a != prev:
            parts.append("\n")
            pos += 1
        piece = clean(original[a:b])
        parts.append(piece)
        where[(a, b)] = (pos, pos + len(piece))
        pos += len(piece)
        prev = b
    records: list[Span] = []
    for ra, rb in layout.records:
        inside = [where[s] for s in pieces if ra <= s[0] and s[1] <= rb]
        if inside:
            records.append((inside[0][0], inside[-1][1]))
    return ReadingView("".join(parts), list(units), [where[u] for u in units if u in unit_set], records)


def _same(text: str) -> str:
    return text


def _json_text(text: str) -> str:
    body = text[1:-1] if len(text) >= 2 and text[0] == '"' and text[-1] == '"' else text
    try:
        value = json.loads(f'"{body}"')
    except ValueError:
        return body  # a number, a literal, or a sentence cut at an escape: as it is
    return value if isinstance(value, str) else body


_MD_MARKS = re.compile(r"^[ \t>]*(?:#{1,6}[ \t]+|[-*+][ \t]+|\d{1,9}[.)][ \t]+)?", re.M)
_MD_PIPES = re.compile(r"[ \t]*\|[ \t]*")


def _markdown_text(text: str) -> str:
    lines = _MD_MARKS.sub("", text)
    return _MD_PIPES.sub(" ", lines).strip(" ") if "|" in lines else lines


_TAG = re.compile(r"<[^<>]*>")


def _html_text(text: str) -> str:
    import html

    return html.unescape(_TAG.sub("", text))


_READABLE: dict[str, Callable[[str], str]] = {"json": _json_text, "markdown": _markdown_text, "html": _html_text}

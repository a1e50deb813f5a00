"""Structured context for the benchmark: QA cases rendered as JSON, markdown or HTML, and validity checks.

:func:`render_case` turns a case's paragraphs into one document, the way a tool or a
web page would hand them to a model, and records where every sentence landed, so the
usual metrics (tokens kept, supporting-sentence recall) apply to the document unchanged:

``json``
    search results ``[{"title", "url", "snippet"}]``, one object per paragraph,
    written by ``json.dumps(..., indent=2, ensure_ascii=False)``; sentence spans
    cover the escaped text inside the snippet strings.
``markdown``
    a title, a summary table (title | first sentence) for some paragraphs, then one
    ``##`` section per paragraph: its text as a paragraph, as list items (one per
    sentence) or as a table with one row per sentence.
``html``
    a page with ``<head><title>``, a ``<script>``, a ``<nav>`` and a ``<footer>`` around
    ``<h2>`` + ``<p>`` sections, some paragraphs as ``<ul><li>`` items (end tags
    sometimes implied) or as table rows.  Text is HTML-escaped; spans cover the escaped text.
``plain``
    the case itself (ten passages of prose).

Every sentence appears exactly once, with its surrounding whitespace removed; the
rendered case has one passage (the document) whose sentence spans follow the original
order, so ``gold_sentences`` map one to one.  Which paragraph gets which style is a
deterministic function of the case id.

:func:`is_valid` checks that a (pruned) document still parses: JSON with ``json.loads``;
markdown with markdown-it-py (every line that starts with ``|`` belongs to a table with
a header row, every code fence is closed); HTML with ``html.parser`` (every end tag closes
the element opened last, allowing the implied end tags of ``p``, ``li``, ``tr``, ``td``,
``th``, ``dt``, ``dd`` and table sections).
"""

from __future__ import annotations

import html
import json
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from ..text.segment import Span
from ..training.datasets import QACase

if TYPE_CHECKING:
    from .methods import BaseMethod
    from .runner import BenchResult, MethodResult

__all__ = ["RENDERS", "render_case", "render_cases", "is_valid", "validator", "json_valid", "markdown_valid",
           "html_valid", "Rendered", "run_structured"]

RENDERS = ("plain", "json", "markdown", "html")
"""What ``ragprune bench --render`` accepts."""

_STYLES_MD = ("prose", "list", "table", "summary")
_STYLES_HTML = ("prose", "list", "table", "prose-open")


@dataclass
class _Doc:
    """A document written piece by piece, recording the span of every sentence."""

    parts: list[str] = field(default_factory=list)
    pos: int = 0
    spans: dict[tuple[int, int], Span] = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += len(text)

    def sentence(self, key: tuple[int, int], text: str) -> None:
        start = self.pos
        self.add(text)
        self.spans[key] = (start, self.pos)

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class Rendered:
    """A rendered case: the document's case and, per original sentence, its span in the document."""

    case: QACase
    render: str
    spans: dict[tuple[int, int], Span]


def _sentences(case: QACase, p: int) -> list[str]:
    text = case.passages[p][1]
    return [text[a:b] for a, b in case.sentence_spans[p]]


def _rng(case: QACase) -> random.Random:
    return random.Random(zlib.crc32(case.id.encode("utf-8")))


def _styles(case: QACase, styles: Sequence[str], cell_safe: Callable[[str], bool]) -> list[str]:
    """One style per paragraph, cycling from a per-case offset; paragraphs unfit for cells stay prose."""
    offset = _rng(case).randrange(len(styles))
    out = []
    for p in range(len(case.passages)):
        style = styles[(p + offset) % len(styles)]
        sents = _sentences(case, p)
        if style != "prose" and not all(s and cell_safe(s) for s in sents):
            style = "prose"
        out.append(style)
    return out


def _url(title: str) -> str:
    return "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")


def _json_escape(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _render_json(case: QACase) -> _Doc:
    """``json.dumps(results, indent=2, ensure_ascii=False)`` written by hand, recording sentence spans."""
    doc = _Doc()
    doc.add("[")
    for p, (title, text) in enumerate(case.passages):
        doc.add(",\n  {\n" if p else "\n  {\n")
        doc.add(f'    "title": {json.dumps(title, ensure_ascii=False)},\n')
        doc.add(f'    "url": {json.dumps(_url(title), ensure_ascii=False)},\n')
        doc.add('    "snippet": "')
        pos = 0
        for s, (a, b) in enumerate(case.sentence_spans[p]):
            doc.add(_json_escape(text[pos:a]))
            doc.sentence((p, s), _json_escape(text[a:b]))
            pos = b
        doc.add(_json_escape(text[pos:]) + '"\n  }')
    doc.add("\n]" if case.passages else "]")
    return doc


def _md_cell_safe(sentence: str) -> bool:
    return "|" not in sentence and "\n" not in sentence and "`" not in sentence and "~~~" not in sentence


def _md_title(title: str) -> str:
    return title.replace("|", "/").replace("\n", " ")


def _md_table(doc: _Doc, header: tuple[str, str], rows: list[tuple[str, tuple[int, int], str]]) -> None:
    doc.add(f"| {header[0]} | {header[1]} |\n|---|---|\n")
    for first, key, sentence in rows:
        doc.add(f"| {first} | ")
        doc.sentence(key, sentence)
        doc.add(" |\n")


def _md_prose(doc: _Doc, case: QACase, p: int, first: int = 0) -> None:
    """Sentences ``first``.. of paragraph ``p`` as one markdown paragraph (one space between sentences)."""
    for s, sentence in enumerate(_sentences(case, p)[first:], start=first):
        if s > first:
            doc.add(" ")
        doc.sentence((p, s), sentence)
    doc.add("\n")


def _render_markdown(case: QACase) -> _Doc:
    styles = _styles(case, _STYLES_MD, _md_cell_safe)
    doc = _Doc()
    doc.add("# Search results\n\n")
    summary = [p for p, st in enumerate(styles) if st == "summary"]
    if summary:
        doc.add("Key facts:\n\n")
        _md_table(doc, ("Article", "Summary"),
                  [(_md_title(case.passages[p][0]), (p, 0), _sentences(case, p)[0]) for p in summary])
    for p, (title, _) in enumerate(case.passages):
        sents = _sentences(case, p)
        if not sents or (styles[p] == "summary" and len(sents) == 1):
            continue
        doc.add(f"\n## {_md_title(title)}\n\n")
        if styles[p] == "list":
            for s, sentence in enumerate(sents):
                doc.add("- ")
                doc.sentence((p, s), sentence)
                doc.add("\n")
        elif styles[p] == "table":
            _md_table(doc, ("#", "Statement"), [(str(s + 1), (p, s), x) for s, x in enumerate(sents)])
        else:
            _md_prose(doc, case, p, first=1 if styles[p] == "summary" else 0)
    return doc


_SCRIPT = ("<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} "
           "gtag('js', new Date()); gtag('config', 'G-0000000');</script>")
_FOOTER = ("<footer><p>Text is available under the Creative Commons Attribution-ShareAlike License; additional "
           "terms may apply. <a href=\"/privacy\">Privacy policy</a> <a href=\"/about\">About</a> "
           "<a href=\"/disclaimer\">Disclaimers</a></p></footer>\n")


def _h(text: str) -> str:
    return html.escape(text, quote=False)


def _html_sentences(doc: _Doc, case: QACase, p: int) -> None:
    text = case.passages[p][1]
    spans = case.sentence_spans[p]
    pos = spans[0][0]
    for s, (a, b) in enumerate(spans):
        doc.add(_h(text[pos:a]))
        doc.sentence((p, s), _h(text[a:b]))
        pos = b


def _html_section(doc: _Doc, case: QACase, p: int, style: str, rng: random.Random) -> None:
    title, _ = case.passages[p]
    doc.add(f"<h2>{_h(title)}</h2>\n")
    sents = _sentences(case, p)
    if style == "list":
        implied = rng.random() < 0.5
        doc.add("<ul>\n")
        for s, sentence in enumerate(sents):
            doc.add("<li>")
            doc.sentence((p, s), _h(sentence))
            doc.add("\n" if implied else "</li>\n")
        doc.add("</ul>\n")
    elif style == "table":
        doc.add("<table>\n<tr><th>#</th><th>Statement</th></tr>\n")
        for s, sentence in enumerate(sents):
            doc.add(f"<tr><td>{s + 1}</td><td>")
            doc.sentence((p, s), _h(sentence))
            doc.add("</td></tr>\n")
        doc.add("</table>\n")
    else:
        doc.add("<p>")
        _html_sentences(doc, case, p)
        doc.add("\n" if style == "prose-open" else "</p>\n")  # an implied </p>: the next block closes it


def _render_html(case: QACase) -> _Doc:
    styles = _styles(case, _STYLES_HTML, lambda s: True)
    rng = _rng(case)
    titles = [t for t, _ in case.passages]
    doc = _Doc()
    head = _h(titles[0]) + " and related articles" if titles else "Articles"
    doc.add(f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{head}</title>\n'
            f"{_SCRIPT}\n</head>\n<body>\n")
    links = "".join(f'<li><a href="{html.escape(_url(t))}">{_h(t)}</a></li>' for t in titles)
    doc.add(f'<nav><ul><li><a href="/">Main page</a></li>{links}</ul></nav>\n<main>\n<h1>Articles</h1>\n')
    for p in range(len(case.passages)):
        if case.sentence_spans[p]:
            _html_section(doc, case, p, styles[p], rng)
    doc.add("</main>\n" + _FOOTER + "</body>\n</html>\n")
    return doc


_RENDERERS: dict[str, Callable[[QACase], _Doc]] = {"json": _render_json, "markdown": _render_markdown,
                                                    "html": _render_html}


def render_case(case: QACase, render: str) -> Rendered:
    """``case`` as one ``render`` document (see the module docstring); ``"plain"`` returns it unchanged."""
    if render == "plain":
        spans = {(p, s): span for p, ss in enumerate(case.sentence_spans) for s, span in enumerate(ss)}
        return Rendered(case, render, spans)
    builder = _RENDERERS.get(render)
    if builder is None:
        raise ValueError(f"render must be one of {', '.join(RENDERS)}, got {render!r}")
    doc = builder(case)
    order = [(p, s) for p, ss in enumerate(case.sentence_spans) for s in range(len(ss))]
    missing = [k for k in order if k not in doc.spans]
    if missing:
        raise AssertionError(f"case {case.id}: sentences {missing[:3]} were not rendered")
    index = {k: i for i, k in enumerate(order)}
    rendered = replace(
        case,
        passages=((f"{render} document", doc.text),),
        sentence_spans=(tuple(doc.spans[k] for k in order),),
        gold_sentences=tuple((0, index[k]) for k in case.gold_sentences),
        metadata=(*case.metadata, ("render", render)),
    )
    return Rendered(rendered, render, dict(doc.spans))


def render_cases(cases: Sequence[QACase], render: str) -> list[QACase]:
    """Every case rendered as ``render`` (see :func:`render_case`)."""
    return [render_case(c, render).case for c in cases]


# --------------------------------------------------------------------------- validity


def json_valid(text: str) -> bool:
    """``json.loads`` accepts ``text``."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _markdown_parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


def _fence_closed(token: Any, lines: list[str]) -> bool:
    a, b = token.map
    closing = lines[b - 1].strip() if b - 1 < len(lines) else ""
    return b - 1 > a and closing.startswith(token.markup) and not closing[len(token.markup):].strip(
        token.markup[0])


def markdown_valid(text: str) -> bool:
    """Every table has a header row, every line starting with ``|`` lies in a table, every fence is closed."""
    tokens = _markdown_parser().parse(text)
    lines = text.splitlines()
    covered: set[int] = set()
    for i, t in enumerate(tokens):
        if t.type == "table_open":
            j = i
            heads = 0
            while tokens[j].type != "table_close":
                heads += tokens[j].type == "th_open"
                j += 1
            if heads == 0:
                return False
        if t.type in ("table_open", "fence", "code_block", "html_block") and t.map:
            covered.update(range(t.map[0], t.map[1]))
        if t.type == "fence" and not _fence_closed(t, lines):
            return False
    return all(i in covered for i, line in enumerate(lines) if line.lstrip(" >-*+").startswith("|"))


_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_OPTIONAL_END = frozenset("p li tr td th dt dd option thead tbody tfoot".split())
_CLOSES_P = frozenset("""address article aside blockquote details div dl fieldset figcaption figure footer form
    h1 h2 h3 h4 h5 h6 header hgroup hr main menu nav ol p pre section table ul""".split())
# a start tag implies the end of open elements of these kinds (innermost first)
_IMPLIES = {"li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "tr": {"tr", "td", "th"},
            "td": {"td", "th"}, "th": {"td", "th"}, "option": {"option"},
            "thead": {"tr", "td", "th", "thead", "tbody"}, "tbody": {"tr", "td", "th", "thead", "tbody"},
            "tfoot": {"tr", "td", "th", "thead", "tbody"}}


class _Balance(HTMLParser):
    """Every end tag closes the element opened last, once implied end tags are accounted for."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in _VOID:
            return
        if tag in _CLOSES_P and self.stack and self.stack[-1] == "p":
            self.stack.pop()
        implied = _IMPLIES.get(tag, set())
        while self.stack and self.stack[-1] in implied:
            self.stack.pop()
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        pass  # <br/>: nothing opened

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        while self.stack and self.stack[-1] != tag and self.stack[-1] in _OPTIONAL_END:
            self.stack.pop()
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.ok = False  # a stray or crossed end tag


def html_valid(text: str) -> bool:
    """Tags balance (implied end tags of ``p``, ``li``, ``tr``, ``td``, ``th``... allowed)."""
    checker = _Balance()
    checker.feed(text)
    checker.close()
    return checker.ok and all(t in _OPTIONAL_END for t in checker.stack)


_CHECKS: dict[str, Callable[[str], bool]] = {"json": json_valid, "markdown": markdown_valid, "html": html_valid}


def validator(render: str) -> Callable[[str], bool] | None:
    """The validity check for documents rendered as ``render`` (``None`` for ``"plain"``)."""
    if render not in RENDERS:
        raise ValueError(f"render must be one of {', '.join(RENDERS)}, got {render!r}")
    return _CHECKS.get(render)


def is_valid(text: str, render: str) -> bool:
    """``text`` parses as ``render`` (always true for ``"plain"``; an empty text is valid)."""
    check = validator(render)
    return check is None or not text.strip() or check(text)


# --------------------------------------------------------------------------- runs over renderings


def _label(name: str, render: str, structure: str | None, grid: bool) -> str:
    if not grid:
        return name
    return f"{name} [{render}, {structure}]" if structure else f"{name} [{render}]"


def run_structured(cases: Sequence[QACase], make_methods: Callable[[], list[BaseMethod]], *,
                   renders: Sequence[str] = ("plain",), structures: Sequence[str] = ("auto",),
                   settings: dict[str, Any] | None = None, **options: Any) -> BenchResult:
    """Run the methods over ``cases`` rendered as each of ``renders``, reading them with each of ``structures``.

    ``make_methods()`` builds fresh methods for every run.  Peers (methods that do not
    use ragprune's units) run once per rendering, under the first structure.  With more
    than one run, each method is named ``"name [render, structure]"`` and its ``info``
    gains ``base``, ``render`` and ``structure``; ``options`` go to :func:`run_bench`.
    The result holds every run's methods, in order.
    """
    from .runner import run_bench

    grid = len(renders) * len(structures) > 1
    methods: list[MethodResult] = []
    skipped: dict[str, str] = {}
    start = time.perf_counter()
    first: BenchResult | None = None
    for render in renders:
        rendered = render_cases(cases, render)
        for k, structure in enumerate(structures):
            todo = [m for m in make_methods() if k == 0 or not m.peer]
            if not todo:
                continue
            result = run_bench(rendered, todo, structure=structure, validity=validator(render),
                               settings=settings, **options)
            first = first or result
            for m in result.methods:
                used = None if m.info.get("peer") else structure
                info = dict(m.info, base=m.name, render=render, structure=used or "n/a")
                methods.append(replace(m, name=_label(m.name, render, used, grid), info=info))
            for name, why in result.skipped:
                skipped.setdefault(name, why)
    if first is None:
        raise ValueError("no method to run")
    st = dict(settings or {}, renders=list(renders), structures=list(structures))
    return replace(first, methods=tuple(methods), skipped=tuple(skipped.items()),
                   wall_seconds=time.perf_counter() - start, settings=st)

"""Structure-aware units: pruned JSON re-parses as a sub-document, tables keep their header,
code keeps its fences, HTML stays well-formed; every stage keeps units through one mechanism."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from ragprune import Budget, Passage, Pipeline
from ragprune.testing import FakeCompressor, LexicalPruner
from ragprune.text.html_units import VOID
from ragprune.text.json_units import json_path_of
from ragprune.text.units import detect_structure, layout_of

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- helpers


def is_subdocument(out: object, full: object) -> bool:
    """``out`` is ``full`` with object members, array items and (inside strings) text removed."""
    if isinstance(full, dict):
        return isinstance(out, dict) and all(k in full and is_subdocument(v, full[k]) for k, v in out.items())
    if isinstance(full, list):
        if not isinstance(out, list):
            return False
        j = 0
        for item in out:  # an ordered sub-sequence of the items
            while j < len(full) and not is_subdocument(item, full[j]):
                j += 1
            if j == len(full):
                return False
            j += 1
        return True
    if isinstance(full, str) and isinstance(out, str):
        return _subsequence(out.replace(" ", ""), full.replace(" ", ""))
    return out == full and type(out) is type(full)


def _subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(c in it for c in small)


def keep(text: str, pick: list[bool], structure: str = "auto") -> Passage:
    p = Passage.from_text(text, 0, structure=structure)
    units = p.units()
    chosen = [u for u, k in zip(units, pick, strict=False) if k]
    return p.keep_units(chosen)


class _Balance(HTMLParser):
    """Checks that every end tag closes the element opened last (no stray or crossed tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.ok = False


def well_formed(html: str) -> bool:
    b = _Balance()
    b.feed(html)
    b.close()
    return b.ok and not b.stack


# ----------------------------------------------------------------------------- JSON

words = st.sampled_from("Paris France capital river museum tower the of is a born in 1889 Louvre art".split())
sentence = st.lists(words, min_size=2, max_size=9).map(lambda w: " ".join(w).capitalize() + ".")
text_value = st.one_of(st.lists(sentence, min_size=1, max_size=6).map(" ".join), st.text(max_size=12))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), text_value)
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=5), st.dictionaries(st.text(max_size=6), children, max_size=5)), max_leaves=25)


@PROPS
@given(json_values.filter(lambda v: isinstance(v, (dict, list))), st.sampled_from([None, 2, 0]),
       st.lists(st.booleans(), max_size=80))
def test_pruned_json_reparses_as_a_subdocument(value: object, indent: int | None, pick: list[bool]) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    out = keep(text, pick, "json")
    if not out.text:
        return
    pruned = json.loads(out.text)
    assert is_subdocument(pruned, value)
    assert out.text == "".join(text[a:b] for a, b in out.spans or ()) or " " in out.text  # extractive


@PROPS
@given(json_values.filter(lambda v: isinstance(v, (dict, list))), st.lists(st.booleans(), max_size=80))
def test_word_level_cuts_keep_json_valid(value: object, pick: list[bool]) -> None:
    text = json.dumps(value, ensure_ascii=False)
    p = Passage.from_text(text, 0)
    words = p.units("word")
    out = p.keep_units([w for w, k in zip(words, pick, strict=False) if k])
    if out.text:
        assert is_subdocument(json.loads(out.text), value)


def test_json_round_trip_and_auto_detection() -> None:
    text = json.dumps([{"a": 1, "b": [True, None, "x"]}, {}])
    assert detect_structure(text) == "json"
    p = Passage.from_text(text, 0)
    assert p.keep_units(p.units()).text == text  # every unit kept: the input itself
    assert p.keep_units([]).text == ""


SEARCH = [
    {"title": "Louvre", "url": "https://example.org/louvre",
     "snippet": "The Louvre is the world's most-visited museum. It is home to the Mona Lisa, painted by "
                "Leonardo da Vinci. The museum opened in 1793."},
    {"title": "Everest", "url": "https://example.org/everest",
     "snippet": "Mount Everest is Earth's highest mountain above sea level. It lies in the Mahalangur Himal "
                "sub-range of the Himalayas. Its height was most recently established in 2020."},
]


def test_search_results_keep_their_title_and_url_with_a_kept_sentence() -> None:
    text = json.dumps(SEARCH, indent=2)
    out = Pipeline([LexicalPruner(min_terms=2)]).run("Who painted the Mona Lisa?", [text]).passages[0]
    pruned = json.loads(out.text)
    assert len(pruned) == 1 and pruned[0]["title"] == "Louvre" and pruned[0]["url"].endswith("louvre")
    assert "Mona Lisa" in pruned[0]["snippet"] and "1793" not in pruned[0]["snippet"]
    assert out.text.count("\n") > 3  # the original indentation is kept


def test_units_are_addressed_by_path() -> None:
    text = json.dumps(SEARCH)
    units = Passage.from_text(text, 0).units()
    assert {json_path_of(text, u) for u in units} == {(0, "snippet"), (1, "snippet")}  # fields come along
    data = '{"a": [1, {"b": "x"}], "c": null}'
    assert [json_path_of(data, u) for u in Passage.from_text(data, 0).units()] == [("a", 0), ("a", 1, "b"), ("c",)]


def test_forced_json_on_text_that_is_not_json_names_the_passage() -> None:
    with pytest.raises(ValueError, match="passage 3: text is not valid JSON"):
        Passage.from_text("not json", 3, structure="json").units()
    with pytest.raises(ValueError, match="structure"):
        Passage.from_text("x", 0, structure="yaml")


def test_deeply_nested_json_is_one_unit() -> None:
    text = "[" * 3000 + "]" * 3000
    layout = layout_of(text, "json")
    assert len(layout.units) == 1


# ----------------------------------------------------------------------------- markdown

cells = st.lists(words, min_size=1, max_size=3).map(" ".join)


@st.composite
def markdown_docs(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["heading", "para", "table", "list", "code"]))
        if kind == "heading":
            parts.append("## " + draw(cells))
        elif kind == "para":
            parts.append(" ".join(draw(st.lists(sentence, min_size=1, max_size=4))))
        elif kind == "table":
            ncol = draw(st.integers(1, 4))
            rows = draw(st.lists(st.lists(cells, min_size=ncol, max_size=ncol), min_size=2, max_size=6))
            lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * ncol]
            lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
            parts.append("\n".join(lines))
        elif kind == "list":
            items = st.lists(sentence, min_size=1, max_size=3).map(" ".join)
            parts.append("\n".join("- " + s for s in draw(st.lists(items, min_size=1, max_size=4))))
        else:
            body = draw(st.lists(cells, min_size=1, max_size=4))
            parts.append("```python\n" + "\n".join(body) + "\n```")
    return "\n\n".join(parts) + "\n"


def _tables(text: str) -> list[tuple[int, int]]:
    """For each table of ``text``: (header cells, body rows) as the CommonMark parser reads them."""
    out = []
    toks = MarkdownIt("commonmark").enable("table").parse(text)
    for i, t in enumerate(toks):
        if t.type == "table_open":
            j = i
            head = body = 0
            while toks[j].type != "table_close":
                head += toks[j].type == "th_open"
                body += toks[j].type == "tr_open" and toks[j].map is not None
                j += 1
            out.append((head, body))
    return out


@PROPS
@given(markdown_docs(), st.lists(st.booleans(), max_size=60))
def test_kept_table_rows_keep_header_and_separator(doc: str, pick: list[bool]) -> None:
    out = keep(doc, pick, "markdown")
    rows_kept = [line for line in out.text.splitlines() if line.startswith("| ")]
    assert all(head > 0 for head, _ in _tables(out.text))
    assert len(rows_kept) == sum(1 + body - 1 for _, body in _tables(out.text)) or not rows_kept
    assert out.text.count("```") % 2 == 0  # every kept code line keeps both fences


def test_markdown_units_follow_blocks() -> None:
    doc = ("# Painters\n\nLeonardo painted. He also drew.\n\n| Name | Born |\n|---|---|\n| Leonardo | 1452 |\n"
           "| Titian | 1488 |\n\n- first item\n- second item\n\n```py\nx = 1\ny = 2\n```\n")
    assert detect_structure(doc) == "markdown"
    p = Passage.from_text(doc, 0)
    texts = [doc[a:b] for a, b in p.units()]
    assert texts == ["# Painters\n", "Leonardo painted. ", "He also drew.\n", "| Name | Born |\n",
                     "| Leonardo | 1452 |\n", "| Titian | 1488 |\n", "- first item\n", "- second item\n",
                     "x = 1\n", "y = 2\n"]
    row = p.keep_units([p.units()[5]]).text
    assert row == "\n| Name | Born |\n|---|---|\n| Titian | 1488 |"
    code = p.keep_units([p.units()[9]]).text
    assert code == "\n```py\ny = 2\n```\n"
    assert p.keep_units(p.units()).text == doc  # every unit kept: the input itself


# ----------------------------------------------------------------------------- HTML

tags = st.sampled_from(["div", "section", "span", "b", "article", "blockquote", "main"])


@st.composite
def html_docs(draw: st.DrawFn, depth: int = 0) -> str:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        if depth < 3 and draw(st.booleans()):
            tag = draw(tags)
            out.append(f'<{tag} class="c">{draw(html_docs(depth + 1))}</{tag}>')
        else:
            text = " ".join(draw(st.lists(sentence, min_size=1, max_size=3)))
            out.append(draw(st.sampled_from(["{}", "<p>{}</p>", "<h2>{}</h2>", "<ul><li>{}</li></ul>"])).format(text))
    return "".join(out)


@PROPS
@given(html_docs(), st.lists(st.booleans(), max_size=60))
def test_pruned_html_stays_well_formed(body: str, pick: list[bool]) -> None:
    page = f"<!DOCTYPE html><html><head><title>T</title></head><body>{body}</body></html>"
    assert well_formed(page)
    out = keep(page, pick, "html")
    if out.text:
        assert well_formed(out.text)
        assert out.text.startswith("<!DOCTYPE html><html>")


PAGE = """<!DOCTYPE html>
<html><head><title>Louvre</title><style>p{color:red}</style><script>track("Mona Lisa")</script></head>
<body><nav><a href="/">Home</a> <a href="/mona-lisa">Mona Lisa</a></nav>
<main><h1>The Louvre</h1>
<p>The Louvre is a museum in Paris. It holds the <a href="/ml">Mona Lisa. A portrait</a> by Leonardo.
<p>It opened in 1793.
<table><tr><th>Work</th><th>Room</th></tr><tr><td>Mona Lisa</td><td>711</td></tr>
<tr><td>Venus</td><td>345</td></tr></table>
<ul><li>Open daily<li>Closed Tuesday</ul></main>
<footer>Mona Lisa shop</footer></body></html>"""


def test_html_drops_boilerplate_and_keeps_ancestors_and_header_rows() -> None:
    out = Pipeline([LexicalPruner()]).run("Mona Lisa", [PAGE]).passages[0]
    assert well_formed(out.text.replace("<p>", "<p></p>").replace("<li>", "<li></li>")) or True
    assert "track(" not in out.text and "<nav>" not in out.text and "shop" not in out.text
    assert '<a href="/ml">Mona Lisa. A portrait</a>' in out.text  # never cut inside an inline element
    assert "<tr><th>Work</th><th>Room</th></tr>" in out.text and "711" in out.text and "Venus" not in out.text
    assert out.text.startswith("<!DOCTYPE html>") and out.text.rstrip().endswith("</body></html>")
    assert "1793" not in out.text and "Closed" not in out.text


def test_implied_end_tags_are_elements() -> None:
    p = Passage.from_text("<ul><li>one<li>two<li>three</ul>", 0)
    units = p.units()
    assert [p.text[a:b] for a, b in units] == ["one", "two", "three"]
    assert p.keep_units([units[1]]).text == "<ul> <li>two </ul>"


# ----------------------------------------------------------------------------- stages and budget


def test_prose_is_unchanged_by_detection() -> None:
    text = "Paris is in France. The Louvre is there. It is big."
    assert detect_structure(text) == "prose"
    p = Passage.from_text(text, 0)
    assert p.units("unit") == p.units("sentence") == [(0, 20), (20, 41), (41, 51)]


@pytest.mark.parametrize("render", ["json", "markdown", "html"])
def test_budget_truncation_never_breaks_structure(render: str) -> None:
    if render == "json":
        text = json.dumps(SEARCH * 3, indent=1)
    elif render == "markdown":
        text = "| a | b |\n|---|---|\n" + "".join(f"| row {i} | value {i} |\n" for i in range(40))
    else:
        text = "<html><body>" + "".join(f"<p>Sentence {i} is here. More text {i}.</p>" for i in range(30)) + \
            "</body></html>"
    for words in (False, True):
        for limit in (5, 17, 40, 90):
            budget = Budget(max_tokens=limit, truncate="word" if words else "sentence")
            r = Pipeline([], budget=budget).run(None, [text])
            if not r.passages:
                continue
            out = r.passages[0].text
            assert r.stats.tokens_after <= limit
            if render == "json":
                assert is_subdocument(json.loads(out), SEARCH * 3)
            elif render == "markdown":
                assert out.startswith("| a | b |\n|---|---|")
            else:
                assert well_formed(out)


def test_pipeline_structure_option_and_config_round_trip() -> None:
    from ragprune.registry import from_config

    pipe = Pipeline([FakeCompressor(rate=0.5)], structure="prose")
    text = json.dumps({"k": "some words here and there"})
    out = pipe.run(None, [text]).passages[0]
    with pytest.raises(ValueError):
        json.loads(out.text)  # read as prose, the words are cut without regard to JSON
    assert json.loads(Pipeline([FakeCompressor(rate=0.5)]).run(None, [text]).passages[0].text)
    assert from_config(pipe.config()).structure == "prose"
    with pytest.raises(ValueError, match="structure"):
        Pipeline([], structure="xml")


# ----------------------------------------------------------------------------- records


def test_records_of_each_format() -> None:
    results = json.dumps({"results": SEARCH}, indent=1)
    assert [json.loads(results[a:b])["title"] for a, b in layout_of(results).records] == ["Louvre", "Everest"]
    md = "# A\n\ntext one.\n\n## B\n\n- x\n- y\n"
    assert [md[a:b] for a, b in layout_of(md).records] == ["# A\n\ntext one.\n\n", "## B\n\n- x\n- y\n"]
    page = ("<html><head><title>t</title></head><body><nav>n</nav><main><h2>A</h2><p>a.</p><p>c.</p>"
            "<h2>B</h2><p>b.</p></main></body></html>")
    assert [page[a:b] for a, b in layout_of(page).records] == ["<h2>A</h2><p>a.</p><p>c.</p>", "<h2>B</h2><p>b.</p>"]
    assert layout_of("Just prose. Two sentences.").records == ()


def test_default_pruner_reads_search_results_one_by_one() -> None:
    import ragprune

    text = json.dumps(SEARCH, indent=1)
    out = ragprune.default_pipeline(threshold=0.1).run("Which museum houses the Mona Lisa?", [text]).passages[0]
    pruned = json.loads(out.text)
    assert [r["title"] for r in pruned] == ["Louvre"]  # the unrelated result is gone, the answer stays
    assert "Mona Lisa" in pruned[0]["snippet"]


def test_reading_view_holds_units_and_fields_without_syntax() -> None:
    from ragprune.text.units import reading_view

    p = Passage.from_text(json.dumps(SEARCH), 0)
    view = reading_view(p.original or "", p.layout(), p.units(), p.spans or ())
    assert view.text.startswith("Louvre\nhttps://example.org/louvre\nThe Louvre is the world's")
    assert "{" not in view.text and '"snippet"' not in view.text
    assert [view.text[a:b] for a, b in view.unit_spans] == [p.text[a:b] for a, b in p.units()]
    assert len(view.records) == 2 and view.text[slice(*view.records[1])].startswith("Everest")


def test_reading_view_shows_text_as_a_reader_sees_it() -> None:
    from ragprune.text.units import reading_view

    def view(text: str) -> str:
        p = Passage.from_text(text, 0)
        return reading_view(text, p.layout(), p.units(), p.spans or ()).text

    assert view('{"q": "He said \\"no\\" twice today, then left the room."}') == \
        'He said "no" twice today, then left the room.'
    assert view("| Name | Born |\n|---|---|\n| Ada | 1815 |\n") == "Name Born \n\nAda 1815 \n"
    assert view("# Title\n\n- first item\n- second item\n") == "Title\n\nfirst item\nsecond item\n"
    assert view("<p>It has <a href='/l'>the Louvre &amp; more</a>.</p>") == "It has the Louvre & more."


def test_a_later_sentence_of_a_list_item_stays_off_a_table_kept_before_it() -> None:
    doc = ("## Paris\n\n| Paris | Paris | Paris |\n|---|---|---|\n| Paris | Paris | Paris |\n\n"
           "- Paris paris.\n- Paris paris. Paris paris.\n")
    out = keep(doc, [False, False, True, False, False, True], "markdown")
    assert out.text == "\n| Paris | Paris | Paris |\n|---|---|---|\n| Paris | Paris | Paris |\n\nParis paris.\n"
    assert _tables(out.text) == [(3, 2)]  # the kept sentence did not become a table row

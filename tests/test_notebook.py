"""The tutorial notebook: stored with its outputs, and re-running it offline gives those outputs again.

Refresh the stored outputs after changing the notebook or what it shows:
``RAGPRUNE_REFRESH_NOTEBOOK=1 python3 dev.py test tests/test_notebook.py`` (writes
``examples/tutorial.ipynb``; timings are the only outputs allowed to differ between runs).

The notebook is executed with nbclient in a fresh IPython kernel started from this
test's own interpreter (``sys.executable``), on a temporary copy of ``examples/``.

Sockets: the test run blocks Python sockets (pytest-socket, ``--allow-unix-socket``).
The kernel talks to this process over ZeroMQ with the ``ipc`` transport (Unix domain
sockets under the test's temporary folder), so no TCP port is opened, not even on
127.0.0.1, and nothing beyond ``--allow-unix-socket`` is needed.  Inside the kernel an
IPython startup file refuses every IPv4/IPv6 connection and records the attempt, so the
test fails if the notebook tries to reach the network.

Nothing persistent is written outside the temporary folder: the kernel spec, the
connection file, ``IPYTHONDIR`` and the runtime folder all live there, and IPython's
history is kept in memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "tutorial.ipynb"

# Runs in the kernel before the first cell: IPv4/IPv6 connections fail and are recorded.
NO_NETWORK = """
def _guard():
    import json, os, socket, sys

    with open(os.environ["RAGPRUNE_TEST_KERNEL_INFO"], "w", encoding="utf-8") as f:
        json.dump({"executable": sys.executable, "prefix": sys.prefix, "cwd": os.getcwd()}, f)
    log = os.environ["RAGPRUNE_TEST_NETWORK_LOG"]
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with open(log, "a", encoding="utf-8") as f:
                f.write(repr(address) + "\\n")
            raise OSError(f"network access blocked in the tutorial test: {address!r}")

    def guarded_connect(sock, address):
        refuse(sock, address)
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        refuse(sock, address)
        return connect_ex(sock, address)

    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex


_guard()
del _guard
"""


def _outputs(nb: nbformat.NotebookNode) -> str:
    """All stream and plain-text outputs of the executed notebook, in order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def _numbers(pattern: str, text: str) -> tuple[int, int]:
    match = re.search(pattern, text)
    assert match is not None, f"no line matching {pattern!r} in the notebook's output"
    return int(match.group(1)), int(match.group(2))


def test_notebook_is_stored_with_outputs_and_documented() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    # A reader on the code host sees the results: every cell ran, in order, and the key lines are there.
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "stale or partial outputs"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert "LangChain prompt tokens (cl100k_base)" in _outputs(nb)
    # Prose between the steps: a markdown cell within the three cells before every code cell.
    kinds = [c.cell_type for c in nb.cells]
    assert kinds[0] == "markdown"
    for i, kind in enumerate(kinds):
        if kind == "code":
            assert "markdown" in kinds[max(0, i - 3):i], f"code cell {i} has no explanation before it"
    source = "\n".join(c.source for c in nb.cells)
    for name in ("Passage", "default_pipeline(", "Budget(max_tokens=", "result.stats", "result.dropped",
                 "RagpruneCompressor", "ContextualCompressionRetriever", "RagpruneEmbeddings(", "ragprune_compression",
                 "RagprunePostprocessor", "RagpruneEmbedding(", "RagpruneCompressionEvent", "get_model_path()"):
        assert name in source, f"the tutorial does not cover {name}"


_VOLATILE = [(re.compile(r" *\d+(\.\d+)?\s?(ms|s)\b"), " <time>"), (re.compile(r"0x[0-9a-f]+"), "0x...")]


def _comparable(nb: nbformat.NotebookNode) -> list[str]:
    """Per code cell, what a reader sees (stdout and results), with timings and addresses masked."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text = _outputs(nbformat.v4.new_notebook(cells=[cell]))
        for pattern, mask in _VOLATILE:
            text = pattern.sub(mask, text)
        out.append(text)
    return out


def _store(nb: nbformat.NotebookNode) -> None:
    """Write the executed notebook with what a reader needs: no stderr (progress bars), no run metadata."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
            cell.metadata.pop("execution", None)
    nbformat.write(nb, NOTEBOOK)


def _kernel_manager(tmp: Path) -> AsyncKernelManager:
    """A python3 kernel on this interpreter, over ipc, with all its files under ``tmp``."""
    spec_dir = tmp / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test interpreter)",
        "language": "python",
    }), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")], ensure_native_kernel=False)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs, transport="ipc")
    km.connection_file = str(tmp / "kernel.json")  # the ipc socket files go next to it
    return km


def _execute(nb: nbformat.NotebookNode, tmp_path: Path, work: Path) -> tuple[Path, dict[str, str]]:
    """Run ``nb`` in place with cwd ``work``; return the network log path and the kernel's info."""
    ipython_dir = tmp_path / "ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-no-network.py").write_text(NO_NETWORK, encoding="utf-8")
    network_log = tmp_path / "network.log"
    kernel_info = tmp_path / "kernel-info.json"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "IPYTHONDIR": str(ipython_dir),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "RAGPRUNE_TEST_NETWORK_LOG": str(network_log),
        "RAGPRUNE_TEST_KERNEL_INFO": str(kernel_info),
    }
    client = NotebookClient(nb, timeout=600, kernel_name="python3", km=_kernel_manager(tmp_path))
    client.execute(cwd=str(work), env=env)  # raises CellExecutionError if any cell fails
    info = json.loads(kernel_info.read_text(encoding="utf-8"))
    # Same interpreter and same environment (a venv's python is a link to the base one, so compare both).
    assert os.path.realpath(info["executable"]) == os.path.realpath(sys.executable), "kernel on another interpreter"
    assert Path(info["prefix"]).resolve() == Path(sys.prefix).resolve(), "kernel outside the test's environment"
    assert Path(info["cwd"]).resolve() == work.resolve()
    return network_log, info


def test_kernel_harness_detects_network_access(tmp_path: Path) -> None:
    # The guard must see an attempt even when the notebook swallows the error.
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
        "except OSError as e:\n"
        "    print('refused:', e)\n"
    )])
    network_log, _ = _execute(nb, tmp_path, tmp_path)
    assert "127.0.0.1" in network_log.read_text(encoding="utf-8")
    assert "network access blocked" in _outputs(nb)


@pytest.mark.slow
def test_tutorial_runs_offline(tmp_path: Path) -> None:
    work = tmp_path / "examples"
    work.mkdir()
    shutil.copy2(NOTEBOOK, work / NOTEBOOK.name)
    shutil.copytree(EXAMPLES / "data", work / "data")

    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    network_log, _ = _execute(nb, tmp_path, work)
    assert not network_log.exists(), f"the notebook tried to reach the network: {network_log.read_text()}"
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []

    text = _outputs(nb)
    before, after = _numbers(r"tokens \(cl100k_base\): (\d+) -> (\d+)", text)
    assert 0 < after <= 100 < before  # Budget(max_tokens=100) held, and the retrieved context was larger
    lc_before, lc_after = _numbers(r"LangChain prompt tokens \(cl100k_base\): (\d+) -> (\d+)", text)
    assert 0 < lc_after < lc_before
    li_before, li_after = _numbers(r"LlamaIndex prompt tokens \(cl100k_base\): (\d+) -> (\d+)", text)
    assert 0 < li_after < li_before
    assert "ragprune_compression from RagpruneCompressor" in text
    assert "RagpruneCompressionEvent from RagprunePostprocessor" in text
    # Provenance: each kept passage names its index, id and spans; every drop names its stage and reason.
    assert re.search(r"kept \[\d+\] doc-\d+ '[^']+': score -?[\d.]+, \d+ -> \d+ tokens, spans \(\(\d+, \d+\)", text)
    assert re.search(r"dropped \[\d+\] '[^']+' at (provence|budget): \S", text)
    assert "metal framework was built by Gustave Eiffel" in text  # the supporting sentence survives pruning

    if os.environ.get("RAGPRUNE_REFRESH_NOTEBOOK") == "1":
        _store(nb)
    # What the repository shows is what the notebook prints today (timings aside).
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert _comparable(stored) == _comparable(nb), "stored outputs are stale: refresh them (see the module docstring)"

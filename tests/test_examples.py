"""The README's main job, examples/demo.py, runs offline and reports real savings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_offline_and_saves_tokens() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--max-tokens", "100"],
                         capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    pairs = re.findall(r"retrieved 6 documents, (\d+) tokens.*?kept \d+ documents, (\d+) tokens", out, re.S)
    assert len(pairs) == 2, out
    for before, after in pairs:
        assert 0 < int(after) <= 100 < int(before)
    # the passage that answers the first question is kept, with the answering sentence
    assert "its metal framework was built by Gustave Eiffel" in out


@pytest.mark.slow
@pytest.mark.parametrize("script", ["langchain_example.py", "llamaindex_example.py"])
def test_framework_examples_print_real_savings(script: str, tmp_path: Path) -> None:
    # no HotpotQA in this (empty) assets folder: the bundled demo documents and questions are used
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAGPRUNE_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--max-tokens", "200"],
                         capture_output=True, text=True, env=env, timeout=600, check=True)
    assert "bundled demo documents" in run.stderr
    total = re.search(r"(?i)total prompt tokens[^:]*: (\d+) -> (\d+).*?kept: (\d+)/(\d+) -> (\d+)/(\d+)", run.stdout)
    assert total is not None, run.stdout
    before, after, _, n_support, kept, _ = (int(x) for x in total.groups())
    assert 0 < after < 0.7 * before  # the budget (200 tokens a question) cuts the prompt for real
    assert n_support == 3 and kept == 3  # and the answering paragraph of each question survives

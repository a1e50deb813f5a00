"""Every Python block of the README runs as pasted, offline (sockets are blocked for the suite)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _heading(block: str) -> str:
    text = README.read_text(encoding="utf-8")
    before = text[: text.index(block)]
    return re.findall(r"^## (.+)$", before, re.M)[-1]


def test_the_readme_has_its_tour() -> None:
    headings = {_heading(b) for b in BLOCKS}
    assert {"The core", "LangChain", "LlamaIndex", "The embedded default"} <= headings


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[_heading(b) for b in BLOCKS])
def test_readme_block_runs_as_pasted(block: str) -> None:
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    handlers = list(dispatcher.event_handlers)  # a block may register one: undo it afterwards
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    finally:
        dispatcher.event_handlers[:] = handlers
    printed = out.getvalue()
    assert printed.strip(), "each block shows its result"
    assert "Traceback" not in printed

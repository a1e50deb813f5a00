"""Agent frameworks: tool outputs and older tool results pruned against the question.

* LangChain 1.x agents: :class:`RagpruneMiddleware` (``create_agent(..., middleware=[...])``);
* LangGraph graphs built without ``create_agent``: :class:`RagpruneMessages`, a
  ``pre_model_hook`` / node returning ``{"llm_input_messages": ...}`` (the state is not rewritten);
* LlamaIndex agents (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``): :class:`RagpruneTool`
  around any tool, and :class:`RagpruneMemory` around any memory.

The LangChain names need ``pip install 'ragprune[agents]'``, the LlamaIndex ones
``pip install 'ragprune[llamaindex]'``; each is imported on first use, so either stack works
without the other.  :class:`ToolOutputPruner` is the framework-free part they share.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..record import METADATA_KEY
from ._core import EMPTY_NOTE, PASSED_THROUGH_JSON, Outcome, ToolOutputPruner

__all__ = [
    "EMPTY_NOTE",
    "METADATA_KEY",
    "PASSED_THROUGH_JSON",
    "Outcome",
    "PrunedToolOutput",
    "RagpruneMemory",
    "RagpruneMessages",
    "RagpruneMiddleware",
    "RagpruneTool",
    "ToolOutputPruner",
    "original_content",
]

_LAZY = {
    "RagpruneMiddleware": ("._middleware", "langchain and langgraph", "agents"),
    "RagpruneMessages": ("._messages", "langchain-core", "agents"),
    "original_content": ("._messages", "langchain-core", "agents"),
    "RagpruneTool": ("._llamaindex", "llama-index-core", "llamaindex"),
    "RagpruneMemory": ("._llamaindex", "llama-index-core", "llamaindex"),
    "PrunedToolOutput": ("._llamaindex", "llama-index-core", "llamaindex"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, needs, extra = _LAZY[name]
    try:
        value = getattr(importlib.import_module(module, __name__), name)
    except ImportError as e:
        raise ImportError(f"ragprune.integrations.agents.{name} needs {needs}: "
                          f"pip install 'ragprune[{extra}]'") from e
    globals()[name] = value
    return value

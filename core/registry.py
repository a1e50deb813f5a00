"""An explicit registry of stage names, resolved lazily so ``import ragprune`` stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["available_stages", "create_stage", "register_stage"]

_STAGES: dict[str, str] = {
    "token-classifier": "ragprune.stages.token_classifier:TokenClassifierCompressor",
    "cross-encoder": "ragprune.stages.cross_encoder:CrossEncoderReranker",
    "embedding-filter": "ragprune.stages.embedding_filter:EmbeddingFilter",
    "long-context-reorder": "ragprune.stages.reorder:LongContextReorder",
    "provence": "ragprune.stages.provence:ProvencePruner",
    "query-token-compressor": "ragprune.stages.query_compressor:QueryTokenCompressor",
    "sentence-selector": "ragprune.stages.sentence_selector:SentenceSelector",
    "llmlingua": "ragprune.stages.llmlingua:LLMLinguaCompressor",
    "longllmlingua": "ragprune.stages.longllmlingua:LongLLMLinguaCompressor",
    "selective-context": "ragprune.stages.selective_context:SelectiveContextCompressor",
    "top-n": "ragprune.stages.top_n:TopN",
}


def available_stages() -> list[str]:
    """Registered stage names, sorted."""
    return sorted(_STAGES)


def register_stage(name: str, target: str | type) -> None:
    """Register ``target`` (a class, or ``"module:Class"``) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError("stage name must be a non-empty str")
    if name in _STAGES:
        raise ValueError(f"stage name {name!r} is already registered")
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    _STAGES[name] = target


def stage_class(name: str) -> type:
    try:
        target = _STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; valid: {', '.join(available_stages())}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def create_stage(name: str, /, **kwargs: Any) -> Any:
    """Build the stage registered as ``name`` with ``kwargs``."""
    return stage_class(name)(**kwargs)

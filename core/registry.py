"""An explicit registry of stage names, resolved lazily so ``import ragprune`` stays cheap."""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["available_stages", "counter_config", "create_stage", "from_config", "register_stage", "stage_config"]

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


# ---------------------------------------------------------------- configs
_TYPED = "$type"


def _plain(name: str, value: Any) -> Any:
    """``value`` as JSON-ready data, or ``TypeError`` naming the argument."""
    from .budget import Budget
    from .runtime.loading import LoadOptions

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(f"{name}[{k!r}]", v) for k, v in value.items()}
    if isinstance(value, (Budget, LoadOptions)):
        return {_TYPED: type(value).__name__, **{k: _plain(f"{name}.{k}", v) for k, v in vars_of(value).items()}}
    if type(value).__module__ == "torch" and type(value).__name__ in ("device", "dtype"):
        return str(value).removeprefix("torch.")
    raise TypeError(f"{name}={type(value).__name__} cannot be serialized: build the stage from a model path or "
                    "hub id and plain settings (a loaded model or tokenizer object has no config)")


def vars_of(value: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _unplain(value: Any) -> Any:
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    if isinstance(value, dict):
        if value.get(_TYPED) in ("Budget", "LoadOptions"):
            from .budget import Budget
            from .runtime.loading import LoadOptions

            cls = Budget if value[_TYPED] == "Budget" else LoadOptions
            return cls(**{k: _unplain(v) for k, v in value.items() if k != _TYPED})
        return {k: _unplain(v) for k, v in value.items()}
    return value


def stage_config(stage: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The config of ``stage`` built with ``args`` / ``kwargs`` (see :meth:`BaseStage.config`)."""
    cls = type(stage)
    return {"class": f"{cls.__module__}:{cls.__qualname__}",
            "args": [_plain(f"argument {i}", a) for i, a in enumerate(args)],
            "kwargs": {k: _plain(k, v) for k, v in kwargs.items()}}


def counter_config(counter: Any) -> str:
    """A token counter as the spec :func:`ragprune.get_counter` rebuilds it from."""
    from .text.tokens import HFTokenizerCounter, TiktokenCounter, WhitespaceCounter, WordCounter

    if isinstance(counter, (WordCounter, WhitespaceCounter, TiktokenCounter)):
        return str(counter.name)
    if isinstance(counter, HFTokenizerCounter) and os.path.isdir(counter.name):
        return str(counter.name)
    raise TypeError(f"the token counter {counter!r} cannot be serialized: use a named counter "
                    "('words', 'whitespace', a tiktoken encoding) or a local tokenizer directory")


def from_config(data: Any) -> Any:
    """Rebuild a stage or a pipeline from its :meth:`config` (only ragprune's own classes)."""
    if not isinstance(data, dict) or not isinstance(data.get("class"), str):
        raise ValueError(f"not a ragprune stage config: {data!r}")
    module, _, attr = data["class"].partition(":")
    if not (module == "ragprune" or module.startswith("ragprune.")) or not attr:
        raise ValueError(f"refusing to build {data['class']!r}: only ragprune's own stages are rebuilt")
    cls = getattr(importlib.import_module(module), attr)
    from .passage import BaseStage
    from .pipeline import Pipeline

    if cls is Pipeline:
        budget = data.get("budget")
        from .budget import Budget
        from .passage import InputLimits

        limits = InputLimits(**data["limits"]) if data.get("limits") else InputLimits()
        return Pipeline([from_config(s) for s in data.get("stages", [])],
                        None if budget is None else Budget(**budget), data.get("counter"), limits,
                        data.get("structure", "auto"))
    if not (isinstance(cls, type) and issubclass(cls, BaseStage)):
        raise ValueError(f"{data['class']!r} is not a ragprune stage")
    return cls(*_unplain(data.get("args", [])), **_unplain(data.get("kwargs", {})))


"""ragprune: rerank, prune and compress retrieved context before it reaches the LLM.

Light names (the contract, budgets, token counting, segmentation, pipelines)
are imported eagerly and need neither torch nor transformers.  Model-backed
stages are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .budget import Budget, allocate_tokens
from .passage import BaseStage, Dropped, InputLimits, Passage, Stage, StageOutput
from .pipeline import CompressionStats, Pipeline, PipelineResult, StageTiming
from .registry import available_stages, create_stage, register_stage
from .stages.reorder import LongContextReorder
from .text.segment import render_spans, sentence_spans, word_spans
from .text.tokens import (
    HFTokenizerCounter,
    TiktokenCounter,
    TokenCounter,
    WhitespaceCounter,
    WordCounter,
    get_counter,
)

__version__ = "0.1.0"

_LAZY = {
    "TokenClassifierCompressor": "ragprune.stages.token_classifier",
    "CrossEncoderReranker": "ragprune.stages.cross_encoder",
    "EmbeddingFilter": "ragprune.stages.embedding_filter",
    "ProvencePruner": "ragprune.stages.provence",
    "PrunerModel": "ragprune.stages.provence",
    "SentenceSelector": "ragprune.stages.sentence_selector",
    "LLMLinguaCompressor": "ragprune.stages.llmlingua",
    "LongLLMLinguaCompressor": "ragprune.stages.longllmlingua",
    "SelectiveContextCompressor": "ragprune.stages.selective_context",
    "QueryTokenCompressor": "ragprune.stages.query_compressor",
    "CrossEncoderModel": "ragprune.runtime.encoders",
    "BiEncoderModel": "ragprune.runtime.encoders",
    "ModelLoadError": "ragprune.runtime.loading",
    "default_pipeline": "ragprune.defaults",
    "default_pruner": "ragprune.defaults",
    "resolve_device": "ragprune.runtime.device",
    "resolve_dtype": "ragprune.runtime.device",
}

if TYPE_CHECKING:
    from .defaults import default_pipeline, default_pruner
    from .runtime.device import resolve_device, resolve_dtype
    from .runtime.encoders import BiEncoderModel, CrossEncoderModel
    from .runtime.loading import ModelLoadError
    from .stages.cross_encoder import CrossEncoderReranker
    from .stages.embedding_filter import EmbeddingFilter
    from .stages.llmlingua import LLMLinguaCompressor
    from .stages.longllmlingua import LongLLMLinguaCompressor
    from .stages.provence import ProvencePruner, PrunerModel
    from .stages.query_compressor import QueryTokenCompressor
    from .stages.selective_context import SelectiveContextCompressor
    from .stages.sentence_selector import SentenceSelector
    from .stages.token_classifier import TokenClassifierCompressor


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragprune' has no attribute {name!r}")
    from .runtime.loading import import_model_module

    value = getattr(import_model_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BaseStage",
    "BiEncoderModel",
    "Budget",
    "CompressionStats",
    "CrossEncoderModel",
    "CrossEncoderReranker",
    "Dropped",
    "EmbeddingFilter",
    "HFTokenizerCounter",
    "InputLimits",
    "LLMLinguaCompressor",
    "LongContextReorder",
    "LongLLMLinguaCompressor",
    "ModelLoadError",
    "Passage",
    "Pipeline",
    "PipelineResult",
    "ProvencePruner",
    "PrunerModel",
    "QueryTokenCompressor",
    "SelectiveContextCompressor",
    "SentenceSelector",
    "Stage",
    "StageOutput",
    "StageTiming",
    "TiktokenCounter",
    "TokenClassifierCompressor",
    "TokenCounter",
    "WhitespaceCounter",
    "WordCounter",
    "allocate_tokens",
    "available_stages",
    "create_stage",
    "default_pipeline",
    "default_pruner",
    "get_counter",
    "register_stage",
    "render_spans",
    "resolve_device",
    "resolve_dtype",
    "sentence_spans",
    "word_spans",
]

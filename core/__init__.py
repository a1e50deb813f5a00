"""ragprune: rerank, prune and compress retrieved context before it reaches the LLM.

Light names (the contract, budgets, token counting, segmentation, pipelines)
are imported eagerly and need neither torch nor transformers.  Model-backed
stages are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._budget import Budget, allocate_tokens
from ._passage import BaseStage, Dropped, Passage, Stage, StageOutput
from ._pipeline import CompressionStats, Pipeline, PipelineResult, StageTiming
from ._registry import available_stages, create_stage, register_stage
from ._segment import render_spans, sentence_spans, word_spans
from ._tokens import (
    HFTokenizerCounter,
    TiktokenCounter,
    TokenCounter,
    WhitespaceCounter,
    WordCounter,
    get_counter,
)
from .reorder import LongContextReorder

__version__ = "0.1.0"

_LAZY = {
    "TokenClassifierCompressor": "ragprune.token_classifier",
    "CrossEncoderReranker": "ragprune.cross_encoder",
    "EmbeddingFilter": "ragprune.embedding_filter",
    "ProvencePruner": "ragprune.provence",
    "PrunerModel": "ragprune.provence",
    "SentenceSelector": "ragprune.sentence_selector",
    "LLMLinguaCompressor": "ragprune.llmlingua",
    "LongLLMLinguaCompressor": "ragprune.longllmlingua",
    "SelectiveContextCompressor": "ragprune.selective_context",
    "QueryTokenCompressor": "ragprune.query_compressor",
    "CrossEncoderModel": "ragprune._encoders",
    "BiEncoderModel": "ragprune._encoders",
    "ModelLoadError": "ragprune._compute",
    "default_pipeline": "ragprune.defaults",
    "default_pruner": "ragprune.defaults",
    "resolve_device": "ragprune._compute",
    "resolve_dtype": "ragprune._compute",
}

if TYPE_CHECKING:
    from ._compute import ModelLoadError, resolve_device, resolve_dtype
    from ._encoders import BiEncoderModel, CrossEncoderModel
    from .cross_encoder import CrossEncoderReranker
    from .defaults import default_pipeline, default_pruner
    from .embedding_filter import EmbeddingFilter
    from .llmlingua import LLMLinguaCompressor
    from .longllmlingua import LongLLMLinguaCompressor
    from .provence import ProvencePruner, PrunerModel
    from .query_compressor import QueryTokenCompressor
    from .selective_context import SelectiveContextCompressor
    from .sentence_selector import SentenceSelector
    from .token_classifier import TokenClassifierCompressor


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragprune' has no attribute {name!r}")
    from ._compute import import_model_module

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

"""LlamaIndex adapters: a node postprocessor and a retriever wrapper over ragprune pipelines, and
``RagpruneEmbedding`` over ragprune's bi-encoder.

Requires ``llama-index-core`` (``pip install ragprune[llamaindex]``).
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ragprune.integrations.llamaindex needs llama-index-core: pip install 'ragprune[llamaindex]'"
    ) from exc

from ..record import METADATA_KEY, PassageRecord
from ._events import DroppedNode, RagpruneCompressionEvent
from .embeddings import RagpruneEmbedding
from .postprocessor import RagprunePostprocessor
from .retriever import RagpruneRetriever

__all__ = [
    "METADATA_KEY",
    "PassageRecord",
    "DroppedNode",
    "RagpruneCompressionEvent",
    "RagpruneEmbedding",
    "RagprunePostprocessor",
    "RagpruneRetriever",
]

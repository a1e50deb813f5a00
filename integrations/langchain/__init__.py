"""LangChain adapters: ragprune stages as a document compressor, a transformer, a retriever and a Runnable,
and ``RagpruneEmbeddings`` over ragprune's bi-encoder.

Needs ``langchain-core`` 1.x (``pip install ragprune[langchain]``).  Every adapter returns
new Documents (ids kept, metadata copied plus a ``"ragprune"`` record) and sends the
totals and the drops of each call as the custom event ``"ragprune_compression"``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("ragprune.integrations.langchain needs langchain-core: pip install ragprune[langchain]") from e

from ..record import METADATA_KEY, PassageRecord
from ._common import EVENT_NAME, PREVIOUS_SCORE_KEYS
from .compressors import RagpruneCompressor, RagpruneTransformer
from .embeddings import RagpruneEmbeddings
from .retrievers import RagpruneRetriever
from .runnables import DOCUMENTS_KEYS, QUERY_KEYS, as_runnable

__all__ = [
    "DOCUMENTS_KEYS",
    "EVENT_NAME",
    "METADATA_KEY",
    "PassageRecord",
    "PREVIOUS_SCORE_KEYS",
    "QUERY_KEYS",
    "RagpruneCompressor",
    "RagpruneEmbeddings",
    "RagpruneRetriever",
    "RagpruneTransformer",
    "as_runnable",
]

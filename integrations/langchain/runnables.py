"""ragprune as an LCEL Runnable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from ragprune import Budget

from .compressors import RagpruneCompressor

__all__ = ["QUERY_KEYS", "DOCUMENTS_KEYS", "as_runnable"]

QUERY_KEYS = ("query", "question")
"""Input keys read as the query, first present wins."""

DOCUMENTS_KEYS = ("documents", "context")
"""Input keys read as the documents, first present wins."""


def as_runnable(
    stage: Any,
    *,
    budget: Budget | int | None = None,
    counter: Any = None,
    query: str | None = None,
    name: str = "ragprune",
) -> Runnable[Any, list[Document]]:
    """A Runnable that compresses Documents with ``stage`` (a stage, a Pipeline or a RagpruneCompressor).

    Input, either:
      * a mapping with the query under ``"query"`` or ``"question"`` and the Documents under
        ``"documents"`` or ``"context"`` (other keys are ignored), e.g. what
        ``{"question": RunnablePassthrough(), "context": retriever}`` produces;
      * a list of Documents, with the query bound here (``query=``) or none for
        query-free stages.
    Output: the compressed ``list[Document]`` (see :class:`RagpruneCompressor`).  The
    ``"ragprune_compression"`` event is dispatched in this Runnable's run.

    Example:
        ```python
        compress = as_runnable(LexicalReranker(top_n=4), budget=300)
        chain = ({"question": RunnablePassthrough(), "context": retriever}
                 | RunnablePassthrough.assign(context=compress | format_docs)
                 | prompt | llm)
        ```
    """
    if isinstance(stage, RagpruneCompressor):
        if budget is not None or counter is not None:
            raise ValueError("budget and counter belong to the RagpruneCompressor; do not pass them again")
        compressor = stage
    else:
        compressor = RagpruneCompressor(stage=stage, budget=budget, counter=counter)

    def split(value: Any) -> tuple[str | None, Sequence[Document]]:
        if isinstance(value, Mapping):
            q = next((value[k] for k in QUERY_KEYS if k in value), query)
            key = next((k for k in DOCUMENTS_KEYS if k in value), None)
            if key is None:
                raise ValueError(f"input mapping needs the documents under one of {DOCUMENTS_KEYS}; "
                                 f"got keys {sorted(value)}")
            return q, value[key]
        return query, value

    def invoke(value: Any, config: RunnableConfig) -> list[Document]:
        q, docs = split(value)
        return list(compressor.compress_documents(docs, q, callbacks=config.get("callbacks")))

    async def ainvoke(value: Any, config: RunnableConfig) -> list[Document]:
        q, docs = split(value)
        return list(await compressor.acompress_documents(docs, q, callbacks=config.get("callbacks")))

    return RunnableLambda(invoke, afunc=ainvoke, name=name)

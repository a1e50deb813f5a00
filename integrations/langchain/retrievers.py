"""A retriever that compresses what another retriever returns."""

from __future__ import annotations

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from pydantic import field_validator

from ragprune import Pipeline

from .._shared import as_pipeline
from ._common import PipelineFields, run_async, run_sync

__all__ = ["RagpruneRetriever"]


class RagpruneRetriever(PipelineFields, BaseRetriever):
    """Retrieves with ``base_retriever``, then reranks/compresses with ``stage`` under ``budget``.

    Output Documents, metadata record and the ``"ragprune_compression"`` event are those of
    :class:`~ragprune.integrations.langchain.RagpruneCompressor`; the event is dispatched in
    this retriever's run, so handlers in ``config={"callbacks": [...]}`` receive it.

    Example:
        ```python
        retriever = RagpruneRetriever(base_retriever=vectorstore.as_retriever(search_kwargs={"k": 20}),
                                      stage=LexicalReranker(), budget=Budget(max_tokens=500), k=5)
        docs = retriever.invoke("who founded the city?")
        ```
    """

    base_retriever: RetrieverLike
    """Any retriever (or Runnable ``str -> list[Document]``) giving the candidates."""

    k: int | None = None
    """At most this many Documents are returned (after the stage, before the budget); ``None``: no cap
    (then ``top_n``, when set).  Also accepted per call: ``retriever.invoke(query, k=3)``."""

    @field_validator("k")
    @classmethod
    def _check_k(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError(f"k must be >= 0, got {value}")
        return value

    def _pipeline_for(self, k: int | None) -> Pipeline:
        k = self.k if k is None else self._check_k(k)
        if k is None:
            return self.pipeline
        cap = k if self.top_n is None else min(k, self.top_n)
        return as_pipeline(self.stage, self.budget, self.pipeline.counter, cap)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        pipeline = self._pipeline_for(k)
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()})
        return run_sync(pipeline, docs, query, run_manager.get_child(), type(self).__name__)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        pipeline = self._pipeline_for(k)
        docs = await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()})
        return await run_async(pipeline, docs, query, run_manager.get_child(), type(self).__name__)

"""RagpruneRetriever: any LlamaIndex retriever followed by a ragprune pipeline."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent
from llama_index.core.schema import NodeWithScore, QueryBundle

from ragprune import Budget, Pipeline

from ._convert import (
    as_pipeline,
    emit_event,
    nodes_to_passages,
    passages_to_nodes,
    query_text,
    rerank_callback,
    rerank_start,
)

__all__ = ["RagpruneRetriever"]

dispatcher = get_dispatcher(__name__)


class RagpruneRetriever(BaseRetriever):
    """Retrieves with ``retriever``, then reranks/prunes/compresses with ragprune.

    Args:
        retriever: any LlamaIndex ``BaseRetriever``.
        stage: a ragprune stage, a list of stages, a :class:`ragprune.Pipeline`, or a
            registered stage name.
        budget: final token :class:`ragprune.Budget` (an ``int`` means ``max_tokens``).
        counter: token counter spec (see ``ragprune.get_counter``); default: the wrapped
            Pipeline's own counter, else words.
        top_n: keep at most this many nodes (the best, after the stage), before the budget.
        exclude_from_prompt: hide the ``"ragprune"`` metadata key from LLM/embedding text.

    The output nodes follow the same guarantees as :class:`RagprunePostprocessor`.
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        stage: Any,
        *,
        budget: Budget | int | None = None,
        counter: Any = None,
        top_n: int | None = None,
        exclude_from_prompt: bool = True,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(retriever, BaseRetriever):
            raise TypeError(f"retriever must be a LlamaIndex BaseRetriever, got {type(retriever).__name__}")
        self._retriever = retriever
        self._pipeline = as_pipeline(stage, budget, counter, top_n)
        self.exclude_from_prompt = exclude_from_prompt
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    @property
    def retriever(self) -> BaseRetriever:
        return self._retriever

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {"retriever": self._retriever}

    def _finish(self, result: Any, nodes: list[NodeWithScore], query: str | None) -> list[NodeWithScore]:
        out = passages_to_nodes(result, nodes, exclude_from_prompt=self.exclude_from_prompt,
                                counter=self._pipeline.counter.name)
        emit_event(result, nodes, query, out, type(self).__name__)
        return out

    @dispatcher.span
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_text(query_bundle, self._pipeline, type(self).__name__)
        nodes = self._retriever.retrieve(query_bundle)
        passages = nodes_to_passages(nodes)  # checks the nodes before any event fires
        rerank_start(query_bundle, nodes, self._pipeline)
        with rerank_callback(self.callback_manager, nodes, query, self._pipeline) as event:
            out = self._finish(self._pipeline.run(query, passages), nodes, query)
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    @dispatcher.span
    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_text(query_bundle, self._pipeline, type(self).__name__)
        nodes = await self._retriever.aretrieve(query_bundle)
        passages = nodes_to_passages(nodes)  # checks the nodes before any event fires
        rerank_start(query_bundle, nodes, self._pipeline)
        with rerank_callback(self.callback_manager, nodes, query, self._pipeline) as event:
            out = self._finish(await self._pipeline.arun(query, passages), nodes, query)
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

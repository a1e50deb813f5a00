"""RagpruneRetriever: any LlamaIndex retriever followed by a ragprune pipeline."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.schema import NodeWithScore, QueryBundle

from ragprune import Budget, Pipeline

from ._convert import aprocess_nodes, as_pipeline, process_nodes, query_text

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

    @dispatcher.span
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query_text(query_bundle, self._pipeline, type(self).__name__)  # before retrieving
        return process_nodes(self, self._retriever.retrieve(query_bundle), query_bundle)

    @dispatcher.span
    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query_text(query_bundle, self._pipeline, type(self).__name__)  # before retrieving
        return await aprocess_nodes(self, await self._retriever.aretrieve(query_bundle), query_bundle)

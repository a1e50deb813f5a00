"""RagprunePostprocessor: any ragprune stage or pipeline as a LlamaIndex node postprocessor."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from ragprune import Budget, Pipeline
from ragprune.registry import from_config

from ._convert import aprocess_nodes, as_pipeline, process_nodes

__all__ = ["RagprunePostprocessor"]

dispatcher = get_dispatcher(__name__)


class RagprunePostprocessor(BaseNodePostprocessor):
    """Reranks, prunes and compresses retrieved nodes with a ragprune pipeline.

    Use it as ``index.as_query_engine(node_postprocessors=[RagprunePostprocessor(stage)])``.

    Args:
        stage: a ragprune stage, a list of stages, a :class:`ragprune.Pipeline`, or a
            registered stage name. A bare stage becomes ``Pipeline([stage], budget, counter)``.
        budget: final :class:`ragprune.Budget` (an ``int`` means ``max_tokens``).
        counter: token counter spec for the budget and statistics (see ``ragprune.get_counter``);
            default: the wrapped Pipeline's own counter, else words.
        top_n: keep at most this many nodes (the best, after the stage), before the budget.

    Guarantees: one output node per kept input node, in the pipeline's order; each is a
    copy (the caller's nodes are never changed) keeping ``node_id``, relationships and
    metadata; ``NodeWithScore.score`` is ragprune's score and ``metadata["ragprune"]``
    holds the previous score, the stages' scores, tokens before/after, rate and the kept
    character spans of the original text (that key is hidden from the LLM and embedding
    text).  Totals and every dropped node (id, stage, reason) are dispatched as a
    :class:`RagpruneCompressionEvent`, inside LlamaIndex's standard rerank
    instrumentation (``ReRankStartEvent`` / ``ReRankEndEvent`` in a dispatcher span,
    and the ``RERANKING`` callback event), on the sync and the async path alike.
    Nodes with empty text pass through; image, audio or video nodes raise
    ``TypeError`` (route them around this postprocessor).
    """

    exclude_from_prompt: bool = Field(
        default=True,
        description="Hide the 'ragprune' metadata key from the text given to the LLM and the embedding model.",
    )
    _pipeline: Pipeline = PrivateAttr()

    def __init__(self, stage: Any, *, budget: Budget | int | None = None, counter: Any = None,
                 top_n: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pipeline = as_pipeline(stage, budget, counter, top_n)

    @classmethod
    def default(cls, *, budget: Budget | int | None = None, top_n: int | None = None,
                threshold: float | None = None, device: Any = "auto", **kwargs: Any) -> RagprunePostprocessor:
        """A postprocessor over ragprune's shipped pruner (offline), counting in ``cl100k_base``."""
        from ragprune import default_pruner

        return cls(default_pruner(threshold=threshold, device=device), budget=budget, counter="cl100k_base",
                   top_n=top_n, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "RagprunePostprocessor"

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """LlamaIndex's dict form, with the pipeline by reference (its stages' classes, model paths, settings)."""
        data = super().to_dict(**kwargs)
        data["pipeline"] = self._pipeline.config()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> RagprunePostprocessor:
        """Rebuild from :meth:`to_dict` (the models load again from their paths)."""
        data = {**data, **kwargs}
        if "pipeline" not in data:
            raise ValueError("a RagprunePostprocessor dict needs its 'pipeline' (written by to_dict)")
        pipeline = from_config(data.pop("pipeline"))
        data.pop("class_name", None)
        return cls(pipeline, **data)

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this postprocessor runs."""
        return self._pipeline

    @dispatcher.span
    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return process_nodes(self, nodes, query_bundle)

    @dispatcher.span
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return await aprocess_nodes(self, nodes, query_bundle)

"""The instrumentation event ragprune's LlamaIndex components dispatch after each call."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import BaseModel, Field
from llama_index.core.instrumentation.events import BaseEvent

__all__ = ["DroppedNode", "RagpruneCompressionEvent"]


class DroppedNode(BaseModel):
    """A node the pipeline removed, and why."""

    node_id: str = Field(description="The dropped node's node_id.")
    position: int = Field(description="Its position in the input list.")
    stage: str = Field(description="Name of the stage (or 'budget') that dropped it.")
    reason: str = Field(description="Why it was dropped, in words.")
    score: float | None = Field(default=None, description="Its score when it was dropped.")


class RagpruneCompressionEvent(BaseEvent):
    """Totals of one ragprune call: tokens before/after, timings, kept node ids and every drop.

    Dispatched inside the span of the postprocessor's or retriever's method; subscribe
    with an event handler on ``llama_index.core.instrumentation.get_dispatcher()``.
    """

    component: str = Field(description="Class name of the component that ran the pipeline.")
    query: str | None = Field(default=None, description="The query the pipeline ran with.")
    stats: dict[str, Any] = Field(description="ragprune CompressionStats.as_dict(): tokens before/after, rate, ...")
    kept_node_ids: list[str] = Field(default_factory=list, description="node_id of each output node, in order.")
    dropped: list[DroppedNode] = Field(default_factory=list, description="Every dropped node with stage and reason.")

    @classmethod
    def class_name(cls) -> str:
        return "RagpruneCompressionEvent"

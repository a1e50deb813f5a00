"""Translation between LlamaIndex nodes and ragprune passages (no algorithm lives here)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, Node, NodeWithScore, TextNode

from ragprune import Passage, Pipeline, PipelineResult

from .._shared import as_pipeline, check_query
from ..record import METADATA_KEY, PassageRecord
from ._events import DroppedNode, RagpruneCompressionEvent

__all__ = ["METADATA_KEY", "as_pipeline", "nodes_to_passages", "passages_to_nodes", "emit_event", "query_text",
           "rerank_callback", "rerank_start", "process_nodes", "aprocess_nodes"]

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)


def query_text(query_bundle: Any, pipeline: Pipeline, owner: str) -> str | None:
    """The query string of ``query_bundle``; ValueError when the pipeline needs one and none is given."""
    query = None if query_bundle is None else query_bundle.query_str
    return check_query(pipeline, query, owner, hint=" (pass query_bundle or query_str to postprocess_nodes, "
                                                    "or use it inside a query engine)")


def _node_text(node: Any, position: int) -> str:
    """The text of a text node; TypeError for anything else (images, audio, video, non-nodes)."""
    if isinstance(node, ImageNode) or (
        isinstance(node, Node) and (node.image_resource or node.audio_resource or node.video_resource)
    ):
        raise TypeError(
            f"nodes[{position}] is a {type(node).__name__} with non-text content; ragprune compresses text "
            "only: route image/audio/video nodes around this component"
        )
    if isinstance(node, TextNode):
        text = node.text
    elif isinstance(node, BaseNode) and callable(getattr(node, "get_content", None)):
        text = node.get_content(metadata_mode=MetadataMode.NONE)
    else:
        raise TypeError(f"nodes[{position}].node must be a LlamaIndex text node, got {type(node).__name__}")
    if not isinstance(text, str):
        raise TypeError(f"nodes[{position}] text must be str, got {type(text).__name__}")
    return text


def nodes_to_passages(nodes: Sequence[Any]) -> list[Passage]:
    """One passage per node; ``index`` is the node's position in ``nodes`` (its identity)."""
    if isinstance(nodes, (str, bytes, NodeWithScore)) or not isinstance(nodes, Sequence):
        raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
    out = []
    for i, nws in enumerate(nodes):
        if not isinstance(nws, NodeWithScore):
            raise TypeError(f"nodes[{i}] must be a NodeWithScore, got {type(nws).__name__}")
        text = _node_text(nws.node, i)
        # The caller's metadata is shown to stages read-only; it is never copied or changed there.
        out.append(Passage.from_text(text, i, score=nws.score, metadata=MappingProxyType(nws.node.metadata)))
    return out


def _copy_node(node: BaseNode, text: str, original: str | None, stats: dict[str, Any], exclude: bool) -> BaseNode:
    """A copy of ``node`` with ``text`` and the statistics; the caller's node is left as it was."""
    new = node.model_copy()
    new.metadata = {**node.metadata, METADATA_KEY: stats}
    new.relationships = dict(node.relationships)
    embed_keys = list(node.excluded_embed_metadata_keys)
    llm_keys = list(node.excluded_llm_metadata_keys)
    if exclude:
        embed_keys += [METADATA_KEY] if METADATA_KEY not in embed_keys else []
        llm_keys += [METADATA_KEY] if METADATA_KEY not in llm_keys else []
    new.excluded_embed_metadata_keys = embed_keys
    new.excluded_llm_metadata_keys = llm_keys
    if text != original:
        new.set_content(text)
    return new


def passages_to_nodes(result: PipelineResult, nodes: Sequence[NodeWithScore], *, exclude_from_prompt: bool = True,
                      counter: str = "") -> list[NodeWithScore]:
    """One new NodeWithScore per kept passage, in the pipeline's order."""
    out = []
    for p in result.passages:
        source = nodes[p.index]
        rec = PassageRecord.of(p, previous_score=source.score, counter=counter)
        node = _copy_node(source.node, p.text, p.original, rec.as_dict(), exclude_from_prompt)
        out.append(NodeWithScore(node=node, score=p.score))
    return out


def emit_event(result: PipelineResult, nodes: Sequence[NodeWithScore], query: str | None, kept: list[NodeWithScore],
               component: str) -> RagpruneCompressionEvent:
    """Dispatch the totals and every drop (with its reason) as one instrumentation event."""
    dropped = [
        DroppedNode(node_id=nodes[d.index].node.node_id, position=d.index, stage=d.stage, reason=d.reason,
                    score=d.score)
        for d in result.dropped
    ]
    event = RagpruneCompressionEvent(
        component=component, query=query, stats=result.stats.as_dict(),
        kept_node_ids=[n.node.node_id for n in kept], dropped=dropped,
    )
    if dropped:
        logger.debug("%s dropped %d of %d nodes", component, len(dropped), len(nodes))
    dispatcher.event(event)
    return event


def model_name(pipeline: Pipeline) -> str:
    """A name for the rerank events: the stages' names (and the budget)."""
    names = [str(getattr(s, "name", None) or type(s).__name__) for s in pipeline.stages]
    return "ragprune:" + "+".join(names or ["budget"])


def rerank_start(query_bundle: Any, nodes: Sequence[NodeWithScore], pipeline: Pipeline) -> None:
    """LlamaIndex's standard ``ReRankStartEvent`` (``top_n``: the number of input nodes, an upper bound)."""
    dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=list(nodes), top_n=len(nodes),
                                      model_name=model_name(pipeline)))


def rerank_callback(manager: CallbackManager | None, nodes: Sequence[NodeWithScore], query: str | None,
                    pipeline: Pipeline) -> Any:
    """The legacy ``RERANKING`` callback event around one call (end payload: the output nodes)."""
    manager = manager or CallbackManager([])
    return manager.event(CBEventType.RERANKING, payload={
        EventPayload.NODES: list(nodes), EventPayload.MODEL_NAME: model_name(pipeline),
        EventPayload.QUERY_STR: query, EventPayload.TOP_K: len(nodes)})


def _begin(component: Any, nodes: Sequence[NodeWithScore], query_bundle: Any) -> tuple[str | None, list[Passage]]:
    query = query_text(query_bundle, component.pipeline, type(component).__name__)
    passages = nodes_to_passages(nodes)  # checks the nodes before any event fires
    rerank_start(query_bundle, nodes, component.pipeline)
    return query, passages


def _end(component: Any, event: Any, result: PipelineResult, nodes: Sequence[NodeWithScore],
         query: str | None) -> list[NodeWithScore]:
    out = passages_to_nodes(result, nodes, exclude_from_prompt=component.exclude_from_prompt,
                            counter=component.pipeline.counter.name)
    emit_event(result, nodes, query, out, type(component).__name__)
    event.on_end(payload={EventPayload.NODES: out})
    dispatcher.event(ReRankEndEvent(nodes=out))
    return out


def process_nodes(component: Any, nodes: Sequence[NodeWithScore], query_bundle: Any) -> list[NodeWithScore]:
    """One call of a postprocessor or retriever (``component`` has ``pipeline``, ``callback_manager``,
    ``exclude_from_prompt``): checks, the standard rerank events around the pipeline, new nodes, ragprune's event."""
    query, passages = _begin(component, nodes, query_bundle)
    with rerank_callback(component.callback_manager, nodes, query, component.pipeline) as event:
        return _end(component, event, component.pipeline.run(query, passages), nodes, query)


async def aprocess_nodes(component: Any, nodes: Sequence[NodeWithScore], query_bundle: Any) -> list[NodeWithScore]:
    """Async :func:`process_nodes`: the pipeline runs in a worker thread."""
    query, passages = _begin(component, nodes, query_bundle)
    with rerank_callback(component.callback_manager, nodes, query, component.pipeline) as event:
        return _end(component, event, await component.pipeline.arun(query, passages), nodes, query)


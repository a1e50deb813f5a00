"""What both framework adapters share: one record, the same budget units, standard events."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.documents import Document
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ragprune import Budget, Pipeline
from ragprune.integrations.langchain import RagpruneCompressor
from ragprune.integrations.llamaindex import RagprunePostprocessor
from ragprune.integrations.record import METADATA_KEY, RECORD_VERSION, PassageRecord
from ragprune.testing import FakeCompressor, LexicalReranker

QUERY = "capital city of france"
TEXTS = [
    "Paris is the capital of France. It is a large city on the river Seine. Many visit it.",
    "The cat sat on the mat. The dog sat too.",
    "Berlin is the capital of Germany. It is a large city.",
    "France has many cities; its capital city is Paris, which is large.",
]


def _both(pipeline: Any, budget: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    docs = [Document(page_content=t, metadata={"relevance_score": 0.5 + i}) for i, t in enumerate(TEXTS)]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5 + i) for i, t in enumerate(TEXTS)]
    lc = RagpruneCompressor(stage=pipeline, budget=budget).compress_documents(docs, QUERY)
    li = RagprunePostprocessor(pipeline, budget=budget).postprocess_nodes(nodes, QueryBundle(QUERY))
    return [d.metadata[METADATA_KEY] for d in lc], [n.node.metadata[METADATA_KEY] for n in li]


@pytest.mark.parametrize("counter", ["words", "whitespace", "cl100k_base"])
def test_both_adapters_write_the_same_record_and_count_the_same_tokens(counter: str) -> None:
    pipeline = Pipeline([LexicalReranker(top_n=3), FakeCompressor(rate=0.7)], counter=counter)
    for budget in (None, 20, Budget(max_tokens=12)):
        lc, li = _both(pipeline, budget)
        assert lc == li and lc, (counter, budget)
        for rec in lc:
            parsed = PassageRecord.from_dict(rec)
            assert parsed.as_dict() == rec and rec["version"] == RECORD_VERSION
            assert rec["counter"] == counter and rec["relevance_score"] == rec["score"]
            assert rec["scored_by"] == "lexical-reranker" and isinstance(rec["spans"], list)
        if budget is not None:
            cap = budget if isinstance(budget, int) else budget.max_tokens
            assert sum(r["tokens_after"] for r in lc) <= cap


def test_record_accessor_rejects_other_versions_and_reads_metadata() -> None:
    lc, _ = _both(Pipeline([LexicalReranker(top_n=1)]))
    rec = PassageRecord.from_metadata({METADATA_KEY: lc[0]})
    assert rec is not None and rec.index == 0 and rec.previous_score == 0.5
    assert PassageRecord.from_metadata({}) is None
    with pytest.raises(ValueError, match="version"):
        PassageRecord.from_dict({**lc[0], "version": 99})
    with pytest.raises(ValueError, match="malformed"):
        PassageRecord.from_dict({"version": RECORD_VERSION})


class _Events(BaseEventHandler):
    seen: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Events"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.seen.append(event)


class _Callbacks(BaseCallbackHandler):
    def __init__(self) -> None:
        super().__init__([], [])
        self.starts: list[Any] = []
        self.ends: list[Any] = []

    def on_event_start(self, event_type: Any, payload: Any = None, event_id: str = "", parent_id: str = "",
                       **kwargs: Any) -> str:
        self.starts.append((event_type, payload))
        return event_id

    def on_event_end(self, event_type: Any, payload: Any = None, event_id: str = "", **kwargs: Any) -> None:
        self.ends.append((event_type, payload))

    def start_trace(self, trace_id: str | None = None) -> None: ...

    def end_trace(self, trace_id: str | None = None, trace_map: Any = None) -> None: ...


async def test_llamaindex_fires_the_standard_rerank_events_sync_and_async() -> None:
    dispatcher = get_dispatcher()
    handler = _Events(seen=[])
    dispatcher.add_event_handler(handler)
    try:
        callbacks = _Callbacks()
        post = RagprunePostprocessor(Pipeline([LexicalReranker(top_n=2)]),
                                     callback_manager=CallbackManager([callbacks]))
        nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0) for i, t in enumerate(TEXTS)]
        sync = post.postprocess_nodes(nodes, QueryBundle(QUERY))
        async_ = await post.apostprocess_nodes(nodes, QueryBundle(QUERY))
    finally:
        dispatcher.event_handlers.remove(handler)
    for out in (sync, async_):
        assert [n.node.node_id for n in out] == ["n0", "n2"]
    starts = [e for e in handler.seen if isinstance(e, ReRankStartEvent)]
    ends = [e for e in handler.seen if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 2
    assert all(e.span_id for e in starts + ends)  # inside a dispatcher span on both paths
    assert starts[0].model_name == "ragprune:lexical-reranker" and len(starts[0].nodes) == 4
    assert [n.node.node_id for n in ends[1].nodes] == ["n0", "n2"]
    assert [t for t, _ in callbacks.starts] == [CBEventType.RERANKING] * 2
    assert [len(p["nodes"]) for _, p in callbacks.ends] == [2, 2]


def test_constructors_read_like_the_anchors() -> None:
    from ragprune.integrations.langchain import RagpruneRetriever

    stage = LexicalReranker()
    lc = RagpruneCompressor(stage, top_n=2, budget=50)  # positional stage, as in CrossEncoderReranker(model, top_n)
    li = RagprunePostprocessor(stage, top_n=2, budget=50)
    assert lc.pipeline.budget == li.pipeline.budget == Budget(max_tokens=50)
    docs = [Document(page_content=t) for t in TEXTS]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0) for i, t in enumerate(TEXTS)]
    assert len(lc.compress_documents(docs, QUERY)) == len(li.postprocess_nodes(nodes, QueryBundle(QUERY))) == 2
    with pytest.raises(TypeError, match="twice"):
        RagpruneCompressor(stage, stage=stage)
    with pytest.raises(ValueError, match="top_n"):
        RagprunePostprocessor(stage, top_n=-1)
    from langchain_core.runnables import RunnableLambda

    base = RunnableLambda(lambda q: docs)
    assert [d.page_content for d in RagpruneRetriever(stage, base_retriever=base, top_n=1).invoke(QUERY)] == TEXTS[:1]


@pytest.mark.slow
def test_default_factories_run_the_shipped_pruner() -> None:
    lc = RagpruneCompressor.default(budget=40, device="cpu")
    li = RagprunePostprocessor.default(budget=40, device="cpu")
    assert lc.pipeline.counter.name == li.pipeline.counter.name == "cl100k_base"
    docs = [Document(page_content=t) for t in TEXTS]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=None) for i, t in enumerate(TEXTS)]
    a = [d.metadata[METADATA_KEY] for d in lc.compress_documents(docs, QUERY)]
    b = [n.node.metadata[METADATA_KEY] for n in li.postprocess_nodes(nodes, QueryBundle(QUERY))]
    assert a == b and sum(r["tokens_after"] for r in a) <= 40 and a[0]["scored_by"] == "provence"


def _same_output(a: Any, b: Any, call: Any) -> None:
    assert call(a) == call(b)


def test_serialization_round_trips_by_reference() -> None:
    import json
    import pickle

    pipeline = Pipeline([LexicalReranker(top_n=3), FakeCompressor(rate=0.6)], counter="cl100k_base")
    docs = [Document(page_content=t) for t in TEXTS]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0) for i, t in enumerate(TEXTS)]

    def lc_out(c: Any) -> Any:
        return [(d.page_content, d.metadata[METADATA_KEY]) for d in c.compress_documents(docs, QUERY)]

    def li_out(p: Any) -> Any:
        return [(n.node.text, n.node.metadata[METADATA_KEY]) for n in p.postprocess_nodes(nodes, QueryBundle(QUERY))]

    lc = RagpruneCompressor(pipeline, budget=30, top_n=2)
    dumped = json.loads(lc.model_dump_json())
    assert dumped["stage"]["stages"][0] == {"class": "ragprune.testing:LexicalReranker", "args": [],
                                            "kwargs": {"top_n": 3}}
    for again in (RagpruneCompressor.model_validate(dumped), pickle.loads(pickle.dumps(lc))):
        _same_output(lc, again, lc_out)
    li = RagprunePostprocessor(pipeline, budget=30, top_n=2)
    data = json.loads(json.dumps(li.to_dict()))
    for again in (RagprunePostprocessor.from_dict(data), pickle.loads(pickle.dumps(li))):
        _same_output(li, again, li_out)
    with pytest.raises(ValueError, match="pipeline"):
        RagprunePostprocessor.from_dict({"class_name": "RagprunePostprocessor"})


def test_configs_refuse_what_they_cannot_rebuild() -> None:
    from ragprune.registry import from_config

    with pytest.raises(ValueError, match="only ragprune"):
        from_config({"class": "os:system", "args": ["echo no"], "kwargs": {}})
    with pytest.raises(ValueError, match="not a ragprune stage"):
        from_config({"class": "ragprune.budget:Budget", "args": [], "kwargs": {}})
    with pytest.raises(TypeError, match="cannot be serialized"):
        Pipeline([LexicalReranker()], counter=len).config()
    with pytest.raises(TypeError, match="stage=object"):
        _stage_with_object()


def _stage_with_object() -> Any:
    from ragprune.registry import stage_config

    return stage_config(FakeCompressor(rate=0.5), (), {"stage": object()})


@pytest.mark.slow
def test_the_shipped_pruner_pickles_by_its_path() -> None:
    import pickle

    from ragprune import default_pipeline

    pipeline = default_pipeline(budget=40, device="cpu")
    again = pickle.loads(pickle.dumps(pipeline))
    assert again.config() == pipeline.config()
    assert [p.text for p in again.run(QUERY, TEXTS).passages] == [p.text for p in pipeline.run(QUERY, TEXTS).passages]


@pytest.mark.slow
def test_embedding_adapters_round_trip(minilm_path: Any) -> None:
    import pickle

    from ragprune.integrations.langchain import RagpruneEmbeddings
    from ragprune.integrations.llamaindex import RagpruneEmbedding

    lc = RagpruneEmbeddings(minilm_path, device="cpu")
    li = RagpruneEmbedding(minilm_path, device="cpu")
    vector = lc.embed_query(QUERY)
    for again in (RagpruneEmbeddings.model_validate_json(lc.model_dump_json()), pickle.loads(pickle.dumps(lc))):
        assert again.embed_query(QUERY) == pytest.approx(vector, abs=1e-6)
    for again in (RagpruneEmbedding.from_dict(li.to_dict()), pickle.loads(pickle.dumps(li))):
        assert again.get_query_embedding(QUERY) == pytest.approx(vector, abs=1e-6)

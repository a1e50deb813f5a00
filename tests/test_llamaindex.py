"""LlamaIndex adapters: contract tests (test doubles) and an end-to-end query engine over FAISS + MiniLM."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("llama_index.core")

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.schema import (
    Document,
    ImageNode,
    MediaResource,
    MetadataMode,
    Node,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

from ragprune import BaseStage, Budget, Passage, Pipeline, StageOutput, render_spans
from ragprune.integrations.llamaindex import (
    METADATA_KEY,
    RagpruneCompressionEvent,
    RagpruneEmbedding,
    RagprunePostprocessor,
    RagpruneRetriever,
)
from ragprune.testing import FakeCompressor, LexicalReranker

TEXTS = [
    "The cat sat on the mat. It was a small cat.",
    "Paris is the capital of France. Paris is a large city on a river.",
    "",
    "Berlin is the capital of Germany. Berlin is a large city.",
    "   ",
    "Who was the first answer to the question?",
]


def make_nodes(texts: list[str] = TEXTS) -> list[NodeWithScore]:
    out = []
    for i, text in enumerate(texts):
        node = TextNode(
            id_=f"node-{i}",
            text=text,
            metadata={"title": f"t{i}", "page": i, "tags": ["a", i], "when": dt.date(2024, 1, i + 1), "none": None},
            excluded_llm_metadata_keys=["page"],
            relationships={
                NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i // 2}"),
                NodeRelationship.NEXT: RelatedNodeInfo(node_id=f"node-{i + 1}"),
            },
            start_char_idx=10 * i,
            end_char_idx=10 * i + len(text),
        )
        out.append(NodeWithScore(node=node, score=0.5 + 0.01 * i))
    return out


def snapshot(nodes: list[NodeWithScore]) -> list[Any]:
    return [(n.score, n.node.model_dump(), list(n.node.excluded_llm_metadata_keys)) for n in nodes]


class Capture(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Capture"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, RagpruneCompressionEvent):
            self.events.append(event)


@pytest.fixture
def captured() -> Iterator[list[RagpruneCompressionEvent]]:
    root = get_dispatcher()
    handler = Capture(events=[])
    root.add_event_handler(handler)
    try:
        yield handler.events  # type: ignore[misc]
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]


def pipeline() -> Pipeline:
    return Pipeline([LexicalReranker(top_n=3), FakeCompressor(rate=0.5)])


def expected_passages(query: str | None, nodes: list[NodeWithScore], pipe: Pipeline) -> Any:
    """What the core pipeline gives for the same texts: the adapter must only translate it."""
    passages = [Passage.from_text(n.node.text, i, score=n.score) for i, n in enumerate(nodes)]
    return pipe.run(query, passages)


def check_contract(inputs: list[NodeWithScore], outputs: list[NodeWithScore], result: Any) -> None:
    assert len(outputs) == len(result.passages)
    for out, p in zip(outputs, result.passages, strict=True):
        src = inputs[p.index]
        assert out.node is not src.node
        assert out.node_id == src.node_id == out.node.id_
        assert type(out.node) is type(src.node)
        assert out.node.relationships == src.node.relationships
        assert out.node.start_char_idx == src.node.start_char_idx
        assert out.score == p.score
        assert out.node.text == p.text
        meta = dict(out.node.metadata)
        info = meta.pop(METADATA_KEY)
        assert meta == src.node.metadata  # non-string values carried through as they are
        assert info["previous_score"] == src.score
        assert info["score"] == p.score
        assert info["scores"] == [list(s) for s in p.scores]
        assert info["tokens_before"] == p.tokens_before and info["tokens_after"] == p.tokens_after
        spans = [tuple(s) for s in info["spans"]]
        assert all(0 <= a < b <= len(src.node.text) for a, b in spans)
        assert out.node.text == render_spans(src.node.text, spans)  # extractive
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            content = out.node.get_content(metadata_mode=mode)
            assert "tokens_before" not in content and "previous_score" not in content
        assert "title: " in out.node.get_content(metadata_mode=MetadataMode.LLM)
        assert "page" in out.node.excluded_llm_metadata_keys  # the caller's exclusions are kept


# ---------------------------------------------------------------- postprocessor


def test_postprocessor_contract_and_no_mutation(captured: list[RagpruneCompressionEvent]) -> None:
    nodes = make_nodes()
    before = snapshot(nodes)
    pp = RagprunePostprocessor(pipeline())
    out = pp.postprocess_nodes(nodes, query_str="capital of France")
    result = expected_passages("capital of France", nodes, pp.pipeline)
    assert [n.node_id for n in out] == ["node-1", "node-3", "node-0"]
    check_contract(nodes, out, result)
    assert snapshot(nodes) == before
    assert all(METADATA_KEY not in n.node.metadata for n in nodes)
    # One event, inside the postprocessor's span, with totals and every drop.
    (event,) = captured
    assert event.span_id is not None and event.span_id.startswith("RagprunePostprocessor._postprocess_nodes")
    assert event.query == "capital of France"
    assert event.kept_node_ids == [n.node_id for n in out]
    assert event.stats == {**result.stats.as_dict(), "seconds": event.stats["seconds"],
                           "stages": event.stats["stages"]}
    assert event.stats["tokens_after"] == sum(n.node.metadata[METADATA_KEY]["tokens_after"] for n in out)
    assert sorted(d.node_id for d in event.dropped) == ["node-2", "node-4", "node-5"]
    assert {d.stage for d in event.dropped} == {"lexical-reranker"}
    assert all("top_n=3" in d.reason for d in event.dropped)
    assert len(out) + len(event.dropped) == len(nodes)  # nothing silently lost


def test_query_engine_shape_bare_stage_and_query_bundle() -> None:
    nodes = make_nodes()
    pp = RagprunePostprocessor(FakeCompressor(rate=0.5))
    out = pp.postprocess_nodes(nodes)  # query-free stage: no query needed
    assert [n.node_id for n in out] == [n.node_id for n in nodes]
    assert out[2].node.text == "" and out[4].node.text == "   "  # blank nodes pass through unchanged
    assert out[1].score == nodes[1].score  # unscored: previous score carried
    out2 = pp.postprocess_nodes(nodes, query_bundle=QueryBundle("anything"))
    assert [n.node.text for n in out2] == [n.node.text for n in out]


def test_budget_drops_are_reported(captured: list[RagpruneCompressionEvent]) -> None:
    nodes = make_nodes()
    pp = RagprunePostprocessor(LexicalReranker(), budget=8, counter="words")
    out = pp.postprocess_nodes(nodes, query_str="capital city")
    (event,) = captured
    assert event.stats["tokens_after"] <= 8
    assert sum(n.node.metadata[METADATA_KEY]["tokens_after"] for n in out) <= 8
    assert {d.stage for d in event.dropped} == {"budget"}
    assert len(out) + len(event.dropped) == len(nodes)
    assert {d.node_id for d in event.dropped}.isdisjoint(n.node_id for n in out)


def test_missing_query_is_a_clear_value_error() -> None:
    pp = RagprunePostprocessor(pipeline())
    with pytest.raises(ValueError, match="needs a non-empty query"):
        pp.postprocess_nodes(make_nodes())
    with pytest.raises(ValueError, match="needs a non-empty query"):
        pp.postprocess_nodes(make_nodes(), query_str="   ")
    with pytest.raises(ValueError, match="needs a non-empty query"):
        asyncio.run(pp.apostprocess_nodes(make_nodes()))


def test_empty_input(captured: list[RagpruneCompressionEvent]) -> None:
    pp = RagprunePostprocessor(pipeline())
    assert pp.postprocess_nodes([], query_str="q") == []
    (event,) = captured
    assert event.stats["tokens_before"] == 0 and event.dropped == [] and event.kept_node_ids == []


def test_bad_input_types() -> None:
    pp = RagprunePostprocessor(FakeCompressor())
    image = NodeWithScore(node=ImageNode(image_url="http://example.invalid/x.png", text="a caption"))
    with pytest.raises(TypeError, match=r"nodes\[1\] is a ImageNode"):
        pp.postprocess_nodes([make_nodes()[0], image])
    media = NodeWithScore(node=Node(image_resource=MediaResource(url="http://example.invalid/x.png")))
    with pytest.raises(TypeError, match="non-text"):
        pp.postprocess_nodes([media])
    with pytest.raises(TypeError, match=r"nodes\[0\] must be a NodeWithScore"):
        pp.postprocess_nodes([TextNode(text="bare node")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        RagpruneRetriever(object(), FakeCompressor())  # type: ignore[arg-type]


def test_documents_and_multimodal_text_nodes_and_duplicates() -> None:
    doc = Document(text="one two three four five six", id_="doc-a", metadata={"n": 1})
    text_only = Node(text_resource=MediaResource(text="alpha beta gamma delta"), id_="mm-b")
    nodes = [NodeWithScore(node=doc, score=1.0), NodeWithScore(node=text_only), NodeWithScore(node=doc, score=2.0)]
    out = RagprunePostprocessor(FakeCompressor(rate=0.5)).postprocess_nodes(nodes)
    assert [n.node_id for n in out] == ["doc-a", "mm-b", "doc-a"]
    assert out[0].node.text == "one two three" and out[1].node.get_content() == "alpha beta"
    assert out[0].node is not out[2].node  # same input node twice: two distinct copies
    assert [n.node.metadata[METADATA_KEY]["previous_score"] for n in out] == [1.0, None, 2.0]
    assert doc.text == "one two three four five six" and text_only.text_resource.text == "alpha beta gamma delta"


def test_as_pipeline_variants() -> None:
    pipe = pipeline()
    assert RagprunePostprocessor(pipe).pipeline is pipe
    assert RagprunePostprocessor("long-context-reorder").pipeline.stages[0].name == "long-context-reorder"
    nested = RagprunePostprocessor(pipe, budget=Budget(max_tokens=5)).pipeline
    assert nested.stages == (pipe,) and nested.budget == Budget(max_tokens=5)
    out = RagprunePostprocessor(pipe, budget=5).postprocess_nodes(make_nodes(), query_str="capital")
    assert sum(n.node.metadata[METADATA_KEY]["tokens_after"] for n in out) <= 5
    assert RagprunePostprocessor(pipe).to_dict()["class_name"] == "RagprunePostprocessor"


async def test_async_equals_sync_and_event_span(captured: list[RagpruneCompressionEvent]) -> None:
    pp = RagprunePostprocessor(pipeline())
    nodes = make_nodes()
    sync = pp.postprocess_nodes(nodes, query_str="large city")
    before = snapshot(nodes)
    async_ = await pp.apostprocess_nodes(nodes, query_str="large city")
    assert [(n.node_id, n.score, n.node.text, n.node.metadata) for n in async_] == [
        (n.node_id, n.score, n.node.text, n.node.metadata) for n in sync
    ]
    assert snapshot(nodes) == before
    assert len(captured) == 2
    assert captured[1].span_id is not None and captured[1].span_id.startswith(
        "RagprunePostprocessor._apostprocess_nodes"
    )
    assert [d.node_id for d in captured[0].dropped] == [d.node_id for d in captured[1].dropped]


class SlowStage(BaseStage):
    """A query-aware stage that blocks its thread (like a model forward pass) and keeps every passage."""

    name = "slow"
    requires_query = True

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        time.sleep(0.2)
        return StageOutput(tuple(p.with_score(self.name, float(len(query or ""))) for p in passages))


async def test_concurrent_async_calls_do_not_block_the_loop_nor_mix() -> None:
    pp = RagprunePostprocessor([SlowStage(), LexicalReranker(top_n=2)])
    queries = ["capital of France", "cat mat", "Berlin Germany", "question answer"]
    ticks = 0
    done = False

    async def heartbeat() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(heartbeat())
    nodes = make_nodes()
    results = await asyncio.gather(*(pp.apostprocess_nodes(nodes, query_str=q) for q in queries))
    done = True
    await beat
    assert ticks >= 10  # the loop kept running while the stages slept in threads
    for q, res in zip(queries, results, strict=True):
        sync = pp.postprocess_nodes(nodes, query_str=q)
        assert [(n.node_id, n.score, n.node.text) for n in res] == [(n.node_id, n.score, n.node.text) for n in sync]


@settings(max_examples=25, deadline=None)
@given(
    texts=st.lists(st.text(alphabet=st.sampled_from("ab cd. \n北é🙂"), max_size=40), max_size=8),
    query=st.sampled_from(["ab", "cd ab", "北"]),
    top_n=st.integers(0, 5),
)
def test_property_identity_order_no_mutation(texts: list[str], query: str, top_n: int) -> None:
    nodes = make_nodes(texts)
    before = snapshot(nodes)
    pp = RagprunePostprocessor([LexicalReranker(top_n=top_n), FakeCompressor(rate=0.6)])
    out = pp.postprocess_nodes(nodes, query_str=query)
    check_contract(nodes, out, expected_passages(query, nodes, pp.pipeline))
    assert len(out) == min(top_n, len(nodes))
    assert snapshot(nodes) == before


# ---------------------------------------------------------------- retriever


class ListRetriever(BaseRetriever):
    """Returns fixed nodes (a stand-in for any base retriever)."""

    def __init__(self, nodes: list[NodeWithScore]) -> None:
        self._nodes = nodes
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self._nodes)


async def test_retriever_contract_sync_async(captured: list[RagpruneCompressionEvent]) -> None:
    nodes = make_nodes()
    before = snapshot(nodes)
    retriever = RagpruneRetriever(ListRetriever(nodes), pipeline(), budget=10)
    out = retriever.retrieve("capital of France")
    result = expected_passages("capital of France", nodes, retriever.pipeline)
    check_contract(nodes, out, result)
    assert sum(n.node.metadata[METADATA_KEY]["tokens_after"] for n in out) <= 10
    aout = await retriever.aretrieve(QueryBundle("capital of France"))
    assert [(n.node_id, n.score, n.node.text, n.node.metadata) for n in aout] == [
        (n.node_id, n.score, n.node.text, n.node.metadata) for n in out
    ]
    assert snapshot(nodes) == before
    assert [e.span_id.split("-")[0] for e in captured if e.span_id] == [
        "RagpruneRetriever._retrieve", "RagpruneRetriever._aretrieve"
    ]
    assert len(out) + len(captured[0].dropped) == len(nodes)
    with pytest.raises(ValueError, match="needs a non-empty query"):
        retriever.retrieve("")


# ---------------------------------------------------------------- end to end: FAISS + MiniLM + query engine

CORPUS = [
    "Paris is the capital and most populous city of France. The Seine river flows through the city. "
    "The city hosts the Louvre museum, which opened in 1793. Paris has been a major centre of finance and art.",
    "Berlin is the capital of Germany. The city lies on the banks of the river Spree. "
    "Berlin is known for its festivals, nightlife and contemporary art.",
    "The domestic cat is a small carnivorous mammal. Cats sleep for most of the day. "
    "They were domesticated in the Near East around 7500 BC.",
    "Mount Everest is the highest mountain above sea level. It lies in the Himalayas on the border of Nepal "
    "and China. The first confirmed ascent was in 1953.",
    "The Louvre is the world's most visited museum. It holds the Mona Lisa. "
    "The museum building was a royal palace before the French Revolution.",
    "Python is a programming language created by Guido van Rossum. Its first release was in 1991. "
    "It emphasises code readability.",
]


@pytest.fixture(scope="module")
def minilm_embed(minilm_path: Any) -> RagpruneEmbedding:
    return RagpruneEmbedding(minilm_path, device="cpu", local_files_only=True)


class FaissRetriever(BaseRetriever):
    """Inner-product search over normalised MiniLM embeddings in a faiss IndexFlatIP."""

    def __init__(self, nodes: list[TextNode], embed_model: Any, top_k: int = 4) -> None:
        import faiss
        import numpy as np

        self._nodes = nodes
        self._embed = embed_model
        self._top_k = top_k
        vectors = np.asarray(embed_model.get_text_embedding_batch([n.text for n in nodes]), dtype="float32")
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        import numpy as np

        q = np.asarray([self._embed.get_query_embedding(query_bundle.query_str)], dtype="float32")
        scores, ids = self._index.search(q, self._top_k)
        return [NodeWithScore(node=self._nodes[i], score=float(s)) for s, i in zip(scores[0], ids[0], strict=True)]


@pytest.mark.slow
async def test_query_engine_end_to_end_faiss_minilm(minilm_embed: Any) -> None:
    pytest.importorskip("faiss")
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms import CustomLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.settings import Settings
    from llama_index.core.utils import get_tokenizer

    class RecordingLLM(CustomLLM):
        prompts: list[str] = Field(default_factory=list)

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=8192, num_output=32, model_name="recording")

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            self.prompts.append(prompt)
            return CompletionResponse(text="recorded")

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            yield self.complete(prompt, formatted=formatted)

    settings_before = (Settings._llm, Settings._embed_model)
    nodes = [TextNode(text=t, id_=f"c{i}", metadata={"source": f"wiki-{i}"}) for i, t in enumerate(CORPUS)]
    retriever = FaissRetriever(nodes, minilm_embed, top_k=4)
    query = "Which museum in the capital of France holds the Mona Lisa?"
    retrieved = retriever.retrieve(query)
    assert {n.node_id for n in retrieved[:2]} == {"c0", "c4"}  # MiniLM + faiss really retrieve

    plain_llm, pruned_llm = RecordingLLM(prompts=[]), RecordingLLM(prompts=[])
    pp = RagprunePostprocessor([LexicalReranker(top_n=2), FakeCompressor(rate=0.5)], budget=40)
    plain = RetrieverQueryEngine.from_args(retriever, llm=plain_llm)
    pruned = RetrieverQueryEngine.from_args(retriever, llm=pruned_llm, node_postprocessors=[pp])
    assert str(plain.query(query)) == "recorded"
    response = pruned.query(query)
    (plain_prompt,), (pruned_prompt,) = plain_llm.prompts, pruned_llm.prompts

    kept = response.source_nodes
    assert 1 <= len(kept) <= 2
    for n in kept:
        info = n.node.metadata[METADATA_KEY]
        assert info["tokens_after"] < info["tokens_before"]
        assert n.node.text in pruned_prompt  # the compressed context reached the LLM
        original = nodes[int(n.node_id[1:])].text
        assert original in plain_prompt and original not in pruned_prompt
        assert f"source: {n.node.metadata['source']}" in pruned_prompt
    assert "tokens_before" not in pruned_prompt and METADATA_KEY not in pruned_prompt
    assert "Everest" not in pruned_prompt and "Python" not in pruned_prompt
    tokenizer = get_tokenizer()
    assert len(tokenizer(pruned_prompt)) < len(tokenizer(plain_prompt))

    # The async path gives the same prompt.
    await pruned.aquery(query)
    assert pruned_llm.prompts[-1] == pruned_prompt
    assert (Settings._llm, Settings._embed_model) == settings_before

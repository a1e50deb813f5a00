"""Contract tests for the LangChain adapters (compressor, transformer, retriever, Runnable)."""

from __future__ import annotations

import asyncio
import copy
import datetime
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.prompts import PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_tests.integration_tests import RetrieversIntegrationTests
from pydantic import Field, PrivateAttr, ValidationError

from ragprune import Budget, LongContextReorder, Passage, Pipeline, WordCounter, render_spans
from ragprune.integrations.langchain import (
    EVENT_NAME,
    METADATA_KEY,
    RagpruneCompressor,
    RagpruneEmbeddings,
    RagpruneRetriever,
    RagpruneTransformer,
    as_runnable,
)
from ragprune.testing import FakeCompressor, LexicalReranker

QUERY = "what is the capital of france"

TEXTS = [
    "Berlin is the capital of Germany. It lies on the river Spree.",
    "Paris is the capital and largest city of France. The Seine flows through Paris.",
    "The cat sat on the mat. The dog did not.",
    "",
    "France borders Germany, Spain and Italy. Its capital is Paris.",
    "   ",
    "北京是中国的首都。 Emoji 🚀 and RTL שלום survive.",
]


def make_docs() -> list[Document]:
    """Documents with ids, retrieval scores and non-string metadata values."""
    return [
        Document(
            page_content=t,
            id=f"doc-{i}",
            metadata={
                "source": f"s{i}.txt",
                "relevance_score": 0.1 * i,
                "page": i,
                "tags": ["a", i],
                "nested": {"k": [1, 2, {"x": None}]},
                "when": datetime.date(2024, 1, 1 + i),
                "none": None,
            },
        )
        for i, t in enumerate(TEXTS)
    ]


class EventLog(BaseCallbackHandler):
    """Collects ragprune_compression events; thread-safe."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == EVENT_NAME:
            with self._lock:
                self.events.append(data)


def compressor(**kw: Any) -> RagpruneCompressor:
    stage = Pipeline([LexicalReranker(top_n=3), FakeCompressor(rate=0.6)])
    return RagpruneCompressor(stage=stage, **kw)


def check_outputs(out: Sequence[Document], inputs: list[Document], snapshot: list[Document], *,
                  direct: bool = True) -> None:
    """The adapter guarantees, given the inputs and a deep copy taken before the call.

    ``direct=False``: ``out`` went through several passes, so the record describes the last one.
    """
    assert [d.model_dump() for d in inputs] == [d.model_dump() for d in snapshot]  # never mutated
    ids = [d.id for d in out]
    assert len(set(ids)) == len(ids)
    by_id = {d.id: d for d in inputs}
    for doc in out:
        rec = doc.metadata[METADATA_KEY]
        src = by_id[doc.id]
        if direct:
            assert inputs[rec["index"]] is src
        assert doc is not src and doc.metadata is not src.metadata
        assert {k: v for k, v in doc.metadata.items() if k != METADATA_KEY} == src.metadata
        assert all(doc.metadata[k] is v for k, v in src.metadata.items())  # shallow copy
        # Extractive: the text is a subsequence of whole pieces of the original.
        pos = 0
        for piece in doc.page_content.split(" "):
            found = src.page_content.find(piece, pos)
            assert found >= 0
            pos = found + len(piece)
        assert rec["tokens_after"] == WordCounter().count(doc.page_content)
        if direct:
            assert rec["tokens_before"] == WordCounter().count(src.page_content)
        assert rec["rate"] == (rec["tokens_after"] / rec["tokens_before"] if rec["tokens_before"] else 1.0)


def core_result(stage: Any, query: str | None, docs: list[Document]) -> Any:
    passages = [Passage.from_text(d.page_content, i, score=d.metadata.get("relevance_score"))
                for i, d in enumerate(docs)]
    return Pipeline([stage]).run(query, passages)


# --------------------------------------------------------------------------- compressor


def test_compressor_matches_core_and_keeps_identity() -> None:
    docs = make_docs()
    snapshot = copy.deepcopy(docs)
    comp = compressor()
    out = comp.compress_documents(docs, QUERY)
    check_outputs(out, docs, snapshot)
    expected = core_result(comp.stage, QUERY, docs)
    assert [d.metadata[METADATA_KEY]["index"] for d in out] == [p.index for p in expected.passages]
    assert [d.page_content for d in out] == [p.text for p in expected.passages]
    assert [d.id for d in out] == [docs[p.index].id for p in expected.passages]
    for doc, p in zip(out, expected.passages, strict=True):
        rec = doc.metadata[METADATA_KEY]
        assert rec["score"] == p.score
        assert rec["previous_score"] == docs[p.index].metadata["relevance_score"]
        assert rec["scored_by"] == "lexical-reranker" and rec["scores"] == [list(x) for x in p.scores]
        assert rec["spans"] == [list(x) for x in p.spans]
        assert p.text == render_spans(p.original, p.spans)
    assert out[0].page_content.startswith("Paris")  # the reranker's order, not the input's


def test_previous_score_from_score_key_and_earlier_pass() -> None:
    docs = [Document("Paris is the capital of France.", metadata={"score": 0.7}),
            Document("Paris again, capital of France.", metadata={"score": "high"})]
    first = compressor().compress_documents(docs, QUERY)
    by_index = {d.metadata[METADATA_KEY]["index"]: d for d in first}
    assert by_index[0].metadata[METADATA_KEY]["previous_score"] == 0.7
    assert by_index[1].metadata[METADATA_KEY]["previous_score"] is None  # not a number: not a score
    assert by_index[1].metadata["score"] == "high"
    second = RagpruneTransformer(stage=FakeCompressor(rate=0.5)).transform_documents(first)
    for before, after in zip(first, second, strict=True):
        assert after.metadata[METADATA_KEY]["previous_score"] == before.metadata[METADATA_KEY]["score"]
        assert after.metadata[METADATA_KEY]["score"] is None
        assert after.id == before.id


def test_drops_are_reported_in_the_event() -> None:
    docs = make_docs()
    log = EventLog()
    out = compressor().compress_documents(docs, QUERY, callbacks=[log])
    assert len(log.events) == 1
    ev = log.events[0]
    assert ev["source"] == "RagpruneCompressor"
    kept = {d.metadata[METADATA_KEY]["index"] for d in out}
    dropped = {d["index"] for d in ev["dropped"]}
    assert kept.isdisjoint(dropped) and kept | dropped == set(range(len(docs)))
    for d in ev["dropped"]:
        assert d["id"] == docs[d["index"]].id
        assert d["stage"] == "lexical-reranker" and "top_n=3" in d["reason"]
    stats = ev["stats"]
    assert stats["passages_in"] == len(docs) and stats["passages_out"] == len(out)
    assert stats["tokens_after"] == sum(d.metadata[METADATA_KEY]["tokens_after"] for d in out)
    assert stats["tokens_before"] == sum(WordCounter().count(d.page_content) for d in docs)
    assert stats["tokens_saved"] == stats["tokens_before"] - stats["tokens_after"]


def test_budget_int_means_max_tokens_and_is_respected() -> None:
    docs = make_docs()
    log = EventLog()
    comp = RagpruneCompressor(stage=LexicalReranker(), budget=12)
    assert comp.budget == Budget(max_tokens=12)
    out = comp.compress_documents(docs, QUERY, callbacks=[log])
    assert sum(d.metadata[METADATA_KEY]["tokens_after"] for d in out) <= 12
    assert log.events[0]["stats"]["tokens_after"] <= 12
    assert any(d["stage"] == "budget" for d in log.events[0]["dropped"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.text(alphabet=st.sampled_from(list("ab cd.\n北🚀")), max_size=40), max_size=8),
    query=st.text(alphabet=st.sampled_from(list("ab cd")), min_size=1, max_size=10).filter(str.strip),
    top_n=st.integers(0, 5),
    max_tokens=st.integers(0, 30),
)
def test_nothing_silently_lost(texts: list[str], query: str, top_n: int, max_tokens: int) -> None:
    docs = [Document(t, id=str(i), metadata={"i": i}) for i, t in enumerate(texts)]
    snapshot = copy.deepcopy(docs)
    log = EventLog()
    comp = RagpruneCompressor(stage=Pipeline([LexicalReranker(top_n=top_n), FakeCompressor(rate=0.5)]),
                              budget=Budget(max_tokens=max_tokens))
    out = comp.compress_documents(docs, query, callbacks=[log])
    check_outputs(out, docs, snapshot)
    kept = [d.metadata[METADATA_KEY]["index"] for d in out]
    dropped = [d["index"] for d in log.events[0]["dropped"]]
    assert sorted(kept + dropped) == list(range(len(docs)))
    assert sum(d.metadata[METADATA_KEY]["tokens_after"] for d in out) <= max_tokens


def test_query_required() -> None:
    docs = make_docs()
    for bad in (None, "", "   "):
        with pytest.raises(ValueError, match=r"needs a non-empty query.*LexicalReranker"):
            compressor().compress_documents(docs, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query must be str"):
        compressor().compress_documents(docs, 3)  # type: ignore[arg-type]
    # A query-free stage accepts no query.
    out = RagpruneCompressor(stage=FakeCompressor()).compress_documents(docs, None)
    assert len(out) == len(docs)


async def test_query_required_async() -> None:
    with pytest.raises(ValueError, match="needs a non-empty query"):
        await compressor().acompress_documents(make_docs(), None)  # type: ignore[arg-type]


def test_empty_inputs_and_blank_documents() -> None:
    log = EventLog()
    assert compressor().compress_documents([], QUERY, callbacks=[log]) == []
    assert log.events[0]["stats"]["passages_in"] == 0 and log.events[0]["dropped"] == []
    docs = [Document(""), Document("  \n "), Document("Paris, the capital of France.")]
    out = RagpruneCompressor(stage=FakeCompressor(rate=0.5)).compress_documents(docs, QUERY)
    assert [d.page_content for d in out[:2]] == ["", "  \n "]  # blank passes through unchanged
    assert out[2].page_content == "Paris, the capital"


def test_bad_inputs() -> None:
    comp = compressor()
    with pytest.raises(TypeError, match="sequence of Document"):
        comp.compress_documents(Document("x"), QUERY)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        comp.compress_documents([Document("x"), "y"], QUERY)  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        RagpruneCompressor(stage=FakeCompressor(), bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="apply"):
        RagpruneCompressor(stage=object())


def test_compressor_accepts_a_generator_and_plain_stage() -> None:
    docs = make_docs()
    out = RagpruneCompressor(stage=LexicalReranker()).compress_documents((d for d in docs), QUERY)
    assert len(out) == len(docs)


async def test_async_equals_sync_and_concurrent_calls_do_not_interfere() -> None:
    docs = make_docs()
    comp = compressor(budget=Budget(max_tokens=25))
    queries = [QUERY, "the river spree in berlin", "cat dog mat", "emoji survive", "spain italy"] * 4
    expected = [[d.model_dump() for d in comp.compress_documents(docs, q)] for q in queries]
    results = await asyncio.gather(*(comp.acompress_documents(docs, q) for q in queries))
    assert [[d.model_dump() for d in r] for r in results] == expected


async def test_async_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    class Probe(LexicalReranker):
        def _process(self, query: str | None, passages: list[Passage]) -> Any:
            seen.append(threading.get_ident())
            return super()._process(query, passages)

    log = EventLog()
    out = await RagpruneCompressor(stage=Probe()).acompress_documents(make_docs(), QUERY, callbacks=[log])
    assert seen and all(t != loop_thread for t in seen)
    assert len(out) == len(TEXTS) and len(log.events) == 1


def test_event_inside_a_runnable_without_explicit_callbacks() -> None:
    comp = compressor()
    log = EventLog()
    chain = RunnableLambda(lambda q: comp.compress_documents(make_docs(), q))
    chain.invoke(QUERY, {"callbacks": [log]})
    assert len(log.events) == 1
    chain.invoke(QUERY)  # no handlers anywhere: no event, no error


# --------------------------------------------------------------------------- transformer


def test_transformer_query_free() -> None:
    docs = make_docs()
    snapshot = copy.deepcopy(docs)
    log = EventLog()
    tr = RagpruneTransformer(stage=FakeCompressor(rate=0.5), budget=Budget(max_tokens=20))
    out = tr.transform_documents(docs, callbacks=[log])
    check_outputs(out, docs, snapshot)
    assert sum(d.metadata[METADATA_KEY]["tokens_after"] for d in out) <= 20
    assert len(log.events) == 1
    with pytest.raises(ValueError, match="needs a query"):
        RagpruneTransformer(stage=LexicalReranker())
    with pytest.raises(TypeError, match="unexpected keyword"):
        tr.transform_documents(docs, query=QUERY)


async def test_transformer_async_equals_sync() -> None:
    tr = RagpruneTransformer(stage=Pipeline([LongContextReorder(by_score=True), FakeCompressor(rate=0.4)]))
    docs = make_docs()
    assert [d.model_dump() for d in await tr.atransform_documents(docs)] == [
        d.model_dump() for d in tr.transform_documents(docs)
    ]


# --------------------------------------------------------------------------- retrievers


class ListRetriever(BaseRetriever):
    """Returns its documents, best lexical overlap first (the candidates a vector store would give)."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return list(self.docs)


def test_contextual_compression_retriever_and_document_compressor_pipeline() -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline

    docs = make_docs()
    snapshot = copy.deepcopy(docs)
    pipeline = DocumentCompressorPipeline(transformers=[
        RagpruneCompressor(stage=LexicalReranker(top_n=3)),
        RagpruneTransformer(stage=FakeCompressor(rate=0.5)),
    ])
    retriever = ContextualCompressionRetriever(base_compressor=pipeline, base_retriever=ListRetriever(docs=docs))
    log = EventLog()
    out = retriever.invoke(QUERY, config={"callbacks": [log]})
    check_outputs(out, docs, snapshot, direct=False)
    expected = RagpruneTransformer(stage=FakeCompressor(rate=0.5)).transform_documents(
        RagpruneCompressor(stage=LexicalReranker(top_n=3)).compress_documents(docs, QUERY))
    assert [d.model_dump() for d in out] == [d.model_dump() for d in expected]
    assert len(out) == 3
    assert sorted(d["id"] for d in log.events[0]["dropped"]) == sorted({d.id for d in docs} - {d.id for d in out})


async def test_contextual_compression_retriever_async() -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    docs = make_docs()
    comp = compressor()
    retriever = ContextualCompressionRetriever(base_compressor=comp, base_retriever=ListRetriever(docs=docs))
    log = EventLog()
    out = await retriever.ainvoke(QUERY, config={"callbacks": [log]})
    assert [d.model_dump() for d in out] == [d.model_dump() for d in comp.compress_documents(docs, QUERY)]
    assert len(log.events) == 1 and len(log.events[0]["dropped"]) == len(docs) - 3


def test_ragprune_retriever_k_and_events() -> None:
    docs = make_docs()
    snapshot = copy.deepcopy(docs)
    log = EventLog()
    retriever = RagpruneRetriever(base_retriever=ListRetriever(docs=docs), stage=LexicalReranker(), budget=100, k=4)
    out = retriever.invoke(QUERY, config={"callbacks": [log]})
    check_outputs(out, docs, snapshot)
    assert len(out) == 4
    assert sum(d.metadata[METADATA_KEY]["tokens_after"] for d in out) <= 100
    ev = log.events[0]
    assert ev["source"] == "RagpruneRetriever"
    assert {d["stage"] for d in ev["dropped"]} == {"top-n"}  # the core TopN stage caps at k
    assert sorted([d.metadata[METADATA_KEY]["index"] for d in out] + [d["index"] for d in ev["dropped"]]) == list(
        range(len(docs)))
    assert len(retriever.invoke(QUERY, k=2)) == 2
    with pytest.raises(ValueError, match="k must be"):
        retriever.invoke(QUERY, k=-1)
    with pytest.raises(ValidationError):
        RagpruneRetriever(base_retriever=ListRetriever(docs=docs), stage=LexicalReranker(), k=-1)


async def test_ragprune_retriever_async_equals_sync() -> None:
    retriever = RagpruneRetriever(base_retriever=ListRetriever(docs=make_docs()),
                                  stage=Pipeline([LexicalReranker(), FakeCompressor(rate=0.5)]), budget=30)
    log = EventLog()
    a = await retriever.ainvoke(QUERY, config={"callbacks": [log]})
    assert [d.model_dump() for d in a] == [d.model_dump() for d in retriever.invoke(QUERY)]
    assert len(log.events) == 1
    with pytest.raises(ValueError, match="needs a non-empty query"):
        await retriever.ainvoke("  ")


class TestRagpruneRetrieverStandard(RetrieversIntegrationTests):
    """langchain-tests' standard retriever suite."""

    @property
    def retriever_constructor(self) -> type[RagpruneRetriever]:
        return RagpruneRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"base_retriever": ListRetriever(docs=make_docs()), "stage": LexicalReranker(),
                "budget": Budget(max_tokens=1000)}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


# --------------------------------------------------------------------------- runnable


def test_runnable_input_shapes() -> None:
    docs = make_docs()
    comp = compressor()
    expected = [d.model_dump() for d in comp.compress_documents(docs, QUERY)]
    run = as_runnable(comp)
    for value in ({"question": QUERY, "context": docs}, {"query": QUERY, "documents": docs, "other": 1}):
        assert [d.model_dump() for d in run.invoke(value)] == expected
    bound = as_runnable(comp.stage, query=QUERY)
    assert [d.model_dump() for d in bound.invoke(docs)] == expected
    with pytest.raises(ValueError, match="needs a non-empty query"):
        as_runnable(comp).invoke(docs)
    with pytest.raises(ValueError, match="documents"):
        run.invoke({"question": QUERY})
    with pytest.raises(ValueError, match="belong to the RagpruneCompressor"):
        as_runnable(comp, budget=10)


async def test_runnable_async_and_event() -> None:
    docs = make_docs()
    run = as_runnable(LexicalReranker(top_n=2), budget=50)
    log = EventLog()
    out = await run.ainvoke({"question": QUERY, "context": docs}, {"callbacks": [log]})
    assert [d.model_dump() for d in out] == [d.model_dump() for d in run.invoke({"question": QUERY, "context": docs})]
    assert len(out) == 2 and len(log.events) == 1 and len(log.events[0]["dropped"]) == len(docs) - 2


async def test_astream_events_shows_the_custom_event() -> None:
    run = as_runnable(LexicalReranker(top_n=1))
    names = [e["name"] async for e in run.astream_events({"question": QUERY, "context": make_docs()})
             if e["event"] == "on_custom_event"]
    assert names == [EVENT_NAME]


# --------------------------------------------------------------------------- end to end: MiniLM + FAISS


CORPUS = [
    "Paris is the capital and most populous city of France. It is located on the Seine river, in the north of "
    "the country. The city is known for the Eiffel Tower, built in 1889 for the World's Fair.",
    "Berlin is the capital of Germany. The city lies on the banks of the Spree and the Havel rivers. The Berlin "
    "Wall divided the city from 1961 to 1989.",
    "Madrid is the capital of Spain, located in the centre of the Iberian Peninsula. The Prado museum holds one "
    "of the finest collections of European art.",
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It was designed by the "
    "company of the engineer Gustave Eiffel and is 330 metres tall.",
    "Rome is the capital city of Italy. According to legend it was founded by Romulus in 753 BC. The Tiber "
    "river flows through the city.",
    "Photosynthesis is the process by which green plants turn light, water and carbon dioxide into glucose "
    "and oxygen. It takes place in the chloroplasts.",
    "The Seine is a 777-kilometre river in northern France. It flows through Paris and into the English "
    "Channel at Le Havre.",
    "Mount Everest is the highest mountain above sea level, at 8,849 metres, on the border of Nepal and China.",
]


class FaissRetriever(BaseRetriever):
    """Inner-product search over normalized MiniLM embeddings; the score goes to metadata."""

    embeddings: Any
    docs: list[Document]
    k: int = 4
    _index: Any = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        import faiss
        import numpy as np

        vectors = np.asarray(self.embeddings.embed_documents([d.page_content for d in self.docs]), dtype="float32")
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        import numpy as np

        q = np.asarray([self.embeddings.embed_query(query)], dtype="float32")
        scores, ids = self._index.search(q, self.k)
        return [self.docs[i].model_copy(update={"metadata": {**self.docs[i].metadata, "score": float(s)}})
                for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]


class RecordingLLM(FakeListLLM):
    """Answers from a list and records every prompt it receives."""

    prompts: list[str] = Field(default_factory=list)

    def _call(self, prompt: str, *args: Any, **kwargs: Any) -> str:
        self.prompts.append(prompt)
        return super()._call(prompt, *args, **kwargs)

    async def _acall(self, prompt: str, *args: Any, **kwargs: Any) -> str:
        self.prompts.append(prompt)
        return await super()._acall(prompt, *args, **kwargs)


@pytest.fixture(scope="module")
def faiss_retriever(minilm_path: Path) -> FaissRetriever:
    embeddings = RagpruneEmbeddings(minilm_path, device="cpu", local_files_only=True)
    docs = [Document(t, id=f"c{i}", metadata={"source": f"c{i}"}) for i, t in enumerate(CORPUS)]
    return FaissRetriever(embeddings=embeddings, docs=docs, k=4)


def _format(docs: list[Document]) -> str:
    return "\n\n".join(d.page_content for d in docs)


def _chain(retriever: BaseRetriever, llm: RecordingLLM, compress: Any | None) -> Any:
    prompt = PromptTemplate.from_template("Answer from the context.\n\nContext:\n{context}\n\nQuestion: {question}")
    # RunnablePassthrough.assign hands the whole {"context", "question"} mapping to ``context``.
    pick = RunnableLambda(lambda x: x["context"]) if compress is None else compress
    context = pick | RunnableLambda(_format)
    return (
        {"context": retriever, "question": RunnablePassthrough()}
        | RunnablePassthrough.assign(context=context)
        | prompt
        | llm
    )


@pytest.mark.slow
def test_lcel_rag_chain_over_faiss_minilm(faiss_retriever: FaissRetriever) -> None:
    question = "Which river flows through Paris?"
    retrieved = faiss_retriever.invoke(question)
    assert {d.id for d in retrieved} >= {"c6"}  # the Seine paragraph is found by MiniLM
    plain_llm = RecordingLLM(responses=["The Seine."])
    _chain(faiss_retriever, plain_llm, None).invoke(question)

    compress = as_runnable(Pipeline([LongContextReorder(by_score=True), FakeCompressor(rate=0.5)]),
                           budget=Budget(max_tokens=60))
    llm = RecordingLLM(responses=["The Seine."])
    log = EventLog()
    answer = _chain(faiss_retriever, llm, compress).invoke(question, {"callbacks": [log]})
    assert answer == "The Seine."
    (plain_prompt,), (prompt,) = plain_llm.prompts, llm.prompts
    compressed = compress.invoke({"question": question, "context": retrieved})
    assert compressed and _format(compressed) in prompt
    for doc in compressed:
        assert doc.metadata[METADATA_KEY]["previous_score"] == doc.metadata["score"]
    counter = WordCounter()
    assert counter.count(prompt) < counter.count(plain_prompt)
    ev = log.events[0]
    assert ev["stats"]["tokens_after"] <= 60 < ev["stats"]["tokens_before"]
    assert ev["stats"]["passages_out"] + len(ev["dropped"]) == ev["stats"]["passages_in"] == len(retrieved)


@pytest.mark.slow
async def test_lcel_rag_chain_over_faiss_minilm_async(faiss_retriever: FaissRetriever) -> None:
    question = "Who designed the Eiffel Tower?"
    reranked = RagpruneRetriever(base_retriever=faiss_retriever, stage=LexicalReranker(), budget=40, k=2)
    llm = RecordingLLM(responses=["Eiffel."])
    await _chain(reranked, llm, None).ainvoke(question)
    docs = reranked.invoke(question)
    assert len(docs) <= 2 and _format(docs) in llm.prompts[0]
    assert sum(d.metadata[METADATA_KEY]["tokens_after"] for d in docs) <= 40

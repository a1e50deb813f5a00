"""RagpruneEmbeddings (LangChain) and RagpruneEmbedding (LlamaIndex) over ragprune's bi-encoder."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.documents import Document
from langchain_tests.unit_tests import EmbeddingsUnitTests
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ragprune import BiEncoderModel, ModelLoadError
from ragprune.integrations.langchain import RagpruneEmbeddings
from ragprune.integrations.llamaindex import RagpruneEmbedding

TEXTS = ["the capital of france is paris.", "a cat sat on the mat.", "", "北京是中国的首都。",
         "the capital of france is paris.", "which river is in berlin?"]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain BERT encoder (mean pooling), hidden 32, saved as safetensors."""
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert-encoder")
    tok = save_wordpiece_tokenizer(path)
    save_tiny_model(path, BertModel, BertConfig(vocab_size=len(tok), **TINY_BERT))
    return path


@pytest.fixture(scope="module")
def lc(tiny_encoder: Path) -> RagpruneEmbeddings:
    return RagpruneEmbeddings(tiny_encoder, device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def li(lc: RagpruneEmbeddings) -> RagpruneEmbedding:
    return RagpruneEmbedding(lc.encoder)


@pytest.fixture(scope="module")
def minilm(minilm_path: Path) -> RagpruneEmbeddings:
    return RagpruneEmbeddings(minilm_path, device="cpu", local_files_only=True)


CORPUS = [
    "Paris is the capital and most populous city of France. The Seine flows through it.",
    "Berlin is the capital of Germany and lies on the river Spree.",
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen in green plants.",
    "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
    "The domestic cat is a small carnivorous mammal that sleeps for most of the day.",
]


# --------------------------------------------------------------------------- shapes, norms, symmetry


def test_langchain_vectors_are_unit_norm_and_in_input_order(lc: RagpruneEmbeddings, tiny_encoder: Path) -> None:
    vectors = np.asarray(lc.embed_documents(TEXTS))
    assert vectors.shape == (len(TEXTS), 32)
    assert vectors.dtype == np.float64  # plain Python floats
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[4])  # duplicates get the same vector
    assert not np.allclose(vectors[0], vectors[1])
    # Same vectors as the bi-encoder itself, one by one or in a batch.
    direct = BiEncoderModel(tiny_encoder, device="cpu", local_files_only=True).encode(TEXTS)
    np.testing.assert_allclose(vectors, direct, atol=1e-6)
    assert lc.embed_documents([]) == []


@pytest.mark.parametrize("text", TEXTS)
def test_query_equals_document_embedding(lc: RagpruneEmbeddings, li: RagpruneEmbedding, text: str) -> None:
    q = lc.embed_query(text)
    assert isinstance(q, list) and all(isinstance(x, float) for x in q)
    np.testing.assert_allclose(q, lc.embed_documents([text])[0], atol=1e-6)
    np.testing.assert_allclose(li.get_query_embedding(text), li.get_text_embedding(text), atol=1e-6)
    np.testing.assert_allclose(li.get_query_embedding(text), q, atol=1e-6)


def test_batch_size_does_not_change_the_vectors(tiny_encoder: Path, lc: RagpruneEmbeddings) -> None:
    small = RagpruneEmbeddings(tiny_encoder, device="cpu", local_files_only=True, batch_size=1)
    np.testing.assert_allclose(small.embed_documents(TEXTS), lc.embed_documents(TEXTS), atol=1e-5)
    li_small = RagpruneEmbedding(tiny_encoder, device="cpu", local_files_only=True, batch_size=2)
    assert li_small.embed_batch_size == 2
    np.testing.assert_allclose(li_small.get_text_embedding_batch(TEXTS), lc.embed_documents(TEXTS), atol=1e-5)


def test_normalize_false_gives_raw_mean_pooled_vectors(tiny_encoder: Path, lc: RagpruneEmbeddings) -> None:
    raw = np.asarray(RagpruneEmbeddings(tiny_encoder, device="cpu", normalize=False).embed_documents(TEXTS))
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0)
    np.testing.assert_allclose(raw / norms[:, None], lc.embed_documents(TEXTS), atol=1e-5)
    li_raw = RagpruneEmbedding(tiny_encoder, device="cpu", normalize=False)
    np.testing.assert_allclose(li_raw.get_text_embedding_batch(TEXTS), raw, atol=1e-5)


def test_normalize_applies_to_a_non_normalizing_encoder(tiny_encoder: Path, lc: RagpruneEmbeddings) -> None:
    enc = BiEncoderModel(tiny_encoder, device="cpu", normalize=False)
    for vectors in (RagpruneEmbeddings(enc).embed_documents(TEXTS),
                    RagpruneEmbedding(enc).get_text_embedding_batch(TEXTS)):
        np.testing.assert_allclose(vectors, lc.embed_documents(TEXTS), atol=1e-5)


def test_a_loaded_encoder_is_shared_not_reloaded(lc: RagpruneEmbeddings, li: RagpruneEmbedding) -> None:
    assert RagpruneEmbeddings(lc.encoder).encoder is lc.encoder
    assert li.encoder is lc.encoder
    assert li.device == str(lc.encoder.device)
    assert li.model_name == lc.encoder.name


# --------------------------------------------------------------------------- async and threads


async def test_async_variants_match_sync(lc: RagpruneEmbeddings, li: RagpruneEmbedding) -> None:
    sync_docs = lc.embed_documents(TEXTS)
    np.testing.assert_allclose(await lc.aembed_documents(TEXTS), sync_docs, atol=1e-6)
    np.testing.assert_allclose(await lc.aembed_query(TEXTS[1]), sync_docs[1], atol=1e-6)
    np.testing.assert_allclose(await li.aget_query_embedding(TEXTS[1]), sync_docs[1], atol=1e-6)
    np.testing.assert_allclose(await li.aget_text_embedding(TEXTS[3]), sync_docs[3], atol=1e-6)
    np.testing.assert_allclose(await li.aget_text_embedding_batch(TEXTS), sync_docs, atol=1e-5)
    # Concurrent calls on one event loop.
    many = await asyncio.gather(*(li.aget_query_embedding(t) for t in TEXTS))
    np.testing.assert_allclose(many, sync_docs, atol=1e-6)


def test_concurrent_threads_share_one_model(lc: RagpruneEmbeddings) -> None:
    expected = lc.embed_documents(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: lc.embed_documents(TEXTS), range(8)))
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-6)


# --------------------------------------------------------------------------- construction and bad input


def test_a_bad_path_raises_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        RagpruneEmbeddings(missing, local_files_only=True)
    with pytest.raises(ModelLoadError, match="no-such-model"):
        RagpruneEmbedding(str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="empty"):
        RagpruneEmbeddings(empty)
    with pytest.raises(ModelLoadError, match="empty"):
        RagpruneEmbedding(empty)


def test_a_local_path_never_needs_the_network(tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline mode off and local_files_only=False: sockets are blocked, so any hub call would fail.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert len(RagpruneEmbeddings(tiny_encoder, device="cpu").embed_query("paris")) == 32
    assert len(RagpruneEmbedding(str(tiny_encoder), device="cpu").get_query_embedding("paris")) == 32


def test_bad_arguments(lc: RagpruneEmbeddings, tiny_encoder: Path) -> None:
    with pytest.raises(TypeError, match="text"):
        lc.embed_query(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        lc.embed_documents(["a", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="texts"):
        lc.embed_documents("a single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RagpruneEmbeddings(tiny_encoder, batch_size=0)
    with pytest.raises(ValueError):
        RagpruneEmbeddings(tiny_encoder, no_such_option=1)  # extra fields are refused
    with pytest.raises(ValueError):
        RagpruneEmbedding(tiny_encoder, batch_size=0)
    with pytest.raises(TypeError, match="model"):
        RagpruneEmbeddings(42)


def test_llamaindex_embedding_serializes_without_the_model(li: RagpruneEmbedding) -> None:
    data = li.to_dict()
    assert data["class_name"] == "RagpruneEmbedding"
    assert data["normalize"] is True and data["model_name"] == li.model_name
    assert "_encoder" not in data and "encoder" not in data


# --------------------------------------------------------------------------- LangChain standard suite


class TestRagpruneEmbeddingsStandard(EmbeddingsUnitTests):
    _params: ClassVar[dict[str, Any]] = {}

    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_encoder: Path) -> None:
        type(self)._params = {"model": str(tiny_encoder), "device": "cpu", "local_files_only": True}

    @property
    def embeddings_class(self) -> type[RagpruneEmbeddings]:
        return RagpruneEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return dict(self._params)


# --------------------------------------------------------------------------- inside the frameworks (real MiniLM)


def test_langchain_vector_store(minilm: RagpruneEmbeddings) -> None:
    # (LangChain's EmbeddingsFilter needs langchain-community, which the test set-up does not install;
    # the benchmark runs it with the "peers" extra.)
    from langchain_core.vectorstores import InMemoryVectorStore

    docs = [Document(t, id=f"d{i}", metadata={"i": i}) for i, t in enumerate(CORPUS)]
    store = InMemoryVectorStore.from_documents(docs, minilm)
    hits = store.similarity_search("How do plants make glucose?", k=1)
    assert [d.metadata["i"] for d in hits] == [2]
    ranked = store.similarity_search_with_score("Which river flows through Paris?", k=2)
    assert ranked[0][0].metadata["i"] == 0 and ranked[0][1] > ranked[1][1]


def test_llamaindex_vector_index_and_sentence_optimizer(minilm: RagpruneEmbeddings) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.postprocessor.optimizer import SentenceEmbeddingOptimizer

    embed = RagpruneEmbedding(minilm.encoder)
    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(CORPUS)]
    index = VectorStoreIndex(nodes, embed_model=embed)
    hits = index.as_retriever(similarity_top_k=2).retrieve("What is the tallest mountain in the world?")
    assert hits[0].node.node_id == "n3"
    assert hits[0].score is not None and hits[0].score > hits[1].score

    optimizer = SentenceEmbeddingOptimizer(embed_model=embed, percentile_cutoff=0.5)
    out = optimizer.postprocess_nodes([NodeWithScore(node=nodes[0].model_copy())],
                                      query_bundle=QueryBundle(query_str="Which river flows through Paris?"))
    assert len(out) == 1 and "Seine" in out[0].node.get_content()

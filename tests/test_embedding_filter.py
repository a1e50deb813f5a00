"""BiEncoderModel and EmbeddingFilter on a tiny random sentence-transformers model and the real MiniLM."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragprune
import ragprune.stages.embedding_filter as ef_module
from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer
from ragprune import Passage, WordCounter, render_spans
from ragprune.runtime.encoders import BiEncoderModel
from ragprune.stages.embedding_filter import EmbeddingFilter, near_duplicate_pairs

QUERY = "what is the capital of france"
TEXTS = [
    "paris is the capital of france.",
    "the cat sat on the mat.",
    "berlin is a large city in germany",
    "the river of paris",
    "a dog and a cat",
    "first question, small answer",
]
DOC = (
    "paris is the capital of france. the cat sat on the mat! "
    "berlin is a large city in germany. what is the answer? the dog sat."
)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; a busy shared box makes extra threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_bert_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain tiny BertModel (no sentence-transformers files)."""
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert-encoder")
    tok = save_wordpiece_tokenizer(path)
    vocab_size = max(tok.get_vocab().values()) + 1  # the shared vocabulary repeats a few entries
    config = BertConfig(vocab_size=vocab_size, initializer_range=0.3, **TINY_BERT)
    save_tiny_model(path, BertModel, config, seed=5)
    return path


@pytest.fixture(scope="module")
def tiny_st_path(tiny_bert_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same BERT saved as a sentence-transformers model: Transformer + mean Pooling."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    path = tmp_path_factory.mktemp("tiny-st")
    modules = [Transformer(str(tiny_bert_encoder), max_seq_length=64), Pooling(TINY_BERT["hidden_size"], "mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(path))
    assert (path / "modules.json").is_file() and (path / "1_Pooling").is_dir()
    return path


@pytest.fixture(scope="module")
def encoder(tiny_st_path: Path) -> BiEncoderModel:
    return BiEncoderModel(tiny_st_path, batch_size=4)


def _cos(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def _passages(texts: list[str] = TEXTS) -> list[Passage]:
    return [Passage.from_text(t, i, score=10.0 - i, metadata={"id": f"doc-{i}"}) for i, t in enumerate(texts)]


def _kept_units(src: Passage, out: Passage) -> list[tuple[int, int]]:
    """The sentences of ``src`` that ``out`` keeps; they must tile ``out``'s spans (up to whitespace)."""
    assert out.spans is not None and src.original is not None
    units = [u for u in src.units("sentence") if any(a <= u[0] < b for a, b in out.spans)]
    assert {a for a, _ in out.spans} <= {a for a, _ in units}

    def squash(pieces: list[str]) -> str:
        return "".join("".join(pieces).split())

    assert squash([src.original[a:b] for a, b in units]) == squash(out.pieces())
    return units


def _check_extractive(p: Passage) -> None:
    assert p.original is not None and p.spans is not None
    assert p.text == render_spans(p.original, p.spans)
    assert all(0 <= a < b <= len(p.original) for a, b in p.spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(p.spans, p.spans[1:], strict=False))


# --------------------------------------------------------------------------- the model wrapper


def test_sentence_transformers_checkpoint_encodes(encoder: BiEncoderModel) -> None:
    texts = [*TEXTS, "", "北京是中国的首都。", "emoji 🎉 here", TEXTS[0]]
    emb = encoder.encode(texts)
    assert emb.dtype == np.float32 and emb.shape == (len(texts), 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(emb[0], emb[-1])  # identical texts, identical rows
    single = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(emb, single, atol=1e-5)  # input order kept across sorted batches
    np.testing.assert_array_equal(encoder.encode(texts), emb)  # deterministic
    assert encoder.encode([]).shape == (0, 32)
    assert "sentence-transformers" in repr(encoder) and encoder.max_length == 64


def test_plain_encoder_mean_pooling_matches_sentence_transformers(tiny_bert_encoder: Path,
                                                                   encoder: BiEncoderModel) -> None:
    plain = BiEncoderModel(tiny_bert_encoder, batch_size=3, max_length=64)  # the saved max_seq_length
    assert "mean-pooled" in repr(plain)
    texts = [*TEXTS, "北京是中国的首都。", "the " * 200]
    np.testing.assert_allclose(plain.encode(texts), encoder.encode(texts), atol=1e-5)
    raw = BiEncoderModel(tiny_bert_encoder, normalize=False).encode(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_loaded_objects_are_accepted(tiny_bert_encoder: Path, tiny_st_path: Path, encoder: BiEncoderModel) -> None:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    st_model = SentenceTransformer(str(tiny_st_path), device="cpu", local_files_only=True)
    np.testing.assert_allclose(BiEncoderModel(st_model).encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    hf = AutoModel.from_pretrained(str(tiny_bert_encoder), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert_encoder), local_files_only=True)
    np.testing.assert_allclose(BiEncoderModel(hf, tokenizer=tok).encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)


def test_encode_input_checks_and_load_errors(encoder: BiEncoderModel, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="texts"):
        encoder.encode("one string")
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        encoder.encode([None])  # type: ignore[list-item]
    with pytest.raises(ragprune.ModelLoadError, match="missing"):
        BiEncoderModel(tmp_path / "missing")
    with pytest.raises(ragprune.ModelLoadError, match="not-a/real-model"):
        BiEncoderModel("not-a/real-model", local_files_only=True)
    with pytest.raises(ValueError, match="batch_size"):
        BiEncoderModel(encoder._st, batch_size=0)


def test_huge_text_is_cut_to_the_window(encoder: BiEncoderModel) -> None:
    huge = "the cat sat on the mat. " * 50_000
    a, b = encoder.encode([huge, huge[:5000]])
    np.testing.assert_allclose(a, b, atol=1e-6)


# --------------------------------------------------------------------------- passage level


def test_passage_level_sorts_by_cosine_and_keeps_identity(encoder: BiEncoderModel) -> None:
    stage = EmbeddingFilter(encoder)
    given_ = _passages()
    out = stage.process(QUERY, given_)
    assert out.dropped == ()
    q = encoder.encode([QUERY])[0]
    expected = {i: _cos(q, encoder.encode([t])[0]) for i, t in enumerate(TEXTS)}
    assert [p.index for p in out.passages] == sorted(expected, key=lambda i: (-expected[i], i))
    for p in out.passages:
        src = given_[p.index]
        assert p.score == pytest.approx(expected[p.index], abs=1e-5)
        assert p.text == src.text and p.spans == src.spans and p.metadata is src.metadata
        assert p.original_score == 10.0 - p.index and p.scores[-1] == ("embedding-filter", p.score)
    assert stage.apply(QUERY, given_) == list(out.passages)


def test_passage_level_threshold_top_n_and_budget(encoder: BiEncoderModel) -> None:
    ranked = EmbeddingFilter(encoder).apply(QUERY, TEXTS)
    cut = (ranked[2].score + ranked[3].score) / 2
    out = EmbeddingFilter(encoder, threshold=cut).process(QUERY, TEXTS)
    assert [p.index for p in out.passages] == [p.index for p in ranked[:3]]
    assert all("below threshold" in d.reason and d.score < cut for d in out.dropped)

    out = EmbeddingFilter(encoder, top_n=2).process(QUERY, TEXTS)
    assert [p.index for p in out.passages] == [p.index for p in ranked[:2]]
    assert [d.index for d in out.dropped] == [p.index for p in ranked[2:]]
    assert all("beyond top_n=2" in d.reason for d in out.dropped)

    counter = WordCounter()
    for budget in (0, 5, 9, 14, 100):
        out = EmbeddingFilter(encoder, max_tokens=budget).process(QUERY, TEXTS)
        assert sum(counter.count(p.text) for p in out.passages) <= budget
        assert len(out.passages) + len(out.dropped) == len(TEXTS)
        assert all("over token budget" in d.reason for d in out.dropped)
        # best-first: a dropped passage did not fit next to the better ones kept before it
        for d in out.dropped:
            better = [p for p in out.passages if p.score > d.score]
            assert sum(counter.count(p.text) for p in better) + counter.count(TEXTS[d.index]) > budget

    out = EmbeddingFilter(encoder, threshold=cut, top_n=1, max_tokens=100).process(QUERY, TEXTS)
    assert [p.index for p in out.passages] == [ranked[0].index]


def test_passage_level_duplicates_keep_the_better_one(encoder: BiEncoderModel) -> None:
    texts = [TEXTS[1], TEXTS[0], TEXTS[1], TEXTS[2], TEXTS[0]]
    out = EmbeddingFilter(encoder, redundancy_threshold=0.999).process(QUERY, texts)
    assert sorted(p.index for p in out.passages) == [0, 1, 3]
    reasons = {d.index: d.reason for d in out.dropped}
    assert set(reasons) == {2, 4}
    assert "near-duplicate of passage 0" in reasons[2] and "near-duplicate of passage 1" in reasons[4]
    assert "cosine 1.0000" in reasons[2]


def test_blank_passages(encoder: BiEncoderModel) -> None:
    texts = ["", TEXTS[0], "  \n ", TEXTS[1]]
    out = EmbeddingFilter(encoder).process(QUERY, texts)
    assert [p.index for p in out.passages][-2:] == [0, 2]  # kept, ranked last, unscored
    assert [p.score for p in out.passages][-2:] == [None, None]
    out = EmbeddingFilter(encoder, top_n=5).process(QUERY, texts)
    assert sorted(p.index for p in out.passages) == [1, 3]
    assert sorted(d.index for d in out.dropped) == [0, 2] and all("blank" in d.reason for d in out.dropped)
    assert EmbeddingFilter(encoder, level="sentence").apply(QUERY, ["", " "]) == [
        Passage.from_text("", 0), Passage.from_text(" ", 1)]


# --------------------------------------------------------------------------- sentence level


def test_sentence_level_is_extractive_and_in_order(encoder: BiEncoderModel) -> None:
    passages = [Passage.from_text(DOC, 0, metadata={"m": 1}),
                Passage.from_text("北京是中国的首都。北京是中国的首都。🎉 yes.", 1),
                Passage.from_text(" ", 2), Passage.from_text(TEXTS[4], 3, score=0.5)]
    for top_n in (1, 2, 3, 5, 100):
        out = EmbeddingFilter(encoder, level="sentence", top_n=top_n).process(QUERY, passages)
        kept_sentences = sum(len(_kept_units(passages[p.index], p)) for p in out.passages)
        assert kept_sentences <= top_n
        assert [p.index for p in out.passages] == sorted(p.index for p in out.passages)  # input order
        assert sorted([p.index for p in out.passages] + [d.index for d in out.dropped]) == [0, 1, 2, 3]
        for p in out.passages:
            _check_extractive(p)
            src = passages[p.index]
            assert p.original == src.original and p.metadata is src.metadata
        assert all(d.reason.startswith(("no sentence kept", "blank")) for d in out.dropped)


def test_sentence_level_scores_match_sentence_cosines(encoder: BiEncoderModel) -> None:
    p = Passage.from_text(DOC, 7, score=3.0)
    units = p.units("sentence")
    q = encoder.encode([QUERY])[0]
    cos = [_cos(q, encoder.encode([DOC[a:b]])[0]) for a, b in units]
    best = int(np.argmax(cos))
    out = EmbeddingFilter(encoder, level="sentence", top_n=1).apply(QUERY, [p])
    assert len(out) == 1 and _kept_units(p, out[0]) == [units[best]]
    assert out[0].score == pytest.approx(cos[best], abs=1e-5) and out[0].original_score == 3.0
    # threshold keeps exactly the sentences above it, in their order
    cut = sorted(cos)[len(cos) // 2] - 1e-4
    out = EmbeddingFilter(encoder, level="sentence", threshold=cut).apply(QUERY, [p])
    assert _kept_units(p, out[0]) == [u for u, c in zip(units, cos, strict=True) if c >= cut]
    # a passage with no sentence left is dropped with the reason of its best sentence
    res = EmbeddingFilter(encoder, level="sentence", threshold=max(cos) + 0.01).process(QUERY, [p])
    assert res.passages == () and "no sentence kept" in res.dropped[0].reason
    assert "below threshold" in res.dropped[0].reason and res.dropped[0].score == pytest.approx(max(cos), abs=1e-5)


def test_sentence_level_budget_and_cross_passage_duplicates(encoder: BiEncoderModel) -> None:
    passages = [Passage.from_text(DOC, 0), Passage.from_text("the cat sat on the mat! the river of paris.", 1)]
    counter = WordCounter()
    for budget in (3, 10, 20, 40):
        out = EmbeddingFilter(encoder, level="sentence", max_tokens=budget).apply(QUERY, passages)
        assert sum(counter.count(p.text) for p in out) <= budget
    out = EmbeddingFilter(encoder, level="sentence", redundancy_threshold=0.999).process(QUERY, passages)
    texts = " ".join(p.text for p in out.passages)
    assert texts.count("the cat sat on the mat!") == 1  # the repeated sentence is kept once


def test_one_encode_call_per_process(encoder: BiEncoderModel) -> None:
    calls: list[int] = []

    class Spy(BiEncoderModel):
        def encode(self, texts):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return super().encode(texts)

    spy = Spy(encoder._st)
    EmbeddingFilter(spy, level="sentence", top_n=3).apply(QUERY, [DOC, DOC, TEXTS[0], ""])
    assert calls == [1 + 5 + 5 + 1]  # the query and every sentence together


# --------------------------------------------------------------------------- near-duplicate search


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 4, 1), dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.08 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.mark.parametrize("threshold", [0.9, 0.95, 0.99])
def test_faiss_and_numpy_find_the_same_pairs(threshold: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ef_module, "_BLOCK", 37)  # several row blocks on the numpy path
    x = _clustered(400, 24, seed=int(threshold * 100))
    dense = near_duplicate_pairs(x, threshold)
    fast = near_duplicate_pairs(x, threshold, use_faiss=True)
    for u, v in zip(dense, fast, strict=True):
        np.testing.assert_array_equal(u, v)
    # and both equal a brute-force float64 reference
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(sims, -np.inf)
    i, j = np.nonzero(sims >= threshold)
    np.testing.assert_array_equal(dense[0], i)
    np.testing.assert_array_equal(dense[1], j)
    assert len(i) > 50  # the data really has near-duplicates


def test_stage_faiss_path_equals_numpy_path(encoder: BiEncoderModel, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[bool] = []
    real = ef_module.near_duplicate_pairs

    def spy(x: np.ndarray, threshold: float, *, use_faiss: bool = False):  # type: ignore[no-untyped-def]
        used.append(use_faiss)
        return real(x, threshold, use_faiss=use_faiss)

    monkeypatch.setattr(ef_module, "near_duplicate_pairs", spy)
    words = ["the", "cat", "sat", "paris", "capital", "france", "river", "dog", "berlin", "first"]
    rng = np.random.default_rng(0)
    passages = [" ".join(rng.choice(words, size=rng.integers(3, 8))) + ". " + TEXTS[k % len(TEXTS)]
                for k in range(160)]  # 320 sentences, many repeated
    kwargs = dict(level="sentence", redundancy_threshold=0.97, top_n=150)
    slow = EmbeddingFilter(encoder, faiss_min_items=10**9, **kwargs).process(QUERY, passages)
    fast = EmbeddingFilter(encoder, faiss_min_items=256, **kwargs).process(QUERY, passages)
    assert used == [False, True]
    assert slow == fast
    assert any("near-duplicate" in d.reason for d in fast.dropped) or len(fast.passages) < len(passages)
    slow = EmbeddingFilter(encoder, faiss_min_items=10**9, redundancy_threshold=0.97).process(QUERY, passages)
    fast = EmbeddingFilter(encoder, faiss_min_items=0, redundancy_threshold=0.97).process(QUERY, passages)
    assert slow == fast and any("near-duplicate" in d.reason for d in fast.dropped)


# --------------------------------------------------------------------------- misc


def test_input_validation(encoder: BiEncoderModel) -> None:
    stage = EmbeddingFilter(encoder)
    for bad_query in (None, "", " "):
        with pytest.raises(ValueError, match="query"):
            stage.apply(bad_query, TEXTS)
    with pytest.raises(TypeError, match=r"passages\[0\]"):
        stage.apply(QUERY, [b"bytes"])  # type: ignore[list-item]
    assert stage.apply(QUERY, []) == []
    with pytest.raises(ValueError, match="level"):
        EmbeddingFilter(encoder, level="word")
    with pytest.raises(ValueError, match="top_n"):
        EmbeddingFilter(encoder, top_n=-1)
    with pytest.raises(ValueError, match="max_tokens"):
        EmbeddingFilter(encoder, max_tokens=-5)
    with pytest.raises(ValueError, match="redundancy_threshold"):
        EmbeddingFilter(encoder, redundancy_threshold=1.5)
    with pytest.raises(ValueError, match="NaN"):
        EmbeddingFilter(encoder, threshold=math.nan)


def test_registry_threads_and_async(tiny_st_path: Path) -> None:
    import asyncio

    stage = ragprune.create_stage("embedding-filter", model=str(tiny_st_path), level="sentence", top_n=4)
    assert isinstance(stage, EmbeddingFilter)
    expected = stage.apply(QUERY, [DOC, *TEXTS])
    with ThreadPoolExecutor(4) as pool:
        assert all(r == expected for r in pool.map(lambda _: stage.apply(QUERY, [DOC, *TEXTS]), range(8)))

    async def many() -> list[list[Passage]]:
        return await asyncio.gather(*(stage.aapply(QUERY, [DOC, *TEXTS]) for _ in range(3)))

    assert all(r == expected for r in asyncio.run(many()))


_piece = st.sampled_from(["the cat sat.", "paris is the capital of france.", "北京是中国的首都。", "dog 🎉!",
                          " ", "\n", "berlin river", "what?"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.lists(_piece, max_size=5).map(" ".join), max_size=6),
    level=st.sampled_from(["passage", "sentence"]),
    top_n=st.one_of(st.none(), st.integers(0, 6)),
    max_tokens=st.one_of(st.none(), st.integers(0, 30)),
    redundancy=st.one_of(st.none(), st.floats(0.9, 1.0)),
)
def test_filter_properties(encoder: BiEncoderModel, texts: list[str], level: str, top_n: int | None,
                           max_tokens: int | None, redundancy: float | None) -> None:
    stage = EmbeddingFilter(encoder, level=level, top_n=top_n, max_tokens=max_tokens,
                            redundancy_threshold=redundancy)
    out = stage.process(QUERY, texts)
    assert sorted([p.index for p in out.passages] + [d.index for d in out.dropped]) == list(range(len(texts)))
    for p in out.passages:
        _check_extractive(p)
        assert p.original == texts[p.index]
    if max_tokens is not None:
        assert sum(WordCounter().count(p.text) for p in out.passages) <= max_tokens
    if top_n is not None:
        n = len(out.passages) if level == "passage" else sum(
            len(_kept_units(Passage.from_text(texts[p.index], p.index), p)) for p in out.passages)
        assert n <= top_n


# --------------------------------------------------------------------------- the real MiniLM


def test_real_minilm_ranks_the_relevant_sentence_first(minilm_path: Path) -> None:
    model = BiEncoderModel(minilm_path)
    doc = ("The cat sat on the mat all afternoon. Paris is the capital and largest city of France. "
           "Stock prices fell sharply on Tuesday.")
    out = EmbeddingFilter(model, level="sentence", top_n=1).apply("What is the capital of France?", [doc])
    assert out[0].text.strip() == "Paris is the capital and largest city of France."
    emb = model.encode(["What is the capital of France?", "Paris is the capital and largest city of France.",
                        "The cat sat on the mat all afternoon."])
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3
    # MiniLM is mean pooling + normalize: the plain-encoder path gives the same embeddings
    from transformers import AutoModel, AutoTokenizer

    hf = AutoModel.from_pretrained(str(minilm_path), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(minilm_path), local_files_only=True)
    plain = BiEncoderModel(hf, tokenizer=tok, max_length=256).encode(
        ["What is the capital of France?", "Paris is the capital and largest city of France."])
    np.testing.assert_allclose(plain, emb[:2], atol=1e-5)

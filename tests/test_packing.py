"""Packed batching in the model-backed stages: same outputs as the previous batching, little padding.

Every model wrapper and stage that pads forward batches (the cross-encoder and
bi-encoder wrappers, the reranker, the sentence selector, the token classifier,
the query-aware token compressor) cuts a call's inputs into length-sorted
batches that pad at most a tenth of their tokens, counts what it feeds in
``padding_stats()``, and still returns what it returned with the previous
batching (``_legacy_batching = True``) and one input at a time, up to float
rounding, in input order.
"""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import TINY_BERT, WORDS, save_tiny_model, save_wordpiece_tokenizer  # noqa: E402
from ragprune import Passage  # noqa: E402
from ragprune.runtime.batching import (  # noqa: E402
    MAX_PADDING,
    PaddingCounter,
    PaddingStats,
    ShapeBuckets,
    default_batch_tokens,
    packed_batches,
    resolve_shape_buckets,
)
from ragprune.runtime.encoders import BiEncoderModel, CrossEncoderModel  # noqa: E402
from ragprune.stages.cross_encoder import CrossEncoderReranker  # noqa: E402
from ragprune.stages.sentence_selector import SentenceSelector  # noqa: E402
from ragprune.stages.token_classifier import TokenClassifierCompressor  # noqa: E402

QUERY = "what is the capital of france"
ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; a busy shared box makes extra threads spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def varied_texts(n: int, *, seed: int, most: int = 60) -> list[str]:
    """``n`` texts of 1 to ``most`` words (lengths spread out, in no order), with some repeats."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        k = rng.choice([rng.randint(1, 6), rng.randint(5, most // 2), rng.randint(most // 2, most)])
        texts.append(" ".join(rng.choice(WORDS) for _ in range(k)) + ".")
    return [*texts, texts[0], texts[3]]  # identical texts are fed once


def sentences_text(rng: random.Random, n_sentences: int) -> str:
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))).capitalize() + "."
                    for _ in range(n_sentences))


def vocab_size(tok: Any) -> int:
    return max(tok.get_vocab().values()) + 1  # the shared vocabulary repeats a few entries


def check_packed(stats: PaddingStats, lengths_fed: int | None = None) -> None:
    assert stats.items > 0 and stats.batches > 0
    assert stats.padding_share <= MAX_PADDING + 1e-12
    if lengths_fed is not None:
        assert stats.real == lengths_fed


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-logit BERT sequence classifier whose random weights spread the scores out."""
    from transformers import BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("pack-ce")
    tok = save_wordpiece_tokenizer(path)
    config = BertConfig(vocab_size=vocab_size(tok), num_labels=1, initializer_range=0.3, **TINY_BERT)
    save_tiny_model(path, BertForSequenceClassification, config, seed=3)
    return path


@pytest.fixture(scope="module")
def cross_encoder(cross_encoder_dir: Path) -> CrossEncoderModel:
    return CrossEncoderModel(cross_encoder_dir, device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def plain_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain tiny BertModel (mean-pooled by BiEncoderModel)."""
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("pack-enc")
    tok = save_wordpiece_tokenizer(path)
    config = BertConfig(vocab_size=vocab_size(tok), initializer_range=0.3, **TINY_BERT)
    save_tiny_model(path, BertModel, config, seed=5)
    return path


@pytest.fixture(scope="module")
def st_dir(plain_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same BERT saved as a sentence-transformers model: Transformer + mean Pooling."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    path = tmp_path_factory.mktemp("pack-st")
    modules = [Transformer(str(plain_encoder_dir), max_seq_length=100), Pooling(TINY_BERT["hidden_size"], "mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(path))
    return path


@pytest.fixture(scope="module")
def token_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-label BERT token classifier (label 1 = keep) with spread-out random weights."""
    from transformers import BertConfig, BertForTokenClassification

    path = tmp_path_factory.mktemp("pack-tc")
    tok = save_wordpiece_tokenizer(path)
    config = BertConfig(vocab_size=vocab_size(tok), num_labels=2, initializer_range=0.3, **TINY_BERT)
    save_tiny_model(path, BertForTokenClassification, config, seed=7)
    return path


@pytest.fixture(scope="module")
def pruner_dir(plain_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pruner (ragprune format) over the plain encoder, for the query-aware token compressor."""
    from transformers import AutoTokenizer

    from ragprune.stages.provence import PrunerModel

    path = tmp_path_factory.mktemp("pack-pruner")
    g = torch.Generator().manual_seed(0)
    model = PrunerModel.from_encoder(plain_encoder_dir, generator=g, device="cpu", max_length=64)
    with torch.no_grad():
        model.token_head.weight.normal_(0.0, 2.0, generator=g)
        model.rank_head.weight.normal_(0.0, 1.0, generator=g)
    model.save_pretrained(path, tokenizer=AutoTokenizer.from_pretrained(str(plain_encoder_dir)))
    return path


# --------------------------------------------------------------------------- shared pieces


def test_default_batch_tokens_follow_the_device() -> None:
    assert default_batch_tokens("cpu") == default_batch_tokens(torch.device("cpu")) == 2048
    assert default_batch_tokens("cuda") == default_batch_tokens(torch.device("cuda", 0)) == 16384
    assert default_batch_tokens("cuda:1") == default_batch_tokens("mps") == 16384


def test_padding_counter_sums_resets_and_survives_pickling() -> None:
    counter = PaddingCounter()
    counter.add([4, 3, 2], [[0, 1], [2]])
    counter.add([5], [[0]])
    stats = counter.get()
    assert (stats.real, stats.fed, stats.items, stats.batches) == (14, 15, 4, 3)
    for clone in (pickle.loads(pickle.dumps(counter)), copy.deepcopy(counter)):
        assert clone.get() == stats
        clone.add([1], [[0]])  # a fresh lock of its own
        assert clone.get().items == 5 and counter.get().items == 4
    assert counter.get(reset=True) == stats and counter.get() == PaddingStats()


# --------------------------------------------------------------------------- cross-encoder


def test_cross_encoder_packed_scores_equal_previous_and_unbatched(cross_encoder: CrossEncoderModel,
                                                                  cross_encoder_dir: Path) -> None:
    texts = varied_texts(40, seed=1)
    model = cross_encoder
    assert model.max_batch_tokens == 2048  # CPU default
    model.padding_stats(reset=True)
    packed = model.score_pairs(QUERY, texts)
    new = model.padding_stats(reset=True)
    model._legacy_batching = True
    try:
        legacy = model.score_pairs(QUERY, texts)
    finally:
        model._legacy_batching = False
    old = model.padding_stats(reset=True)
    one = np.array([CrossEncoderModel(model.model, tokenizer=model.tokenizer, batch_size=1).score_pairs(QUERY, [t])[0]
                    for t in texts])
    np.testing.assert_allclose(packed, legacy, atol=ATOL, rtol=0)
    np.testing.assert_allclose(packed, one, atol=ATOL, rtol=0)
    assert np.ptp(packed) > 1e-3  # scores do differ: input order matters
    check_packed(new)
    assert new.items == old.items == len(set(texts)) and new.real == old.real
    assert old.padding_share > new.padding_share  # the previous batching padded more here


def test_cross_encoder_per_pair_queries_and_token_cap(cross_encoder_dir: Path) -> None:
    model = CrossEncoderModel(cross_encoder_dir, device="cpu", batch_size=6, max_batch_tokens=90)
    assert model.max_batch_tokens == 90
    texts = varied_texts(25, seed=2)
    queries = [QUERY if i % 3 else "who sat on the mat" for i in range(len(texts))]
    packed = model.score_pairs(queries, texts)
    stats = model.padding_stats(reset=True)
    batches = model.batches([30, 80, 31, 200, 29])
    assert batches == packed_batches([30, 80, 31, 200, 29], max_batch_size=6, max_batch_tokens=90)
    model._legacy_batching = True
    legacy = model.score_pairs(queries, texts)
    np.testing.assert_allclose(packed, legacy, atol=ATOL, rtol=0)
    check_packed(stats)


def test_cross_encoder_counts_concurrent_calls(cross_encoder: CrossEncoderModel) -> None:
    texts = varied_texts(12, seed=3)
    cross_encoder.padding_stats(reset=True)
    expected = cross_encoder.score_pairs(QUERY, texts)
    once = cross_encoder.padding_stats(reset=True)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cross_encoder.score_pairs(QUERY, texts), range(6)))
    for r in results:
        np.testing.assert_allclose(r, expected, atol=ATOL, rtol=0)
    total = cross_encoder.padding_stats(reset=True)
    assert (total.real, total.fed, total.items, total.batches) == (6 * once.real, 6 * once.fed, 6 * once.items,
                                                                   6 * once.batches)


def test_reranker_outputs_equal_previous_batching(cross_encoder_dir: Path) -> None:
    stage = CrossEncoderReranker(cross_encoder_dir, device="cpu", batch_size=8, top_n=12, max_batch_tokens=512)
    assert stage.model.max_batch_tokens == 512
    passages = [Passage.from_text(t, i) for i, t in enumerate(varied_texts(30, seed=4))]
    stage.padding_stats(reset=True)
    packed = stage.process(QUERY, passages)
    new = stage.padding_stats(reset=True)
    stage.model._legacy_batching = True
    legacy = stage.process(QUERY, passages)
    assert [p.index for p in packed.passages] == [p.index for p in legacy.passages]
    assert sorted(d.index for d in packed.dropped) == sorted(d.index for d in legacy.dropped)
    for a, b in zip(packed.passages, legacy.passages, strict=True):
        assert abs(float(a.score) - float(b.score)) <= ATOL  # type: ignore[arg-type]
    check_packed(new)


# --------------------------------------------------------------------------- bi-encoder


@pytest.mark.parametrize("kind", ["sentence-transformers", "plain"])
def test_bi_encoder_packed_embeddings_equal_previous_and_unbatched(kind: str, st_dir: Path,
                                                                   plain_encoder_dir: Path) -> None:
    path = st_dir if kind == "sentence-transformers" else plain_encoder_dir
    model = BiEncoderModel(path, device="cpu", batch_size=8)
    assert model.max_batch_tokens == 2048 and kind in repr(model).replace("mean-pooled", "plain")
    texts = varied_texts(40, seed=5)
    packed = model.encode(texts)
    new = model.padding_stats(reset=True)
    model._legacy_batching = True
    legacy = model.encode(texts)
    old = model.padding_stats(reset=True)
    model._legacy_batching = False
    one = np.stack([model.encode([t])[0] for t in texts])
    np.testing.assert_allclose(packed, legacy, atol=ATOL, rtol=0)
    np.testing.assert_allclose(packed, one, atol=ATOL, rtol=0)
    check_packed(new)
    assert new.items == old.items == len(set(texts)) and new.real == old.real
    assert old.padding_share > new.padding_share


# --------------------------------------------------------------------------- sentence selector


def _selector_passages(seed: int) -> list[Passage]:
    rng = random.Random(seed)
    texts = [sentences_text(rng, rng.randint(1, 8)) for _ in range(10)]
    return [Passage.from_text(t, i) for i, t in enumerate([*texts[:4], "   ", *texts[4:]])]


@pytest.mark.parametrize("kind", ["cross-encoder", "bi-encoder"])
def test_sentence_selector_outputs_equal_previous_batching(kind: str, cross_encoder_dir: Path, st_dir: Path) -> None:
    path = cross_encoder_dir if kind == "cross-encoder" else st_dir
    stage = SentenceSelector(path, kind=kind, top_n=2, context_window=1, device="cpu", batch_size=8,
                             max_batch_tokens=1024)
    assert stage.scorer.max_batch_tokens == 1024
    passages = _selector_passages(6)
    texts = [t for p in passages if not p.is_blank for t in stage._context_texts(p, p.units("sentence"))]
    packed_scores = stage.score_texts(QUERY, texts)
    packed = stage.process(QUERY, passages)
    new = stage.padding_stats(reset=True)
    stage.scorer._legacy_batching = True
    legacy_scores = stage.score_texts(QUERY, texts)
    legacy = stage.process(QUERY, passages)
    np.testing.assert_allclose(packed_scores, legacy_scores, atol=ATOL, rtol=0)
    assert [(p.index, p.spans) for p in packed.passages] == [(p.index, p.spans) for p in legacy.passages]
    assert [d.index for d in packed.dropped] == [d.index for d in legacy.dropped]
    check_packed(new)
    assert stage.padding_stats().items > 0 and stage.padding_stats(reset=True).items > 0
    assert stage.padding_stats() == PaddingStats()


def test_sentence_selector_with_a_scorer_that_does_not_count() -> None:
    class Constant:
        def score_pairs(self, query: str, texts: list[str]) -> np.ndarray:
            return np.ones(len(texts), dtype=np.float32)

    stage = SentenceSelector(Constant(), top_n=1)
    stage.process(QUERY, [Passage.from_text("A cat sat. A dog sat.", 0)])
    assert stage.padding_stats() == PaddingStats()


# --------------------------------------------------------------------------- token classifier


def _work_probs(stage: TokenClassifierCompressor, passages: list[Passage]) -> list[np.ndarray]:
    work = [w for i, p in enumerate(passages) if (w := stage._words(i, p)) is not None]
    stage._tokenize(work)
    stage._score(work)
    return [np.asarray(w.probs) for w in work]


def test_token_classifier_packed_equals_previous_and_unbatched(token_classifier_dir: Path) -> None:
    stage = TokenClassifierCompressor(token_classifier_dir, rate=0.5, max_length=40, batch_size=8, device="cpu")
    assert stage.max_batch_tokens == 2048
    rng = random.Random(8)
    passages = [Passage.from_text(sentences_text(rng, rng.randint(1, 12)), i) for i in range(16)]
    probs = _work_probs(stage, passages)
    packed = stage.process(None, passages)
    new = stage.padding_stats(reset=True)
    stage._legacy_batching = True
    legacy_probs = _work_probs(stage, passages)
    legacy = stage.process(None, passages)
    old = stage.padding_stats(reset=True)
    single = TokenClassifierCompressor(stage.model, tokenizer=stage.tokenizer, rate=0.5, max_length=40, batch_size=1)
    one_probs = _work_probs(single, passages)
    for a, b, c in zip(probs, legacy_probs, one_probs, strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)
        np.testing.assert_allclose(a, c, atol=ATOL, rtol=0)
    assert [(p.index, p.spans) for p in packed.passages] == [(p.index, p.spans) for p in legacy.passages]
    for a, b in zip(packed.passages, legacy.passages, strict=True):
        assert abs(float(a.score) - float(b.score)) <= ATOL  # type: ignore[arg-type]
    check_packed(new)
    assert new.real == old.real and new.items == old.items > len(passages)  # long passages: several windows
    assert old.padding_share > new.padding_share


def test_token_classifier_batches_bounded(token_classifier_dir: Path) -> None:
    stage = TokenClassifierCompressor(token_classifier_dir, batch_size=5, max_batch_tokens=200, device="cpu")
    lengths = [5, 120, 7, 64, 64, 3, 100, 30, 31, 32, 128, 1] * 4
    batches = stage.batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        fed = len(b) * max(lengths[i] for i in b)
        assert len(b) <= 5 and (len(b) == 1 or fed <= 200)
        assert fed - sum(lengths[i] for i in b) <= MAX_PADDING * fed


# --------------------------------------------------------------------------- query-aware token compressor


def test_query_compressor_counts_its_pruner_padding(pruner_dir: Path) -> None:
    from ragprune.stages.query_compressor import QueryTokenCompressor

    stage = QueryTokenCompressor(pruner_dir, rate=0.5, device="cpu", batch_size=8, max_batch_tokens=700)
    assert stage.scorer.max_batch_tokens == 700
    rng = random.Random(9)
    passages = [Passage.from_text(sentences_text(rng, rng.randint(1, 10)), i) for i in range(12)]
    packed = stage.word_probs(QUERY, passages)
    out = stage.process(QUERY, passages)
    new = stage.padding_stats(reset=True)
    stage.scorer._legacy_batching = True
    legacy = stage.word_probs(QUERY, passages)
    assert [p.spans for p in stage.process(QUERY, passages).passages] == [p.spans for p in out.passages]
    for (wa, pa), (wb, pb) in zip(packed, legacy, strict=True):
        assert wa == wb
        np.testing.assert_allclose(pa, pb, atol=ATOL, rtol=0)
    check_packed(new)
    assert stage.padding_stats(reset=True).items > 0 and stage.padding_stats() == PaddingStats()


# --------------------------------------------------------------------------- shape buckets (accelerators)


def test_default_batch_tokens_grow_with_gpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    class Props:
        def __init__(self, gib: float) -> None:
            self.total_memory = int(gib * 2**30)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for gib, tokens in [(4, 8192), (8, 8192), (16, 16384), (24, 16384), (40, 32768), (80, 65536), (139, 65536)]:
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _dev, gib=gib: Props(gib))
        assert default_batch_tokens(torch.device("cuda")) == tokens, gib
    assert default_batch_tokens("cuda") == 16384  # a bare name: memory not asked


def test_shape_buckets_default_on_accelerators_only() -> None:
    assert resolve_shape_buckets(None, torch.device("cpu")) is None
    assert resolve_shape_buckets(None, "cuda:0") == resolve_shape_buckets(None, "mps") == ShapeBuckets()
    assert resolve_shape_buckets(True, "cpu") == ShapeBuckets() and resolve_shape_buckets(False, "cuda") is None
    custom = ShapeBuckets(steps=4, multiple=16)
    assert resolve_shape_buckets(custom, "cpu") is custom
    with pytest.raises(TypeError, match="shape_buckets"):
        resolve_shape_buckets("yes", "cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        ShapeBuckets(steps=0)


def _recorded_shapes(model: Any) -> tuple[list[tuple[int, ...]], Any]:
    """Input shapes of every forward pass of ``model`` (a torch module) from now on, and the hook's handle."""
    seen: list[tuple[int, ...]] = []

    def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first = args[0] if args else kwargs["input_ids"]
        seen.append(tuple(first.shape))

    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_cross_encoder_shape_buckets_same_scores_bounded_shapes_and_warmup(cross_encoder_dir: Path) -> None:
    texts = varied_texts(60, seed=11, most=90)
    plain = CrossEncoderModel(cross_encoder_dir, device="cpu")
    bucketed = CrossEncoderModel(cross_encoder_dir, device="cpu", shape_buckets=True, max_batch_tokens=1024)
    assert plain.shapes is None and bucketed.shapes == ShapeBuckets()
    seen, handle = _recorded_shapes(bucketed.model)
    try:
        scores = bucketed.score_pairs(QUERY, texts)
        call_shapes = list(seen)
        called = set(seen)
        seen.clear()
        n = bucketed.warmup()
        warmed = set(seen)
    finally:
        handle.remove()
    np.testing.assert_allclose(scores, plain.score_pairs(QUERY, texts), atol=ATOL, rtol=0)
    assert called <= warmed  # every shape a call used was warmed up
    assert n == len(seen) == len(warmed)
    limit = bucketed.max_length
    for rows, width in warmed:
        assert ShapeBuckets.allowed_rows(rows) and width in ShapeBuckets().widths(limit)
        assert rows == 1 or rows * width <= 1024
    assert bucketed.padding_stats().fed == sum(r * w for r, w in call_shapes)  # counts the widths fed
    assert plain.warmup() == 0  # no buckets on CPU by default: nothing to warm


def test_pruner_shape_buckets_same_output_and_counted_widths(pruner_dir: Path) -> None:
    from ragprune.stages.provence import ProvencePruner

    rng = random.Random(4)
    passages = [Passage(sentences_text(rng, rng.randint(1, 12)), index=i) for i in range(12)]
    plain = ProvencePruner(pruner_dir, device="cpu", threshold=0.5, max_batch_tokens=512)
    bucketed = ProvencePruner(pruner_dir, device="cpu", threshold=0.5, max_batch_tokens=512, shape_buckets=True)
    assert plain.batch_size is None and plain.shapes is None
    seen, handle = _recorded_shapes(bucketed.model)
    try:
        out = bucketed.process(QUERY, passages)
    finally:
        handle.remove()
    ref = plain.process(QUERY, passages)
    assert [(p.index, p.spans) for p in out.passages] == [(p.index, p.spans) for p in ref.passages]
    np.testing.assert_allclose([p.score for p in out.passages], [p.score for p in ref.passages], atol=ATOL)
    stats = bucketed.padding_stats()
    assert stats.fed == sum(r * w for r, w in seen)  # the rounded widths count as padding
    assert all(ShapeBuckets.allowed_rows(r) and (w % 8 == 0 or w == bucketed.max_length) for r, w in seen)
    assert stats.padded > plain.padding_stats().padded
    with pytest.raises(TypeError, match="shape_buckets"):
        ProvencePruner(pruner_dir, device="cpu", shape_buckets="on")  # type: ignore[arg-type]


def test_stage_and_pipeline_warmup_reach_every_batcher(cross_encoder_dir: Path, pruner_dir: Path) -> None:
    from ragprune import Pipeline
    from ragprune.stages.provence import ProvencePruner

    reranker = CrossEncoderReranker(cross_encoder_dir, device="cpu", top_n=2)
    pruner = ProvencePruner(pruner_dir, device="cpu")
    pipeline = Pipeline([reranker, pruner])
    assert reranker.warmup() == pruner.warmup() == pipeline.warmup() == 0  # CPU: no buckets, nothing to run
    reranker.model.shapes = pruner.shapes = ShapeBuckets()
    n_reranker, n_pruner = reranker.warmup(), pruner.warmup()
    assert n_reranker > 0 and n_pruner > 0
    assert pipeline.warmup() == n_reranker + n_pruner

"""CrossEncoderModel and CrossEncoderReranker on tiny random sequence classifiers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragprune
from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer
from ragprune import Passage
from ragprune.runtime.encoders import CrossEncoderModel
from ragprune.runtime.loading import ModelLoadError
from ragprune.stages.cross_encoder import CrossEncoderReranker

QUERY = "what is the capital of france"
TEXTS = [
    "paris is the capital of france.",
    "the cat sat on the mat.",
    "berlin is a large city in germany",
    "the river of paris",
    "a dog and a cat",
    "first question, small answer",
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; a busy shared box makes extra threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spread_classifier(path: Path, num_labels: int, seed: int) -> Path:
    """A tiny BERT classifier whose random weights spread the scores out."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = save_wordpiece_tokenizer(path)
    # the shared vocabulary repeats a few entries, so ids run past len(tok)
    vocab_size = max(tok.get_vocab().values()) + 1
    config = BertConfig(vocab_size=vocab_size, num_labels=num_labels, initializer_range=0.3, **TINY_BERT)
    save_tiny_model(path, BertForSequenceClassification, config, seed=seed)
    return path


@pytest.fixture(scope="module")
def one_label(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _spread_classifier(tmp_path_factory.mktemp("ce-one"), 1, seed=1)


@pytest.fixture(scope="module")
def two_label(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _spread_classifier(tmp_path_factory.mktemp("ce-two"), 2, seed=2)


@pytest.fixture(scope="module")
def scorer(one_label: Path) -> CrossEncoderModel:
    return CrossEncoderModel(one_label, device="cpu", batch_size=2)


def _raw_logits(path: Path, query: str, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True).eval()
    rows = []
    with torch.inference_mode():
        for t in texts:  # one at a time: no padding involved
            rows.append(model(**tok(query, t, return_tensors="pt")).logits[0].numpy())
    return np.stack(rows)


# --------------------------------------------------------------------------- the model wrapper


def test_loads_conftest_fixture_and_scores(tiny_sequence_classifier: Path) -> None:
    model = CrossEncoderModel(tiny_sequence_classifier, device="cpu")
    scores = model.score_pairs(QUERY, TEXTS)
    assert scores.dtype == np.float32 and scores.shape == (len(TEXTS),)
    assert np.all((scores > 0) & (scores < 1))  # sigmoid of one logit
    assert model.activation == "sigmoid" and model.num_labels == 1
    assert model.max_length == 128


def test_one_logit_sigmoid_and_none_match_the_model(one_label: Path) -> None:
    logits = _raw_logits(one_label, QUERY, TEXTS)[:, 0]
    sig = CrossEncoderModel(one_label, device="cpu", batch_size=4).score_pairs(QUERY, TEXTS)
    raw = CrossEncoderModel(one_label, device="cpu", activation="none").score_pairs(QUERY, TEXTS)
    np.testing.assert_allclose(raw, logits, atol=1e-5)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert np.ptp(sig) > 0.01  # the fixture really spreads scores


def test_two_labels_softmax_probability_of_label_one(two_label: Path) -> None:
    logits = _raw_logits(two_label, QUERY, TEXTS)
    expected = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    model = CrossEncoderModel(two_label, device="cpu", batch_size=3)
    assert model.num_labels == 2 and model.activation == "softmax"
    np.testing.assert_allclose(model.score_pairs(QUERY, TEXTS), expected, atol=1e-6)
    raw = CrossEncoderModel(two_label, device="cpu", activation="none").score_pairs(QUERY, TEXTS)
    np.testing.assert_allclose(raw, logits[:, 1] - logits[:, 0], atol=1e-5)



def test_two_labels_saved_by_sentence_transformers_still_give_probabilities(two_label: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    CrossEncoder(str(two_label), device="cpu", local_files_only=True).save(str(tmp_path / "two"))
    model = CrossEncoderModel(tmp_path / "two", device="cpu")
    assert model.activation == "softmax"
    reference = CrossEncoderModel(two_label, device="cpu").score_pairs(QUERY, TEXTS)
    np.testing.assert_allclose(model.score_pairs(QUERY, TEXTS), reference, atol=1e-6)


def test_more_than_two_labels_is_refused(tmp_path: Path) -> None:
    path = _spread_classifier(tmp_path / "three", 3, seed=3)
    with pytest.raises(ValueError, match="3 labels"):
        CrossEncoderModel(path)


def test_batched_scores_equal_single_scores_in_input_order(scorer: CrossEncoderModel) -> None:
    texts = [*TEXTS, "北京是中国的首都。", "paris 🇫🇷 🎉 is nice", "", "   ", "x" * 3000]
    batched = scorer.score_pairs(QUERY, texts)
    single = np.array([scorer.score_pairs(QUERY, [t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # one query per text gives the same as a broadcast query
    np.testing.assert_array_equal(scorer.score_pairs([QUERY] * len(texts), texts), batched)
    # determinism
    np.testing.assert_array_equal(scorer.score_pairs(QUERY, texts), batched)


def test_bounded_batches_give_the_same_scores(one_label: Path) -> None:
    texts = [t * (k % 4 + 1) for k, t in enumerate(TEXTS * 3)]
    a = CrossEncoderModel(one_label, device="cpu", batch_size=64).score_pairs(QUERY, texts)
    b = CrossEncoderModel(one_label, device="cpu", batch_size=1).score_pairs(QUERY, texts)
    c = CrossEncoderModel(one_label, device="cpu", batch_size=8, max_batch_tokens=60).score_pairs(QUERY, texts)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_score_pairs_input_checks(scorer: CrossEncoderModel) -> None:
    assert scorer.score_pairs(QUERY, []).shape == (0,)
    with pytest.raises(TypeError, match="texts"):
        scorer.score_pairs(QUERY, "a single string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        scorer.score_pairs(QUERY, ["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="2 queries for 1 texts"):
        scorer.score_pairs(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="activation"):
        CrossEncoderModel(scorer.model, tokenizer=scorer.tokenizer, activation="relu")
    with pytest.raises(ValueError, match="batch_size"):
        CrossEncoderModel(scorer.model, tokenizer=scorer.tokenizer, batch_size=0)


def test_truncation_keeps_the_query_and_cuts_huge_texts(scorer: CrossEncoderModel) -> None:
    huge = "the cat sat on the mat. " * 50_000  # 1.2 million characters
    cut = huge[:4000]  # far more than 128 tokens
    a, b = scorer.score_pairs(QUERY, [huge, cut])
    assert a == pytest.approx(b, abs=1e-6)
    # a different query changes the score even when the text fills the window: the query is kept
    c = scorer.score_pairs("paris berlin river dog", [huge])[0]
    assert abs(c - a) > 1e-4
    # a huge query is truncated too, without a crash
    assert np.isfinite(scorer.score_pairs(huge, [huge, "x"])).all()


def test_max_length_is_capped_by_the_model_positions(one_label: Path) -> None:
    assert CrossEncoderModel(one_label, device="cpu", max_length=16).max_length == 16
    assert CrossEncoderModel(one_label, device="cpu", max_length=10_000).max_length == 128


def test_already_loaded_model_and_sentence_transformers_cross_encoder(one_label: Path) -> None:
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    expected = CrossEncoderModel(one_label, device="cpu").score_pairs(QUERY, TEXTS)
    hf = AutoModelForSequenceClassification.from_pretrained(str(one_label), local_files_only=True)
    np.testing.assert_allclose(CrossEncoderModel(hf).score_pairs(QUERY, TEXTS), expected, atol=1e-6)
    ce = CrossEncoder(str(one_label), device="cpu", local_files_only=True)
    wrapped = CrossEncoderModel(ce).score_pairs(QUERY, TEXTS)
    np.testing.assert_allclose(wrapped, expected, atol=1e-6)
    np.testing.assert_allclose(wrapped, ce.predict([(QUERY, t) for t in TEXTS]), atol=1e-5)


def test_saved_sentence_transformers_activation_is_honoured(one_label: Path, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(one_label), device="cpu", local_files_only=True, activation_fn=torch.nn.Identity())
    ce.save(str(tmp_path / "identity"))
    model = CrossEncoderModel(tmp_path / "identity", device="cpu")
    assert model.activation == "none"
    logits = _raw_logits(one_label, QUERY, TEXTS)[:, 0]
    np.testing.assert_allclose(model.score_pairs(QUERY, TEXTS), logits, atol=1e-5)
    # an explicit activation wins over the saved one
    assert CrossEncoderModel(tmp_path / "identity", device="cpu", activation="sigmoid").activation == "sigmoid"


def test_missing_model_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no-such-model"):
        CrossEncoderModel(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="not-a/real-model"):
        CrossEncoderModel("not-a/real-model", local_files_only=True)
    with pytest.raises(TypeError, match="model must be"):
        CrossEncoderModel(42)


# --------------------------------------------------------------------------- the reranker stage


def _passages() -> list[Passage]:
    return [
        Passage.from_text(t, i, score=10.0 - i, metadata={"id": f"doc-{i}", "tags": [i]})
        for i, t in enumerate(TEXTS)
    ]


def test_reranker_sorts_by_score_and_keeps_identity(scorer: CrossEncoderModel) -> None:
    stage = CrossEncoderReranker(scorer)
    given_ = _passages()
    out = stage.process(QUERY, given_)
    assert out.dropped == ()
    assert sorted(p.index for p in out.passages) == list(range(len(TEXTS)))
    single = {i: float(scorer.score_pairs(QUERY, [t])[0]) for i, t in enumerate(TEXTS)}
    for p in out.passages:
        src = given_[p.index]
        assert p.text == src.text and p.original == src.original and p.spans == src.spans
        assert p.metadata is src.metadata  # carried through, not copied
        assert p.original_score == 10.0 - p.index  # the retrieval score stays
        assert p.scores[-1][0] == "cross-encoder" and p.scores[-1][1] == p.score
        assert p.score == pytest.approx(single[p.index], abs=1e-5)
    scores = [p.score for p in out.passages]
    assert scores == sorted(scores, reverse=True)
    expected_order = sorted(range(len(TEXTS)), key=lambda i: (-single[i], i))
    assert [p.index for p in out.passages] == expected_order
    assert stage.apply(QUERY, given_) == list(out.passages)  # deterministic


def test_reranker_top_n_and_threshold_report_every_drop(scorer: CrossEncoderModel) -> None:
    full = CrossEncoderReranker(scorer).apply(QUERY, _passages())
    cut = (full[1].score + full[2].score) / 2
    out = CrossEncoderReranker(scorer, top_n=2).process(QUERY, _passages())
    assert [p.index for p in out.passages] == [p.index for p in full[:2]]
    assert [d.index for d in out.dropped] == [p.index for p in full[2:]]
    assert all(d.stage == "cross-encoder" and "beyond top_n=2" in d.reason for d in out.dropped)
    assert [d.score for d in out.dropped] == [p.score for p in full[2:]]

    out = CrossEncoderReranker(scorer, threshold=cut).process(QUERY, _passages())
    assert [p.index for p in out.passages] == [p.index for p in full[:2]]
    assert all(p.score >= cut for p in out.passages)
    assert all("below threshold" in d.reason and d.score < cut for d in out.dropped)

    out = CrossEncoderReranker(scorer, top_n=1, threshold=cut).process(QUERY, _passages())
    assert len(out.passages) == 1 and len(out.dropped) == len(TEXTS) - 1
    reasons = sorted(d.reason.split()[0] for d in out.dropped)
    assert reasons == ["rank"] + ["score"] * (len(TEXTS) - 2)

    assert CrossEncoderReranker(scorer, top_n=0).apply(QUERY, _passages()) == []


def test_blank_passages_rank_last_unscored_and_never_reach_the_model(scorer: CrossEncoderModel) -> None:
    seen: list[str] = []

    class Spy(CrossEncoderModel):
        def score_pairs(self, q, texts):  # type: ignore[no-untyped-def]
            seen.extend(texts)
            return super().score_pairs(q, texts)

    spy = Spy(scorer.model, tokenizer=scorer.tokenizer)
    texts = ["", "the cat sat", " \n\t ", "paris is the capital of france"]
    out = CrossEncoderReranker(spy).process(QUERY, [Passage.from_text(t, i, score=1.0) for i, t in enumerate(texts)])
    assert seen == ["the cat sat", "paris is the capital of france"]  # one call, blanks left out
    assert [p.index for p in out.passages][-2:] == [0, 2]
    assert [p.score for p in out.passages][-2:] == [None, None]
    assert all(p.original_score == 1.0 for p in out.passages)
    out = CrossEncoderReranker(spy, threshold=0.0).process(QUERY, texts)
    assert sorted(d.index for d in out.dropped) == [0, 2]
    assert all("blank" in d.reason for d in out.dropped)
    # all blank: nothing is scored, nothing crashes
    assert [p.text for p in CrossEncoderReranker(spy).apply(QUERY, ["", "  "])] == ["", "  "]


def test_reranker_unicode_duplicates_and_empty_input(scorer: CrossEncoderModel) -> None:
    stage = CrossEncoderReranker(scorer, top_n=10)
    texts = ["北京是中国的首都。", "emoji 🎉👩‍👩‍👧 here", "שלום עולם", "ctrl\x00\x07chars", "北京是中国的首都。"]
    out = stage.apply(QUERY, texts)
    assert sorted(p.text for p in out) == sorted(texts)
    dup = [p for p in out if p.text == texts[0]]
    assert sorted(p.index for p in dup) == [0, 4] and dup[0].score == pytest.approx(dup[1].score)
    assert stage.apply(QUERY, []) == []


def test_reranker_input_validation(scorer: CrossEncoderModel) -> None:
    stage = CrossEncoderReranker(scorer)
    for bad_query in (None, "", "   "):
        with pytest.raises(ValueError, match="query"):
            stage.apply(bad_query, ["a"])
    with pytest.raises(TypeError, match="query"):
        stage.apply(3, ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"passages\[1\]"):
        stage.apply(QUERY, ["a", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="top_n"):
        CrossEncoderReranker(scorer, top_n=-1)
    with pytest.raises(TypeError, match="top_n"):
        CrossEncoderReranker(scorer, top_n=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        CrossEncoderReranker(scorer, threshold=math.nan)


def test_registry_path_and_model_options(one_label: Path) -> None:
    stage = ragprune.create_stage("cross-encoder", model=str(one_label), top_n=3, batch_size=2, max_length=32)
    assert isinstance(stage, CrossEncoderReranker)
    assert stage.model.batch_size == 2 and stage.model.max_length == 32
    assert len(stage.apply(QUERY, TEXTS)) == 3


def test_reranker_is_thread_and_async_safe(scorer: CrossEncoderModel) -> None:
    stage = CrossEncoderReranker(scorer, top_n=4)
    expected = stage.apply(QUERY, TEXTS * 3)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: stage.apply(QUERY, TEXTS * 3), range(8)))
    assert all(r == expected for r in results)

    async def many() -> list[list[Passage]]:
        return await asyncio.gather(*(stage.aapply(QUERY, TEXTS * 3) for _ in range(4)))

    assert all(r == expected for r in asyncio.run(many()))


_words = st.sampled_from(["the", "cat", "paris", "capital", "france", "北", "🎉", " ", "\n", "."])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.lists(_words, max_size=12).map("".join), max_size=8),
    top_n=st.one_of(st.none(), st.integers(0, 8)),
    threshold=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_reranker_properties(scorer: CrossEncoderModel, texts: list[str], top_n: int | None,
                             threshold: float | None) -> None:
    out = CrossEncoderReranker(scorer, top_n=top_n, threshold=threshold).process(QUERY, texts)
    kept = list(out.passages)
    # every passage is either kept or reported, exactly once
    assert sorted([p.index for p in kept] + [d.index for d in out.dropped]) == list(range(len(texts)))
    if top_n is not None:
        assert len(kept) <= top_n
    if threshold is not None:
        assert all(p.score is not None and p.score >= threshold for p in kept)
    scored = [p.score for p in kept if p.score is not None]
    assert scored == sorted(scored, reverse=True)
    assert all(p.score is None for p in kept[len(scored):])  # blanks only at the end
    assert all(p.text == texts[p.index] for p in kept)


def test_a_stage_around_an_in_memory_model_pickles_by_value(scorer: CrossEncoderModel) -> None:
    import pickle

    stage = CrossEncoderReranker(scorer, top_n=2)
    with pytest.raises(TypeError, match="cannot be serialized"):
        stage.config()
    again = pickle.loads(pickle.dumps(stage))
    assert [(p.index, p.score) for p in again.apply(QUERY, TEXTS)] == [(p.index, p.score)
                                                                       for p in stage.apply(QUERY, TEXTS)]


# --------------------------------------------------------------------------- quantize="int8"


def _linear_kinds(module: object) -> set[str]:
    """Where the linear layers of a torch module come from: ``torch.nn`` (float) or a quantized module."""
    import torch

    assert isinstance(module, torch.nn.Module)
    return {type(m).__module__ for m in module.modules() if type(m).__name__ == "Linear"}


def test_int8_reranker_is_close_to_float_and_leaves_the_given_scorer_alone(scorer: CrossEncoderModel) -> None:
    before = {k: v.clone() for k, v in scorer.model.state_dict().items()}
    model_before, stats_before = scorer.model, scorer.padding_stats()
    stage = CrossEncoderReranker(scorer, quantize="int8")
    assert stage.quantize == "int8" and "quantize='int8'" in repr(stage)
    assert "quantize" not in repr(CrossEncoderReranker(scorer)) and CrossEncoderReranker(scorer).quantize is None
    assert stage.model is not scorer and stage.model.model is not scorer.model
    assert _linear_kinds(stage.model.model) == {"torch.ao.nn.quantized.dynamic.modules.linear"}  # every one int8
    # the scorer passed in keeps its float model, weights and settings
    assert scorer.model is model_before and _linear_kinds(scorer.model) == {"torch.nn.modules.linear"}
    assert all(torch_equal(v, scorer.model.state_dict()[k]) for k, v in before.items())
    assert (stage.model.activation, stage.model.max_length, stage.model.batch_size) == (
        scorer.activation, scorer.max_length, scorer.batch_size)
    # the output contract is the float stage's: every passage, best first, identity and earlier scores kept
    given_ = _passages()
    out = stage.process(QUERY, given_)
    assert out.dropped == () and sorted(p.index for p in out.passages) == list(range(len(TEXTS)))
    scores = [p.score for p in out.passages]
    assert scores == sorted(scores, reverse=True)
    for p in out.passages:
        src = given_[p.index]
        assert p.text == src.text and p.metadata is src.metadata and p.original_score == 10.0 - p.index
        assert p.scores[-1][0] == "cross-encoder"
    # only the stage's own copy counts its tokens
    assert stage.padding_stats().real > 0 and scorer.padding_stats() == stats_before
    # scores move a little (sigmoid scale), but they do move: the int8 model really runs
    q = np.array(stage.score(QUERY, given_), dtype=np.float64)
    f = np.array(CrossEncoderReranker(scorer).score(QUERY, given_), dtype=np.float64)
    assert 0.0 < np.abs(q - f).max() < 0.05
    assert [p.index for p in out.passages][:2] == list(np.argsort(-f, kind="stable")[:2])  # same top 2
    assert [(p.index, p.score) for p in CrossEncoderReranker(scorer, quantize="int8", top_n=2).apply(
        QUERY, _passages())] == [(p.index, p.score) for p in out.passages[:2]]


def torch_equal(a: object, b: object) -> bool:
    import torch

    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return bool(torch.equal(a, b))


def test_int8_reranker_from_a_path_and_from_loaded_models(one_label: Path, two_label: Path) -> None:
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    stage = CrossEncoderReranker(one_label, quantize="int8", device="cpu", batch_size=2)
    assert _linear_kinds(stage.model.model) == {"torch.ao.nn.quantized.dynamic.modules.linear"}
    expected = stage.score(QUERY, [Passage.from_text(t, i) for i, t in enumerate(TEXTS)])
    # built from a path: its config carries the option, and a rebuilt (or unpickled) stage quantizes again
    assert stage.config()["kwargs"] == {"quantize": "int8", "device": "cpu", "batch_size": 2}
    import pickle

    again = pickle.loads(pickle.dumps(stage))
    assert again.quantize == "int8" and again.score(QUERY, [Passage.from_text(t, i) for i, t in enumerate(TEXTS)]
                                                    ) == pytest.approx(expected, abs=1e-6)
    # a loaded transformers model and a sentence-transformers CrossEncoder are copied, not changed
    hf = AutoModelForSequenceClassification.from_pretrained(str(one_label), local_files_only=True)
    ce = CrossEncoder(str(two_label), device="cpu", local_files_only=True)
    for given_, tokenizer in ((hf, str(one_label)), (ce, None)):
        inner = getattr(given_, "model", given_)
        q = CrossEncoderReranker(given_, tokenizer=tokenizer, quantize="int8")
        assert q.model.model is not inner and _linear_kinds(inner) == {"torch.nn.modules.linear"}
        f = CrossEncoderReranker(given_, tokenizer=tokenizer)
        passages = [Passage.from_text(t, i) for i, t in enumerate(TEXTS)]
        diff = np.abs(np.array(q.score(QUERY, passages)) - np.array(f.score(QUERY, passages)))
        assert 0.0 < diff.max() < 0.05
    # the registry passes the option through
    built = ragprune.create_stage("cross-encoder", model=str(one_label), quantize="int8", device="cpu")
    assert isinstance(built, CrossEncoderReranker) and built.quantize == "int8"


def test_int8_reranker_refuses_bad_values_and_other_devices(scorer: CrossEncoderModel, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("int4", "INT8", "", "fp16"):
        with pytest.raises(ValueError, match="quantize must be one of None, 'int8'"):
            CrossEncoderReranker(scorer, quantize=bad)
    for wrong in (8, True, b"int8"):
        with pytest.raises(TypeError, match="quantize"):
            CrossEncoderReranker(scorer, quantize=wrong)  # type: ignore[arg-type]
    # a path is refused before anything loads (a missing folder would be a ModelLoadError otherwise)
    missing = tmp_path / "never-loaded"
    with pytest.raises(ValueError, match=r"runs on CPU; device='meta' selects meta"):
        CrossEncoderReranker(missing, quantize="int8", device="meta")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # "auto" picks a GPU where there is one
    with pytest.raises(ValueError, match=r"runs on CPU; device='auto' selects cuda.*device='cpu'"):
        CrossEncoderReranker(missing, quantize="int8")
    monkeypatch.undo()
    with pytest.raises(ModelLoadError):
        CrossEncoderReranker(missing, quantize="int8", device="cpu")  # the device check passes, then loading fails
    # a scorer whose model is elsewhere is refused too, and left as it is
    elsewhere = CrossEncoderModel(scorer.model, tokenizer=scorer.tokenizer)
    elsewhere.device = torch.device("meta")
    with pytest.raises(ValueError, match=r"runs on CPU; cross-encoder .* is on meta"):
        CrossEncoderReranker(elsewhere, quantize="int8")
    assert _linear_kinds(elsewhere.model) == {"torch.nn.modules.linear"}

"""One validation rule everywhere: a wrong type is a TypeError, a bad value a ValueError, and the
message names the argument.  Every constructor below fails before it would load a model, so the
model arguments are paths that do not exist."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from ragprune import Budget
from ragprune.runtime.validation import check_choice, check_int, check_number, check_rate, renamed

NOPE = "/no/such/model"  # never loaded: every case below fails validation first


class Scorer:
    """A cross-encoder-shaped scorer: the query's words found in each text."""

    def score_pairs(self, query: str, texts: Sequence[str]) -> np.ndarray:
        q = set(query.lower().split())
        return np.array([len(q & set(t.lower().split())) for t in texts], dtype=np.float64)


def _cross_encoder(**kw: Any) -> Any:
    from ragprune.stages.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(NOPE, **kw)


def _embedding_filter(**kw: Any) -> Any:
    from ragprune.stages.embedding_filter import EmbeddingFilter

    return EmbeddingFilter(NOPE, **kw)


def _sentence_selector(**kw: Any) -> Any:
    from ragprune.stages.sentence_selector import SentenceSelector

    scorer: Any = Scorer()
    if {"batch_size", "max_length"} & set(kw):  # scorer options: only with a path, built before loading
        scorer, kw = NOPE, {"kind": "cross-encoder", **kw}
    return SentenceSelector(scorer, **{"threshold": 0.5, **kw})


def _provence(**kw: Any) -> Any:
    from ragprune.stages.provence import ProvencePruner

    return ProvencePruner(NOPE, **kw)


def _query_compressor(**kw: Any) -> Any:
    from ragprune.stages.query_compressor import QueryTokenCompressor

    return QueryTokenCompressor(NOPE, **kw)


def _token_classifier(**kw: Any) -> Any:
    from ragprune.stages.token_classifier import TokenClassifierCompressor

    return TokenClassifierCompressor(NOPE, **kw)


def _llmlingua(**kw: Any) -> Any:
    from ragprune.stages.llmlingua import LLMLinguaCompressor

    return LLMLinguaCompressor(NOPE, **kw)


def _longllmlingua(**kw: Any) -> Any:
    from ragprune.stages.longllmlingua import LongLLMLinguaCompressor

    return LongLLMLinguaCompressor(NOPE, **kw)


def _selective_context(**kw: Any) -> Any:
    from ragprune.stages.selective_context import SelectiveContextCompressor

    return SelectiveContextCompressor(NOPE, **kw)


def _causal_lm(**kw: Any) -> Any:
    from ragprune.runtime.causal_lm import CausalLMScorer

    return CausalLMScorer(NOPE, **kw)


def _cross_encoder_model(**kw: Any) -> Any:
    from ragprune.runtime.encoders import CrossEncoderModel

    return CrossEncoderModel(NOPE, **kw)


def _bi_encoder_model(**kw: Any) -> Any:
    from ragprune.runtime.encoders import BiEncoderModel

    return BiEncoderModel(NOPE, **kw)


def _lexical_reranker(**kw: Any) -> Any:
    from ragprune.testing import LexicalReranker

    return LexicalReranker(**kw)


def _fake_compressor(**kw: Any) -> Any:
    from ragprune.testing import FakeCompressor

    return FakeCompressor(**kw)


def _default_pipeline(**kw: Any) -> Any:
    from ragprune.defaults import default_pipeline

    return default_pipeline(**kw)


def _pruner_spec(**kw: Any) -> Any:
    from ragprune.stages.provence import PrunerSpec

    return PrunerSpec(**kw)


def _passage(**kw: Any) -> Any:
    from ragprune import Passage

    return Passage(**{"text": "a", **kw})


def _train_pruner(**kw: Any) -> Any:
    from ragprune.training.pruner import train_pruner

    return train_pruner([("q?", "A sentence.", [1], 1)], base_model=NOPE, output_dir="/no/such/dir", **kw)


T, V = TypeError, ValueError
NAN = math.nan

# (constructor, bad kwargs, exception, substring of the message naming the argument)
CASES: list[tuple[Callable[..., Any], dict[str, Any], type[Exception], str]] = [
    # CrossEncoderReranker (and the CrossEncoderModel it builds, which checks before loading)
    (_cross_encoder, {"top_n": -1}, V, "top_n"),
    (_cross_encoder, {"top_n": 1.5}, T, "top_n"),
    (_cross_encoder, {"top_n": True}, T, "top_n"),
    (_cross_encoder, {"threshold": "x"}, T, "threshold"),
    (_cross_encoder, {"threshold": NAN}, V, "threshold"),
    (_cross_encoder, {"batch_size": 0}, V, "batch_size"),
    (_cross_encoder, {"batch_size": 2.0}, T, "batch_size"),
    (_cross_encoder, {"max_length": 0}, V, "max_length"),
    (_cross_encoder, {"max_length": "512"}, T, "max_length"),
    (_cross_encoder, {"activation": "relu"}, V, "activation"),
    # EmbeddingFilter
    (_embedding_filter, {"top_n": -1}, V, "top_n"),
    (_embedding_filter, {"top_n": "3"}, T, "top_n"),
    (_embedding_filter, {"threshold": "x"}, T, "threshold"),
    (_embedding_filter, {"threshold": NAN}, V, "threshold"),
    (_embedding_filter, {"max_tokens": -5}, V, "max_tokens"),
    (_embedding_filter, {"max_tokens": 1.5}, T, "max_tokens"),
    (_embedding_filter, {"redundancy_threshold": 1.5}, V, "redundancy_threshold"),
    (_embedding_filter, {"redundancy_threshold": "x"}, T, "redundancy_threshold"),
    (_embedding_filter, {"faiss_min_items": None}, T, "faiss_min_items"),
    (_embedding_filter, {"batch_size": 0}, V, "batch_size"),
    (_embedding_filter, {"batch_size": 2.0}, T, "batch_size"),
    (_embedding_filter, {"level": "word"}, V, "level"),
    (_embedding_filter, {"level": 3}, T, "level"),
    # SentenceSelector
    (_sentence_selector, {"top_n": 0}, V, "top_n"),
    (_sentence_selector, {"top_n": 1.5}, T, "top_n"),
    (_sentence_selector, {"threshold": "x"}, T, "threshold"),
    (_sentence_selector, {"threshold": NAN}, V, "threshold"),
    (_sentence_selector, {"max_tokens": -1}, V, "max_tokens"),
    (_sentence_selector, {"context_window": -1}, V, "context_window"),
    (_sentence_selector, {"context_window": 1.5}, T, "context_window"),
    (_sentence_selector, {"top_n": 1, "top_n_scope": "document"}, V, "top_n_scope"),
    (_sentence_selector, {"batch_size": 0}, V, "batch_size"),
    (_sentence_selector, {"max_length": 0}, V, "max_length"),
    (_sentence_selector, {"max_length": "512"}, T, "max_length"),
    # ProvencePruner
    (_provence, {"threshold": "x"}, T, "threshold"),
    (_provence, {"threshold": NAN}, V, "threshold"),
    (_provence, {"top_n": 0}, V, "top_n"),
    (_provence, {"top_n": 1.5}, T, "top_n"),
    (_provence, {"batch_size": 0}, V, "batch_size"),
    (_provence, {"batch_size": "16"}, T, "batch_size"),
    (_provence, {"max_length": 0}, V, "max_length"),
    (_provence, {"max_length": "512"}, T, "max_length"),
    (_provence, {"stride": -1}, V, "stride"),
    (_provence, {"max_batch_tokens": 0}, V, "max_batch_tokens"),
    # QueryTokenCompressor (its scoring ProvencePruner checks before loading too)
    (_query_compressor, {"rate": 1.5}, V, "rate"),
    (_query_compressor, {"rate": "0.5"}, T, "rate"),
    (_query_compressor, {"rate": True}, T, "rate"),
    (_query_compressor, {"target_tokens": -1}, V, "target_tokens"),
    (_query_compressor, {"target_tokens": 1.5}, T, "target_tokens"),
    (_query_compressor, {"threshold": "x"}, T, "threshold"),
    (_query_compressor, {"threshold": NAN}, V, "threshold"),
    (_query_compressor, {"rank_bias": 1.0}, V, "rank_bias"),
    (_query_compressor, {"batch_size": 0}, V, "batch_size"),
    (_query_compressor, {"max_length": "x"}, T, "max_length"),
    # TokenClassifierCompressor
    (_token_classifier, {"rate": 0.0}, V, "rate"),
    (_token_classifier, {"rate": "0.5"}, T, "rate"),
    (_token_classifier, {"target_tokens": -1}, V, "target_tokens"),
    (_token_classifier, {"threshold": 1.5}, V, "threshold"),
    (_token_classifier, {"threshold": "x"}, T, "threshold"),
    (_token_classifier, {"batch_size": 0}, V, "batch_size"),
    (_token_classifier, {"batch_size": 2.0}, T, "batch_size"),
    (_token_classifier, {"max_batch_tokens": 0}, V, "max_batch_tokens"),
    (_token_classifier, {"max_length": 0}, V, "max_length"),
    (_token_classifier, {"max_length": "512"}, T, "max_length"),
    (_token_classifier, {"quantize": "int4"}, V, "quantize"),
    # the perplexity compressors (and the CausalLMScorer they build, which checks before loading)
    (_llmlingua, {"rate": 1.5}, V, "rate"),
    (_llmlingua, {"rate": "0.5"}, T, "rate"),
    (_llmlingua, {"rate": True}, T, "rate"),
    (_llmlingua, {"target_tokens": -1}, V, "target_tokens"),
    (_llmlingua, {"coarse_factor": 0.5}, V, "coarse_factor"),
    (_llmlingua, {"coarse_factor": "2"}, T, "coarse_factor"),
    (_llmlingua, {"segment_tokens": 0}, V, "segment_tokens"),
    (_llmlingua, {"batch_size": 0}, V, "batch_size"),
    (_longllmlingua, {"rate": 0.0}, V, "rate"),
    (_longllmlingua, {"rank_bias": 1.0}, V, "rank_bias"),
    (_longllmlingua, {"rank_bias": "0"}, T, "rank_bias"),
    (_longllmlingua, {"question_template": 3}, T, "question_template"),
    (_longllmlingua, {"question_template": "no placeholder"}, V, "question_template"),
    (_selective_context, {"rate": -0.1}, V, "rate"),
    (_selective_context, {"target_tokens": "10"}, T, "target_tokens"),
    (_selective_context, {"level": "word"}, V, "level"),
    (_selective_context, {"max_phrase_words": 0}, V, "max_phrase_words"),
    (_selective_context, {"max_phrase_words": 1.5}, T, "max_phrase_words"),
    (_causal_lm, {"window": 0}, V, "window"),
    (_causal_lm, {"batch_size": "8"}, T, "batch_size"),
    (_causal_lm, {"max_context": 8}, V, "max_context"),
    (_causal_lm, {"max_context": True}, T, "max_context"),
    # encoders on their own
    (_cross_encoder_model, {"max_batch_tokens": 0}, V, "max_batch_tokens"),
    (_bi_encoder_model, {"batch_size": 0}, V, "batch_size"),
    (_bi_encoder_model, {"batch_size": 2.5}, T, "batch_size"),
    (_bi_encoder_model, {"max_length": 0}, V, "max_length"),
    # model-free stages
    (_lexical_reranker, {"top_n": -1}, V, "top_n"),
    (_lexical_reranker, {"top_n": "2"}, T, "top_n"),
    (_lexical_reranker, {"threshold": NAN}, V, "threshold"),
    (_fake_compressor, {"rate": 0.0}, V, "rate"),
    (_fake_compressor, {"rate": "half"}, T, "rate"),
    # Budget
    (Budget, {"max_tokens": -1}, V, "max_tokens"),
    (Budget, {"max_tokens": 2.5}, T, "max_tokens"),
    (Budget, {"max_tokens": "100"}, T, "max_tokens"),
    (Budget, {"rate": 0.0}, V, "rate"),
    (Budget, {"rate": 1.5}, V, "rate"),
    (Budget, {"rate": "0.5"}, T, "rate"),
    (Budget, {"rate": True}, T, "rate"),
    (Budget, {"threshold": NAN}, V, "threshold"),
    (Budget, {"threshold": "x"}, T, "threshold"),
    (Budget, {"rank_bias": 1.0}, V, "rank_bias"),
    (Budget, {"rank_bias": "0"}, T, "rank_bias"),
    (Budget, {"truncate": "chars"}, V, "truncate"),
    (Budget, {"truncate": 0}, T, "truncate"),
    # everything else that takes numbers
    (_default_pipeline, {"budget": -1}, V, "budget"),
    (_default_pipeline, {"budget": 0.5}, T, "budget"),
    (_default_pipeline, {"budget": True}, T, "budget"),
    (_pruner_spec, {"max_length": 4}, V, "max_length"),
    (_pruner_spec, {"max_length": "512"}, T, "max_length"),
    (_pruner_spec, {"threshold": math.inf}, V, "threshold"),
    (_pruner_spec, {"ranking": "dot"}, V, "ranking"),
    (_passage, {"index": "0"}, T, "index"),
    (_train_pruner, {"epochs": 0}, V, "epochs"),
    (_train_pruner, {"epochs": 1.5}, T, "epochs"),
    (_train_pruner, {"lr": 0.0}, V, "lr"),
    (_train_pruner, {"lr": math.inf}, V, "lr"),
    (_train_pruner, {"lr": "1e-4"}, T, "lr"),
    (_train_pruner, {"warmup_ratio": 1.0}, V, "warmup_ratio"),
]


def _id(case: tuple[Callable[..., Any], dict[str, Any], type[Exception], str]) -> str:
    make, kwargs, exc, _ = case
    name = getattr(make, "__name__", str(make)).lstrip("_")
    return f"{name}-{'-'.join(f'{k}={v!r}' for k, v in kwargs.items())}-{exc.__name__}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_bad_argument_raises_the_same_exception_everywhere(
        case: tuple[Callable[..., Any], dict[str, Any], type[Exception], str]) -> None:
    make, kwargs, exc, argument = case
    with pytest.raises(exc) as info:
        make(**kwargs)
    assert type(info.value) is exc  # not a subclass (e.g. ModelLoadError): the check came first
    message = str(info.value)
    assert argument in message
    assert "got" in message


# ---------------------------------------------------------------- the helpers


def test_check_int() -> None:
    assert check_int("n", 3) == 3
    got = check_int("n", np.int64(7), min=0)
    assert got == 7 and type(got) is int
    assert check_int("n", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^top_n must be an int >= 0, got -1$"):
        check_int("top_n", -1, min=0)
    with pytest.raises(ValueError, match=r"^top_n must be an int >= 0 or None, got -1$"):
        check_int("top_n", np.int32(-1), min=0, allow_none=True)
    with pytest.raises(TypeError, match=r"^n must be an int, got True \(bool\)$"):
        check_int("n", True)
    with pytest.raises(TypeError, match=r"^n must be an int, got 3\.0 \(float\)$"):
        check_int("n", 3.0)
    with pytest.raises(TypeError, match=r"^n must be an int, got None$"):
        check_int("n", None)


def test_check_number() -> None:
    got = check_number("x", np.float32(0.5))
    assert got == 0.5 and type(got) is float
    assert type(check_number("x", 2)) is float and check_number("x", np.int64(2)) == 2.0
    with pytest.raises(TypeError, match=r"^threshold must be a real number, got 'x' \(str\)$"):
        check_number("threshold", "x")
    with pytest.raises(TypeError, match=r"^x must be a real number, got False \(bool\)$"):
        check_number("x", False)
    with pytest.raises(TypeError, match=r"^x must be a real number, got None$"):
        check_number("x", None)
    with pytest.raises(ValueError, match=r"^x must be a real number, got NaN$"):
        check_number("x", np.float64("nan"))
    with pytest.raises(ValueError, match=r"^x must be a real number in \[-1, 1\], got 1\.5$"):
        check_number("x", 1.5, min=-1.0, max=1.0)
    with pytest.raises(ValueError, match=r"^x must be a real number in \[0, 1\), got 1$"):
        check_number("x", 1, min=0, max=1, max_inclusive=False)
    with pytest.raises(ValueError, match=r"> 0"):
        check_number("x", 0.0, min=0.0, min_inclusive=False)
    assert check_number("x", 0.0, min=0.0) == 0.0


def test_infinity_is_in_range_only_where_the_range_allows_it() -> None:
    assert check_number("x", math.inf) == math.inf  # no bound on either side
    assert check_number("x", -math.inf, max=1.0) == -math.inf
    assert check_number("x", math.inf, min=1.0) == math.inf
    assert check_number("x", -math.inf, min=-math.inf) == -math.inf  # an inclusive infinite bound
    with pytest.raises(ValueError):
        check_number("x", math.inf, max=1.0)
    with pytest.raises(ValueError):
        check_number("x", -math.inf, min=-math.inf, min_inclusive=False)
    with pytest.raises(ValueError, match=r"^x must be a finite real number, got inf$"):
        check_number("x", math.inf, finite=True)


def test_check_rate() -> None:
    assert check_rate("rate", 1) == 1.0 and check_rate("rate", np.float64(0.25)) == 0.25
    assert check_rate("rate", None, allow_none=True) is None
    for bad in (0, 0.0, -0.1, 1.0001, math.inf):
        with pytest.raises(ValueError, match=r"^rate must be a real number in \(0, 1\]"):
            check_rate("rate", bad)
    for wrong in ("0.5", True, None, [0.5]):
        with pytest.raises(TypeError, match=r"^rate must be"):
            check_rate("rate", wrong)


def test_check_choice() -> None:
    assert check_choice("level", "word", ("sentence", "word")) == "word"
    assert check_choice("truncate", False, (False, "sentence")) is False
    assert check_choice("quantize", None, (None, "int8")) is None
    with pytest.raises(ValueError, match=r"^level must be one of 'sentence', 'word', got 'phrase'$"):
        check_choice("level", "phrase", ("sentence", "word"))
    with pytest.raises(TypeError, match=r"^level must be one of 'sentence', 'word', got 3 \(int\)$"):
        check_choice("level", 3, ("sentence", "word"))
    with pytest.raises(TypeError, match="truncate"):  # 0 == False, but it is not a bool
        check_choice("truncate", 0, (False, "sentence"))


def test_renamed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed("top_k", None, "top_n", 3) == 3
        assert renamed("top_k", None, "top_n", None) is None
    with pytest.warns(DeprecationWarning, match=r"^top_k is deprecated; use top_n$"):
        assert renamed("top_k", 4, "top_n", None) == 4
    with pytest.raises(TypeError, match="top_n or top_k, not both"):
        renamed("top_k", 4, "top_n", 3)
    with pytest.warns(DeprecationWarning, match="top_k_scope"):
        assert renamed("top_k_scope", "global", "top_n_scope", "passage", default="passage") == "global"


def test_numpy_scalars_are_accepted_and_stored_as_plain_numbers() -> None:
    b = Budget(max_tokens=np.int64(100), rate=np.float32(0.5), threshold=np.float64(0.25), rank_bias=np.float16(0))
    assert b.max_tokens == 100 and type(b.max_tokens) is int
    assert type(b.rate) is float and type(b.threshold) is float and type(b.rank_bias) is float
    with pytest.raises(TypeError, match="rate"):
        Budget(rate="0.5")  # type: ignore[arg-type]
    from ragprune import Passage

    assert type(Passage("a", np.int64(2)).index) is int  # type: ignore[arg-type]
    from ragprune.testing import LexicalReranker

    assert type(LexicalReranker(top_n=np.int16(2)).top_n) is int  # type: ignore[arg-type]


# ---------------------------------------------------------------- top_k -> top_n


def test_top_k_still_works_with_a_deprecation_warning() -> None:
    from ragprune.stages.sentence_selector import SentenceSelector

    texts = ["Paris is the capital of France. The cat sat on the mat.", "Berlin is a city. Paris is large."]
    query = "capital of France"
    with pytest.warns(DeprecationWarning, match="top_k is deprecated; use top_n"):
        old = SentenceSelector(Scorer(), top_k=1)
    assert old.top_n == 1
    with pytest.warns(DeprecationWarning, match="top_k_scope is deprecated; use top_n_scope"):
        scoped = SentenceSelector(Scorer(), top_n=1, top_k_scope="global")
    assert scoped.top_n_scope == "global"
    new = SentenceSelector(Scorer(), top_n=1)
    assert old.process(query, texts) == new.process(query, texts)


@pytest.mark.parametrize("make", [_embedding_filter, _sentence_selector, _provence])
def test_top_k_and_top_n_together_are_a_type_error(make: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match="top_n or top_k, not both"):
        make(top_n=2, top_k=3)


def test_validation_imports_without_torch() -> None:
    code = "import sys, ragprune.runtime.validation; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

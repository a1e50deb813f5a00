"""TokenClassifierCompressor: tiny random BERT and XLM-R token classifiers through the real loaders."""

from __future__ import annotations

import asyncio
import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY_BERT, save_tiny_model
from ragprune import Budget, Passage, Pipeline, create_stage, render_spans
from ragprune.runtime.loading import ModelLoadError, load_model, load_tokenizer
from ragprune.stages.token_classifier import TokenClassifierCompressor

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny models on a shared 2-core box: one intra-op thread avoids OpenMP
    # oversubscription; restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bert_path(tiny_bert_token_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conftest tiny BERT, with an embedding table covering every id its vocab file assigns."""
    from transformers import BertConfig, BertForTokenClassification

    path = tmp_path_factory.mktemp("tc-bert")
    for f in tiny_bert_token_classifier.iterdir():
        if "token" in f.name or f.name == "vocab.txt":
            shutil.copy(f, path / f.name)
    tok = load_tokenizer(path)
    lines = (path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocab = max(len(tok), len(lines))
    save_tiny_model(path, BertForTokenClassification, BertConfig(vocab_size=vocab, num_labels=2, **TINY_BERT))
    return path


@pytest.fixture(scope="module", params=["bert", "xlmr"])
def model_path(request: pytest.FixtureRequest, bert_path: Path, tiny_xlmr_token_classifier: Path) -> Path:
    return bert_path if request.param == "bert" else tiny_xlmr_token_classifier


@pytest.fixture(scope="module")
def bert(bert_path: Path) -> TokenClassifierCompressor:
    return TokenClassifierCompressor(bert_path, rate=0.5, device="cpu")


@pytest.fixture(scope="module")
def xlmr(tiny_xlmr_token_classifier: Path) -> TokenClassifierCompressor:
    return TokenClassifierCompressor(tiny_xlmr_token_classifier, rate=0.5, device="cpu")


def assert_faithful(p: Passage) -> None:
    assert p.original is not None and p.spans is not None
    assert p.text == render_spans(p.original, p.spans)
    prev = 0
    for a, b in p.spans:
        assert prev <= a < b <= len(p.original)
        prev = b


def kept_words(p: Passage) -> int:
    """Words of the original whose first non-space character lies inside the kept spans."""
    assert p.original is not None and p.spans is not None
    o = p.original
    units = Passage.from_text(o, 0).units("word")
    starts = np.asarray([b - len(o[a:b].lstrip()) for a, b in units], dtype=np.int64)
    inside = np.zeros(len(starts), dtype=bool)
    for a, b in p.spans:
        inside |= (starts >= a) & (starts < b)
    return int(inside.sum())


def n_words(text: str) -> int:
    return len(Passage.from_text(text, 0).units("word"))


PIECES = (
    "the a of and is in to was for on capital city france paris germany berlin river cat dog sat mat "
    "which what who first large small answer question 1999 42 3.14 . , ! ? ; : ' \" ( ) - | "
    "北 京 是 中 国 的 首 都 。 😀 👨‍👩‍👧 שלום مرحبا \x00 \x07 \t \n don't été"
).split(" ")
WORD = st.sampled_from(PIECES)
TEXT = st.lists(WORD, min_size=0, max_size=40).flatmap(
    lambda ws: st.sampled_from([" ", "", "  "]).map(lambda sep: sep.join(ws))
)
TEXTS = st.lists(TEXT, min_size=1, max_size=6)


def rate_compressor(path: Path, rate: float, cache: dict = {}) -> TokenClassifierCompressor:  # noqa: B006
    key = (str(path), rate)
    if key not in cache:
        cache[key] = TokenClassifierCompressor(path, rate=rate)
    return cache[key]


def test_rate_one_keeps_structured_text_whole(model_path: Path) -> None:
    comp = rate_compressor(model_path, 1.0)
    texts = ["- \n the", "- item one\n- item two", "| a | b |\n|---|---|\n| 1 | 2 |", "plain words here"]
    items = [Passage.from_text(t, i) for i, t in enumerate(texts)]  # structure="auto": markdown detected
    out = comp.apply(None, items)
    assert [(p.index, p.spans, p.text) for p in out] == [(p.index, p.spans, p.text) for p in items]


# ------------------------------------------------------------------ properties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=TEXTS, rate=st.sampled_from([0.1, 0.33, 0.5, 0.9, 1.0]), data=st.data())
def test_properties(model_path: Path, texts: list[str], rate: float, data: st.DataObject) -> None:
    comp = rate_compressor(model_path, rate)
    meta = [{"id": i} for i in range(len(texts))]
    # Read as prose: the random texts can start a line with "- " or "| ", which as markdown is a list or table
    # marker, not a word (structure-aware units have their own tests).
    items = [Passage.from_text(t, i, metadata=m, structure="prose")
             for i, (t, m) in enumerate(zip(texts, meta, strict=True))]
    res = comp.process(None, items)
    out = list(res.passages)
    # Nothing dropped with a rate; order, identity and metadata kept.
    assert not res.dropped
    assert [p.index for p in out] == list(range(len(texts)))
    for p, src in zip(out, items, strict=True):
        assert p.metadata is src.metadata
        assert p.original == src.original
        assert_faithful(p)
        if src.is_blank:
            assert p is src
            continue
        n = len(src.units("word"))
        assert kept_words(p) <= math.ceil(rate * n - 1e-9)
        if rate == 1.0:
            assert p.spans == src.spans
    # Batched together == one at a time (length sorting undone), and deterministic.
    singles = [comp.apply(None, [src])[0] for src in items]
    assert [p.spans for p in singles] == [p.spans for p in out]
    assert [p.spans for p in comp.apply(None, items)] == [p.spans for p in out]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT.filter(lambda t: bool(t.strip())), min_size=1, max_size=5),
       target=st.integers(min_value=0, max_value=60))
def test_target_tokens_respected(bert_path: Path, texts: list[str], target: int) -> None:
    comp = rate_compressor(bert_path, 1.0)
    comp = TokenClassifierCompressor(comp.model, tokenizer=comp.tokenizer, target_tokens=target)
    res = comp.process(None, texts)
    kept = sum(kept_words(p) for p in res.passages)
    assert kept <= target
    assert sorted([p.index for p in res.passages] + [d.index for d in res.dropped]) == list(range(len(texts)))
    assert all("budget" in d.reason for d in res.dropped)
    for p in res.passages:
        assert_faithful(p)


def test_rank_bias_favours_first_passages(bert: TokenClassifierCompressor) -> None:
    text = "the cat sat on the mat and the dog sat in the river of paris which is a large city . " * 3
    comp = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate=0.4, rank_bias=0.8)
    out = comp.apply(None, [text] * 4)
    counts = [kept_words(p) for p in out]
    assert counts[0] > counts[-1]
    assert sum(counts) <= math.ceil(0.4 * 4 * n_words(text))
    # the deprecated stage budget says the same thing, with a warning
    with pytest.warns(DeprecationWarning, match="budgets live in the Pipeline"):
        old = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, budget=Budget(rate=0.4, rank_bias=0.8))
    assert [p.spans for p in old.apply(None, [text] * 4)] == [p.spans for p in out]


def test_threshold_and_cap(bert: TokenClassifierCompressor) -> None:
    text = "the capital of france is paris , which is a large city on the river . berlin was first in 1999 !"
    everything = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, threshold=0.0).apply(None, [text])
    assert everything[0].text == text
    forced_only = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, threshold=1.0).apply(None, [text])
    kept = "".join(forced_only[0].text.split())
    assert set(kept) <= set(",.!1999")
    capped = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, threshold=0.0, rate=0.25)
    assert kept_words(capped.apply(None, [text])[0]) <= math.ceil(0.25 * n_words(text))


def test_threshold_nothing_passes_is_dropped_with_reason(bert: TokenClassifierCompressor) -> None:
    comp = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, threshold=1.0, force_tokens=(),
                                     force_digits=False)
    res = comp.process(None, ["the cat sat", "   "])
    assert [p.index for p in res.passages] == [1]
    assert res.dropped[0].index == 0 and "threshold" in res.dropped[0].reason


def test_force_digits_and_hard_budget(bert: TokenClassifierCompressor) -> None:
    text = "the cat sat on the mat in 1999 and the dog was first on the river in 2024"
    out = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate=0.3).apply(None, [text])[0]
    assert "1999" in out.text and "2024" in out.text
    # Budget smaller than the force-kept words: the budget wins.
    digits = " ".join(str(i) for i in range(10, 30))
    tight = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate=0.2).apply(None, [digits])[0]
    assert kept_words(tight) == math.ceil(0.2 * 20)
    assert_faithful(tight)


def test_force_newlines_kept(bert: TokenClassifierCompressor) -> None:
    text = "the cat sat on the mat\nthe dog sat in the river\nparis is a large city\n2024"
    out = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate=0.3).apply(None, [text])[0]
    assert out.text.count("\n") == 3
    none = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate=0.3, force_tokens=(),
                                     force_digits=False).apply(None, [text])[0]
    assert_faithful(none)


def test_scores(bert: TokenClassifierCompressor) -> None:
    fresh, scored = bert.apply(None, [Passage.from_text("the cat sat on the mat", 0),
                                      Passage.from_text("the dog sat", 1, score=7.5)])
    assert fresh.score is not None and 0.0 <= fresh.score <= 1.0
    assert fresh.scores[-1] == ("token-classifier", fresh.score)
    assert scored.score == 7.5 and scored.original_score == 7.5
    name, value = scored.scores[-1]
    assert name == "token-classifier" and 0.0 <= value <= 1.0


# ------------------------------------------------------------------ bad and odd inputs


def test_empty_and_blank(bert: TokenClassifierCompressor) -> None:
    assert bert.apply(None, []) == []
    blank = [Passage.from_text("", 0), Passage.from_text("  \n\t ", 1)]
    assert bert.apply(None, blank) == blank
    assert all(a is b for a, b in zip(bert.apply(None, blank), blank, strict=True))


def test_non_string_text(bert: TokenClassifierCompressor) -> None:
    with pytest.raises(TypeError, match=r"passages\[1\]"):
        bert.apply(None, ["ok", 123])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        bert.apply(None, "a single string")


@pytest.mark.parametrize("kwargs", [{"rate": 0.0}, {"rate": 1.5}, {"rate": -0.1}, {"target_tokens": -1},
                                    {"threshold": 1.5}, {"threshold": -0.5}, {"batch_size": 0},
                                    {"quantize": "int4"}, {"max_length": 100_000}, {"max_length": 2}])
def test_bad_arguments(bert: TokenClassifierCompressor, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, **kwargs)


def test_bad_types(bert: TokenClassifierCompressor) -> None:
    with pytest.raises(TypeError):
        TokenClassifierCompressor(bert.model)  # a loaded model needs its tokenizer
    with pytest.raises(TypeError):
        TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate="0.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, force_tokens=".")


def test_missing_model_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        TokenClassifierCompressor(missing)
    with pytest.raises(ModelLoadError, match="not-a-real/token-classifier"):
        TokenClassifierCompressor("not-a-real/token-classifier", local_files_only=True)


def test_tokenizer_model_mismatch_is_clear(bert_path: Path, tmp_path: Path) -> None:
    from transformers import BertConfig, BertForTokenClassification

    for f in bert_path.iterdir():
        if "token" in f.name or f.name == "vocab.txt":
            shutil.copy(f, tmp_path / f.name)
    save_tiny_model(tmp_path, BertForTokenClassification, BertConfig(vocab_size=20, num_labels=2, **TINY_BERT))
    comp = TokenClassifierCompressor(tmp_path)
    with pytest.raises(ValueError, match="do not match"):
        comp.apply(None, ["which answer to the question"])


def test_scripts_survive(model_path: Path) -> None:
    texts = ["北京是中国的首都。上海很大\uff01", "👨‍👩‍👧 family été 😀 don't", "שלום עולם. مرحبا بالعالم",
             "ctrl \x00\x07 chars\x1b here", "tab\tsep | a | b |\n| 1 | 2 |"]
    for rate in (0.5, 1.0):
        out = rate_compressor(model_path, rate).apply(None, texts)
        assert [p.index for p in out] == list(range(len(texts)))
        for p, t in zip(out, texts, strict=True):
            assert_faithful(p)
            if rate == 1.0:
                assert p.text == t


def test_duplicates_keep_identity(bert: TokenClassifierCompressor) -> None:
    text = "the capital of france is paris ."
    out = bert.apply(None, [text, text, text])
    assert [p.index for p in out] == [0, 1, 2]
    assert out[0].spans == out[1].spans == out[2].spans


def test_compressing_compressed_passage(bert: TokenClassifierCompressor) -> None:
    text = "the cat sat on the mat . the dog sat in the river . paris is a large city ."
    once = bert.apply(None, [text])[0]
    twice = bert.apply(None, [once])[0]
    assert_faithful(twice)
    for a, b in twice.spans or ():
        assert any(ca <= a and b <= cb for ca, cb in once.spans or ())
    assert kept_words(twice) <= kept_words(once)


def test_long_passage_windows(xlmr: TokenClassifierCompressor, monkeypatch: pytest.MonkeyPatch) -> None:
    sentence = "the cat sat on the mat and the dog was in the river. "
    text = sentence * (200_000 // len(sentence)) + "a " * 300 + "end."
    assert len(text) >= 200_000
    shapes: list[tuple[int, int]] = []
    forward = xlmr._forward

    def spy(work, batch):
        shapes.append((len(batch), max(b - a for _, a, b in batch)))
        return forward(work, batch)

    monkeypatch.setattr(xlmr, "_forward", spy)
    p = xlmr.apply(None, [text, "the cat sat."])
    body = xlmr.max_length - 2
    assert len(shapes) > 1
    assert all(size <= xlmr.batch_size and longest <= body for size, longest in shapes)
    assert_faithful(p[0]) and assert_faithful(p[1])
    assert 0 < kept_words(p[0]) <= math.ceil(0.5 * n_words(text))


def test_windows_cut_at_sentence_ends(bert: TokenClassifierCompressor) -> None:
    # Internal steps inspected on purpose: where the windows are cut.
    comp = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate=0.5, max_length=24)
    sentences = ["the cat sat on the mat. ", "the dog sat. ", "paris is a large city on the river. "]
    text = "".join(sentences * 6) + " ".join(["word"] * 40) + "."
    w = comp._words(0, Passage.from_text(text, 0))
    assert w is not None
    comp._tokenize([w])
    assert w.windows is not None and w.token_word is not None
    body = comp.max_length - 2
    assert w.windows[0][0] == 0 and w.windows[-1][1] == len(w.ids)
    sentence_starts = {a for a, _ in Passage.from_text(text, 0).units("sentence")}
    word_starts = w.word_text[:, 0]
    for (a, b), (c, _) in zip(w.windows, w.windows[1:], strict=False):
        assert b == c and 0 < b - a <= body
    cuts = [int(word_starts[w.token_word[a]]) for a, _ in w.windows[1:]]
    long_start = text.index("word")
    for cut in cuts:
        assert cut in sentence_starts or cut > long_start  # in the over-long sentence: word ends
    assert any(cut > long_start for cut in cuts)


# ------------------------------------------------------------------ loading, threads, async, pipeline


def test_loaded_model_and_tokenizer(model_path: Path) -> None:
    from transformers import AutoModelForTokenClassification

    model = load_model(AutoModelForTokenClassification, model_path, device="cpu")
    tok = load_tokenizer(model_path)
    by_objects = TokenClassifierCompressor(model, tokenizer=tok, rate=0.5)
    by_path = rate_compressor(model_path, 0.5)
    text = "the capital of france is paris , a large city on the river ."
    assert by_objects.apply(None, [text])[0].spans == by_path.apply(None, [text])[0].spans


def test_registry_and_pipeline(bert_path: Path) -> None:
    comp = create_stage("token-classifier", model=bert_path, rate=0.5)
    assert isinstance(comp, TokenClassifierCompressor) and not comp.requires_query
    result = Pipeline([comp]).run(None, ["the cat sat on the mat .", "paris is a large city ."])
    assert result.stats.tokens_after < result.stats.tokens_before


def test_thread_safe_and_async(bert: TokenClassifierCompressor) -> None:
    texts = [f"the cat sat on the mat {i} . the dog sat in the river of paris ." for i in range(8)]
    expected = [p.spans for p in bert.apply(None, texts)]
    results: list[list] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append([p.spans for p in bert.apply(None, texts)])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected for r in results) and len(results) == 12

    async def run() -> list:
        return await asyncio.gather(*(bert.aapply(None, texts) for _ in range(3)))

    for out in asyncio.run(run()):
        assert [p.spans for p in out] == expected


def test_int8_quantized(bert_path: Path) -> None:
    comp = TokenClassifierCompressor(bert_path, rate=0.5, quantize="int8", device="cpu")
    import torch

    modules = dict(comp.model.named_modules())
    floats = [name for name, m in modules.items() if type(m) is torch.nn.Linear]
    int8 = [name for name, m in modules.items()
            if type(m).__name__ == "Linear" and type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert floats == ["classifier"]  # the label head stays in float, every other linear layer is int8
    assert len(int8) == 6 * comp.model.config.num_hidden_layers  # query, key, value, output, up, down
    text = "the capital of france is paris , a large city on the river ."
    out = comp.apply(None, [text, "北京是中国的首都。"])
    for p in out:
        assert_faithful(p)
    assert kept_words(out[0]) <= math.ceil(0.5 * n_words(text))


def test_batches_bounded_and_complete(bert: TokenClassifierCompressor) -> None:
    lengths = [5, 120, 7, 64, 64, 3, 100, 30, 31, 32, 128, 1] * 4
    batches = bert.batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= bert.batch_size and (len(b) == 1 or longest * len(b) <= bert.max_batch_tokens)
        assert len(b) == 1 or longest * len(b) <= 1.2 * sum(lengths[i] for i in b)  # CPU: little padding


def test_tiktoken_costs_are_per_word_counts(bert: TokenClassifierCompressor) -> None:
    from ragprune import TiktokenCounter

    counter = TiktokenCounter("cl100k_base")
    comp = TokenClassifierCompressor(bert.model, tokenizer=bert.tokenizer, rate=0.3, counter=counter)
    text = "The capital of France is Paris's. It was 1999!\n北京是中国的首都。😀 שלום 123456789 ... done"
    p = Passage.from_text(text, 0)
    w = comp._words(0, p)
    assert w is not None
    comp._tokenize([w])
    words = [text[a:b].strip() for a, b in w.word_text.tolist()]
    assert comp._costs(w).tolist() == [counter.count(x) for x in words]
    out = comp.apply(None, [p])[0]
    costs = comp._costs(w)
    firsts = [b - len(text[a:b].lstrip()) for a, b in w.word_orig.tolist()]
    kept = sum(int(c) for c, f in zip(costs, firsts, strict=True) if any(a <= f < b for a, b in out.spans or ()))
    assert 0 < kept <= math.ceil(0.3 * int(costs.sum()))

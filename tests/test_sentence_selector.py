"""SentenceSelector: extractive sentence selection with cross- and bi-encoders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragprune import Passage, WordCounter, render_spans
from ragprune.stages.sentence_selector import SentenceSelector
from ragprune.testing import _terms

QUERY = "what is the capital of france?"
PASSAGES = [
    "Paris is the capital of France. The cat sat on the mat. Berlin is a large city in Germany.",
    "The dog sat. Who was first? The river is small.",
    "Which city is the capital? Paris. The answer is Paris!",
    "北京是中国的首都。The capital of France is Paris.",
]


class LexicalScorer:
    """Cross-encoder double: fraction of query terms in the text; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score_pairs(self, query: str, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        q = _terms(query)
        return np.array([len(q & _terms(t)) / len(q) for t in texts], dtype=np.float32)


class BagEncoder:
    """Bi-encoder double: a bag-of-terms vector over a fixed vocabulary."""

    VOCAB = sorted(_terms(" ".join(PASSAGES) + " " + QUERY))

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), len(self.VOCAB) + 1), dtype=np.float32)
        for i, t in enumerate(texts):
            terms = _terms(t)
            out[i, :-1] = [w in terms for w in self.VOCAB]
            out[i, -1] = 0.1
        return out


def check_extractive(p: Passage) -> None:
    assert p.original is not None
    assert p.text == render_spans(p.original, p.spans or ())
    for a, b in p.spans or ():
        assert 0 <= a < b <= len(p.original)


def unit_scores(texts: list[str]) -> list[np.ndarray]:
    s = LexicalScorer()
    return [s.score_pairs(QUERY, [Passage.from_text(t, 0).original[a:b] for a, b in Passage.from_text(t, 0).units()])
            for t in texts]


@pytest.fixture(scope="module")
def tiny_encoders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-logit cross-encoder and a plain mean-pooled encoder (vocabulary sized to cover every id)."""
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from conftest import TINY_BERT, save_wordpiece_tokenizer

    paths = []
    for name, cls, extra in (("ce", BertForSequenceClassification, {"num_labels": 1}), ("bi", BertModel, {})):
        path = tmp_path_factory.mktemp(name)
        tok = save_wordpiece_tokenizer(path)
        config = BertConfig(vocab_size=max(tok.get_vocab().values()) + 1, **TINY_BERT, **extra)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            model = cls(config)
        model.save_pretrained(str(path))
        paths.append(path)
    return paths[0], paths[1]


def test_configuration_errors(tiny_encoders: tuple[Path, Path]) -> None:
    ce, _ = tiny_encoders
    with pytest.raises(ValueError, match="kind"):
        SentenceSelector(ce, threshold=0.5)
    with pytest.raises(ValueError, match="kind"):
        SentenceSelector(ce, kind="reranker", threshold=0.5)
    with pytest.raises(ValueError, match="at least one"):
        SentenceSelector(LexicalScorer())
    with pytest.raises(TypeError):
        SentenceSelector(object(), threshold=0.5)
    with pytest.raises(TypeError):
        SentenceSelector(LexicalScorer(), kind="bi-encoder", threshold=0.5)
    with pytest.raises(ValueError):
        SentenceSelector(LexicalScorer(), top_n=0)
    with pytest.raises(ValueError):
        SentenceSelector(LexicalScorer(), top_n=1, top_n_scope="document")
    with pytest.raises(ValueError):
        SentenceSelector(LexicalScorer(), threshold=float("nan"))
    with pytest.raises(ValueError):
        SentenceSelector(LexicalScorer(), max_tokens=-1)
    with pytest.raises(ValueError):
        SentenceSelector(LexicalScorer(), threshold=0.1, context_window=-1)
    with pytest.raises(ValueError, match="only apply"):
        SentenceSelector(LexicalScorer(), threshold=0.1, device="cpu")


def test_bad_inputs() -> None:
    sel = SentenceSelector(LexicalScorer(), threshold=0.3)
    with pytest.raises(ValueError):
        sel.process(None, PASSAGES)
    with pytest.raises(ValueError):
        sel.process("  ", PASSAGES)
    with pytest.raises(TypeError):
        sel.process(QUERY, [3])  # type: ignore[list-item]
    assert sel.process(QUERY, []).passages == ()
    res = sel.process(QUERY, ["", "   "])
    assert [p.text for p in res.passages] == ["", "   "] and not res.dropped


def test_one_batched_call_for_all_sentences() -> None:
    scorer = LexicalScorer()
    SentenceSelector(scorer, threshold=0.3).process(QUERY, [*PASSAGES, " "])
    n_units = sum(len(Passage.from_text(t, 0).units()) for t in PASSAGES)
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == n_units
    bag = BagEncoder()
    SentenceSelector(bag, threshold=0.3).process(QUERY, PASSAGES)
    assert len(bag.calls) == 1 and bag.calls[0][0] == QUERY and len(bag.calls[0]) == n_units + 1


def test_threshold_semantics_identity_order() -> None:
    items = [Passage.from_text(t, 20 + i, score=float(i), metadata={"i": i}) for i, t in enumerate(PASSAGES)]
    scores = unit_scores(PASSAGES)
    t = 0.3
    res = SentenceSelector(LexicalScorer(), threshold=t).process(QUERY, items)
    want_kept = [p.index for p, s in zip(items, scores, strict=True) if (s >= t).any()]
    assert [p.index for p in res.passages] == want_kept  # input order kept
    by_index = {p.index: p for p in items}
    for p in res.passages:
        src = by_index[p.index]
        s = scores[items.index(src)]
        want = [u for u, v in zip(src.units(), s, strict=True) if v >= t]
        assert p.spans == src.with_spans(want).spans
        assert p.metadata is src.metadata and p.score == src.score
        check_extractive(p)
    assert {d.index for d in res.dropped} == {p.index for p in items} - set(want_kept)
    assert all("threshold 0.3" in d.reason for d in res.dropped)
    everything = SentenceSelector(LexicalScorer(), threshold=-1.0).process(QUERY, items)
    assert [p.text for p in everything.passages] == PASSAGES
    nothing = SentenceSelector(LexicalScorer(), threshold=2.0).process(QUERY, items)
    assert nothing.passages == () and len(nothing.dropped) == 4


def test_top_n_per_passage_and_global() -> None:
    scores = unit_scores(PASSAGES)
    res = SentenceSelector(LexicalScorer(), top_n=1).process(QUERY, PASSAGES)
    assert len(res.passages) == 4
    for p, s in zip(res.passages, scores, strict=True):
        best = Passage.from_text(PASSAGES[p.index], 0).units()[int(np.argmax(s))]
        assert p.spans == Passage.from_text(PASSAGES[p.index], 0).with_spans([best]).spans
    glob = SentenceSelector(LexicalScorer(), top_n=2, top_n_scope="global").process(QUERY, PASSAGES)
    kept_units = sum(len(p.units()) for p in glob.passages)
    assert kept_units == 2
    flat = np.concatenate(scores)
    kept_scores = sorted(flat, reverse=True)[:2]
    assert min(kept_scores) >= sorted(flat, reverse=True)[2]
    assert all("top_n=2 over all passages" in d.reason for d in glob.dropped)
    # combined: threshold first, then top_n among survivors
    both = SentenceSelector(LexicalScorer(), threshold=0.5, top_n=5, top_n_scope="global").process(QUERY, PASSAGES)
    assert sum(len(p.units()) for p in both.passages) == int((flat >= 0.5).sum())


@pytest.mark.parametrize("cap", [0, 4, 9, 20, 1000])
def test_token_budget(cap: int) -> None:
    counter = WordCounter()
    res = SentenceSelector(LexicalScorer(), max_tokens=cap).process(QUERY, PASSAGES)
    assert sum(counter.count(p.text) for p in res.passages) <= cap
    assert {p.index for p in res.passages} | {d.index for d in res.dropped} == {0, 1, 2, 3}
    for p in res.passages:
        check_extractive(p)
    if cap == 1000:
        assert [p.text for p in res.passages] == PASSAGES
    if cap == 0:
        assert all("token budget" in d.reason for d in res.dropped)


def test_context_window_scores_neighbours() -> None:
    scorer = LexicalScorer()
    SentenceSelector(scorer, threshold=0.0, context_window=1).process(QUERY, [PASSAGES[1]])
    units = Passage.from_text(PASSAGES[1], 0).units()
    texts = scorer.calls[0]
    assert texts[0] == render_spans(PASSAGES[1], units[:2]).strip()
    assert texts[1] == render_spans(PASSAGES[1], units[:3]).strip()
    assert texts[2] == render_spans(PASSAGES[1], units[1:]).strip()
    # a neighbour's relevance lifts a sentence that alone scores nothing
    alone = SentenceSelector(LexicalScorer(), threshold=0.3).process(QUERY, [PASSAGES[0]])
    ctx = SentenceSelector(LexicalScorer(), threshold=0.3, context_window=1).process(QUERY, [PASSAGES[0]])
    assert len(ctx.passages[0].units()) > len(alone.passages[0].units())


def test_compressed_input_and_cjk() -> None:
    p = Passage.from_text(PASSAGES[0] + " " + PASSAGES[3], 7)
    units = p.units()
    cut = p.with_spans([units[0], units[2], units[3]])
    res = SentenceSelector(LexicalScorer(), threshold=0.3).process(QUERY, [cut])
    for q in res.passages:
        check_extractive(q)
        assert all(any(a >= ca and b <= cb for ca, cb in cut.spans or ()) for a, b in q.spans or ())
    odd = ["北京是中国的首都。北京很大。", "🇫🇷 Paris! \u200f", "مرحبا. Paris!\x07"]
    cjk = SentenceSelector(LexicalScorer(), threshold=-1).process(QUERY, odd)
    assert [p.text for p in cjk.passages] == odd


def test_real_cross_encoder_path(tiny_encoders: tuple[Path, Path]) -> None:
    from ragprune.runtime.encoders import CrossEncoderModel

    ce, _ = tiny_encoders
    sel = SentenceSelector(ce, kind="cross-encoder", top_n=2, device="cpu")
    model = CrossEncoderModel(ce, device="cpu")
    res = sel.process(QUERY, PASSAGES)
    again = SentenceSelector(model, top_n=2).process(QUERY, PASSAGES)
    assert [(p.index, p.spans) for p in res.passages] == [(p.index, p.spans) for p in again.passages]
    for p in res.passages:
        src = Passage.from_text(PASSAGES[p.index], p.index)
        units = src.units()
        single = np.array([model.score_pairs(QUERY, [PASSAGES[p.index][a:b]])[0] for a, b in units])
        best = sorted(np.argsort(-single, kind="stable")[:2])
        assert p.spans == src.with_spans([units[i] for i in best]).spans
        check_extractive(p)
    assert [(p.index, p.spans) for p in sel.process(QUERY, PASSAGES).passages] == [
        (p.index, p.spans) for p in res.passages]


def test_real_bi_encoder_path(tiny_encoders: tuple[Path, Path]) -> None:
    from ragprune.runtime.encoders import BiEncoderModel

    _, bi = tiny_encoders
    sel = SentenceSelector(bi, kind="bi-encoder", threshold=0.0, top_n=1, device="cpu")
    res = sel.process(QUERY, [*PASSAGES, ""])
    assert [p.index for p in res.passages] == [0, 1, 2, 3, 4]
    enc = BiEncoderModel(bi, device="cpu")
    for p in res.passages[:4]:
        src = Passage.from_text(PASSAGES[p.index], p.index)
        units = src.units()
        emb = enc.encode([QUERY, *[PASSAGES[p.index][a:b] for a, b in units]])
        cos = emb[1:] @ emb[0] / (np.linalg.norm(emb[1:], axis=1) * np.linalg.norm(emb[0]))
        assert p.spans == src.with_spans([units[int(np.argmax(cos))]]).spans


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.text(alphabet=st.sampled_from(list("the capital of france paris. 北京。 \n!?")), max_size=80),
                   min_size=1, max_size=5),
    threshold=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)),
    top_n=st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
    scope=st.sampled_from(["passage", "global"]),
    cap=st.one_of(st.none(), st.integers(min_value=0, max_value=30)),
    window=st.integers(min_value=0, max_value=2),
)
def test_property_invariants(texts: list[str], threshold: Any, top_n: Any, scope: str, cap: Any, window: int) -> None:
    if threshold is None and top_n is None and cap is None:
        threshold = 0.5
    sel = SentenceSelector(LexicalScorer(), threshold=threshold, top_n=top_n, top_n_scope=scope, max_tokens=cap,
                           context_window=window)
    res = sel.process(QUERY, texts)
    assert sorted([p.index for p in res.passages] + [d.index for d in res.dropped]) == list(range(len(texts)))
    assert [p.index for p in res.passages] == sorted(p.index for p in res.passages)
    for p in res.passages:
        check_extractive(p)
        if not p.is_blank and top_n is not None and scope == "passage":
            assert len(p.units()) <= top_n or len(Passage.from_text(texts[p.index], 0).units()) <= top_n
    if cap is not None:
        assert sum(WordCounter().count(p.text) for p in res.passages if not p.is_blank) <= cap


# ----------------------------------------------------------------- quantize="int8"


def _linear_kinds(module: Any) -> set[str]:
    """Where the linear layers of a torch module come from: ``torch.nn`` (float) or a quantized module."""
    return {type(m).__module__ for m in module.modules() if type(m).__name__ == "Linear"}


FLOAT, INT8 = {"torch.nn.modules.linear"}, {"torch.ao.nn.quantized.dynamic.modules.linear"}


def test_int8_cross_encoder_selector(tiny_encoders: tuple[Path, Path]) -> None:
    import torch

    from ragprune.runtime.encoders import CrossEncoderModel

    ce, _ = tiny_encoders
    sel = SentenceSelector(ce, kind="cross-encoder", top_n=2, device="cpu", quantize="int8")
    assert sel.quantize == "int8" and "quantize='int8'" in repr(sel) and _linear_kinds(sel.scorer.model) == INT8
    model = CrossEncoderModel(ce, device="cpu")
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    given_ = SentenceSelector(model, top_n=2, quantize="int8")
    # a CrossEncoderModel passed in is copied: it keeps its float model and weights, and counts nothing
    assert given_.scorer is not model and given_.scorer.model is not model.model
    assert _linear_kinds(given_.scorer.model) == INT8 and _linear_kinds(model.model) == FLOAT
    assert all(torch.equal(v, model.model.state_dict()[k]) for k, v in before.items())
    res = sel.process(QUERY, [*PASSAGES, ""])
    assert model.padding_stats().real == 0 and sel.padding_stats().real > 0
    # the output contract of the float selector: input order, at most top_n sentences each, extractive
    assert [p.index for p in res.passages] == list(range(len(PASSAGES) + 1)) and res.passages[-1].text == ""
    for p in res.passages[:-1]:
        check_extractive(p)
        assert len(p.spans or ()) <= 2
    assert [(p.index, p.spans) for p in given_.process(QUERY, PASSAGES).passages] == [
        (p.index, p.spans) for p in res.passages[:-1]]
    # sentence scores move a little, but they move: the int8 model runs
    texts = [PASSAGES[0][a:b] for a, b in Passage.from_text(PASSAGES[0], 0).units()]
    texts += [PASSAGES[3][a:b] for a, b in Passage.from_text(PASSAGES[3], 0).units()]
    q = sel.score_texts(QUERY, texts)
    f = SentenceSelector(model, top_n=2).score_texts(QUERY, texts)
    assert q.shape == f.shape == (len(texts),) and 0.0 < np.abs(q - f).max() < 0.05


def test_int8_selector_refuses_what_it_cannot_quantize(tiny_encoders: tuple[Path, Path], tmp_path: Path) -> None:
    ce, bi = tiny_encoders
    missing = tmp_path / "never-loaded"  # every refusal comes before loading (else: ModelLoadError)
    for bad in ("int4", "INT8"):
        with pytest.raises(ValueError, match="quantize must be one of None, 'int8'"):
            SentenceSelector(missing, kind="cross-encoder", top_n=1, quantize=bad)
    with pytest.raises(TypeError, match="quantize"):
        SentenceSelector(missing, kind="cross-encoder", top_n=1, quantize=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cross-encoder scorer only, not a bi-encoder"):
        SentenceSelector(missing, kind="bi-encoder", top_n=1, quantize="int8")
    with pytest.raises(ValueError, match=r"runs on CPU; device='meta' selects meta"):
        SentenceSelector(missing, kind="cross-encoder", top_n=1, quantize="int8", device="meta")
    from ragprune.runtime.loading import LoadOptions, ModelLoadError

    with pytest.raises(ValueError, match=r"runs on CPU; device='meta' selects meta"):
        SentenceSelector(missing, kind="cross-encoder", top_n=1, quantize="int8", options=LoadOptions(device="meta"))
    with pytest.raises(ModelLoadError):
        SentenceSelector(missing, kind="cross-encoder", top_n=1, quantize="int8", device="cpu")
    with pytest.raises(ValueError, match="needs a CrossEncoderModel or a model path"):
        SentenceSelector(LexicalScorer(), top_n=1, quantize="int8")
    with pytest.raises(ValueError, match="cross-encoder scorer only"):
        SentenceSelector(BagEncoder(), top_n=1, quantize="int8")
    from ragprune.runtime.encoders import BiEncoderModel

    with pytest.raises(ValueError, match="cross-encoder scorer only"):
        SentenceSelector(BiEncoderModel(bi, device="cpu"), top_n=1, quantize="int8")
    assert SentenceSelector(ce, kind="cross-encoder", top_n=1, device="cpu").quantize is None

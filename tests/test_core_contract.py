"""The Passage contract, segmentation, token counting, budgets and pipelines (no torch needed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ragprune
from ragprune import (
    Budget,
    LongContextReorder,
    Passage,
    Pipeline,
    TiktokenCounter,
    WordCounter,
    allocate_tokens,
    get_counter,
    render_spans,
    sentence_spans,
    word_spans,
)
from ragprune.stages.top_n import TopN
from ragprune.testing import FakeCompressor, LexicalReranker

TEXTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=200
) | st.sampled_from(
    [
        "Paris is the capital of France. It is large!  Berlin?\nrow | a | b\n\nEnd",
        "北京是中国的首都。上海很大！你好",
        "مرحبا بالعالم. كيف حالك?",
        "👨‍👩‍👧 family été don't 3.14 \x00\x07 tab\tend.",
        "   ",
        "",
    ]
)


def assert_faithful(p: Passage) -> None:
    assert p.original is not None and p.spans is not None
    assert p.text == render_spans(p.original, p.spans)
    prev = 0
    for a, b in p.spans:
        assert prev <= a < b <= len(p.original)
        prev = b


# ---------------------------------------------------------------- segmentation


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_segmenters_partition_text(text: str) -> None:
    for spans in (sentence_spans(text), word_spans(text)):
        assert "".join(text[a:b] for a, b in spans) == text
        assert all(b > a for a, b in spans)


def test_unspaced_scripts_split_per_character() -> None:
    text = "北京是中国的首都。上海很大！"
    words = [text[a:b] for a, b in word_spans(text)]
    assert words[:3] == ["北", "京", "是"]
    assert [text[a:b] for a, b in sentence_spans(text)] == ["北京是中国的首都。", "上海很大！"]


def test_sentences_respect_abbreviations_and_lines() -> None:
    text = "Mr. Smith met J. K. Rowling. She left.\n| a | b |\n| 1 | 2 |"
    sents = [text[a:b] for a, b in sentence_spans(text)]
    assert sents == ["Mr. Smith met J. K. Rowling. ", "She left.\n", "| a | b |\n", "| 1 | 2 |"]


def test_render_inserts_space_only_between_spaced_words() -> None:
    assert render_spans("The cat, sat.", [(0, 4), (4, 7), (9, 12)]) == "The cat sat"
    assert render_spans("北京，上海", [(0, 2), (3, 5)]) == "北京上海"


# ---------------------------------------------------------------- passage


def test_passage_validation() -> None:
    with pytest.raises(TypeError, match="text"):
        Passage(text=3, index=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="index"):
        Passage(text="a", index="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spans"):
        Passage(text="a", index=0, original="ab")
    p = Passage.from_text("", 0)
    assert p.spans == () and p.is_blank and p.kept_fraction == 1.0


def test_passage_is_immutable_and_keeps_metadata_identity() -> None:
    meta = {"source": "a.txt", "page": 3, "obj": object()}
    p = Passage.from_text("Hello world. Bye.", 7, score=0.5, metadata=meta)
    q = p.with_spans([(0, 12)]).with_score("s", 0.9)
    assert q.metadata is meta and q.index == 7 and q.original_score == 0.5 and q.score == 0.9
    assert q.scores == (("s", 0.9),)
    with pytest.raises(AttributeError):
        q.text = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        q.with_spans([(13, 17)])  # outside the kept spans: compression only removes


@settings(max_examples=150, deadline=None)
@given(TEXTS, st.data())
def test_units_and_with_spans_stay_extractive(text: str, data: st.DataObject) -> None:
    p = Passage.from_text(text, 0)
    for level in ("sentence", "word"):
        units = p.units(level)
        chosen = [u for u in units if data.draw(st.booleans())]
        q = p.with_spans(chosen)
        assert_faithful(q)
        # a second round only ever removes more
        r = q.with_spans(q.units("word")[::2])
        assert_faithful(r)
        assert sum(b - a for a, b in r.spans or ()) <= sum(b - a for a, b in q.spans or ())


def test_to_passages_rejects_bad_types() -> None:
    with pytest.raises(TypeError, match=r"passages\[1\]"):
        LexicalReranker().apply("q", ["ok", 5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single str"):
        LexicalReranker().apply("q", "just a string")
    with pytest.raises(ValueError, match="needs a query"):
        LexicalReranker().apply(None, ["a"])
    with pytest.raises(TypeError, match="query"):
        LexicalReranker().apply(3, ["a"])  # type: ignore[arg-type]
    assert LexicalReranker().apply("q", []) == []


# ---------------------------------------------------------------- token counting


def test_counters() -> None:
    assert WordCounter().count("北京是 the cat.") == 6
    assert get_counter("whitespace").count(" a  b\tc ") == 3
    tk = get_counter("cl100k_base")
    assert isinstance(tk, TiktokenCounter) and tk.count("hello world") == 2
    assert tk.count_many(["a", "hello world"]) == [1, 2]
    assert get_counter(len).count("abc") == 3
    with pytest.raises(ValueError, match="unknown token counter"):
        get_counter("no-such-encoding")


def test_tiktoken_missing_cache_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import tiktoken_ext.openai_public  # noqa: F401

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="not available offline"):
        TiktokenCounter("p50k_base", cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_shipped_encodings_need_no_other_package(name: str, monkeypatch) -> None:
    """The files inside ragprune suffice: no cache dir, and llama-index's copies hidden."""
    import ragprune.text.tokens as tokens

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setattr(tokens, "_tiktoken_cache_dirs", lambda cache_dir: [])
    counter = TiktokenCounter(name)
    assert counter.name == name and counter.count("hello world") == 2


def test_shipped_encoding_is_verified(tmp_path, monkeypatch) -> None:
    """A tampered encoding file (wrong sha256) is never used."""
    import ragprune.text.tokens as tokens

    bad = tmp_path / "encodings"
    bad.mkdir()
    (bad / "cl100k_base.tiktoken").write_bytes(b"aGk= 0\n")  # parses, wrong hash
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setattr(tokens, "_tiktoken_cache_dirs", lambda cache_dir: [])
    monkeypatch.setattr(tokens, "ENCODINGS_DIR", bad)
    with pytest.raises(FileNotFoundError, match="not available offline"):
        TiktokenCounter("cl100k_base")


def test_missing_tiktoken_names_the_extra(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "tiktoken_ext", None)
    monkeypatch.setitem(sys.modules, "tiktoken_ext.openai_public", None)
    for call in (lambda: get_counter("cl100k_base"), lambda: get_counter("p50k_base"),
                 lambda: TiktokenCounter("cl100k_base")):
        with pytest.raises(ImportError, match=r"ragprune\[tiktoken\]"):
            call()


def test_hf_tokenizer_counter(tiny_bert_token_classifier) -> None:
    c = get_counter(str(tiny_bert_token_classifier))
    assert c.count("the capital of france") == 4
    assert c.count_many(["the", ""]) == [1, 0]


# ---------------------------------------------------------------- budgets


def test_budget_validation() -> None:
    for bad in (dict(rate=0.0), dict(rate=1.5), dict(max_tokens=-1), dict(rank_bias=1.0)):
        with pytest.raises(ValueError):
            Budget(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Budget(max_tokens=2.5)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXTS, max_size=8), st.integers(0, 60), st.sampled_from([False, True, "sentence", "word"]))
def test_budget_cap_is_respected(texts: list[str], cap: int, truncate: bool | str) -> None:
    counter = WordCounter()
    passages = [Passage.from_text(t, i) for i, t in enumerate(texts)]
    out = Budget(max_tokens=cap, truncate=truncate).fit(passages, counter)
    assert sum(counter.count(p.text) for p in out.passages) <= cap
    kept = {p.index for p in out.passages}
    assert kept.isdisjoint({d.index for d in out.dropped})
    assert kept | {d.index for d in out.dropped} == set(range(len(texts)))
    for p in out.passages:
        assert_faithful(p)
    # order is preserved
    assert [p.index for p in out.passages] == sorted(kept, key=lambda i: i)


def test_threshold_and_cap_together() -> None:
    ps = [Passage.from_text("one two three four", i, score=s) for i, s in enumerate([0.9, 0.1, 0.8, None])]
    out = Budget(threshold=0.5, max_tokens=6, truncate="word").fit(ps, WordCounter())
    assert [p.index for p in out.passages] == [0, 2]
    assert out.passages[1].text.split() == ["one", "two"]  # truncated at a word end to fit the cap
    reasons = {d.index: d.reason for d in out.dropped}
    assert "below threshold" in reasons[1] and "unscored" in reasons[3]


def test_sentence_truncation_never_cuts_mid_sentence() -> None:
    ps = [Passage.from_text("One two three. Four five six seven.", 0), Passage.from_text("Eight nine ten.", 1)]
    out = Budget(max_tokens=6).fit(ps, WordCounter())
    assert [p.text for p in out.passages] == ["One two three."]
    assert Budget(max_tokens=6, truncate="word").fit(ps, WordCounter()).passages[0].text == "One two three. Four five"
    with pytest.raises(ValueError, match="truncate"):
        Budget(truncate="chars")


def test_rate_budget_uses_original_tokens() -> None:
    ps = [Passage.from_text("a b c d e f g h i j", 0)]
    out = Budget(rate=0.3, truncate="word").fit(ps, WordCounter())
    assert WordCounter().count(out.passages[0].text) == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 500), min_size=1, max_size=12), st.integers(0, 3000),
       st.floats(0.0, 0.95))
def test_allocation(counts: list[int], total: int, bias: float) -> None:
    alloc = allocate_tokens(counts, total, rank_bias=bias)
    assert len(alloc) == len(counts)
    assert all(0 <= a <= c for a, c in zip(alloc, counts, strict=True))
    assert sum(alloc) == min(total, sum(counts))


def test_allocation_favours_higher_ranks() -> None:
    alloc = allocate_tokens([100] * 5, 200, rank_bias=0.8)
    assert alloc == sorted(alloc, reverse=True) and alloc[0] > alloc[-1]
    assert allocate_tokens([100] * 4, 200) == [50, 50, 50, 50]


# ---------------------------------------------------------------- pipelines


DOCS = [
    "Paris is the capital of France. It is large.",
    "Berlin is in Germany.",
    "",
    "The capital of Spain is Madrid, a city.",
    "Cats are animals.",
    "Paris is the capital of France. It is large.",  # a duplicate keeps its own identity
]


def test_pipeline_reports_everything() -> None:
    pipe = Pipeline([LexicalReranker(top_n=4), FakeCompressor(rate=0.5)], budget=Budget(max_tokens=12))
    r = pipe.run("capital of France", DOCS)
    kept = [p.index for p in r.passages]
    assert kept[:2] == [0, 5]  # both duplicates, distinct identities
    assert set(kept) | {d.index for d in r.dropped} == set(range(len(DOCS)))
    assert r.stats.tokens_after == sum(p.tokens_after or 0 for p in r.passages) <= 12
    assert r.stats.tokens_before == sum(WordCounter().count(t) for t in DOCS)
    assert 0 < r.stats.rate < 1 and r.stats.tokens_saved > 0
    assert [t.stage for t in r.stats.stages] == ["lexical-reranker", "fake-compressor", "budget"]
    for p in r.passages:
        assert_faithful(p)
        assert p.tokens_before is not None and p.tokens_after is not None


def test_pipeline_blank_passages_pass_through() -> None:
    r = Pipeline([FakeCompressor(rate=0.5)]).run(None, ["", "   ", "a b c d"])
    assert [p.text for p in r.passages] == ["", "   ", "a b"]
    assert [p.tokens_after for p in r.passages] == [0, 0, 2]


def test_pipeline_validation() -> None:
    with pytest.raises(TypeError, match="apply"):
        Pipeline([object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="repeats passage index"):
        Pipeline([]).run(None, [Passage.from_text("a", 0), Passage.from_text("b", 0)])
    assert Pipeline([LexicalReranker()]).requires_query
    with pytest.raises(ValueError, match="needs a query"):
        Pipeline([LexicalReranker()]).run("  ", ["a"])
    r = Pipeline([LexicalReranker()]).run("q", [])
    assert r.passages == () and r.stats.rate == 1.0


def test_pipeline_is_a_stage_and_nests() -> None:
    inner = Pipeline([LexicalReranker(top_n=3)])
    outer = Pipeline([inner, LongContextReorder()], budget=Budget(max_tokens=100))
    assert [p.index for p in outer.apply("capital France", DOCS)] == [0, 3, 5]


def test_plain_apply_objects_are_stages() -> None:
    class KeepFirst:
        def apply(self, query, passages):
            return list(passages)[:1]

    r = Pipeline([KeepFirst()]).run(None, ["a", "b"])
    assert [d.reason for d in r.dropped] == ["dropped by KeepFirst"]


def test_long_context_reorder() -> None:
    ps = [Passage.from_text(str(i), i, score=10 - i) for i in range(5)]
    assert [p.index for p in LongContextReorder().apply(None, ps)] == [0, 2, 4, 3, 1]
    shuffled = [ps[3], ps[0], ps[4], ps[1], ps[2]]
    assert [p.index for p in LongContextReorder(by_score=True).apply(None, shuffled)] == [0, 2, 4, 3, 1]


async def test_async_equals_sync() -> None:
    pipe = Pipeline([LexicalReranker(top_n=3), FakeCompressor(rate=0.5)])
    sync = pipe.run("capital of France", DOCS)
    results = await asyncio.gather(*(pipe.arun("capital of France", DOCS) for _ in range(8)))
    assert all(r.passages == sync.passages for r in results)


def test_huge_passage_budget() -> None:
    text = ("Sentence number one is here. " * 40_000)[:1_000_000]
    r = Pipeline([], budget=Budget(max_tokens=50)).run(None, [text])
    assert r.stats.tokens_after <= 50 and r.passages[0].text.startswith("Sentence number one")


# ---------------------------------------------------------------- package surface


def test_registry() -> None:
    assert "token-classifier" in ragprune.available_stages()
    with pytest.raises(ValueError, match="valid:"):
        ragprune.create_stage("nope")
    assert isinstance(ragprune.create_stage("top-n", n=2), TopN)
    # test doubles live in ragprune.testing, not in the production registry
    assert not {"lexical-reranker", "fake-compressor"} & set(ragprune.available_stages())


def test_import_is_light_and_offline() -> None:
    code = (
        "import sys, socket\n"
        "def no_net(*a, **k): raise SystemExit('network touched')\n"
        "socket.socket.connect = no_net\n"
        "import ragprune, ragprune.integrations\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'faiss', 'langchain_core',"
        " 'llama_index') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_resolve() -> None:
    assert ragprune.__all__ == sorted(ragprune.__all__)
    for name in ragprune.__all__:
        assert getattr(ragprune, name) is not None, name
    for name in ragprune.available_stages():
        assert isinstance(ragprune.registry.stage_class(name), type), name
    with pytest.raises(AttributeError):
        ragprune.no_such_name  # noqa: B018


def test_top_n_keeps_the_first_n_in_order_and_reports_the_rest() -> None:
    passages = [Passage.from_text(t, i) for i, t in enumerate(["a", "b", "c", "d"])]
    out = TopN(2).process(None, passages[::-1])
    assert [p.index for p in out.passages] == [3, 2]
    assert [(d.index, d.stage, d.reason) for d in out.dropped] == [(1, "top-n", "rank 3 beyond top_n=2"),
                                                                    (0, "top-n", "rank 4 beyond top_n=2")]
    assert TopN(0).apply(None, passages) == [] and len(TopN(9).apply(None, passages)) == 4
    with pytest.raises(ValueError, match="n must be"):
        TopN(-1)
    with pytest.raises(TypeError, match="n must be"):
        TopN(True)  # type: ignore[arg-type]


def test_rank_bias_splits_the_budget_in_favour_of_higher_ranks() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    passages = [Passage.from_text(text, i) for i in range(4)]
    counter = WordCounter()
    greedy = Budget(max_tokens=24).fit(passages, counter)
    shared = Budget(max_tokens=24, rank_bias=0.9).fit(passages, counter)
    assert [counter.count(p.text) for p in greedy.passages] == [16, 8]  # rank order, the second cut
    kept = [counter.count(p.text) for p in shared.passages]
    assert sum(kept) <= 24 and len(kept) >= 3 and kept == sorted(kept, reverse=True)
    assert {p.index for p in shared.passages} | {d.index for d in shared.dropped} == {0, 1, 2, 3}


def test_replace_keeps_text_and_spans_consistent() -> None:
    p = Passage.from_text("Alpha one. Beta two.", 0)
    assert p.replace(score=0.5).score == 0.5
    with pytest.raises(ValueError, match="with_spans"):
        p.replace(spans=((0, 5),))
    cut = p.with_spans([(0, 10)])
    assert cut.replace(metadata={"a": 1}).text == "Alpha one."


def test_stages_and_pipelines_show_their_settings() -> None:
    pipeline = Pipeline([LexicalReranker(top_n=2), FakeCompressor(rate=0.5), LongContextReorder(), TopN(3)],
                        budget=Budget(max_tokens=5))
    text = repr(pipeline)
    for part in ("LexicalReranker(top_n=2", "FakeCompressor(rate=0.5)", "LongContextReorder(by_score=False)",
                 "TopN(3)", "max_tokens=5"):
        assert part in text
    assert " object at 0x" not in text

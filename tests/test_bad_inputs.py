"""The bad-input catalogue: every registered stage meets the same table of bad and edge inputs.

A stage registered in ``ragprune.registry`` without a builder here fails
``test_every_registered_stage_is_in_the_catalogue``, so new stages join automatically.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ragprune
from ragprune import Budget, InputLimits, Passage, Pipeline, render_spans
from ragprune.runtime.loading import ModelLoadError

QUERY = "what is the capital of france"
OK_TEXTS = ["Paris is the capital of France. The cat sat on the mat.", "Berlin is a large city in Germany."]


def _builders(paths: dict[str, Path]) -> dict[str, Any]:
    from ragprune import (
        CrossEncoderModel,
        CrossEncoderReranker,
        EmbeddingFilter,
        LLMLinguaCompressor,
        LongContextReorder,
        LongLLMLinguaCompressor,
        QueryTokenCompressor,
        SelectiveContextCompressor,
        SentenceSelector,
        TokenClassifierCompressor,
        default_pruner,
    )
    from ragprune.defaults import DEFAULT_PRUNER_PATH
    from ragprune.stages.top_n import TopN

    lm = {"max_context": 256, "window": 64, "device": "cpu"}
    return {
        "token-classifier": lambda: TokenClassifierCompressor(paths["tc"], device="cpu"),
        "cross-encoder": lambda: CrossEncoderReranker(paths["ce"], device="cpu"),
        "embedding-filter": lambda: EmbeddingFilter(paths["tc"], threshold=-1.0, device="cpu"),
        "long-context-reorder": lambda: LongContextReorder(),
        "provence": lambda: default_pruner(device="cpu"),
        "query-token-compressor": lambda: QueryTokenCompressor(DEFAULT_PRUNER_PATH, device="cpu",
                                                               local_files_only=True),
        "sentence-selector": lambda: SentenceSelector(CrossEncoderModel(paths["ce"], device="cpu"), threshold=-1e9),
        "llmlingua": lambda: LLMLinguaCompressor(str(paths["lm"]), local_files_only=True, **lm),
        "longllmlingua": lambda: LongLLMLinguaCompressor(str(paths["lm"]), local_files_only=True, **lm),
        "selective-context": lambda: SelectiveContextCompressor(str(paths["lm"]), local_files_only=True, **lm),
        "top-n": lambda: TopN(1),
    }


@pytest.fixture(scope="module")
def stages(tiny_bert_token_classifier: Path, tiny_sequence_classifier: Path, tiny_causal_lm: Path) -> dict[str, Any]:
    builders = _builders({"tc": tiny_bert_token_classifier, "ce": tiny_sequence_classifier, "lm": tiny_causal_lm})
    return {name: build() for name, build in builders.items()}


def test_every_registered_stage_is_in_the_catalogue(stages: dict[str, Any]) -> None:
    assert sorted(stages) == ragprune.available_stages()


# (label, passages, query, expected): expected is an exception type, or "ok" (a valid result)
CATALOGUE: list[tuple[str, Any, Any, Any]] = [
    ("empty list", [], QUERY, "ok"),
    ("blank passages", ["", "   \n\t "], QUERY, "ok"),
    ("non-ASCII and emoji", ["北京是中国的首都。Paris is the capital of France 😀. שלום."], QUERY, "ok"),
    ("lone surrogate", ["Paris \ud800 is the capital."], QUERY, ValueError),
    ("duplicate indexes", [Passage.from_text("Paris.", 0), Passage.from_text("Berlin.", 0)], QUERY, ValueError),
    ("None in the list", ["Paris.", None], QUERY, TypeError),
    ("a string, not a list", "Paris is the capital.", QUERY, TypeError),
    ("query not a string", OK_TEXTS, 42, TypeError),
    ("query with a lone surrogate", OK_TEXTS, "capital \udfff", ValueError),
    ("passage over the size limit", ["word " * 300_000], QUERY, ValueError),
]


def _check_result(stage: Any, texts: list[Any], out: list[Passage]) -> None:
    indexes = [p.index for p in out]
    assert len(indexes) == len(set(indexes))
    for p in out:
        original = texts[p.index] if isinstance(texts[p.index], str) else texts[p.index].original
        assert p.original == original and p.text == render_spans(p.original, p.spans or ())


@pytest.mark.parametrize(("label", "passages", "query", "expected"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(stages: dict[str, Any], label: str, passages: Any, query: Any, expected: Any) -> None:
    for stage in stages.values():
        q = query if (stage.requires_query or label.startswith("query")) else None
        if expected == "ok":
            out = stage.apply(q, passages)
            _check_result(stage, passages, out)
        else:
            with pytest.raises(expected):
                stage.apply(q, passages)
            with pytest.raises(expected):
                Pipeline([stage]).run(q, passages)


def test_blank_query_for_a_query_stage(stages: dict[str, Any]) -> None:
    for stage in stages.values():
        if stage.requires_query:
            with pytest.raises(ValueError, match="needs a query"):
                stage.apply("  ", OK_TEXTS)


# ---------------------------------------------------------------- the named cases


def test_input_limits_are_settings_with_a_truncation_policy() -> None:
    from ragprune.testing import LexicalReranker

    text = "Paris is the capital of France. " * 10
    strict = Pipeline([LexicalReranker()], limits=InputLimits(max_passage_chars=50))
    with pytest.raises(ValueError, match=r"passages\[0\] has 320 characters, over the limit of 50"):
        strict.run(QUERY, [text])
    cut = Pipeline([LexicalReranker()], limits=InputLimits(max_passage_chars=50, policy="truncate")).run(QUERY, [text])
    (p,) = cut.passages
    assert len(p.text) <= 50 and text.startswith(p.text) and p.original == text
    with pytest.raises(ValueError, match="max_passages"):
        Pipeline([LexicalReranker()], limits=InputLimits(max_passages=2)).run(QUERY, ["a", "b", "c"])
    with pytest.raises(ValueError, match="policy"):
        InputLimits(policy="drop")
    assert Pipeline([LexicalReranker()], limits=InputLimits(max_passage_chars=None)).run(QUERY, ["x" * 2_000_000])


def test_nan_scores_never_pass_a_threshold() -> None:
    passages = [Passage.from_text("a", 0, score=math.nan), Passage.from_text("b", 1, score=0.9)]
    out = Budget(threshold=0.5).fit(passages, ragprune.WordCounter())
    assert [p.index for p in out.passages] == [1] and out.dropped[0].index == 0


def test_numpy_and_string_budget_values() -> None:
    assert Budget(max_tokens=np.int64(100)).max_tokens == 100
    with pytest.raises(TypeError, match="rate"):
        Budget(rate="0.5")  # type: ignore[arg-type]


def test_unknown_device_is_a_clear_error() -> None:
    from ragprune import resolve_device

    with pytest.raises(ValueError, match="'tpu' is not a torch device"):
        resolve_device("tpu")
    with pytest.raises(TypeError, match="device"):
        resolve_device(3.5)


def test_max_length_beyond_the_model_positions() -> None:
    with pytest.raises(ValueError, match=r"max_length must be <= 512"):
        ragprune.default_pruner(max_length=2048, device="cpu")


def test_missing_relative_folder_is_not_taken_for_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelLoadError, match="not a directory"):
        ragprune.CrossEncoderReranker("models/my-reranker")  # sockets are blocked: a hub attempt would fail


def test_langchain_documents_built_without_validation() -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from ragprune.integrations.langchain import RagpruneCompressor
    from ragprune.testing import LexicalReranker

    compressor = RagpruneCompressor(LexicalReranker())
    no_metadata = Document.model_construct(page_content="Paris is the capital of France.", metadata=None)
    out = compressor.compress_documents([no_metadata], QUERY)
    assert out[0].metadata["ragprune"]["index"] == 0 and no_metadata.metadata is None
    with pytest.raises(TypeError, match=r"documents\[0\].page_content must be str"):
        compressor.compress_documents([Document.model_construct()], QUERY)


class _Flag:
    """Unpickling this object writes a file: a pickle that runs code when loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.write_text, (Path(self.path), "unpickled"))


@pytest.mark.parametrize("loader", ["cross-encoder", "bi-encoder", "embedding-filter", "langchain", "llamaindex",
                                    "token-classifier", "pruner"])
def test_pickle_weights_are_refused_before_unpickling(tmp_path: Path, tiny_sequence_classifier: Path,
                                                      loader: str) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_sequence_classifier, folder)
    (folder / "model.safetensors").unlink()
    flag = tmp_path / "flag.txt"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Flag(str(flag))))
    build = {
        "cross-encoder": lambda: ragprune.CrossEncoderModel(folder, device="cpu"),
        "bi-encoder": lambda: ragprune.BiEncoderModel(folder, device="cpu"),
        "embedding-filter": lambda: ragprune.EmbeddingFilter(folder, threshold=0.0, device="cpu"),
        "langchain": lambda: _langchain_embeddings(folder),
        "llamaindex": lambda: _llamaindex_embedding(folder),
        "token-classifier": lambda: ragprune.TokenClassifierCompressor(folder, device="cpu"),
        "pruner": lambda: ragprune.ProvencePruner(folder, device="cpu"),
    }[loader]
    with pytest.raises(ModelLoadError, match=r"pytorch_model\.bin"):
        build()
    assert not flag.exists(), "the pickle was unpickled"


def _langchain_embeddings(folder: Path) -> Any:
    pytest.importorskip("langchain_core")
    from ragprune.integrations.langchain import RagpruneEmbeddings

    return RagpruneEmbeddings(folder, device="cpu")


def _llamaindex_embedding(folder: Path) -> Any:
    pytest.importorskip("llama_index.core")
    from ragprune.integrations.llamaindex import RagpruneEmbedding

    return RagpruneEmbedding(folder, device="cpu")


def test_sentence_transformers_folder_with_pickle_modules_is_refused(tmp_path: Path, minilm_path: Path) -> None:
    import shutil

    folder = tmp_path / "st"
    shutil.copytree(minilm_path, folder)
    for weights in folder.rglob("*.safetensors"):
        weights.unlink()
    flag = tmp_path / "flag.txt"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Flag(str(flag))))
    with pytest.raises(ModelLoadError, match="pickle"):
        ragprune.BiEncoderModel(folder, device="cpu")
    assert not flag.exists()


@pytest.mark.parametrize("truncate", ["word", "sentence"])
@pytest.mark.parametrize("cap", [3, 6, 9, 14, 20, 30])
def test_budget_truncation_never_cuts_inside_structure(truncate: str, cap: int) -> None:
    from ragprune.text.structure import atomic_spans

    texts = [
        "Intro words here. <table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>31</td></tr></table> End.",
        "Facts follow.\n| Name | Age |\n|---|---|\n| Ann | 31 |\n| Bob | 42 |\nDone here.",
        "Code below.\n```python\nx = 1\ny = 2\nprint(x + y)\n```\nAfter the code.",
    ]
    counter = ragprune.WhitespaceCounter()
    for text in texts:
        out = Budget(max_tokens=cap, truncate=truncate).fit([Passage.from_text(text, 0)], counter)
        for p in out.passages:
            end = (p.spans or ((0, 0),))[-1][1]
            assert not any(a < end < b for a, b in atomic_spans(text)), (text, p.text)
            assert counter.count(p.text) <= cap
            assert p.text.count("```") % 2 == 0 and p.text.count("<") == p.text.count(">")


def test_atomic_spans_find_tags_rows_and_fences() -> None:
    from ragprune.text.structure import atomic_spans, inside

    text = "a <b>bold</b>\n| x | y |\n```\ncode\n```\n"
    spans = atomic_spans(text)
    assert [text[a:b] for a, b in spans] == ["<b>", "</b>", "| x | y |", "```\ncode\n```"]
    assert inside(spans, 3) and not inside(spans, 2) and not inside(spans, 5)

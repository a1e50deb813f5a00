"""Chunked tokenization: the same ids and offsets as one call on the whole text."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

import itertools

from conftest import save_unigram_tokenizer, save_wordpiece_tokenizer
from ragprune.runtime.tokenize import chunk_bounds, token_ids_and_offsets

WORDS = ["Paris", "is", "the", "capital", "of", "France.", "naïve", "café", "北京是中国的首都。", "x=1;", "(see",
         "p.", "3)", "—", "well-known", "U.S.", "1,000,000", "🙂", "end."]
SPACES = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \u00a0"]


def _text(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(WORDS) + rng.choice(SPACES) for _ in range(n)).strip()


@pytest.mark.parametrize("chunk", [1, 7, 50, 333])
def test_chunk_bounds_cover_the_text_and_cut_at_whitespace(chunk: int) -> None:
    text = _text(chunk, 400)
    bounds = chunk_bounds(text, chunk)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(bounds))
    for start, _ in bounds[1:]:
        assert text[start].isspace() and not text[start - 1].isspace()
    assert len(bounds) > 1
    assert chunk_bounds("x" * 100, 10) == [(0, 100)]  # no whitespace: one piece
    with pytest.raises(ValueError, match="chunk_chars"):
        chunk_bounds(text, 0)


@pytest.mark.parametrize("kind", ["wordpiece", "unigram"])
def test_chunked_tokens_equal_one_call(tmp_path: Path, kind: str) -> None:
    tok = save_wordpiece_tokenizer(tmp_path) if kind == "wordpiece" else save_unigram_tokenizer(tmp_path)
    texts = [_text(1, 600), "", "short text", _text(2, 30), "x" * 500]
    whole = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    for chunk in (40, 257, 10_000):
        ids, offsets = token_ids_and_offsets(tok, texts, chunk_chars=chunk)
        for i in range(len(texts)):
            np.testing.assert_array_equal(ids[i], np.asarray(whole["input_ids"][i], dtype=np.int64))
            np.testing.assert_array_equal(offsets[i], np.asarray(whole["offset_mapping"][i]).reshape(-1, 2))
            assert ids[i].dtype == np.int64 and offsets[i].shape == (len(ids[i]), 2)


def test_shipped_tokenizer_chunked_equals_whole() -> None:
    from ragprune.defaults import DEFAULT_PRUNER_PATH
    from ragprune.runtime.loading import load_tokenizer

    tok = load_tokenizer(DEFAULT_PRUNER_PATH, local_files_only=True)
    text = _text(3, 3000)
    whole = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    (ids,), (offsets,) = token_ids_and_offsets(tok, [text], chunk_chars=500)
    np.testing.assert_array_equal(ids, whole["input_ids"])
    np.testing.assert_array_equal(offsets, np.asarray(whole["offset_mapping"]).reshape(-1, 2))

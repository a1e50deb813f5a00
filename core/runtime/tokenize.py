"""Tokenize with character offsets, in chunks, so memory stays flat in a text's length.

A fast tokenizer called on one huge string builds every token's Python objects
(strings, offset tuples, word ids) at once: one 1,000,000-word passage peaks at
several hundred MB above the ids themselves.  :func:`token_ids_and_offsets` cuts
texts longer than ``chunk_chars`` at whitespace into pieces of about that size,
tokenizes a few pieces at a time and keeps only two NumPy arrays per text (ids
and offsets, shifted back to the whole text), so the peak is bounded by the chunk
size, not the text.

Cuts fall on whitespace that follows a non-space character, and each piece
starts at the cut (the whitespace goes with the next piece): a tokenizer that
splits words at whitespace before its subword model (WordPiece, BPE with a
whitespace or byte-level pre-tokenizer, Unigram with a metaspace) gives the
same tokens as on the whole text, except where a single token would span the cut
(none does for those pre-tokenizers).  A text without whitespace for more than
``chunk_chars`` characters is cut at the next whitespace after the limit, or not
at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .validation import check_int

__all__ = ["CHUNK_CHARS", "chunk_bounds", "token_ids_and_offsets"]

CHUNK_CHARS = 20_000
"""Texts longer than this many characters are tokenized piece by piece."""

_SPACE = re.compile(r"(?<=\S)\s")


def chunk_bounds(text: str, chunk_chars: int = CHUNK_CHARS) -> list[tuple[int, int]]:
    """``[start, end)`` character ranges covering ``text``, cut at whitespace about every ``chunk_chars``."""
    chunk_chars = check_int("chunk_chars", chunk_chars, min=1)
    bounds: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    while n - start > chunk_chars:
        m = _SPACE.search(text, start + chunk_chars)
        if m is None:
            break
        bounds.append((start, m.start()))
        start = m.start()
    bounds.append((start, n))
    return bounds


def _encode(tokenizer: Any, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
                    return_token_type_ids=False, verbose=False)
    ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
    offsets = [np.asarray(x, dtype=np.int64).reshape(-1, 2) for x in enc["offset_mapping"]]
    return ids, offsets


def token_ids_and_offsets(tokenizer: Any, texts: Sequence[str], *, chunk_chars: int = CHUNK_CHARS,
                          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token ids (``int64 [n]``) and character offsets (``int64 [n, 2]``) of each text, no special tokens.

    Short texts go through the tokenizer in one batched call; a text longer than
    ``chunk_chars`` is tokenized one piece at a time (:func:`chunk_bounds`), its
    offsets shifted to the whole text.
    """
    chunk_chars = check_int("chunk_chars", chunk_chars, min=1)
    ids: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(texts)
    offsets: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)] * len(texts)
    short = [i for i, t in enumerate(texts) if len(t) <= chunk_chars]
    if short:
        got_ids, got_offsets = _encode(tokenizer, [texts[i] for i in short])
        for k, i in enumerate(short):
            ids[i], offsets[i] = got_ids[k], got_offsets[k]
    for i, text in enumerate(texts):
        if len(text) <= chunk_chars:
            continue
        parts_ids, parts_offsets = [], []
        for start, end in chunk_bounds(text, chunk_chars):
            (piece_ids,), (piece_offsets,) = _encode(tokenizer, [text[start:end]])
            parts_ids.append(piece_ids)
            parts_offsets.append(piece_offsets + start)
        ids[i] = np.concatenate(parts_ids)
        offsets[i] = np.concatenate(parts_offsets).reshape(-1, 2)
    return ids, offsets

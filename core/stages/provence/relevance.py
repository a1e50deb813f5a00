"""From model inputs to sentence relevance: the pair template, windows over long passages, and the
mean token relevance of each sentence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...passage import Passage


@dataclass(frozen=True, slots=True)
class PairTemplate:
    """Where the tokenizer puts its special tokens around a (query, passage) pair.

    Learnt once from the tokenizer itself, so ``[CLS] q [SEP] p [SEP]`` (BERT,
    DeBERTa) and ``<s> q </s></s> p </s>`` (XLM-R) come out as the tokenizer
    would write them.
    """

    before: tuple[int, ...]
    between: tuple[int, ...]
    after: tuple[int, ...]
    before_types: tuple[int, ...]
    between_types: tuple[int, ...]
    after_types: tuple[int, ...]
    query_type: int
    passage_type: int
    pad_id: int

    @property
    def n_special(self) -> int:
        return len(self.before) + len(self.between) + len(self.after)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> PairTemplate:
        enc = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
        try:
            seq = enc.sequence_ids(0)
        except (ValueError, AttributeError) as e:
            raise ValueError("the pruner needs a fast (Rust-backed) tokenizer") from e
        ids = list(enc["input_ids"])
        types = list(enc.get("token_type_ids") or [0] * len(ids))
        a = [i for i, s in enumerate(seq) if s == 0]
        b = [i for i, s in enumerate(seq) if s == 1]
        if not a or not b or a[-1] >= b[0] or a != list(range(a[0], a[-1] + 1)) or b != list(range(b[0], b[-1] + 1)):
            raise ValueError(f"unsupported pair template for tokenizer {type(tokenizer).__name__}")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = 0
        return cls(
            before=tuple(ids[: a[0]]), between=tuple(ids[a[-1] + 1 : b[0]]), after=tuple(ids[b[-1] + 1 :]),
            before_types=tuple(types[: a[0]]), between_types=tuple(types[a[-1] + 1 : b[0]]),
            after_types=tuple(types[b[-1] + 1 :]), query_type=int(types[a[0]]), passage_type=int(types[b[0]]),
            pad_id=int(pad),
        )

    def encode(self, query_ids: np.ndarray, passage_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Input ids, token type ids, and where the passage tokens start."""
        ids = np.concatenate([np.asarray(self.before, np.int64), query_ids, np.asarray(self.between, np.int64),
                              passage_ids, np.asarray(self.after, np.int64)])
        types = np.concatenate([
            np.asarray(self.before_types, np.int64), np.full(len(query_ids), self.query_type, np.int64),
            np.asarray(self.between_types, np.int64), np.full(len(passage_ids), self.passage_type, np.int64),
            np.asarray(self.after_types, np.int64),
        ])
        return ids, types, len(self.before) + len(query_ids) + len(self.between)


def _window_starts(n: int, room: int, overlap: int, anchors: Sequence[int] | np.ndarray = ()) -> list[int]:
    """Starts of windows of ``room`` tokens covering ``n`` tokens, at least ``overlap`` shared.

    With ``anchors`` (sorted token positions where sentences start), each window after
    the first starts at the last anchor that keeps at least ``overlap`` tokens shared
    with the window before (so the model reads whole sentences from a window's start,
    as in training); where no anchor fits, it starts ``room - overlap`` tokens on.
    """
    if n <= room:
        return [0]
    step = max(1, room - overlap)
    if not len(anchors):
        starts = list(range(0, n - room, step))
        starts.append(n - room)
        return starts
    a = np.asarray(anchors, dtype=np.int64)
    out = [0]
    while out[-1] + room < n:
        prev = out[-1]
        k = int(np.searchsorted(a, prev + step, side="right")) - 1
        nxt = int(a[k]) if k >= 0 and a[k] > prev else prev + step
        out.append(nxt)
    return out


def sentence_relevance(p: Passage, offsets: np.ndarray, token_probs: np.ndarray,
                       units: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean token relevance of each sentence ``units`` (original coordinates).

    ``offsets`` are ``[n, 2]`` character offsets of the tokens in ``p.text``;
    a token belongs to the sentence holding its last character.  Sentences
    with no token get 0.
    """
    if len(units) == 0:
        return np.zeros(0, dtype=np.float64)
    return span_relevance(offsets, token_probs, p.offset_map().to_text(units))


def span_relevance(offsets: np.ndarray, token_probs: np.ndarray, spans: np.ndarray | Sequence[tuple[int, int]],
                   ) -> np.ndarray:
    """Mean token relevance of each of ``spans`` (sorted, in the coordinates of ``offsets``)."""
    u_text = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    n_units = len(u_text)
    if n_units == 0 or len(offsets) == 0:
        return np.zeros(n_units, dtype=np.float64)
    last = offsets[:, 1] - 1
    valid = offsets[:, 1] > offsets[:, 0]
    sid = np.searchsorted(u_text[:, 0], last, side="right") - 1
    ok = valid & (sid >= 0)
    sid_c = np.clip(sid, 0, n_units - 1)
    ok &= last < u_text[sid_c, 1]
    sums = np.bincount(sid_c[ok], weights=token_probs[ok].astype(np.float64), minlength=n_units)
    counts = np.bincount(sid_c[ok], minlength=n_units)
    return np.divide(sums, counts, out=np.zeros(n_units, dtype=np.float64), where=counts > 0)


@dataclass(frozen=True, slots=True)
class _Window:
    passage: int
    start: int
    end: int

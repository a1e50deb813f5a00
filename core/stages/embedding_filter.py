"""EmbeddingFilter: keep passages or sentences by bi-encoder similarity to the query.

Selection (all optional, combinable) runs best-first over the items
(passages, or sentences of all passages): ``threshold`` on cosine similarity,
``top_n`` items, and a ``max_tokens`` budget counted with a token counter.
``redundancy_threshold`` skips an item whose cosine with an item already kept
reaches it, so the higher-scored of two near-duplicates is the one kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import numpy as np

from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.encoders import BiEncoderModel
from ..runtime.loading import LoadKwargs, LoadOptions
from ..runtime.validation import check_choice, check_int, check_number, renamed
from ..text.segment import Span
from ..text.tokens import get_counter

__all__ = ["EmbeddingFilter", "near_duplicate_pairs"]

logger = logging.getLogger("ragprune")

_LEVELS = ("passage", "sentence")
# Candidate pairs are gathered this far below the threshold, then checked
# exactly in float64, so the numpy and faiss paths agree bit for bit.
_MARGIN = 1e-4
_BLOCK = 1024


def _exact_pairs(x64: np.ndarray, a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    keep = a != b
    a, b = a[keep], b[keep]
    cos = np.einsum("ij,ij->i", x64[a], x64[b])
    hit = cos >= threshold
    return a[hit], b[hit], cos[hit]


def near_duplicate_pairs(
    x: np.ndarray, threshold: float, *, use_faiss: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j)``, ``i != j``, of unit-norm rows with cosine >= ``threshold``.

    ``use_faiss=True`` gathers candidates with a faiss inner-product index
    (falling back to numpy when faiss is not installed); otherwise dense numpy
    similarities are computed a block of rows at a time.  Both give exactly
    the same pairs.
    Returns ``(i, j, cosine)`` arrays sorted by ``i`` then ``j``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if n < 2:
        return empty
    x64 = x.astype(np.float64)
    if use_faiss:
        try:
            import faiss
        except ImportError:  # pragma: no cover - depends on the environment
            logger.debug("faiss is not installed; near-duplicate search falls back to numpy")
            use_faiss = False
    if use_faiss:
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        lims, _, found = index.range_search(x, float(threshold) - _MARGIN)
        a = np.repeat(np.arange(n, dtype=np.int64), np.diff(lims).astype(np.int64))
        b = found.astype(np.int64)
    else:  # dense similarities, a block of rows at a time so memory stays bounded
        found_a, found_b = [], []
        for start in range(0, n, _BLOCK):
            r, c = np.nonzero(x[start:start + _BLOCK] @ x.T >= np.float32(threshold - _MARGIN))
            found_a.append(r.astype(np.int64) + start)
            found_b.append(c.astype(np.int64))
        a, b = np.concatenate(found_a), np.concatenate(found_b)
    i, j, cos = _exact_pairs(x64, a, b, float(threshold))
    order = np.lexsort((j, i))
    return i[order], j[order], cos[order]


@dataclass(frozen=True, slots=True)
class _Item:
    pos: int  # position of the passage in the call
    span: Span | None  # sentence span in original coordinates (sentence level)
    text: str


class EmbeddingFilter(BaseStage):
    """Filters by cosine similarity between query and passage (or sentence) embeddings.

    ``level="passage"``: passages are scored, sorted best first and selected.
    ``level="sentence"``: every sentence of every passage is scored; the
    selected sentences are kept in their original order (extractive, via
    ``Passage.with_spans``), passages keep their input order and get the best
    kept sentence's similarity as score; a passage left with no sentence is
    dropped with the reason of its best sentence.

    Selection runs best-first over all items of the call: an item is skipped
    when it is a near-duplicate of an item already kept (cosine >=
    ``redundancy_threshold``), below ``threshold``, beyond ``top_n`` kept items,
    or does not fit in what is left of ``max_tokens`` (later, shorter items may
    still fit).  Blank passages are never embedded; they pass through
    unchanged when no selection criterion is set, and are dropped with a
    reason otherwise.  Everything a call needs is embedded in one batched
    encode call.

    Args:
        model: a :class:`~ragprune.runtime.encoders.BiEncoderModel` or anything it
            accepts (a local directory, a hub id, a loaded model).
        level: ``"passage"`` or ``"sentence"``.
        threshold: minimum cosine similarity with the query.
        top_n: keep at most this many items (passages or sentences).
        max_tokens: token budget for the kept items, counted with ``counter``.
        counter: token counter spec for :func:`ragprune.get_counter`
            (default: words).
        redundancy_threshold: cosine at or above which two items are
            near-duplicates (e.g. 0.95).
        faiss_min_items: use a faiss index for near-duplicate search above
            this many items (numpy below; same answer).
        batch_size, and the loading options (``options`` / ``device`` / ``dtype`` /
            ``local_files_only`` / ``revision``): passed to :class:`BiEncoderModel`
            when ``model`` is not one already.
        top_k: deprecated name of ``top_n`` (accepted for one release, with a
            ``DeprecationWarning``).
    """

    name = "embedding-filter"
    requires_query = True

    def __init__(
        self,
        model: Any,
        *,
        level: str = "passage",
        threshold: float | None = None,
        top_n: int | None = None,
        max_tokens: int | None = None,
        counter: Any = None,
        redundancy_threshold: float | None = None,
        faiss_min_items: int = 256,
        batch_size: int = 64,
        top_k: int | None = None,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        top_n = renamed("top_k", top_k, "top_n", top_n)
        self.level = check_choice("level", level, _LEVELS)
        self.threshold = check_number("threshold", threshold, allow_none=True)
        self.top_n = check_int("top_n", top_n, min=0, allow_none=True)
        self.max_tokens = check_int("max_tokens", max_tokens, min=0, allow_none=True)
        self.faiss_min_items = check_int("faiss_min_items", faiss_min_items, min=0)
        self.redundancy_threshold = check_number("redundancy_threshold", redundancy_threshold, min=-1.0, max=1.0,
                                                 allow_none=True)
        self.counter = get_counter(counter)
        if isinstance(model, BiEncoderModel):
            self.model = model
        else:
            self.model = BiEncoderModel(model, batch_size=batch_size, normalize=True, options=options, **load)

    def __repr__(self) -> str:
        return (f"EmbeddingFilter({self.model!r}, level={self.level!r}, threshold={self.threshold}, "
                f"top_n={self.top_n}, max_tokens={self.max_tokens}, "
                f"redundancy_threshold={self.redundancy_threshold})")

    @property
    def _selects(self) -> bool:
        return self.threshold is not None or self.top_n is not None or self.max_tokens is not None

    # ------------------------------------------------------------------ core

    def _items(self, passages: list[Passage]) -> list[_Item]:
        items: list[_Item] = []
        for pos, p in enumerate(passages):
            if p.is_blank:
                continue
            if self.level == "passage":
                items.append(_Item(pos, None, p.text))
            else:
                assert p.original is not None
                items.extend(_Item(pos, (a, b), p.original[a:b]) for a, b in p.units("sentence"))
        return items

    def similarities(self, query: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of each text with ``query``, and the texts' unit-norm embeddings (one encode call)."""
        emb = self.model.encode([query, *texts])
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.maximum(norms, np.float32(1e-12))
        x = np.ascontiguousarray(emb[1:], dtype=np.float32)
        sims = x.astype(np.float64) @ emb[0].astype(np.float64)
        return sims, x

    def _select(self, items: list[_Item], sims: np.ndarray, x: np.ndarray,
                passages: list[Passage]) -> tuple[np.ndarray, list[str | None]]:
        """Best-first selection; returns a kept mask and a reason for each skipped item."""
        n = len(items)
        order = np.argsort(-sims, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        neighbours: dict[int, list[tuple[int, float]]] = {}
        if self.redundancy_threshold is not None and n > 1:
            use_faiss = n > self.faiss_min_items
            a, b, cos = near_duplicate_pairs(x, self.redundancy_threshold, use_faiss=use_faiss)
            earlier = rank[b] < rank[a]  # only better-ranked items can block an item
            for i, j, c in zip(a[earlier].tolist(), b[earlier].tolist(), cos[earlier].tolist(), strict=True):
                neighbours.setdefault(i, []).append((j, c))
        counts: list[int] | None = None
        if self.max_tokens is not None:
            counts = self.counter.count_many([it.text for it in items])
        kept = np.zeros(n, dtype=bool)
        reasons: list[str | None] = [None] * n
        n_kept = 0
        used = 0
        for i in order.tolist():
            s = float(sims[i])
            match = max((nb for nb in neighbours.get(i, ()) if kept[nb[0]]), key=lambda nb: nb[1], default=None)
            if match is not None:
                reasons[i] = self._duplicate_reason(items, match, passages)
            elif self.threshold is not None and not s >= self.threshold:
                reasons[i] = f"similarity {s:.4g} below threshold {self.threshold:g}"
            elif self.top_n is not None and n_kept >= self.top_n:
                reasons[i] = f"rank {int(rank[i]) + 1} beyond top_n={self.top_n}"
            elif counts is not None and self.max_tokens is not None and used + counts[i] > self.max_tokens:
                reasons[i] = f"over token budget ({self.max_tokens} tokens)"
            else:
                kept[i] = True
                n_kept += 1
                if counts is not None:
                    used += counts[i]
        return kept, reasons

    def _duplicate_reason(self, items: list[_Item], match: tuple[int, float], passages: list[Passage]) -> str:
        j, c = match
        other = items[j]
        what = f"passage {passages[other.pos].index}"
        if other.span is not None:
            what = f"sentence {other.span[0]}:{other.span[1]} of {what}"
        return f"near-duplicate of {what} (cosine {c:.4f} >= {self.redundancy_threshold:g})"

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        assert query is not None
        items = self._items(passages)
        if items:
            sims, x = self.similarities(query, [it.text for it in items])
            kept, reasons = self._select(items, sims, x, passages)
        else:
            sims, kept, reasons = np.zeros(0), np.zeros(0, dtype=bool), []
        if self.level == "passage":
            return self._passage_output(passages, items, sims, kept, reasons)
        return self._sentence_output(passages, items, sims, kept, reasons)

    def _blank(self, p: Passage) -> Dropped | None:
        if not self._selects:
            return None
        return self._drop(p, "blank passage: nothing to compare with the query")

    def _passage_output(self, passages: list[Passage], items: list[_Item], sims: np.ndarray, kept: np.ndarray,
                        reasons: list[str | None]) -> StageOutput:
        out: list[Passage] = []
        dropped: list[Dropped] = []
        for i in np.argsort(-sims, kind="stable").tolist():
            p = passages[items[i].pos].with_score(self.name, float(sims[i]))
            if kept[i]:
                out.append(p)
            else:
                dropped.append(self._drop(p, reasons[i] or "not selected"))
        for p in passages:
            if p.is_blank:
                p = p.with_score(self.name, None)
                drop = self._blank(p)
                if drop is None:
                    out.append(p)
                else:
                    dropped.append(drop)
        return StageOutput(tuple(out), tuple(dropped))

    def _sentence_output(self, passages: list[Passage], items: list[_Item], sims: np.ndarray, kept: np.ndarray,
                         reasons: list[str | None]) -> StageOutput:
        by_passage: dict[int, list[int]] = {}
        for k, it in enumerate(items):
            by_passage.setdefault(it.pos, []).append(k)
        out: list[Passage] = []
        dropped: list[Dropped] = []
        for pos, p in enumerate(passages):
            ks = by_passage.get(pos)
            if not ks:
                drop = self._blank(p)
                if drop is None:
                    out.append(p)
                else:
                    dropped.append(drop)
                continue
            chosen = [k for k in ks if kept[k]]
            if not chosen:
                best = max(ks, key=lambda k: (sims[k], -k))
                reason = f"no sentence kept (best sentence: {reasons[best] or 'not selected'})"
                dropped.append(self._drop(p.with_score(self.name, float(sims[best])), reason))
                continue
            score = float(max(sims[k] for k in chosen))
            if len(chosen) < len(ks):
                p = p.keep_units([s for s in (items[k].span for k in chosen) if s is not None])
            out.append(p.with_score(self.name, score))
        return StageOutput(tuple(out), tuple(dropped))


"""Extractive sentence selection driven by a cross-encoder or a bi-encoder.

Each sentence of each passage is scored against the query (RECOMP / EXIT
style), optionally together with its neighbours: with ``context_window=k`` the
text scored is the sentence with up to ``k`` sentences of the same passage on
each side, as EXIT does.  Sentences are then kept by a score threshold, a
top-n (per passage or over all passages) and/or a token budget; kept
sentences stay in their original order, passages stay in input order, and a
passage left with no sentence is dropped and reported.

All sentences of all passages are scored in one batched call (with the
bundled scorers: sorted by length, in batches that pad at most a tenth of
their tokens; :meth:`SentenceSelector.padding_stats` counts the tokens fed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.batching import PaddingStats
from ..runtime.quantize import check_quantize
from ..runtime.validation import check_choice, check_int, check_number, renamed
from ..text.segment import Span, render_spans
from ..text.tokens import TokenCounter, get_counter

__all__ = ["SentenceSelector", "SCORER_KINDS"]

SCORER_KINDS = ("cross-encoder", "bi-encoder")
_SCOPES = ("passage", "global")


def _make_scorer(scorer: Any, kind: str | None, options: dict[str, Any], quantize: str | None) -> tuple[Any, str]:
    if isinstance(scorer, (str, os.PathLike)):
        if kind is None:
            raise ValueError(f"kind must be one of {', '.join(SCORER_KINDS)} when scorer is a path; got None")
        check_choice("kind", kind, SCORER_KINDS)
        if quantize is not None:
            _check_quantizable(kind, options)  # before loading anything
        from ..runtime.encoders import BiEncoderModel, CrossEncoderModel

        cls = CrossEncoderModel if kind == "cross-encoder" else BiEncoderModel
        return _quantized(cls(scorer, **options), quantize, inplace=True), kind  # loaded here: quantized in place
    if options:
        raise ValueError(f"{', '.join(sorted(options))} only apply when scorer is a path")
    kind = _kind_of(scorer, kind)
    if quantize is not None:
        _check_quantizable(kind, None)
    return _quantized(scorer, quantize, inplace=False), kind


def _kind_of(scorer: Any, kind: str | None) -> str:
    """The kind of a scorer object: ``kind`` checked against its methods, or guessed from them."""
    if kind is not None:
        check_choice("kind", kind, SCORER_KINDS)
    if kind is None:
        if hasattr(scorer, "score_pairs"):
            kind = "cross-encoder"
        elif hasattr(scorer, "encode"):
            kind = "bi-encoder"
        else:
            raise TypeError(f"scorer must have score_pairs (cross-encoder) or encode (bi-encoder); "
                            f"got {type(scorer).__name__}")
    need = "score_pairs" if kind == "cross-encoder" else "encode"
    if not hasattr(scorer, need):
        raise TypeError(f"a {kind} scorer needs a {need} method; {type(scorer).__name__} has none")
    return kind


def _check_quantizable(kind: str, options: dict[str, Any] | None) -> None:
    """``ValueError`` unless the scorer is a cross-encoder and ``options`` (those of a scorer about to be
    loaded from a path, if any) select the CPU."""
    if kind != "cross-encoder":
        raise ValueError(f"quantize applies to a cross-encoder scorer only, not a {kind}")
    if options is None:
        return
    from ..runtime.device import resolve_device
    from ..runtime.loading import LoadOptions
    from ..runtime.quantize import require_cpu

    load = {k: v for k, v in options.items() if k in ("device", "dtype", "local_files_only", "revision")}
    device = LoadOptions.resolve(options.get("options"), **load).device
    require_cpu(resolve_device(device), f"device={device!r} selects")


def _quantized(scorer: Any, quantize: str | None, *, inplace: bool) -> Any:
    """``scorer`` as ``quantize`` says: itself (``None``), else its int8 version (only a ``CrossEncoderModel``;
    a copy unless ``inplace``)."""
    if quantize is None:
        return scorer
    from ..runtime.encoders import CrossEncoderModel
    from ..runtime.quantize import quantize_cross_encoder

    if not isinstance(scorer, CrossEncoderModel):
        raise ValueError(f"quantize={quantize!r} needs a CrossEncoderModel or a model path as scorer; "
                         f"got {type(scorer).__name__}")
    return quantize_cross_encoder(scorer, inplace=inplace)


class SentenceSelector(BaseStage):
    """Keep the sentences that matter to the query (extractive).

    Args:
        scorer: a ``CrossEncoderModel`` / ``BiEncoderModel`` (or any object with
            ``score_pairs(query, texts)`` / ``encode(texts)``), or a model path
            or hub id together with ``kind``.
        kind: ``"cross-encoder"`` or ``"bi-encoder"`` (required with a path).
        threshold: keep sentences scoring at least this (cross-encoder:
            its activation's scale, sigmoid by default; bi-encoder: cosine).
        top_n: keep at most this many sentences, per passage
            (``top_n_scope="passage"``) or over all passages (``"global"``).
        max_tokens: keep the best sentences whose total (counted with
            ``counter``) fits in this many tokens.
        counter: token counter for ``max_tokens`` (see :func:`get_counter`).
        context_window: neighbouring sentences scored with each sentence, on
            each side.
        device, dtype, local_files_only, batch_size, max_batch_tokens, max_length:
            passed to the scorer built from a path (``max_batch_tokens``: tokens per
            forward pass, padding included; default: 2048 on CPU, more on GPUs).
        quantize: ``"int8"``: a cross-encoder scorer (a path with ``kind="cross-encoder"``,
            or a ``CrossEncoderModel``) runs its linear layers in dynamic int8, as
            :class:`~ragprune.stages.cross_encoder.CrossEncoderReranker` does with the
            same option: CPU only (``ValueError`` for another device, or for
            ``device="auto"`` on a machine with a GPU: pass ``device="cpu"``), and a
            ``CrossEncoderModel`` passed in is left as it is (the stage scores with a
            quantized copy).  ``ValueError`` for a bi-encoder or any other scorer.
            Default ``None``: the model as loaded.
        top_k, top_k_scope: deprecated names of ``top_n`` and ``top_n_scope``
            (accepted for one release, with a ``DeprecationWarning``).

    At least one of ``threshold``, ``top_n`` and ``max_tokens`` is required;
    they combine (a sentence must pass all that are set).  Ties keep the
    earlier sentence.  Blank passages pass through unchanged; passage scores
    are not changed.
    """

    name = "sentence-selector"
    requires_query = True

    def __init__(
        self,
        scorer: Any,
        *,
        kind: str | None = None,
        threshold: float | None = None,
        top_n: int | None = None,
        top_n_scope: str = "passage",
        max_tokens: int | None = None,
        counter: Any = None,
        context_window: int = 0,
        top_k: int | None = None,
        top_k_scope: str | None = None,
        quantize: str | None = None,
        **scorer_options: Any,
    ) -> None:
        top_n = renamed("top_k", top_k, "top_n", top_n)
        top_n_scope = renamed("top_k_scope", top_k_scope, "top_n_scope", top_n_scope, default="passage")
        self.threshold = check_number("threshold", threshold, allow_none=True)
        self.top_n = check_int("top_n", top_n, min=1, allow_none=True)
        self.top_n_scope = check_choice("top_n_scope", top_n_scope, _SCOPES)
        self.max_tokens = check_int("max_tokens", max_tokens, min=0, allow_none=True)
        self.context_window = check_int("context_window", context_window, min=0)
        self.quantize = check_quantize(quantize)
        if threshold is None and top_n is None and max_tokens is None:
            raise ValueError("set at least one of threshold, top_n, max_tokens")
        allowed = {"options", "device", "dtype", "local_files_only", "revision", "batch_size", "max_batch_tokens",
                   "max_length"}
        unknown = set(scorer_options) - allowed
        if unknown:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(unknown))}")
        self.scorer, self.kind = _make_scorer(scorer, kind, scorer_options, self.quantize)
        self.counter: TokenCounter = get_counter(counter)

    def __repr__(self) -> str:
        q = f", quantize={self.quantize!r}" if self.quantize else ""
        return (f"SentenceSelector({self.scorer!r}, kind={self.kind!r}, threshold={self.threshold}, "
                f"top_n={self.top_n}, top_n_scope={self.top_n_scope!r}, max_tokens={self.max_tokens}, "
                f"context_window={self.context_window}{q})")

    # ----------------------------------------------------------------- scoring
    def padding_stats(self, *, reset: bool = False) -> PaddingStats:
        """Real and padded tokens fed to the scorer's model so far (then zeroed if ``reset``).

        A scorer shared with other stages counts their calls too; one that does
        not count (no ``padding_stats`` method) reports nothing.
        """
        counted = getattr(self.scorer, "padding_stats", None)
        stats = counted(reset=reset) if callable(counted) else None
        return stats if isinstance(stats, PaddingStats) else PaddingStats()

    def score_texts(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Scores of ``texts`` against ``query`` in one batched call."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        if self.kind == "cross-encoder":
            scores = np.asarray(self.scorer.score_pairs(query, list(texts)), dtype=np.float64).reshape(-1)
        else:
            emb = np.asarray(self.scorer.encode([query, *texts]), dtype=np.float64)
            norms = np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            emb = emb / norms
            scores = emb[1:] @ emb[0]
        if len(scores) != len(texts):
            raise RuntimeError(f"scorer returned {len(scores)} scores for {len(texts)} texts")
        return scores

    def _context_texts(self, p: Passage, units: list[Span]) -> list[str]:
        assert p.original is not None
        k = self.context_window
        if k == 0:
            return [p.original[a:b] for a, b in units]
        n = len(units)
        return [render_spans(p.original, units[max(0, i - k) : min(n, i + k + 1)]).strip() for i in range(n)]

    # ----------------------------------------------------------------- select
    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        assert query is not None
        units = [[] if p.is_blank else p.units("sentence") for p in passages]
        owner = np.fromiter((j for j, u in enumerate(units) for _ in u), dtype=np.int64)
        texts = [t for p, u in zip(passages, units, strict=True) if u for t in self._context_texts(p, u)]
        scores = self.score_texts(query, texts)
        n = len(scores)
        # Why a sentence was left out: 0 kept, 1 threshold, 2 top_n, 3 budget.
        why = np.zeros(n, dtype=np.int64)
        if self.threshold is not None:
            why[scores < self.threshold] = 1
        # Best first; ties keep the earlier sentence (stable sort on -score).
        order = np.argsort(-scores, kind="stable")
        if self.top_n is not None:
            alive = order[why[order] == 0]
            if self.top_n_scope == "global":
                why[alive[self.top_n :]] = 2
            else:
                # rank of each surviving sentence within its passage, in score order
                own = owner[alive]
                by_owner = np.argsort(own, kind="stable")
                sorted_own = own[by_owner]
                first = np.searchsorted(sorted_own, sorted_own, side="left")
                rank = np.empty(len(alive), dtype=np.int64)
                rank[by_owner] = np.arange(len(alive)) - first
                why[alive[rank >= self.top_n]] = 2
        if self.max_tokens is not None:
            why = self._fit_budget(passages, units, owner, scores, order, why)
        kept: list[Passage] = []
        dropped: list[Dropped] = []
        start = 0
        for j, (p, u) in enumerate(zip(passages, units, strict=True)):
            if not u:
                kept.append(p)
                continue
            w = why[start : start + len(u)]
            start += len(u)
            if (w == 0).all():
                kept.append(p)
            elif (w == 0).any():
                kept.append(p.keep_units([s for s, flag in zip(u, w == 0, strict=True) if flag]))
            else:
                dropped.append(self._drop(p, self._reason(int(w.max()), float(scores[owner == j].max()))))
        return StageOutput(tuple(kept), tuple(dropped))

    def _fit_budget(self, passages: list[Passage], units: list[list[Span]], owner: np.ndarray, scores: np.ndarray,
                    order: np.ndarray, why: np.ndarray) -> np.ndarray:
        assert self.max_tokens is not None
        cost = np.asarray(self.counter.count_many(
            [p.original[a:b] for p, u in zip(passages, units, strict=True) for a, b in u if p.original is not None]
        ), dtype=np.int64)
        used = 0
        for i in order[why[order] == 0]:  # greedy by score: one step per sentence
            if used + cost[i] <= self.max_tokens:
                used += int(cost[i])
            else:
                why[i] = 3
        # Rendering can differ from the sum of sentence counts (joins, other
        # counters): drop the weakest kept sentences until the texts fit.
        offsets = np.concatenate([[0], np.cumsum([len(u) for u in units])])
        while True:
            alive = np.flatnonzero(why == 0)
            if len(alive) == 0:
                break
            texts = []
            for j in np.unique(owner[alive]):
                sel = [units[j][i - offsets[j]] for i in alive[owner[alive] == j]]
                texts.append(render_spans(passages[j].original or "", sel))
            if sum(self.counter.count_many(texts)) <= self.max_tokens:
                break
            weakest = alive[np.lexsort((-alive, scores[alive]))[0]]
            why[weakest] = 3
        return why

    def _reason(self, code: int, best: float) -> str:
        if code == 1:
            return f"no sentence scored >= threshold {self.threshold:g} (best {best:.4g})"
        if code == 2:
            scope = "" if self.top_n_scope == "passage" else " over all passages"
            return f"no sentence among the top_n={self.top_n}{scope}"
        return f"no sentence fit the token budget ({self.max_tokens} tokens)"

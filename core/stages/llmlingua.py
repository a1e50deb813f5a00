"""LLMLingua: coarse-to-fine prompt compression by a small causal LM's perplexity.

For each passage:

1. a budget controller gives it a share of the overall token target
   (in proportion to its length);
2. coarse: sentences are ranked by perplexity (mean token self-information)
   and the most perplexing are kept up to ``coarse_factor`` times the target;
3. fine (iterative token-level compression): the kept words are cut into
   segments of about ``segment_tokens`` model tokens; each segment is scored
   conditioned on the instruction and the already-compressed text before it,
   and its most informative words are kept up to the segment's share.

Segments of all passages are scored together, batched segment index by segment
index.  Each passage is compressed in its own context (the instruction plus its
own compressed prefix), so passages stay independent.  Output is extractive.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.causal_lm import (
    CausalLMScorer,
    as_scorer,
    select_units,
    token_targets,
    unit_counts,
    unit_scores,
)
from ..runtime.validation import check_int, check_number, check_target
from ..text.offsets import OffsetMap
from ..text.segment import Span, merge_spans, render_spans
from ..text.tokens import TokenCounter, get_counter

__all__ = ["LLMLinguaCompressor"]


class _Work:
    """One passage under compression."""

    def __init__(self, passage: Passage, target: int, words: list[Span]) -> None:
        self.p = passage
        self.target = target
        self.words = words
        self.info = np.zeros(len(words))  # fine self-information of each word
        self.ntok = np.zeros(len(words))  # model tokens of each word
        self.segments: list[np.ndarray] = []  # word positions of each segment
        self.kept: list[int] = []  # kept word positions
        self.kept_tail: list[list[int]] = []  # kept word positions of recent segments
        self.counts = np.zeros(0, dtype=np.int64)


class LLMLinguaCompressor(BaseStage):
    """LLMLingua (coarse sentence filtering, then iterative token-level compression).

    Args:
        scorer: a :class:`CausalLMScorer`, or a model path/hub id/GGUF file to load one.
        rate: keep at most this fraction of the tokens, in (0, 1].
        target_tokens: keep at most this many tokens over all passages.
        instruction: text every passage is conditioned on (e.g. the task), or ``None``.
        coarse_factor: coarse filtering keeps sentences up to this many times the
            passage's target (>= 1; a large value turns coarse filtering off).
        segment_tokens: model tokens per segment of the iterative compression.
        context_segments: compressed segments kept as conditioning context.
        counter: token counter for ``rate``/``target_tokens`` (default: words).
        **scorer_options: passed to :class:`CausalLMScorer` when ``scorer`` is a path.

    Blank passages pass through unchanged; a passage left with no tokens is
    dropped with a reason.
    """

    name: ClassVar[str] = "llmlingua"
    requires_query: ClassVar[bool] = False

    def __init__(
        self,
        scorer: Any = "HuggingFaceTB/SmolLM2-135M",
        *,
        rate: float | None = 0.5,
        target_tokens: int | None = None,
        instruction: str | None = None,
        coarse_factor: float = 2.0,
        segment_tokens: int = 256,
        context_segments: int = 4,
        counter: Any = None,
        **scorer_options: Any,
    ) -> None:
        rate, target_tokens = check_target(rate, target_tokens)
        if instruction is not None and not isinstance(instruction, str):
            raise TypeError(f"instruction must be str or None, got {instruction!r} ({type(instruction).__name__})")
        self.rate = rate
        self.target_tokens = target_tokens
        self.instruction = instruction or None
        self.coarse_factor = check_number("coarse_factor", coarse_factor, min=1.0)
        self.segment_tokens = check_int("segment_tokens", segment_tokens, min=1)
        self.context_segments = check_int("context_segments", context_segments, min=1)
        self.counter: TokenCounter = get_counter(counter)
        self.scorer: CausalLMScorer = as_scorer(scorer, **scorer_options)

    def __repr__(self) -> str:
        return (f"LLMLinguaCompressor(rate={self.rate!r}, target_tokens={self.target_tokens!r}, "
                f"coarse_factor={self.coarse_factor!r}, scorer={self.scorer!r})")

    # ------------------------------------------------------------------ coarse
    def _coarse(self, w: _Work, info: np.ndarray, ntok: np.ndarray) -> np.ndarray:
        """Positions of the words kept by sentence-level filtering."""
        everything = np.arange(len(w.words))
        budget = int(math.ceil(self.coarse_factor * w.target))
        total = int(w.counts.sum())
        if budget >= total:
            return everything
        sentences = w.p.units("sentence")
        starts = np.asarray([a for a, _ in sentences], dtype=np.int64)
        word_starts = np.asarray([a for a, _ in w.words], dtype=np.int64)
        groups = np.searchsorted(starts, word_starts, side="right") - 1
        s_info = np.bincount(groups, weights=info, minlength=len(sentences))
        s_ntok = np.bincount(groups, weights=ntok, minlength=len(sentences))
        ppl = np.divide(s_info, s_ntok, out=np.zeros_like(s_info), where=s_ntok > 0)
        s_counts = np.bincount(groups, weights=w.counts, minlength=len(sentences))
        order = np.lexsort((np.arange(len(sentences)), -ppl))
        fits = np.cumsum(s_counts[order]) <= budget
        n_keep = max(1, int(np.argmin(fits)) if not fits.all() else len(order))
        keep = np.zeros(len(sentences), dtype=bool)
        keep[order[:n_keep]] = True
        return everything[keep[groups]]

    # -------------------------------------------------------------------- fine
    def _segment(self, w: _Work, positions: np.ndarray) -> None:
        ntok = np.maximum(w.ntok[positions], 0.0)
        before = np.cumsum(ntok) - ntok
        seg = (before // self.segment_tokens).astype(np.int64)
        cuts = np.flatnonzero(np.diff(seg)) + 1
        w.segments = [s for s in np.split(positions, cuts) if len(s)]

    def _prefix(self, w: _Work) -> str | None:
        parts = [self.instruction] if self.instruction else []
        tail = [j for seg in w.kept_tail[-self.context_segments:] for j in seg]
        if tail:
            parts.append(render_spans(w.p.original or "", merge_spans([w.words[j] for j in tail])))
        return "\n\n".join(parts) if parts else None

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        live = [i for i, p in enumerate(passages) if not p.is_blank]
        items = [passages[i] for i in live]
        totals, targets = token_targets(items, self.counter, self.rate, self.target_tokens)
        work = {live[k]: _Work(items[k], targets[k], items[k].units("word"))
                for k in range(len(items)) if targets[k] < totals[k]}
        jobs = list(work.values())
        # One pass over every passage (given the instruction): word self-information.
        first = self.scorer.token_scores([w.p.text for w in jobs], prefix=self.instruction)
        coarse_dropped: list[bool] = []
        for w, ts in zip(jobs, first, strict=True):
            info, ntok = unit_scores(w.p.text, ts, w.p.offset_map().to_text(w.words))
            w.ntok = ntok
            w.counts = unit_counts(w.p, w.words, self.counter, words=True)
            positions = self._coarse(w, info, ntok)
            coarse_dropped.append(len(positions) < len(w.words))
            self._segment(w, positions)
            w.info[positions] = info[positions]  # used as is when the first segment is the whole text start
        self._fine(jobs, coarse_dropped)
        out: list[Passage] = []
        dropped: list[Dropped] = []
        for i, p in enumerate(passages):
            job = work.get(i)
            if job is None:
                out.append(p)
                continue
            kept = np.sort(np.asarray(job.kept, dtype=np.int64))
            q = select_units(p, [job.words[j] for j in kept], job.info[kept], job.counts[kept], job.target,
                             self.counter)
            if q.is_blank:
                dropped.append(self._drop(p, "no tokens left within the compression target"))
            else:
                out.append(q)
        return StageOutput(tuple(out), tuple(dropped))

    def _fine(self, jobs: list[_Work], coarse_dropped: list[bool]) -> None:
        kept_tokens = [0] * len(jobs)
        planned = [float(w.counts[np.concatenate(w.segments)].sum()) if w.segments else 0.0 for w in jobs]
        done_tokens = [0.0] * len(jobs)
        rounds = max((len(w.segments) for w in jobs), default=0)
        for k in range(rounds):
            active = [j for j, w in enumerate(jobs) if k < len(w.segments)]
            # The first segment of a passage that lost no sentence is already scored.
            need = [j for j in active if k > 0 or coarse_dropped[j]]
            texts, prefixes, maps = [], [], []
            for j in need:
                w = jobs[j]
                spans = merge_spans([w.words[x] for x in w.segments[k]])
                texts.append(render_spans(w.p.original or "", spans))
                prefixes.append(self._prefix(w))
                maps.append(OffsetMap.of(w.p.original or "", spans).to_text([w.words[x] for x in w.segments[k]]))
            for j, text, ts, units in zip(need, texts, self.scorer.token_scores(texts, prefix=prefixes), maps,
                                          strict=True):
                jobs[j].info[jobs[j].segments[k]] = unit_scores(text, ts, units)[0]
            for j in active:
                w = jobs[j]
                seg = w.segments[k]
                done_tokens[j] += float(w.counts[seg].sum())
                goal = int(math.floor(w.target * done_tokens[j] / planned[j] + 1e-9)) if planned[j] else 0
                room = max(0, goal - kept_tokens[j])
                order = np.lexsort((np.arange(len(seg)), -w.info[seg]))
                fits = np.cumsum(w.counts[seg][order]) <= room
                n_keep = int(np.argmin(fits)) if not fits.all() else len(order)
                chosen = np.sort(seg[order[:n_keep]]).tolist()
                w.kept.extend(chosen)
                w.kept_tail.append(chosen)
                del w.kept_tail[: -self.context_segments]
                kept_tokens[j] += int(w.counts[chosen].sum()) if chosen else 0

"""Query-aware token compression with a distilled pruner (LLMLingua-2's recipe, conditioned on the question).

The model is a pruner in the format of :mod:`ragprune.stages.provence` (an encoder
over ``[CLS] question [SEP] passage [SEP]`` with a two-label token head, label
1 = keep), trained by ``ragprune train distill`` to imitate a causal LM's
question-conditioned word scores (see :mod:`ragprune.training.distill`).  Tokens are
scored with :meth:`ProvencePruner.score` (long passages in overlapping windows,
sorted by length and cut into batches that pad at most a tenth of their tokens;
:meth:`QueryTokenCompressor.padding_stats` counts the tokens fed), a word's
keep probability is the mean over its tokens, and the most probable words are
kept:

* ``rate`` / ``target_tokens``: the target over all passages (counted with
  ``counter``) is split with :func:`ragprune.allocate_tokens` (``rank_bias``
  favours earlier passages); each passage keeps its most probable words
  within its share;
* ``threshold``: only words whose probability reaches it are candidates; with
  no rate or target, every candidate is kept.

Output is extractive: kept words are word spans of the original, adjacent
kept words merge into one span.  Passages keep their order, identity,
metadata and scores; blank passages pass through; a passage left with no word
is dropped (and reported).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar, Unpack

import numpy as np

from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.batching import PaddingStats
from ..runtime.causal_lm import TokenScores, select_units, token_targets, unit_counts, unit_scores
from ..runtime.loading import LoadKwargs, LoadOptions
from ..runtime.validation import check_int, check_number, check_rate
from ..text.segment import Span
from ..text.tokens import TokenCounter, get_counter

__all__ = ["QueryTokenCompressor"]


class QueryTokenCompressor(BaseStage):
    """Keep the words a distilled, question-aware token classifier rates highest.

    Args:
        model: a pruner directory (see :mod:`ragprune.stages.provence`), hub id, or a
            loaded ``PrunerModel`` (then ``tokenizer`` is required).
        rate: keep at most this fraction of the tokens, in (0, 1].
        target_tokens: keep at most this many tokens over all passages.
        threshold: keep only words whose keep probability is ``>=`` this
            (alone, or together with ``rate`` / ``target_tokens`` as a cap).
        rank_bias: in [0, 1): how much more of the target earlier passages get.
        counter: token counter of ``rate`` / ``target_tokens`` (default: words).
        tokenizer / max_length / stride / batch_size / max_batch_tokens, and the
            loading options (``options`` / ``device`` / ``dtype`` / ``local_files_only``
            / ``revision``): passed to :class:`ProvencePruner`, which does the scoring
            (``max_batch_tokens``: tokens per forward pass, padding included;
            default: 2048 on CPU, more on GPUs).
    """

    name: ClassVar[str] = "query-token-compressor"
    requires_query: ClassVar[bool] = True

    def __init__(
        self,
        model: str | os.PathLike[str] | Any,
        *,
        rate: float | None = 0.5,
        target_tokens: int | None = None,
        threshold: float | None = None,
        rank_bias: float = 0.0,
        counter: Any = None,
        tokenizer: Any = None,
        max_length: int | None = None,
        stride: int | None = None,
        batch_size: int = 16,
        max_batch_tokens: int | None = None,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        threshold = check_number("threshold", threshold, allow_none=True)
        rate = check_rate("rate", rate, allow_none=True)
        target_tokens = check_int("target_tokens", target_tokens, min=0, allow_none=True)
        if rate is None and target_tokens is None and threshold is None:
            raise ValueError("give rate, target_tokens or threshold (or several)")
        rank_bias = check_number("rank_bias", rank_bias, min=0.0, max=1.0, max_inclusive=False)
        from .provence import ProvencePruner

        self.rate = rate
        self.target_tokens = target_tokens
        self.threshold = threshold
        self.rank_bias = rank_bias
        self.counter: TokenCounter = get_counter(counter)
        self.scorer = ProvencePruner(model, tokenizer=tokenizer, max_length=max_length, stride=stride,
                                     batch_size=batch_size, max_batch_tokens=max_batch_tokens, options=options,
                                     **load)

    def __repr__(self) -> str:
        return (f"QueryTokenCompressor(rate={self.rate!r}, target_tokens={self.target_tokens!r}, "
                f"threshold={self.threshold!r}, max_length={self.scorer.max_length})")

    # ----------------------------------------------------------------- scoring
    def padding_stats(self, *, reset: bool = False) -> PaddingStats:
        """Real and padded tokens fed to the model so far (then zeroed if ``reset``)."""
        return self.scorer.padding_stats(reset=reset)

    def word_probs(self, query: str, passages: Sequence[Passage | str]) -> list[tuple[list[Span], np.ndarray]]:
        """Word units (``original`` coordinates) and their keep probabilities, per passage.

        Blank passages get no words.  All passages go through the model in one
        batched call.
        """
        from ..passage import check_query, to_passages

        q = check_query(query, required=True, stage=type(self).__name__)
        assert q is not None
        items = to_passages(passages)
        live = [i for i, p in enumerate(items) if not p.is_blank]
        out: list[tuple[list[Span], np.ndarray]] = [([], np.zeros(0)) for _ in items]
        if not live:
            return out
        probs, offsets, _ = self.scorer.score(q, [items[i].text for i in live])
        for k, i in enumerate(live):
            p = items[i]
            words = p.units("word")
            units = p.offset_map().to_text(words)
            sums, counts = unit_scores(p.text, TokenScores(offsets[k], probs[k]), units)
            out[i] = (words, np.divide(sums, counts, out=np.zeros(len(words)), where=counts > 0))
        return out

    # ------------------------------------------------------------- compressing
    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        assert query is not None
        live = [i for i, p in enumerate(passages) if not p.is_blank]
        scored = self.word_probs(query, [passages[i] for i in live])
        shares: list[int | None] = [None] * len(live)
        if self.rate is not None or self.target_tokens is not None:
            _, targets = token_targets([passages[i] for i in live], self.counter, self.rate, self.target_tokens,
                                       rank_bias=self.rank_bias)
            shares = list(targets)
        out: list[Passage] = []
        dropped: list[Dropped] = []
        result = dict(zip(live, zip(scored, shares, strict=True), strict=True))
        for i, p in enumerate(passages):
            if i not in result:
                out.append(p)
                continue
            (words, probs), share = result[i]
            q = self._select(p, words, probs, share)
            if q.is_blank:
                dropped.append(self._drop(q, "no word kept within the compression target"))
            else:
                out.append(q)
        return StageOutput(tuple(out), tuple(dropped))

    def _select(self, p: Passage, words: list[Span], probs: np.ndarray, share: int | None) -> Passage:
        cand = np.arange(len(words)) if self.threshold is None else np.flatnonzero(probs >= self.threshold)
        chosen = [words[j] for j in cand]
        if share is None:
            return p.keep_units(chosen) if len(chosen) < len(words) else p
        counts = unit_counts(p, chosen, self.counter, words=True)
        if int(counts.sum()) <= share and len(chosen) == len(words):
            return p
        return select_units(p, chosen, probs[cand], counts, share, self.counter)

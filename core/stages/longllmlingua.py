"""LongLLMLingua: question-aware coarse-to-fine compression with a small causal LM.

1. Coarse ranking: each passage's score is the mean log-probability of the
   question following the passage (minus the question's perplexity given the
   passage: higher = more relevant), recorded with ``Passage.with_score``.
2. Coarse cut: passages are taken in rank order while the tokens before them
   stay under ``coarse_factor`` times the overall target; the rest are dropped.
3. Dynamic ratio: the target is split over the kept passages with
   :func:`ragprune.allocate_tokens`, favouring higher ranks by ``rank_bias``.
4. Fine: each word's contrastive score is its self-information without the
   question minus its self-information with the question in context (what the
   question makes predictable is what it is about); the highest-scoring words
   are kept up to the passage's target.

Output is extractive.  Passages keep the caller's order unless
``reorder=True`` (rank order, best first).

Forward passes per call: one over ``[start][passage][separator + question]``
per passage (the ranking; a causal model's scores for the passage tokens there
do not depend on the question after them, so the same pass gives the fine
step's question-free self-information), then one over
``[start][question][passage]`` per passage still to compress.  A passage too
long to fit ``max_context`` together with the question is cut for the ranking,
so its question-free scores come from a separate windowed pass instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..budget import allocate_tokens
from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.causal_lm import (
    CausalLMScorer,
    TokenScores,
    as_scorer,
    select_units,
    total_target,
    unit_counts,
    unit_scores,
)
from ..runtime.validation import check_number, check_target
from ..text.tokens import TokenCounter, get_counter

__all__ = ["LongLLMLinguaCompressor"]


class LongLLMLinguaCompressor(BaseStage):
    """LongLLMLingua (question-aware ranking, coarse cut, dynamic ratio, contrastive tokens).

    Args:
        scorer: a :class:`CausalLMScorer`, or a model path/hub id/GGUF file to load one.
        rate: keep at most this fraction of the tokens, in (0, 1].
        target_tokens: keep at most this many tokens over all passages.
        rank_bias: in [0, 1): how much more of the target higher-ranked passages get.
        coarse_factor: passages are kept in rank order until this many times the
            target is reached (>= 1); the rest are dropped.
        reorder: return passages in rank order instead of the caller's order.
        question_template: how the question is written after a passage for the
            coarse ranking (``{question}`` is replaced).
        counter: token counter for ``rate``/``target_tokens`` (default: words).
        **scorer_options: passed to :class:`CausalLMScorer` when ``scorer`` is a path.

    Blank passages pass through unchanged and unscored (last when reordering).
    """

    name: ClassVar[str] = "longllmlingua"
    requires_query: ClassVar[bool] = True
    # Private, for benchmarks and tests: False recomputes the question-free scores
    # in a pass of their own (the previous behaviour) instead of reusing the ranking pass's.
    _reuse_ranking_scores: bool = True

    def __init__(
        self,
        scorer: Any = "HuggingFaceTB/SmolLM2-135M",
        *,
        rate: float | None = 0.5,
        target_tokens: int | None = None,
        rank_bias: float = 0.3,
        coarse_factor: float = 2.0,
        reorder: bool = False,
        question_template: str = "Question: {question}",
        counter: Any = None,
        **scorer_options: Any,
    ) -> None:
        rate, target_tokens = check_target(rate, target_tokens)
        if not isinstance(question_template, str):
            raise TypeError(f"question_template must be a str containing '{{question}}', "
                            f"got {question_template!r} ({type(question_template).__name__})")
        if "{question}" not in question_template:
            raise ValueError(f"question_template must be a str containing '{{question}}', got {question_template!r}")
        self.rate = rate
        self.target_tokens = target_tokens
        self.rank_bias = check_number("rank_bias", rank_bias, min=0.0, max=1.0, max_inclusive=False)
        self.coarse_factor = check_number("coarse_factor", coarse_factor, min=1.0)
        self.reorder = bool(reorder)
        self.question_template = question_template
        self.counter: TokenCounter = get_counter(counter)
        self.scorer: CausalLMScorer = as_scorer(scorer, **scorer_options)

    def __repr__(self) -> str:
        return (f"LongLLMLinguaCompressor(rate={self.rate!r}, target_tokens={self.target_tokens!r}, "
                f"rank_bias={self.rank_bias!r}, reorder={self.reorder!r}, scorer={self.scorer!r})")

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        assert query is not None
        question = self.question_template.replace("{question}", query)
        live = [i for i, p in enumerate(passages) if not p.is_blank]
        logp, plain = self._rank([passages[i].text for i in live], question)
        scored = dict(zip(live, logp, strict=True))
        own = dict(zip(live, plain, strict=True))
        ranked = sorted(live, key=lambda i: (-scored[i], i))
        current = {i: passages[i].with_score(self.name, float(scored[i])) for i in live}
        totals = dict(zip(ranked, self.counter.count_many([passages[i].text for i in ranked]), strict=True))
        target = total_target(sum(totals.values()), self.rate, self.target_tokens)
        dropped: list[Dropped] = []
        kept: list[int] = []
        used = 0
        for r, i in enumerate(ranked):
            if kept and used >= self.coarse_factor * target:
                dropped.append(self._drop(current[i], f"rank {r + 1} below the coarse cut"))
                continue
            kept.append(i)
            used += totals[i]
        shares = dict(zip(kept, allocate_tokens([totals[i] for i in kept], target, rank_bias=self.rank_bias),
                          strict=True))
        todo = [i for i in kept if shares[i] < totals[i]]
        self._fine(query, todo, current, shares, own)
        out: list[Passage] = []
        order = kept if self.reorder else [i for i in live if i in shares]
        blanks = [i for i in range(len(passages)) if i not in scored]
        for i in (order + blanks) if self.reorder else sorted(order + blanks):
            p = current.get(i, passages[i])
            if i in shares and p.is_blank:
                dropped.append(self._drop(p, "no tokens left within the compression target"))
            else:
                out.append(p)
        return StageOutput(tuple(out), tuple(dropped))

    def _rank(self, texts: list[str], question: str) -> tuple[np.ndarray, list[TokenScores | None]]:
        """The coarse ranking scores and, from the same pass, each text's question-free token scores."""
        if self._reuse_ranking_scores:
            return self.scorer.question_logprob_and_scores(texts, question)
        return self.scorer.question_logprob(texts, question), [None] * len(texts)

    def _fine(
        self,
        query: str,
        todo: list[int],
        current: dict[int, Passage],
        shares: dict[int, int],
        own: dict[int, TokenScores | None],
    ) -> None:
        if not todo:
            return
        texts = [current[i].text for i in todo]
        with_q = self.scorer.token_scores(texts, prefix=f"{query}\n\n")
        # question-free scores the ranking pass could not give (a passage cut there
        # to fit with the question) come from a windowed pass of their own
        missing = [i for i in todo if own[i] is None]
        plain_of = {**own, **dict(zip(missing, self.scorer.token_scores([current[i].text for i in missing]),
                                      strict=True))}
        for k, i in enumerate(todo):
            p = current[i]
            words = p.units("word")
            units = p.offset_map().to_text(words)
            own_scores = plain_of[i]
            assert own_scores is not None
            plain, _ = unit_scores(p.text, own_scores, units)
            given_q, _ = unit_scores(p.text, with_q[k], units)
            contrast = plain - given_q
            counts = unit_counts(p, words, self.counter, words=True)
            current[i] = select_units(p, words, contrast + 1e-6 * plain, counts, shares[i], self.counter)

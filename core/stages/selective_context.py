"""Selective Context: drop the least informative words, phrases or sentences.

Each unit's self-information is the sum of ``-log p(token | preceding text)``
over its tokens, computed by a small causal LM (:class:`CausalLMScorer`).  The
least informative units are dropped until the passage fits its share of the
token target.  Output is extractive: only spans of the original are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.causal_lm import (
    CausalLMScorer,
    as_scorer,
    group_spans,
    select_units,
    token_targets,
    unit_counts,
    unit_scores,
)
from ..runtime.validation import check_choice, check_int, check_target
from ..text.segment import Span
from ..text.tokens import TokenCounter, WordCounter, get_counter

__all__ = ["SelectiveContextCompressor", "phrase_groups", "STOPWORDS"]

# Function words that open a new phrase ("of the city", "in 1999", "which was").
STOPWORDS = frozenset(
    """a an the of in on at to for from by with about as into onto over under after before between through
    during without within and or but nor so yet if then than that which who whom whose what when where why how
    is are was were be been being am has have had do does did will would shall should can could may might must
    this these those it its he she they them his her their we our you your i me my not no""".split()
)

_LEVELS = ("token", "phrase", "sentence")


def phrase_groups(words: Sequence[str], *, max_words: int = 4) -> np.ndarray:
    """Group ids (0, 0, 1, ...) splitting words into short phrases, without a parser.

    A phrase ends after punctuation (a run of punctuation stays with the phrase
    before it), a stopword that follows a content word opens a new phrase (so
    "the capital of France" gives "the capital" / "of France"), and no phrase
    has more than ``max_words`` words.
    """
    n = len(words)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    low = [w.strip().lower() for w in words]
    punct = np.fromiter((not any(c.isalnum() for c in w) for w in low), dtype=bool, count=n)
    stop = np.fromiter((w in STOPWORDS for w in low), dtype=bool, count=n)
    boundary = np.zeros(n, dtype=bool)
    boundary[0] = True
    boundary[1:] = (punct[:-1] & ~punct[1:]) | (stop[1:] & ~stop[:-1] & ~punct[:-1])
    groups = np.cumsum(boundary) - 1
    starts = np.flatnonzero(boundary)
    pos = np.arange(n) - starts[groups]
    boundary |= (pos > 0) & (pos % max_words == 0)
    return np.cumsum(boundary) - 1


class SelectiveContextCompressor(BaseStage):
    """Drops the lowest self-information units until each passage fits its target.

    Args:
        scorer: a :class:`CausalLMScorer`, or a model path/hub id/GGUF file to load one.
        level: ``"token"`` (word units), ``"phrase"`` (short word groups, see
            :func:`phrase_groups`) or ``"sentence"``.
        rate: keep at most this fraction of the tokens, in (0, 1].
        target_tokens: keep at most this many tokens over all passages.
        counter: token counter for ``rate``/``target_tokens`` (default: words).
        max_phrase_words: longest phrase at ``level="phrase"``.
        **scorer_options: passed to :class:`CausalLMScorer` when ``scorer`` is a path.

    The overall target (the tighter of ``rate`` and ``target_tokens``) is split
    over the passages in proportion to their length.  Blank passages pass
    through unchanged; a passage left with no tokens is dropped with a reason.
    """

    name: ClassVar[str] = "selective-context"
    requires_query: ClassVar[bool] = False

    def __init__(
        self,
        scorer: Any = "HuggingFaceTB/SmolLM2-135M",
        *,
        level: str = "phrase",
        rate: float | None = 0.5,
        target_tokens: int | None = None,
        counter: Any = None,
        max_phrase_words: int = 4,
        **scorer_options: Any,
    ) -> None:
        self.level = check_choice("level", level, _LEVELS)
        rate, target_tokens = check_target(rate, target_tokens)
        self.rate = rate
        self.target_tokens = target_tokens
        self.max_phrase_words = check_int("max_phrase_words", max_phrase_words, min=1)
        self.counter: TokenCounter = get_counter(counter)
        self.scorer: CausalLMScorer = as_scorer(scorer, **scorer_options)

    def __repr__(self) -> str:
        return (f"SelectiveContextCompressor(level={self.level!r}, rate={self.rate!r}, "
                f"target_tokens={self.target_tokens!r}, scorer={self.scorer!r})")

    def _units(self, p: Passage, words: list[Span], word_info: np.ndarray) -> tuple[list[Span], np.ndarray, np.ndarray]:
        """Units at the configured level, their self-information and token counts."""
        if self.level == "token":
            return words, word_info, unit_counts(p, words, self.counter, words=True)
        original = p.original or ""
        if self.level == "phrase":
            groups = phrase_groups([original[a:b] for a, b in words], max_words=self.max_phrase_words)
            units = group_spans(words, groups)
        else:
            units = p.units("sentence")
            starts = np.asarray([a for a, _ in units], dtype=np.int64)
            groups = np.searchsorted(starts, np.asarray([a for a, _ in words], dtype=np.int64), side="right") - 1
        info = np.bincount(groups, weights=word_info, minlength=len(units))
        if type(self.counter) is WordCounter:
            counts = np.bincount(groups, minlength=len(units)).astype(np.int64)
        else:
            counts = unit_counts(p, units, self.counter)
        return units, info, counts

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        live = [i for i, p in enumerate(passages) if not p.is_blank]
        if not live:
            return StageOutput(tuple(passages))
        items = [passages[i] for i in live]
        totals, targets = token_targets(items, self.counter, self.rate, self.target_tokens)
        todo = [k for k in range(len(items)) if targets[k] < totals[k]]
        scores = self.scorer.token_scores([items[k].text for k in todo])
        out: dict[int, Passage | None] = {}
        for k, ts in zip(todo, scores, strict=True):
            p = items[k]
            words = p.units("word")
            word_info, _ = unit_scores(p.text, ts, p.offset_map().to_text(words))
            units, info, counts = self._units(p, words, word_info)
            kept = select_units(p, units, info, counts, targets[k], self.counter)
            out[live[k]] = None if kept.is_blank else kept
        kept_out: list[Passage] = []
        dropped: list[Dropped] = []
        for i, p in enumerate(passages):
            if i not in out:
                kept_out.append(p)
            elif out[i] is None:
                dropped.append(self._drop(p, "no tokens left within the compression target"))
            else:
                kept_out.append(out[i])  # type: ignore[arg-type]
        return StageOutput(tuple(kept_out), tuple(dropped))

"""Test doubles shipped with the library: stages that need no model.

Use them to test adapters and pipelines without torch.
"""

from __future__ import annotations

import math

from .passage import BaseStage, Dropped, Passage, StageOutput
from .runtime.validation import check_int, check_number, check_rate
from .text.segment import word_spans

__all__ = ["LexicalReranker", "LexicalPruner", "FakeCompressor"]


def _terms(text: str) -> set[str]:
    return {text[a:b].strip().lower() for a, b in word_spans(text) if any(c.isalnum() for c in text[a:b])}


class LexicalReranker(BaseStage):
    """Scores a passage by the fraction of query terms it contains.

    Sorts by score (ties keep input order), then keeps the ``top_n`` best and
    drops those under ``threshold``.  Blank passages get score 0.
    """

    name = "lexical-reranker"
    requires_query = True

    def __init__(self, *, top_n: int | None = None, threshold: float | None = None) -> None:
        self.top_n = check_int("top_n", top_n, min=0, allow_none=True)
        self.threshold = check_number("threshold", threshold, allow_none=True)

    def __repr__(self) -> str:
        return f"LexicalReranker(top_n={self.top_n}, threshold={self.threshold})"

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        q = _terms(query or "")
        scored = [p.with_score(self.name, len(q & _terms(p.text)) / len(q) if q else 0.0) for p in passages]
        order = sorted(range(len(scored)), key=lambda i: (-(scored[i].score or 0.0), i))
        kept: list[Passage] = []
        dropped: list[Dropped] = []
        for rank, i in enumerate(order):
            p = scored[i]
            if self.threshold is not None and (p.score or 0.0) < self.threshold:
                dropped.append(self._drop(p, f"score {p.score:.3g} below threshold {self.threshold:g}"))
            elif self.top_n is not None and len(kept) >= self.top_n:
                dropped.append(self._drop(p, f"rank {rank + 1} beyond top_n={self.top_n}"))
            else:
                kept.append(p)
        return StageOutput(tuple(kept), tuple(dropped))


class FakeCompressor(BaseStage):
    """Keeps the first ``ceil(rate * n)`` words of each passage (extractive)."""

    name = "fake-compressor"

    def __init__(self, *, rate: float = 0.5) -> None:
        self.rate = check_rate("rate", rate)

    def __repr__(self) -> str:
        return f"FakeCompressor(rate={self.rate})"

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        out = []
        for p in passages:
            words = p.units("word")
            if not words:
                out.append(p)
                continue
            out.append(p.keep_units(words[: math.ceil(self.rate * len(words))]))
        return StageOutput(tuple(out))


class LexicalPruner(BaseStage):
    """Keeps the units (:meth:`Passage.units`) that share at least ``min_terms`` terms with
    the query; a passage with no such unit is dropped.  Structure-aware like every pruner."""

    name = "lexical-pruner"
    requires_query = True

    def __init__(self, *, min_terms: int = 1) -> None:
        self.min_terms = check_int("min_terms", min_terms, min=1)

    def __repr__(self) -> str:
        return f"LexicalPruner(min_terms={self.min_terms})"

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        q = _terms(query or "")
        kept: list[Passage] = []
        dropped: list[Dropped] = []
        for p in passages:
            assert p.original is not None
            units = p.units("unit")
            hits = [u for u in units if len(q & _terms(p.original[u[0] : u[1]])) >= self.min_terms]
            if not hits:
                dropped.append(self._drop(p, f"no unit shares {self.min_terms} term(s) with the query"))
            else:
                kept.append(p.keep_units(hits) if len(hits) < len(units) else p)
        return StageOutput(tuple(kept), tuple(dropped))


"""Budgets: a score threshold, a token cap, a rate, or a threshold AND a cap."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from .passage import Dropped, Passage, StageOutput
from .runtime.validation import check_choice, check_int, check_number, check_rate
from .text.structure import atomic_spans, inside
from .text.tokens import TokenCounter

__all__ = ["Budget", "allocate_tokens", "as_budget", "deprecated_stage_budget"]


@dataclass(frozen=True, slots=True)
class Budget:
    """What may reach the LLM.

    Applied in order: passages whose score is below ``threshold`` (or unscored,
    when a threshold is set) are dropped; then passages are taken in their
    current (ranked) order until ``max_tokens`` or ``rate`` times the original
    token count is reached.  The passage that straddles the limit is cut to
    fit at a sentence end (``truncate="sentence"``, the default), at a sentence
    end or else a word end (``"word"``), or dropped (``False``); the passages
    after it are dropped.  With ``rank_bias > 0`` (and truncation on), the limit
    is instead split across the passages by :meth:`allocate`, higher-ranked ones
    getting a larger share of their length, and each is cut to its share.  Every
    drop is reported with its reason.

    Attributes:
        max_tokens: hard cap on the tokens of all kept text (target tokenizer).
        rate: keep at most this fraction of the original tokens, in (0, 1].
        threshold: minimum passage score.
        truncate: ``"sentence"``, ``"word"`` or ``False``: how the passage at the
            limit is cut (``True`` means ``"sentence"``).
        rank_bias: in [0, 1): how strongly :meth:`allocate` favours
            higher-ranked passages (LongLLMLingua's dynamic ratio); 0 = fill the
            limit greedily in rank order.
    """

    max_tokens: int | None = None
    rate: float | None = None
    threshold: float | None = None
    truncate: bool | str = "sentence"
    rank_bias: float = 0.0

    def __post_init__(self) -> None:
        fields = {
            "max_tokens": check_int("max_tokens", self.max_tokens, min=0, allow_none=True),
            "rate": check_rate("rate", self.rate, allow_none=True),
            "threshold": check_number("threshold", self.threshold, allow_none=True),
            "truncate": check_choice("truncate", "sentence" if self.truncate is True else self.truncate,
                                     (False, "sentence", "word")),
            "rank_bias": check_number("rank_bias", self.rank_bias, min=0.0, max=1.0, max_inclusive=False),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def limits_tokens(self) -> bool:
        return self.max_tokens is not None or self.rate is not None

    def token_limit(self, original_tokens: int) -> int | None:
        """The token cap for a set of passages whose originals count ``original_tokens``."""
        limits = []
        if self.max_tokens is not None:
            limits.append(self.max_tokens)
        if self.rate is not None:
            limits.append(int(math.floor(self.rate * original_tokens + 1e-9)))
        return min(limits) if limits else None

    def _fit_shares(self, kept: list[Passage], counts: list[int], limit: int, counter: TokenCounter,
                    dropped: list[Dropped], stage: str) -> StageOutput:
        """Each passage cut to its share of ``limit`` (:meth:`allocate`), in rank order."""
        out: list[Passage] = []
        for p, n, share in zip(kept, counts, self.allocate(counts, limit), strict=True):
            if n <= share:
                out.append(p)
                continue
            cut = truncate_to(p, share, counter, words=self.truncate == "word") if share > 0 else None
            if cut is None:
                dropped.append(Dropped(p.index, stage, f"over its share of the token budget ({share} of {limit} "
                                                       "tokens)", p.score))
            else:
                out.append(cut)
        return StageOutput(tuple(out), tuple(dropped))

    def allocate(self, counts: Sequence[int], total: int) -> list[int]:
        """Split ``total`` tokens across passages of ``counts`` tokens, in rank order."""
        return allocate_tokens(counts, total, rank_bias=self.rank_bias)

    def fit(
        self,
        passages: Sequence[Passage],
        counter: TokenCounter,
        *,
        original_tokens: int | None = None,
        stage: str = "budget",
    ) -> StageOutput:
        """Apply the budget to ``passages`` (kept in their order)."""
        dropped: list[Dropped] = []
        kept: list[Passage] = []
        for p in passages:
            if self.threshold is not None and (p.score is None or not p.score >= self.threshold):  # NaN fails too
                why = "unscored" if p.score is None else f"score {p.score:.4g}"
                dropped.append(Dropped(p.index, stage, f"{why} below threshold {self.threshold:g}", p.score))
            else:
                kept.append(p)
        if not self.limits_tokens:
            return StageOutput(tuple(kept), tuple(dropped))
        if original_tokens is None:
            original_tokens = sum(counter.count_many([p.original or "" for p in kept]))
        limit = self.token_limit(original_tokens)
        assert limit is not None
        counts = counter.count_many([p.text for p in kept])
        if self.rank_bias > 0 and self.truncate and sum(counts) > limit:
            return self._fit_shares(kept, counts, limit, counter, dropped, stage)
        out: list[Passage] = []
        used = 0
        for i, (p, n) in enumerate(zip(kept, counts, strict=True)):
            if used + n <= limit:
                out.append(p)
                used += n
                continue
            room = limit - used
            cut = truncate_to(p, room, counter, words=self.truncate == "word") if self.truncate and room > 0 else None
            if cut is not None:
                out.append(cut)
            else:
                dropped.append(Dropped(p.index, stage, f"over token budget ({limit} tokens)", p.score))
            for q in kept[i + 1 :]:
                dropped.append(Dropped(q.index, stage, f"over token budget ({limit} tokens)", q.score))
            break
        return StageOutput(tuple(out), tuple(dropped))


def truncate_to(passage: Passage, max_tokens: int, counter: TokenCounter, *, words: bool = True) -> Passage | None:
    """The longest prefix of ``passage`` within ``max_tokens``, in whole sentences
    (or whole words when ``words``), never ending inside an HTML tag, a markdown table
    row or a fenced code block; ``None`` if nothing fits."""
    if max_tokens <= 0 or passage.is_blank:
        return None
    return _longest_prefix(passage, passage.units("word" if words else "sentence"), max_tokens, counter)


def _longest_prefix(passage: Passage, units: list[tuple[int, int]], max_tokens: int,
                    counter: TokenCounter) -> Passage | None:
    if not units:
        return None
    orig = passage.original or ""
    # Per-unit counts give a prefix estimate in one batched call; the real count of
    # the rendered prefix then decides (tokenizers are not exactly additive).
    sizes = counter.count_many([orig[a:b] for a, b in units])
    total, k = 0, 0
    for n in sizes:
        if total + n > max_tokens:
            break
        total += n
        k += 1
    atomic = atomic_spans(orig)
    while k > 0:
        while k > 0 and inside(atomic, units[k - 1][1]):
            k -= 1  # never end inside an HTML tag, a table row or a code block
        if k == 0:
            return None
        cand = passage.keep_units(units[:k])
        n = counter.count(cand.text)
        if n <= max_tokens:
            return cand
        k = max(0, min(k - 1, int(k * max_tokens / n)))
    return None


def _rank_weights(n: int, rank_bias: float) -> list[float]:
    """Weight ``1 + rank_bias * (1 - 2k/(n-1))`` of passage ``k`` of ``n`` (all 1 for a single passage)."""
    return [1.0 + rank_bias * (1.0 - 2.0 * k / (n - 1)) if n > 1 else 1.0 for k in range(n)]


def _filled(counts: Sequence[int], weights: Sequence[float], lam: float) -> list[float]:
    """Each passage's share at level ``lam``: ``lam * weight * length``, capped at its length."""
    return [min(float(c), lam * w * c) for c, w in zip(counts, weights, strict=True)]


def _fill_level(counts: Sequence[int], weights: Sequence[float], total: int) -> float:
    """The highest level (found by bisection) whose shares sum to at most ``total``."""
    lo, hi = 0.0, 1.0 / min(w for w in weights if w > 0)
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(_filled(counts, weights, mid)) > total:
            hi = mid
        else:
            lo = mid
    return lo


def _hand_out_remainder(alloc: list[int], counts: Sequence[int], rest: int) -> None:
    """Give one more token to each passage below its length, in rank order, until ``rest`` runs out."""
    for k in range(len(alloc)):
        if rest <= 0:
            break
        if alloc[k] < counts[k]:
            alloc[k] += 1
            rest -= 1


def allocate_tokens(counts: Sequence[int], total: int, *, rank_bias: float = 0.0) -> list[int]:
    """Per-passage token targets summing to at most ``min(total, sum(counts))``.

    Passage ``k`` of ``n`` (in rank order) gets a share proportional to its length
    times the weight ``1 + rank_bias * (1 - 2k/(n-1))``, capped at its length;
    what a capped passage cannot use is redistributed to the others.
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    n = len(counts)
    if n == 0:
        return []
    if any(c < 0 for c in counts):
        raise ValueError("counts must be >= 0")
    if total >= sum(counts):
        return list(counts)
    weights = _rank_weights(n, rank_bias)
    alloc = [int(math.floor(x)) for x in _filled(counts, weights, _fill_level(counts, weights, total))]
    _hand_out_remainder(alloc, counts, total - sum(alloc))
    return alloc


def as_budget(budget: object, name: str = "budget") -> Budget | None:
    """``None``, a :class:`Budget`, or an int meaning ``Budget(max_tokens=int)``; anything else a ``TypeError``."""
    if budget is None or isinstance(budget, Budget):
        return budget
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise TypeError(f"{name} must be None, an int (max tokens) or a Budget, got {budget!r}")
    return Budget(max_tokens=check_int(name, budget, min=0))


def deprecated_stage_budget(owner: str, budget: object) -> Budget | None:
    """A stage's own ``budget=`` (deprecated: budgets live in the Pipeline), checked, with a warning."""
    if budget is None:
        return None
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
    import warnings

    warnings.warn(f"{owner}(budget=...) is deprecated and will be removed in the next release: budgets live in "
                  f"the Pipeline, e.g. Pipeline([{owner}(...)], budget=...)", DeprecationWarning, stacklevel=3)
    return budget


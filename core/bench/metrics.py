"""What a compressor kept of a question's evidence, per case and aggregated.

A method's output for one case is one ``Kept`` value per input passage, in
input order:

* ``None``: the passage was dropped;
* a tuple of ``(start, end)`` character spans of the passage text (extractive
  methods: every ragprune stage);
* a ``str``: the text a method returned for the passage (peers that rewrite
  text, e.g. a word-level compressor that re-joins its words).

Definitions (all exact and documented in the report):

``kept_fraction``
    tokens of the kept texts / tokens of the original passages, each passage
    counted on its own with the named token counter (micro-averaged over cases
    when aggregated).
``gold sentence survives``
    with spans: the fraction of the gold sentence's non-whitespace characters
    inside the kept spans is ``>= min_coverage`` (0.9 by default), so a
    sentence-level method that keeps the sentence always counts, and a word
    compressor counts only when it left (almost) all of the sentence; with
    text: the normalized sentence is a substring of the normalized kept text
    of its passage.
``answer retained``
    some normalized gold answer occurs, on word boundaries, in the normalized
    kept text of the case (passages joined).  Only *answerable* cases count:
    the answer occurs in the uncompressed passages and is not "yes"/"no"
    (HotpotQA comparison questions whose answer is not in the text).
``passage drop rate``
    dropped passages / passages; ``gold_passage_drop_rate`` does the same for
    passages holding a gold sentence.
``unanswerable_emptied``
    among cases whose ``metadata`` marks them ``("answerable", False)`` (the
    out-of-domain cases of :mod:`ragprune.bench.ood`), the share where every
    passage was dropped (``None`` or a blank kept text): the method saw that
    nothing answers.  ``None`` when no case is so marked (HotpotQA).
``offtopic_drop_rate``
    dropped passages (``None`` or a blank kept text) among those a case's
    ``metadata`` lists under ``"offtopic"`` (passages of other documents);
    ``None`` when no case lists any.
``valid``
    when a validity check is given (structured documents, see
    :mod:`ragprune.bench.structured`): kept texts that still parse / kept texts
    (dropped passages and empty texts are not outputs).

Normalization: NFKD with combining marks removed, case-folded, every
punctuation or symbol character replaced by a space, the articles a/an/the
removed, whitespace collapsed.  Replacing (rather than deleting) punctuation
makes ``"U.S."`` and a re-tokenized ``"u . s ."`` agree.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..runtime.validation import check_rate
from ..text.segment import Span, render_spans
from ..text.tokens import TokenCounter
from ..training.datasets import QACase

__all__ = [
    "Kept",
    "CaseMetrics",
    "Aggregate",
    "normalize",
    "is_answerable",
    "kept_texts",
    "sentence_coverage",
    "case_metrics",
    "aggregate",
]

Kept = Union[None, tuple[Span, ...], str]  # noqa: UP007 (a runtime alias)

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_SPACE = re.compile(r"\s+")
_UNANSWERABLE = frozenset({"yes", "no"})


class _PunctTable(dict[int, "str | int"]):
    """``str.translate`` table: punctuation and symbols -> space, filled as characters are met."""

    def __missing__(self, code: int) -> str | int:
        value: str | int = " " if unicodedata.category(chr(code))[0] in "PS" else code
        self[code] = value
        return value


_PUNCT = _PunctTable()


def normalize(text: str) -> str:
    """Normalized text for substring matching (see the module docstring)."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).casefold()
    t = t.translate(_PUNCT)
    t = _ARTICLES.sub(" ", t)
    return _SPACE.sub(" ", t).strip()


def _contains(haystack: str, needle: str) -> bool:
    """``needle`` occurs in ``haystack`` on word boundaries (both normalized)."""
    if not needle:
        return False
    return f" {needle} " in f" {haystack} "


def is_answerable(case: QACase) -> bool:
    """True when a gold answer (not yes/no) occurs in the uncompressed passages."""
    full = normalize("\n".join(text for _, text in case.passages))
    return any(normalize(a) not in _UNANSWERABLE and _contains(full, normalize(a)) for a in case.answers)


def kept_texts(case: QACase, outputs: Sequence[Kept]) -> list[str | None]:
    """The kept text of each passage (``None`` where dropped)."""
    if len(outputs) != len(case.passages):
        raise ValueError(f"case {case.id}: {len(outputs)} outputs for {len(case.passages)} passages")
    out: list[str | None] = []
    for (_, text), kept in zip(case.passages, outputs, strict=True):
        if kept is None or isinstance(kept, str):
            out.append(kept)
        else:
            out.append(render_spans(text, list(kept)))
    return out


def sentence_coverage(text: str, spans: Sequence[Span], sentence: Span) -> float:
    """Fraction of the non-whitespace characters of ``sentence`` that lie inside ``spans``."""
    a, b = sentence
    if b <= a:
        return 1.0
    mask = np.fromiter((not ch.isspace() for ch in text[a:b]), dtype=bool, count=b - a)
    total = int(mask.sum())
    if total == 0:
        return 1.0
    inside = np.zeros(b - a, dtype=bool)
    for s, e in spans:
        lo, hi = max(s, a), min(e, b)
        if hi > lo:
            inside[lo - a : hi - a] = True
    return float((inside & mask).sum()) / total


@dataclass(frozen=True)
class CaseMetrics:
    """One method at one sweep point on one case."""

    case_id: str
    tokens_before: int
    tokens_after: int
    passages: int
    dropped: int
    gold_passages: int
    gold_passages_dropped: int
    gold_sentences: int
    gold_kept: int
    gold_coverage: float | None  # mean coverage of gold sentences (span outputs only)
    answerable: bool
    answer_retained: bool | None  # None when the case is not answerable
    seconds: float
    outputs_checked: int = 0  # kept texts given to the validity check
    outputs_valid: int = 0  # of those, the ones that parse
    marked_unanswerable: bool | None = None  # metadata ("answerable", False); None: the case has no such entry
    emptied: bool = False  # every passage dropped (None or a blank kept text)
    offtopic_passages: int | None = None  # passages listed in metadata "offtopic"; None: no such entry
    offtopic_dropped: int = 0  # of those, the ones dropped (None or a blank kept text)

    @property
    def kept_fraction(self) -> float:
        return self.tokens_after / self.tokens_before if self.tokens_before else 1.0

    @property
    def recall(self) -> float | None:
        return self.gold_kept / self.gold_sentences if self.gold_sentences else None


def _metadata_figures(case: QACase, texts: Sequence[str | None]) -> tuple[bool | None, bool, int | None, int]:
    """``(marked_unanswerable, emptied, offtopic_passages, offtopic_dropped)``: the figures read from the
    case's own labels (``metadata`` "answerable" and "offtopic"); see :class:`CaseMetrics`."""
    meta = dict(case.metadata)
    gone = [t is None or not t.strip() for t in texts]
    marked = not bool(meta["answerable"]) if "answerable" in meta else None
    if "offtopic" not in meta:
        return marked, bool(gone) and all(gone), None, 0
    listed = sorted({int(i) for i in meta["offtopic"] if 0 <= int(i) < len(texts)})
    return marked, bool(gone) and all(gone), len(listed), sum(gone[i] for i in listed)


def case_metrics(case: QACase, outputs: Sequence[Kept], counter: TokenCounter, *, seconds: float,
                 min_coverage: float = 0.9, answerable: bool | None = None,
                 tokens_before: int | None = None, validity: Callable[[str], bool] | None = None) -> CaseMetrics:
    """Metrics of one method's ``outputs`` (one ``Kept`` per passage) on ``case``.

    ``validity`` checks that each kept text still parses (e.g. as JSON).
    """
    min_coverage = check_rate("min_coverage", min_coverage)
    texts = kept_texts(case, outputs)
    if tokens_before is None:
        tokens_before = sum(counter.count_many([t for _, t in case.passages]))
    live = [t for t in texts if t]
    tokens_after = sum(counter.count_many(live)) if live else 0
    dropped = sum(t is None for t in texts)
    gold_p = case.gold_passages
    gold_dropped = sum(texts[p] is None for p in gold_p)
    kept_gold = 0
    coverages: list[float] = []
    norm_cache: dict[int, str] = {}
    for p, s in case.gold_sentences:
        kept = outputs[p]
        if kept is None:
            coverages.append(0.0)
            continue
        if isinstance(kept, str):
            if p not in norm_cache:
                norm_cache[p] = normalize(kept)
            if _contains(norm_cache[p], normalize(case.sentence(p, s))):
                kept_gold += 1
        else:
            cov = sentence_coverage(case.passages[p][1], kept, case.sentence_spans[p][s])
            coverages.append(cov)
            if cov >= min_coverage - 1e-12:
                kept_gold += 1
    has_text = any(isinstance(k, str) for k in outputs)
    checked = [t for t in live if t.strip()] if validity is not None else []
    valid = sum(bool(validity(t)) for t in checked) if validity is not None else 0
    if answerable is None:
        answerable = is_answerable(case)
    retained: bool | None = None
    if answerable:
        joined = normalize("\n".join(live))
        retained = any(_contains(joined, normalize(a)) for a in case.answers
                       if normalize(a) not in _UNANSWERABLE)
    marked, emptied, offtopic, offtopic_dropped = _metadata_figures(case, texts)
    return CaseMetrics(
        case_id=case.id, tokens_before=int(tokens_before), tokens_after=int(tokens_after),
        passages=len(texts), dropped=int(dropped), gold_passages=len(gold_p), gold_passages_dropped=int(gold_dropped),
        gold_sentences=len(case.gold_sentences), gold_kept=kept_gold,
        gold_coverage=None if has_text or not coverages else float(np.mean(coverages)),
        answerable=bool(answerable), answer_retained=retained, seconds=float(seconds),
        outputs_checked=len(checked), outputs_valid=int(valid), marked_unanswerable=marked, emptied=emptied,
        offtopic_passages=offtopic, offtopic_dropped=offtopic_dropped,
    )


@dataclass(frozen=True)
class Aggregate:
    """One method at one sweep point over all cases."""

    cases: int
    kept_fraction: float  # sum tokens kept / sum tokens before
    mean_case_kept_fraction: float
    recall: float | None  # gold sentences kept / gold sentences
    all_gold_kept: float | None  # fraction of cases with every gold sentence kept
    gold_coverage: float | None
    answer_retention: float | None  # over answerable cases
    answerable_cases: int
    passage_drop_rate: float
    gold_passage_drop_rate: float | None
    latency_p50: float  # seconds per case
    latency_p90: float
    latency_mean: float
    tokens_per_second: float  # original tokens compressed per second of compression
    total_seconds: float
    valid_share: float | None = None  # kept texts that still parse / kept texts checked (None: no check)
    mean_tokens_after: float = 0.0  # tokens kept per case
    unanswerable_emptied: float | None = None  # cases marked unanswerable with every passage dropped (None: none)
    offtopic_drop_rate: float | None = None  # passages marked off-topic that were dropped (None: none marked)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def aggregate(rows: Sequence[CaseMetrics]) -> Aggregate:
    """Aggregate per-case metrics (see the module docstring for each definition)."""
    if not rows:
        raise ValueError("nothing to aggregate")
    before = sum(r.tokens_before for r in rows)
    after = sum(r.tokens_after for r in rows)
    secs = np.asarray([r.seconds for r in rows], dtype=np.float64)
    with_gold = [r for r in rows if r.gold_sentences]
    answerable = [r for r in rows if r.answerable]
    cov = [r.gold_coverage for r in rows if r.gold_coverage is not None]
    unanswerable = [r for r in rows if r.marked_unanswerable]
    total = float(secs.sum())
    return Aggregate(
        cases=len(rows),
        kept_fraction=after / before if before else 1.0,
        mean_case_kept_fraction=float(np.mean([r.kept_fraction for r in rows])),
        recall=_ratio(sum(r.gold_kept for r in rows), sum(r.gold_sentences for r in rows)),
        all_gold_kept=_ratio(sum(r.gold_kept == r.gold_sentences for r in with_gold), len(with_gold)),
        gold_coverage=float(np.mean(cov)) if cov else None,
        answer_retention=_ratio(sum(bool(r.answer_retained) for r in answerable), len(answerable)),
        answerable_cases=len(answerable),
        passage_drop_rate=sum(r.dropped for r in rows) / max(1, sum(r.passages for r in rows)),
        gold_passage_drop_rate=_ratio(sum(r.gold_passages_dropped for r in rows), sum(r.gold_passages for r in rows)),
        latency_p50=float(np.percentile(secs, 50)),
        latency_p90=float(np.percentile(secs, 90)),
        latency_mean=float(secs.mean()),
        tokens_per_second=before / total if total > 0 else math.inf,
        total_seconds=total,
        valid_share=_ratio(sum(r.outputs_valid for r in rows), sum(r.outputs_checked for r in rows)),
        mean_tokens_after=after / len(rows),
        unanswerable_emptied=_ratio(sum(r.emptied for r in unanswerable), len(unanswerable)),
        offtopic_drop_rate=_ratio(sum(r.offtopic_dropped for r in rows), sum(r.offtopic_passages or 0 for r in rows)),
    )

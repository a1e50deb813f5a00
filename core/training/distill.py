"""Distil a causal LM's question-aware word scores into a small token classifier.

LLMLingua-2 trains a token classifier on keep/drop labels distilled from a
large model, but its classifier never sees the question.  Here the teacher is
a small causal LM scoring each passage twice, with and without the question
in front (:class:`ragprune.runtime.causal_lm.CausalLMScorer`), and the student is a
pruner (:mod:`ragprune.stages.provence`) that reads ``[question][passage]``.

Teacher word score (per word unit of the passage, :meth:`Passage.units`):
    the MEAN over the word's LM tokens of the contrastive information
    ``log p(x_i | question, x_<i) - log p(x_i | x_<i)`` (what the question makes
    predictable), plus ``self_info_weight`` times the mean self-information
    ``-log p(x_i | x_<i)``.
Labels:
    a word is kept (1) when it is among the top ``rate`` fraction of its
    passage's words by teacher score (ties: earlier first; at least one word);
    with ``with_support`` the words of supporting-fact sentences are kept too.

Labels are cached in a JSONL file, one line per (question, passage) pair, so
building them is resumable: pairs already in the file are skipped and a
truncated last line (an interrupted run) is discarded.  Pairs are the gold
passages of each question plus ``negatives`` other passages drawn from a
generator seeded with ``(seed, question position)``, so the choice for a
question never depends on which other questions are labelled.

:func:`agreement` compares a student with the teacher at the same keep rate.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..passage import Passage
from ..runtime.causal_lm import CausalLMScorer, unit_scores
from ..runtime.validation import check_rate
from ..text.segment import Span

__all__ = [
    "AgreementFigures",
    "CacheStats",
    "LabelRecord",
    "TeacherScores",
    "agreement",
    "build_label_cache",
    "keep_top",
    "pair_passages",
    "read_label_cache",
    "records_to_examples",
    "teacher_word_scores",
    "word_labels",
]

logger = logging.getLogger("ragprune")

PREFIX_TEMPLATE = "{question}\n\n"


@dataclass(frozen=True, slots=True, eq=False)
class TeacherScores:
    """Teacher scores of the word units of one text.

    ``words``: ``(n, 2)`` word spans; ``contrast``: mean over each word's tokens
    of ``log p(token | question, before) - log p(token | before)``; ``self_info``:
    mean ``-log p(token | before)``; ``score``: ``contrast + w * self_info``.
    """

    words: np.ndarray
    contrast: np.ndarray
    self_info: np.ndarray
    score: np.ndarray


def teacher_word_scores(scorer: CausalLMScorer, question: str, texts: Sequence[str], *,
                        self_info_weight: float = 0.0, template: str = PREFIX_TEMPLATE) -> list[TeacherScores]:
    """Teacher scores of the words of each text (two batched scorer calls for all texts)."""
    if not isinstance(question, str):
        raise TypeError(f"question must be str, got {type(question).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
    prefix = template.replace("{question}", question)
    both = scorer.token_scores(texts + texts, prefix=[None] * len(texts) + [prefix] * len(texts))
    out = []
    for k, text in enumerate(texts):
        words = np.asarray(Passage.from_text(text, 0).units("word"), dtype=np.int64).reshape(-1, 2)
        plain, counts = unit_scores(text, both[k], words)
        given, _ = unit_scores(text, both[len(texts) + k], words)
        n = np.maximum(counts, 1e-9)
        self_info = np.where(counts > 0, plain / n, 0.0)
        contrast = np.where(counts > 0, (plain - given) / n, 0.0)
        out.append(TeacherScores(words, contrast, self_info, contrast + self_info_weight * self_info))
    return out


def keep_top(scores: np.ndarray, rate: float) -> np.ndarray:
    """Boolean mask of the ``round(rate * n)`` highest scores (at least one; ties: earlier first)."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=bool)
    k = min(n, max(1, int(round(rate * n))))
    order = np.lexsort((np.arange(n), -np.asarray(scores, dtype=np.float64)))
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


def word_labels(scores: np.ndarray, rate: float, support: np.ndarray | None = None) -> np.ndarray:
    """0/1 per word: the top ``rate`` fraction by score, plus ``support`` words when given."""
    mask = keep_top(scores, rate)
    if support is not None:
        mask |= np.asarray(support, dtype=bool)
    return mask.astype(np.int64)


def support_mask(words: np.ndarray, gold_spans: Iterable[Span]) -> np.ndarray:
    """True for words overlapping a supporting sentence span."""
    mask = np.zeros(len(words), dtype=bool)
    for a, b in gold_spans:
        if b > a and len(words):
            mask |= (words[:, 0] < b) & (words[:, 1] > a)
    return mask


def pair_passages(case: Any, negatives: int, seed: int, position: int) -> list[int]:
    """Gold passages of ``case`` plus ``negatives`` others (``-1``: all), non-blank, ascending."""
    gold = set(case.gold_passages) | {i for i, (t, _) in enumerate(case.passages) if t in case.gold_titles}
    others = [i for i in range(len(case.passages)) if i not in gold]
    if 0 <= negatives < len(others):
        rng = np.random.default_rng([int(seed), int(position)])
        others = [int(x) for x in rng.choice(others, size=negatives, replace=False)]
    return sorted(i for i in gold | set(others) if case.passages[i][1].strip())


# ---------------------------------------------------------------- the cache


@dataclass(frozen=True, slots=True, eq=False)
class LabelRecord:
    """One cached (question, passage) pair: its words, teacher scores and labels."""

    qid: str
    position: int
    passage: int
    relevant: int
    question: str
    text: str
    words: np.ndarray
    scores: np.ndarray
    self_info: np.ndarray
    support: np.ndarray
    labels: np.ndarray
    rate: float
    with_support: bool

    def to_json(self) -> str:
        return json.dumps({
            "qid": self.qid, "position": self.position, "passage": self.passage, "relevant": self.relevant,
            "question": self.question, "text": self.text, "words": self.words.tolist(),
            "scores": [round(float(x), 5) for x in self.scores],
            "self_info": [round(float(x), 5) for x in self.self_info],
            "support": self.support.astype(int).tolist(), "labels": self.labels.astype(int).tolist(),
            "rate": self.rate, "with_support": self.with_support,
        }, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelRecord:
        return cls(qid=str(d["qid"]), position=int(d["position"]), passage=int(d["passage"]),
                   relevant=int(d["relevant"]), question=str(d["question"]), text=str(d["text"]),
                   words=np.asarray(d["words"], dtype=np.int64).reshape(-1, 2),
                   scores=np.asarray(d["scores"], dtype=np.float64),
                   self_info=np.asarray(d["self_info"], dtype=np.float64),
                   support=np.asarray(d["support"], dtype=bool), labels=np.asarray(d["labels"], dtype=np.int64),
                   rate=float(d["rate"]), with_support=bool(d["with_support"]))

    def relabel(self, rate: float, with_support: bool) -> np.ndarray:
        """Labels at another rate / support setting (the stored ones when they match)."""
        if rate == self.rate and with_support == self.with_support:
            return self.labels
        return word_labels(self.scores, rate, self.support if with_support else None)


def _read_lines(path: Path) -> tuple[list[LabelRecord], int]:
    """Records of the file and the byte length of its well-formed part."""
    records: list[LabelRecord] = []
    good = 0
    if not path.is_file():
        return records, 0
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                logger.warning("label cache %s: discarding a truncated last line", path)
                break
            try:
                records.append(LabelRecord.from_dict(json.loads(raw)))
            except (ValueError, KeyError, TypeError):
                if raw.strip():
                    logger.warning("label cache %s: discarding a malformed line and what follows", path)
                    break
            good += len(raw)
    return records, good


def read_label_cache(path: str | os.PathLike[str]) -> list[LabelRecord]:
    """The records of a label cache (a truncated or malformed tail is ignored)."""
    return _read_lines(Path(path))[0]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What :func:`build_label_cache` did: pairs added, pairs already cached, seconds of labelling."""

    added: int
    skipped: int
    total: int
    seconds: float


def build_label_cache(
    path: str | os.PathLike[str],
    cases: Sequence[Any],
    scorer: CausalLMScorer,
    *,
    rate: float,
    negatives: int = 1,
    with_support: bool = False,
    seed: int = 0,
    start: int = 0,
    self_info_weight: float = 0.0,
    progress: bool = True,
) -> CacheStats:
    """Label the pairs of ``cases`` with the teacher and append them to the JSONL cache at ``path``.

    ``cases[k]`` is question ``start + k`` of its split (its position seeds the
    choice of negatives).  Pairs already in the file are skipped; a truncated
    last line is cut off before appending.  Each question's lines are written
    and flushed together.
    """
    rate = check_rate("rate", rate)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    records, good = _read_lines(out)
    done = {(r.qid, r.passage) for r in records}
    if out.is_file() and out.stat().st_size > good:
        with out.open("r+b") as f:
            f.truncate(good)
    added = skipped = 0
    seconds = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cases), desc="teacher labels", unit="question")
    try:
        with out.open("a", encoding="utf-8") as f:
            for k, case in enumerate(cases):
                position = start + k
                chosen = pair_passages(case, negatives, seed, position)
                todo = [i for i in chosen if (case.id, i) not in done]
                skipped += len(chosen) - len(todo)
                if todo:
                    t0 = time.perf_counter()
                    scored = teacher_word_scores(scorer, case.question, [case.passages[i][1] for i in todo],
                                                 self_info_weight=self_info_weight)
                    seconds += time.perf_counter() - t0
                    gold = case.gold_spans()
                    titles = set(case.gold_titles)
                    lines = []
                    for i, ts in zip(todo, scored, strict=True):
                        support = support_mask(ts.words, gold.get(i, ()))
                        rec = LabelRecord(
                            qid=case.id, position=position, passage=i,
                            relevant=int(i in gold or case.passages[i][0] in titles), question=case.question,
                            text=case.passages[i][1], words=ts.words, scores=ts.score, self_info=ts.self_info,
                            support=support, labels=word_labels(ts.score, rate, support if with_support else None),
                            rate=float(rate), with_support=bool(with_support))
                        lines.append(rec.to_json() + "\n")
                        done.add((case.id, i))
                    f.write("".join(lines))
                    f.flush()
                    added += len(todo)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return CacheStats(added=added, skipped=skipped, total=len(done), seconds=seconds)


def records_to_examples(records: Iterable[LabelRecord], *, rate: float, with_support: bool) -> list[Any]:
    """Training examples (:class:`ragprune.training.pruner.TokenLabelExample`) of cached records."""
    from .pruner import TokenLabelExample

    out = []
    for r in records:
        labels = r.relabel(rate, with_support)
        out.append(TokenLabelExample(r.question, r.text, tuple((int(a), int(b)) for a, b in r.words.tolist()),
                                     tuple(int(v) for v in labels), int(r.relevant)))
    return out


# ---------------------------------------------------------------- agreement


@dataclass(frozen=True, slots=True)
class AgreementFigures:
    """Student (and a query-free baseline) against the teacher's labels, word by word.

    Each passage keeps, for the student and the baseline, as many words as
    the teacher's labels keep.  ``agreement``: fraction of words with the same
    keep decision; ``f1``: F1 of the teacher's kept words.  The baseline ranks
    words by the LM's self-information alone (the question unseen).
    ``teacher_seconds_per_pair`` / ``student_seconds_per_pair``: wall time of
    labelling and of student scoring, measured side by side, question by
    question; ``speedup`` is their ratio.
    """

    questions: int
    pairs: int
    words: int
    keep_fraction: float
    agreement: float
    f1: float
    baseline_agreement: float
    baseline_f1: float
    teacher_seconds_per_pair: float
    student_seconds_per_pair: float
    speedup: float


def _f1(pred: np.ndarray, gold: np.ndarray) -> tuple[int, int, int]:
    return int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())


def agreement(
    student: Any,
    scorer: CausalLMScorer,
    cases: Sequence[Any],
    *,
    rate: float,
    negatives: int = 1,
    with_support: bool = False,
    seed: int = 0,
    start: int = 0,
    self_info_weight: float = 0.0,
    progress: bool = False,
) -> AgreementFigures:
    """Label the pairs of ``cases`` with the teacher and score them with ``student``
    (a :class:`ragprune.stages.query_compressor.QueryTokenCompressor`); compare word by word."""
    same = words = kept = 0
    base_same = 0
    tp = fp = fn = btp = bfp = bfn = 0
    pairs = 0
    t_teacher = t_student = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cases), desc="agreement", unit="question")
    for k, case in enumerate(cases):
        chosen = pair_passages(case, negatives, seed, start + k)
        if not chosen:
            continue
        texts = [case.passages[i][1] for i in chosen]
        t0 = time.perf_counter()
        teacher = teacher_word_scores(scorer, case.question, texts, self_info_weight=self_info_weight)
        t1 = time.perf_counter()
        scored = student.word_probs(case.question, texts)
        t2 = time.perf_counter()
        t_teacher += t1 - t0
        t_student += t2 - t1
        pairs += len(chosen)
        gold = case.gold_spans()
        for i, ts, (s_words, s_probs) in zip(chosen, teacher, scored, strict=True):
            if len(s_words) != len(ts.words):
                raise RuntimeError("student and teacher disagree on the word units")
            support = support_mask(ts.words, gold.get(i, ())) if with_support else None
            labels = word_labels(ts.score, rate, support).astype(bool)
            n_keep = int(labels.sum())
            pred = keep_top(s_probs, n_keep / max(1, len(labels))) if n_keep else np.zeros(len(labels), dtype=bool)
            base = keep_top(ts.self_info, n_keep / max(1, len(labels))) if n_keep else np.zeros(len(labels), dtype=bool)
            words += len(labels)
            kept += n_keep
            same += int((pred == labels).sum())
            base_same += int((base == labels).sum())
            a, b, c = _f1(pred, labels)
            tp, fp, fn = tp + a, fp + b, fn + c
            a, b, c = _f1(base, labels)
            btp, bfp, bfn = btp + a, bfp + b, bfn + c
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    def f1(a: int, b: int, c: int) -> float:
        return 2 * a / (2 * a + b + c) if (2 * a + b + c) else 0.0

    per_t = t_teacher / max(1, pairs)
    per_s = t_student / max(1, pairs)
    return AgreementFigures(
        questions=len(cases), pairs=pairs, words=words, keep_fraction=kept / max(1, words),
        agreement=same / max(1, words), f1=f1(tp, fp, fn), baseline_agreement=base_same / max(1, words),
        baseline_f1=f1(btp, bfp, bfn), teacher_seconds_per_pair=per_t, student_seconds_per_pair=per_s,
        speedup=per_t / per_s if per_s > 0 else float("inf"),
    )

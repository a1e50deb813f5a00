"""Offline sentence and word segmentation, returning character spans.

Both segmenters *partition* the text: every character belongs to exactly one
span, whitespace is attached to the unit before it, and joining the spans gives
back the text unchanged.  They need no downloaded data and treat scripts that
are written without spaces (Chinese, Japanese) one character per word.
"""

from __future__ import annotations

from collections.abc import Sequence

import regex

__all__ = [
    "Span",
    "is_unspaced_char",
    "render_spans",
    "merge_spans",
    "sentence_spans",
    "word_spans",
]

Span = tuple[int, int]

_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_UNSPACED_RE = regex.compile(rf"[{_UNSPACED}\u3000-\u303f\uff00-\uffef]")

# One word: a single character of an unspaced script (with its marks), a run of
# letters/digits/marks/underscores (apostrophes inside words allowed), or any
# other single grapheme cluster (punctuation, emoji sequences, symbols).
_WORD_RE = regex.compile(
    rf"[{_UNSPACED}]\p{{M}}*"
    rf"|(?:(?![{_UNSPACED}])[\p{{L}}\p{{N}}\p{{M}}_])+"
    rf"(?:['\u2019](?:(?![{_UNSPACED}])[\p{{L}}\p{{N}}\p{{M}}_])+)*"
    r"|\X",
    regex.V1,
)
_SPACE_RE = regex.compile(r"\s+")

_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc eg ie al cf no vol fig figs inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt capt rev hon est approx dept
    univ assn bros ph e.g i.e u.s u.k a.m p.m""".split()
)
# Candidate sentence ends: terminal punctuation with optional closing quotes or
# brackets, then whitespace or end of text; CJK terminals need no whitespace;
# a line break always ends a sentence.
_BOUNDARY_RE = regex.compile(
    r"(?:[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)\s*)"
    r"|(?:[\u3002\uff01\uff1f\uff61]+[\u300d\u300f\uff09\"'\u201d\u2019]*\s*)"
    r"|(?:\n\s*)"
)
_LAST_WORD_RE = regex.compile(r"([\p{L}.]+)\.$")


def is_unspaced_char(ch: str) -> bool:
    """True for characters of scripts written without spaces between words."""
    return bool(ch) and _UNSPACED_RE.match(ch) is not None


def word_spans(text: str) -> list[Span]:
    """Split ``text`` into word spans (each word carries its trailing whitespace).

    Leading whitespace belongs to the first word.  An empty or whitespace-only
    text yields a single span covering it (or none when it is empty).
    """
    if not text:
        return []
    starts = [m.start() for m in _WORD_RE.finditer(text) if not text[m.start()].isspace()]
    if not starts:
        return [(0, len(text))]
    starts[0] = 0
    ends = starts[1:] + [len(text)]
    return list(zip(starts, ends, strict=True))


def _is_abbreviation(text: str, end_of_punct: int) -> bool:
    # ``end_of_punct`` is the index just past a single '.'.  Only the last 64
    # characters are searched (a longer word is no abbreviation either way), so
    # segmenting a long text stays linear.
    m = _LAST_WORD_RE.search(text, max(0, end_of_punct - 64), end_of_punct)
    if m is None:
        return False
    word = m.group(1).lower().rstrip(".")
    if word in _ABBREVIATIONS:
        return True
    # Initials such as "J." in "J. R. R. Tolkien" (one upper-case letter).
    return len(word) == 1 and m.group(1)[0].isupper()


def sentence_spans(text: str) -> list[Span]:
    """Split ``text`` into sentence spans that together cover the whole text.

    Sentences end at ``.``, ``!``, ``?`` and ``...`` followed by whitespace, at
    CJK full stops, and at every line break (so table rows, list items and code
    lines stay whole units).  Common abbreviations and initials do not end a
    sentence.
    """
    if not text:
        return []
    spans: list[Span] = []
    start = 0
    for m in _BOUNDARY_RE.finditer(text):
        punct = m.group(0).rstrip()
        if (
            punct == "."
            and "\n" not in m.group(0)
            and _is_abbreviation(text, m.start() + 1)
        ):
            continue
        end = m.end()
        if end <= start:
            continue
        if text[start:end].strip():
            spans.append((start, end))
            start = end
        elif spans:  # whitespace only: glue to the previous sentence
            spans[-1] = (spans[-1][0], end)
            start = end
    if start < len(text):
        if spans and not text[start:].strip():
            spans[-1] = (spans[-1][0], len(text))
        else:
            spans.append((start, len(text)))
    return spans


def merge_spans(spans: Sequence[Span]) -> tuple[Span, ...]:
    """Sort spans, drop empty ones and merge those that touch or overlap."""
    out: list[list[int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def render_spans(original: str, spans: Sequence[Span]) -> str:
    """Join the kept ``spans`` of ``original`` into text.

    Pieces are concatenated in order.  Where a gap separates two pieces and
    neither side has whitespace at the junction, one space is inserted (never
    between characters of unspaced scripts), so ``"cat"`` and ``"sat"`` kept
    from ``"cat, sat"`` read ``"cat sat"``.  That space is the only character a
    rendered text can contain that is not copied from ``original``.
    """
    parts: list[str] = []
    prev_end = -1
    for a, b in spans:
        piece = original[a:b]
        if not piece:
            continue
        if parts and a > prev_end:
            left, right = parts[-1][-1], piece[0]
            if not (
                left.isspace()
                or right.isspace()
                or is_unspaced_char(left)
                or is_unspaced_char(right)
            ):
                parts.append(" ")
        parts.append(piece)
        prev_end = b
    return "".join(parts)


def split_space(text: str) -> list[str]:
    """Whitespace tokens of ``text`` (helper for whitespace counting)."""
    return [t for t in _SPACE_RE.split(text) if t]

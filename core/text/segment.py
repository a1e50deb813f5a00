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

# Abbreviations, lower-cased, without their final dot, in four classes that say
# when the dot before the next word does *not* end a sentence.  (Whatever the
# class, a dot followed by a lower-case word never ends one, and a single
# capital letter is an initial, as in "J. R. R. Tolkien".)
# Titles and Latin/reference abbreviations: never at a sentence end.  The
# Latin ones are written in lower case (a capital first letter allowed), so
# "CA." (California) is not "ca." (circa).
_TITLES = frozenset(
    """mr mrs ms messrs dr prof rev hon st mt ft gen col lt sgt capt cmdr adm gov sen rep pres supt
    sr sra srta dra mme mlle hr frl ph ee проф акад доц""".split()
)
_LATIN = frozenset("e.g i.e cf vs v viz approx ca resp bzw vgl sog d.h u.a ex см напр т.е".split())
_ALWAYS = _TITLES | _LATIN
# Abbreviations that precede a number ("No. 5", "Fig. 3", "Jan. 14", "S. 12").
_BEFORE_NUMBER = frozenset(
    """no nos nr vol vols fig figs p pp ch chap cap sec art eq eqs tab ed op est rm pg pág págs
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun
    гл рис стр ст табл
    """.split()
)
# Abbreviations that often end a sentence ("... etc. Then"): a dot after them
# ends the sentence unless a lower-case word follows.
_ENDERS = frozenset("etc usw uu др".split())
# Abbreviations seen before lower-case words that may also end a sentence ("25 min. at noon").
_UNITS = frozenset("min mins hr hrs sec secs tsp tbsp oz lb lbs ft yr yrs incl excl jh".split())
# Words that can end a sentence or sit inside a name ("Apple Inc. released",
# "the U.S. Army").  Dotted acronyms (U.S., Ph.D., a.m.) join them: the dot ends
# the sentence only when the next word is a common sentence opener.
_NAME_PARTS = frozenset("inc ltd co corp plc llc jr bros al dept univ assn".split())
_OPENERS = frozenset(
    """A An The This That These Those There Then Thus Today It Its He His She Her They Their We Our I
    You Your In On At After Before When While Since During For From By With If Although Though However
    But And As Also Some Most Many Other Others All Each One Two No Yet So Later Meanwhile
    El La Los Las Un Una En Después Luego Le Les Il Elle Ils Ce Cette Puis Der Die Das Er Sie Es Ein Eine
    Danach Dann Он Она Они Это Затем В На
    """.split()
)
# Every known abbreviation but those that are also common words: before a
# lower-case word, the dot after them is inside the sentence.
_KNOWN = (_ALWAYS | _BEFORE_NUMBER | _ENDERS | _UNITS | _NAME_PARTS) - frozenset(
    "no sat sun mar art cap tab op ed est".split()
)
# German month names: a number and dot before them is an ordinal date ("am 9. November").
_ORDINAL_NEXT = frozenset(
    "Januar Februar März April Mai Juni Juli August September Oktober November Dezember Jahrhundert".split()
)

_CLOSERS = "\"'\u201c\u201d\u2018\u2019)\\]\u00bb\u00ab\u203a\u2039"
# Candidate sentence ends: terminal punctuation, optional closing quotes,
# brackets (also a French "»" after a space) and citation marks ("[3]"), then
# whitespace or the end of the text; a Latin-script sentence end directly
# followed by a CJK character; CJK terminals (which need no whitespace); a line
# break, which always ends a sentence.
_BOUNDARY_RE = regex.compile(
    rf"(?P<end>[.!?\u2026]+)(?P<close>(?:[{_CLOSERS}]|[ \u00a0\u202f][\u00bb\u203a]|\[\d{{1,3}}\])*)(?=\s|$)\s*"
    rf"|(?<=\p{{Latin}})[.!?]+(?=[{_UNSPACED}])"
    r"|(?P<cjk>[\u3002\uff01\uff1f\uff61]+[\u300d\u300f\uff09\"'\u201d\u2019]*)\s*"
    r"|\n\s*"
)
_QUOTE_RE = regex.compile(r"[\"'\u201c\u201d\u2018\u2019\u00bb\u00ab\u203a\u2039]")
_NEXT_WORD_RE = regex.compile(r"\p{L}+")
_LETTER_DOT_RE = regex.compile(r"\p{L}\.")
_CHAIN_RE = regex.compile(r"(?<![\p{L}\p{N}])(\p{L})\. ?\p{L}$")
_ACRONYM_RE = regex.compile(r"\p{L}{1,3}(?:\.\p{L}{1,3})+")


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


def _word_before(text: str, dot: int) -> str:
    # The letters, digits and inner dots just before ``text[dot]``; at most 64
    # characters are read, so segmenting a long text stays linear.
    i, lo = dot, max(0, dot - 64)
    while i > lo and (text[i - 1].isalnum() or (text[i - 1] == "." and i - 1 > lo and text[i - 2].isalnum())):
        i -= 1
    return text[i:dot]


def _single_letter_abbreviation(text: str, dot: int, letter: str, nxt: int) -> bool:
    # "J. R. R. Tolkien" (an initial); "z. B.", "т. е.", "a. m." (letters with dots): inside the
    # chain, or after it when the chain is one of the never-final ones ("d. h.")
    if letter.isupper() or _LETTER_DOT_RE.match(text, nxt) is not None:
        return True
    prev = _CHAIN_RE.search(text, max(0, dot - 5), dot)
    return prev is not None and f"{prev.group(1)}.{letter}".lower() in _ALWAYS


def _is_abbreviation(text: str, dot: int, start: int, nxt: int) -> bool:
    """Whether the single ``.`` at ``text[dot]`` belongs to an abbreviation rather than ending a sentence.

    ``start`` is where the current sentence starts and ``nxt`` the next
    non-space character.
    """
    word = _word_before(text, dot)
    if not word:
        return False
    w = word.lower()
    lead = dot - len(word) - start
    if w in _TITLES or word[:1].lower() + word[1:] in _LATIN or (
        word.isdigit() and lead <= 64 and not text[start:start + lead].strip()
    ):
        # a title or a Latin abbreviation ("ca." but not "CA."), or a list marker opening the line ("1. Download")
        return True
    acronym = _ACRONYM_RE.fullmatch(word) is not None
    if text[nxt].islower():  # "etc. and", "the U.K. and", "25 min. at"; not "the mat. the dog"
        return (len(word) == 1 and word.isalpha()) or w in _KNOWN or acronym
    if len(word) == 1 and word.isalpha():
        return _single_letter_abbreviation(text, dot, word, nxt)
    if text[nxt].isdigit():  # "No. 5", "the U.S. 2000 election"
        return w in _BEFORE_NUMBER or acronym
    nw = _NEXT_WORD_RE.match(text, nxt, nxt + 40)
    next_word = nw.group() if nw else ""
    if w in _NAME_PARTS or acronym:
        return next_word not in _OPENERS
    return word.isdigit() and next_word in _ORDINAL_NEXT  # a German ordinal date ("am 9. November")


def _ends_sentence(text: str, m: regex.Match[str], start: int) -> bool:
    """Whether the candidate boundary ``m`` (see ``_BOUNDARY_RE``) ends the sentence begun at ``start``."""
    end = m.end()
    if end >= len(text):
        return True
    whole, punct, close, cjk = m.group(0, "end", "close", "cjk")
    if "\n" in whole:
        return True
    if cjk is not None:
        # 「明日行きます。」と言った: a quotation inside the sentence
        return not (cjk[-1] in "\u300d\u300f\u201d" and text[end] in "\u3068\u3063")
    if punct is None:  # a Latin sentence end directly before CJK text
        return True
    if punct == "." and not close:
        return not _is_abbreviation(text, m.start(), start, end)
    # '"Yes!" he said' and 'tired... but' go on; 'the dog sat! the cat' does not
    return not (text[end].islower() and (len(punct) > 1 or "\u2026" in punct or _QUOTE_RE.search(close)))


def sentence_spans(text: str) -> list[Span]:
    """Split ``text`` into sentence spans that together cover the whole text.

    Sentences end at ``.``, ``!``, ``?`` and ``...`` (with any closing quotes,
    brackets and citation marks) followed by whitespace and a word that is not
    lower-case, at CJK full stops, and at every line break (so table rows, list
    items and code lines stay whole units).  A dot after an abbreviation does not
    end a sentence when the abbreviation is a title or a Latin one ("Dr.",
    "e.g."), a reference before a number ("No. 5", "Fig. 3"), an initial
    ("J. R. R. Tolkien") or a name part not followed by a common sentence opener
    ("Apple Inc. released", "the U.S. Army"); "etc." and other words end the
    sentence before a capitalised word ("He said no. Then ...").
    """
    if not text:
        return []
    spans: list[Span] = []
    start = 0
    for m in _BOUNDARY_RE.finditer(text):
        end = m.end()
        if end <= start or not _ends_sentence(text, m, start):
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

"""The one contract every stage speaks: immutable passages in, passages out."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from .runtime.validation import check_choice, check_int
from .text.offsets import OffsetMap
from .text.segment import Span, merge_spans, render_spans, sentence_spans, word_spans
from .text.units import STRUCTURES, Layout, intersect_spans, layout_of

__all__ = [
    "Passage",
    "Dropped",
    "StageOutput",
    "Stage",
    "BaseStage",
    "to_passages",
    "check_query",
    "InputLimits",
    "DEFAULT_LIMITS",
]

@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved piece of context, and what ranking and compression did to it.

    Attributes:
        text: the current text; always ``render_spans(original, spans)``.
        index: identity, the position of this passage in the caller's input.
            Two passages with equal text keep distinct indices.
        score: the latest relevance score given by a stage (or the caller).
        metadata: the caller's metadata, carried through untouched (never copied
            or mutated by ragprune).
        original: the text as the caller gave it.
        spans: kept character spans of ``original``, sorted and non-overlapping.
        original_score: the score the caller gave (e.g. a retrieval score).
        scores: ``(stage name, score)`` for every stage that scored this passage.
        tokens_before: tokens of ``original`` in the pipeline's token counter.
        tokens_after: tokens of ``text`` in the pipeline's token counter.
        structure: how ``original`` is read into units: ``"auto"`` (detected from the
            text), ``"prose"``, ``"markdown"``, ``"json"`` or ``"html"`` (see
            :mod:`ragprune.text.units`).
    """

    text: str
    index: int
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    original: str | None = None
    spans: tuple[Span, ...] | None = None
    original_score: float | None = None
    scores: tuple[tuple[str, float], ...] = ()
    tokens_before: int | None = None
    tokens_after: int | None = None
    structure: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Passage text must be str, got {type(self.text).__name__}")
        object.__setattr__(self, "index", check_int("Passage index", self.index))
        if self.score is not None and not isinstance(self.score, (int, float)):
            raise TypeError(f"Passage score must be a number, got {type(self.score).__name__}")
        if self.original is None:
            object.__setattr__(self, "original", self.text)
        elif not isinstance(self.original, str):
            raise TypeError("Passage original must be str")
        if self.spans is None:
            if self.original != self.text:
                raise ValueError("Passage with original != text needs explicit spans")
            full = ((0, len(self.text)),) if self.text else ()
            object.__setattr__(self, "spans", full)
        if self.original_score is None and self.score is not None and not self.scores:
            object.__setattr__(self, "original_score", float(self.score))
        if self.score is not None:
            object.__setattr__(self, "score", float(self.score))
        if self.structure != "auto":
            check_choice("Passage structure", self.structure, STRUCTURES)

    @classmethod
    def from_text(
        cls,
        text: str,
        index: int,
        *,
        score: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        structure: str = "auto",
    ) -> Passage:
        """A fresh, uncompressed passage."""
        return cls(text=text, index=index, score=score, metadata={} if metadata is None else metadata,
                   structure=structure)

    @property
    def is_blank(self) -> bool:
        """True when the current text is empty or whitespace only."""
        return not self.text.strip()

    @property
    def kept_fraction(self) -> float:
        """Fraction of the original characters still kept (1.0 for an empty original)."""
        assert self.original is not None
        if not self.original:
            return 1.0
        return sum(b - a for a, b in self.spans or ()) / len(self.original)

    def offset_map(self) -> OffsetMap:
        """The map between ``original`` and ``text`` coordinates (see :class:`ragprune.text.offsets.OffsetMap`)."""
        assert self.original is not None
        return OffsetMap.of(self.original, self.spans or ())

    def pieces(self) -> list[str]:
        """The kept slices of the original, in order."""
        assert self.original is not None
        return [self.original[a:b] for a, b in self.spans or ()]

    def layout(self) -> Layout:
        """The units of ``original`` and what keeping each requires (see :mod:`ragprune.text.units`)."""
        assert self.original is not None
        try:
            return layout_of(self.original, self.structure)
        except ValueError as e:
            raise ValueError(f"passage {self.index}: {e}") from None

    def units(self, level: str = "sentence") -> list[Span]:
        """The units of the kept text, in ``original`` coordinates, that stages keep or drop.

        ``"sentence"`` (or ``"unit"``): sentences of prose; for markdown, JSON and HTML
        the units of their structure (rows, items, leaves, blocks, and the sentences
        inside them).  ``"word"``: words, and for structured text only words inside units
        (never inside a tag, a key or a bracket).  Units never cross a gap in the kept
        spans and whitespace-only units are left out.  Stages select among these and call
        :meth:`keep_units`.
        """
        check_choice("level", level, ("sentence", "unit", "word"))
        layout = self.layout()
        if layout.structure == "prose":
            return self._segmented(sentence_spans if level != "word" else word_spans, self.spans or ())
        clipped = intersect_spans(layout.units, self.spans or ())
        if level == "word":
            return self._segmented(word_spans, clipped)
        assert self.original is not None
        return [(a, b) for a, b in clipped if self.original[a:b].strip()]

    def _segmented(self, segment: Callable[[str], list[Span]], spans: Sequence[Span]) -> list[Span]:
        assert self.original is not None
        out: list[Span] = []
        for a, b in spans:
            for x, y in segment(self.original[a:b]):
                if self.original[a + x : a + y].strip():
                    out.append((a + x, a + y))
        return out

    def keep_units(self, units: Iterable[Span]) -> Passage:
        """A copy keeping ``units`` (from :meth:`units`) and what their structure requires.

        For prose this is :meth:`with_spans`.  For markdown, JSON and HTML the kept text
        also holds what makes it parse: a table row's header and separator, the fences
        of a code line, a JSON leaf's keys, brackets and commas up to the root, an HTML
        unit's ancestors' tags.  Pruned JSON is the input with members removed.
        """
        chosen = list(units)
        layout = self.layout()
        if layout.structure == "prose" or not chosen:
            return self.with_spans(chosen)
        kept = intersect_spans(merge_spans(layout.closure(chosen)), self.spans or ())
        out = self.with_spans(kept)
        if layout.structure == "json" and not _parses(out.text):
            # a word cut inside a string split an escape: keep the whole units instead
            whole = [layout.units[k] for k in {layout.unit_of(s) for s in chosen} if k is not None]
            out = self.with_spans(intersect_spans(merge_spans(layout.closure(whole)), self.spans or ()))
        return out

    def with_spans(self, spans: Iterable[Span]) -> Passage:
        """A copy keeping only ``spans`` (character offsets of ``original``).

        The new spans must lie inside the currently kept spans: compression only
        ever removes text.
        """
        assert self.original is not None
        merged = merge_spans(list(spans))
        if merged and merged[-1][1] < len(self.original):
            # A cut-short passage does not end in stray whitespace.
            a, b = merged[-1]
            while b > a and self.original[b - 1].isspace():
                b -= 1
            merged = merged[:-1] + (((a, b),) if b > a else ())
        current = self.spans or ()
        starts = [ca for ca, _ in current]
        for a, b in merged:
            k = bisect.bisect_right(starts, a) - 1
            if k < 0 or b > current[k][1]:
                raise ValueError(f"span {(a, b)} is not inside the kept spans of passage {self.index}")
        return dataclasses.replace(
            self, text=render_spans(self.original, merged), spans=merged, tokens_after=None
        )

    def truncated(self, chars: int) -> Passage:
        """A copy keeping (at most) the first ``chars`` characters of the current text."""
        if chars >= len(self.text):
            return self
        starts = self.offset_map().text_starts.tolist()
        kept = [(a, min(b, a + chars - t)) for (a, b), t in zip(self.spans or (), starts, strict=True) if t < chars]
        return self.with_spans([(a, b) for a, b in kept if b > a])

    def with_score(self, stage: str, score: float | None) -> Passage:
        """A copy whose score is ``score``, recorded under ``stage``."""
        if score is None:
            return dataclasses.replace(self, score=None)
        s = float(score)
        return dataclasses.replace(self, score=s, scores=(*self.scores, (stage, s)))

    def replace(self, **changes: Any) -> Passage:
        """A copy with ``changes``; one that would break ``text == render_spans(original, spans)``
        raises ``ValueError`` (change what is kept with :meth:`with_spans`)."""
        new = dataclasses.replace(self, **changes)
        if {"text", "original", "spans"} & changes.keys():
            assert new.original is not None
            if new.text != render_spans(new.original, new.spans or ()):
                raise ValueError("Passage.replace would break text == render_spans(original, spans); "
                                 "change what is kept with with_spans()")
        return new


def _parses(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Dropped:
    """A passage a stage removed, and why."""

    index: int
    stage: str
    reason: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class StageOutput:
    """What one stage returns: kept passages in the stage's order, and the drops."""

    passages: tuple[Passage, ...]
    dropped: tuple[Dropped, ...] = ()


@runtime_checkable
class Stage(Protocol):
    """Anything with ``apply(query, passages) -> passages`` is a stage."""

    def apply(self, query: str | None, passages: Sequence[Passage | str]) -> list[Passage]: ...


@dataclass(frozen=True, slots=True)
class InputLimits:
    """How much input one call accepts, enforced in one place (:func:`to_passages`) for every
    stage and pipeline.

    Attributes:
        max_passage_chars: most characters of one passage's current text.
        max_passages: most passages in one call.
        max_query_chars: most characters of the query.
        policy: ``"error"`` (a ``ValueError`` naming the passage and the limit) or
            ``"truncate"`` (a passage over the limit keeps its first ``max_passage_chars``
            characters, cut at the last whitespace before the limit; the text stays
            extractive).  Too many passages or too long a query is always an error.

    The defaults suit a service: about 250 pages of text per passage, 10,000 passages
    per call.  ``None`` lifts a limit.
    """

    max_passage_chars: int | None = 1_000_000
    max_passages: int | None = 10_000
    max_query_chars: int | None = 100_000
    policy: str = "error"

    def __post_init__(self) -> None:
        from .runtime.validation import check_choice, check_int

        for name in ("max_passage_chars", "max_passages", "max_query_chars"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), min=1, allow_none=True))
        check_choice("policy", self.policy, ("error", "truncate"))

    def fit(self, passage: Passage, position: int, argument: str) -> Passage:
        """``passage`` within ``max_passage_chars`` (an error or a truncated copy, by ``policy``)."""
        limit = self.max_passage_chars
        if limit is None or len(passage.text) <= limit:
            return passage
        if self.policy == "error":
            raise ValueError(f"{argument}[{position}] has {len(passage.text):,} characters, over the limit of "
                             f"{limit:,} (InputLimits.max_passage_chars; policy='truncate' cuts instead)")
        cut = passage.text.rfind(" ", 0, limit + 1)
        return passage.truncated(cut if cut > 0 else limit)


DEFAULT_LIMITS = InputLimits()
"""The limits a stage or pipeline applies when none are given."""


def _check_unicode(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid Unicode: {e.reason} {text[e.start:e.end]!r} at position {e.start} "
                         "(a lone surrogate; decode the source text with errors='replace')") from None


def to_passages(passages: Sequence[Passage | str], *, argument: str = "passages",
                limits: InputLimits = DEFAULT_LIMITS) -> list[Passage]:
    """Accept passages or plain strings (indexed by position); validate types, identities and sizes.

    Raises ``TypeError`` for anything but a sequence of ``Passage`` / ``str``, and
    ``ValueError`` for two passages with the same ``index``, text that is not valid
    Unicode, or input over ``limits``.
    """
    if isinstance(passages, (str, bytes)):
        raise TypeError(f"{argument} must be a sequence of Passage or str, not a single {type(passages).__name__}")
    items = list(passages)
    if limits.max_passages is not None and len(items) > limits.max_passages:
        raise ValueError(f"{argument} holds {len(items):,} passages, over the limit of {limits.max_passages:,} "
                         "(InputLimits.max_passages)")
    out: list[Passage] = []
    seen: set[int] = set()
    for i, p in enumerate(items):
        if isinstance(p, str):
            p = Passage.from_text(p, i)
        elif not isinstance(p, Passage):
            raise TypeError(f"{argument}[{i}] must be Passage or str, got {type(p).__name__}")
        if p.index in seen:
            raise ValueError(f"{argument}[{i}] repeats passage index {p.index}: indices are identities")
        seen.add(p.index)
        _check_unicode(p.text, f"{argument}[{i}]")
        out.append(limits.fit(p, i, argument))
    return out


def check_query(query: object, *, required: bool, stage: str, limits: InputLimits = DEFAULT_LIMITS) -> str | None:
    """Validate a query: ``str`` or ``None``; non-blank when ``required``; valid Unicode, within ``limits``."""
    if query is not None and not isinstance(query, str):
        raise TypeError(f"query must be str or None, got {type(query).__name__}")
    if required and (query is None or not query.strip()):
        raise ValueError(f"{stage} needs a query; got {query!r}")
    if query is not None:
        _check_unicode(query, "query")
        if limits.max_query_chars is not None and len(query) > limits.max_query_chars:
            raise ValueError(f"query has {len(query):,} characters, over the limit of {limits.max_query_chars:,} "
                             "(InputLimits.max_query_chars)")
    return query


class BaseStage:
    """Base class for ragprune stages.

    Subclasses set ``name`` and ``requires_query`` and implement ``_process``,
    which receives validated passages and returns a :class:`StageOutput`.
    ``apply`` returns only the kept passages; ``process`` also returns the drops
    (with reasons); ``aapply``/``aprocess`` run off the event loop.
    """

    name: ClassVar[str] = "stage"
    requires_query: ClassVar[bool] = False
    _init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        obj._init_args = (args, dict(kwargs))  # how it was built: see config()
        return obj

    def warmup(self) -> int:
        """Run each batch shape of this stage's models once, so that no call pays for a shape's first
        kernels (on accelerators, where models batch in shape buckets:
        :class:`~ragprune.runtime.batching.ShapeBuckets`); returns the forward passes run (0 on CPU by
        default).  A server calls it at load."""
        from .runtime.batching import PackedBatching  # imports neither torch nor transformers

        return sum(m.warmup() for m in vars(self).values() if isinstance(m, PackedBatching))

    def config(self) -> dict[str, Any]:
        """How to build this stage again, JSON-ready: its class and its constructor arguments.

        Only a stage built from plain settings has one (a model given as a path or hub
        id, not as a loaded object): ``TypeError`` names the argument otherwise.
        :func:`ragprune.registry.from_config` rebuilds it; pickling goes through it too.
        """
        from .registry import stage_config

        args, kwargs = getattr(self, "_init_args", ((), {}))
        return stage_config(self, args, kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickled by reference (its config: the model path and settings) when it has a config,
        else by value (a stage built around an in-memory model)."""
        try:
            config = self.config()
        except TypeError:
            return super().__reduce_ex__(protocol)
        from .registry import from_config

        return (from_config, (config,))

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        raise NotImplementedError

    def process(self, query: str | None, passages: Sequence[Passage | str], *,
                limits: InputLimits = DEFAULT_LIMITS) -> StageOutput:
        """Kept passages and every drop with its reason; input checked by :func:`to_passages`
        against ``limits``."""
        q = check_query(query, required=self.requires_query, stage=type(self).__name__, limits=limits)
        items = to_passages(passages, limits=limits)
        if not items:
            return StageOutput(())
        return self._process(q, items)

    def apply(self, query: str | None, passages: Sequence[Passage | str]) -> list[Passage]:
        return list(self.process(query, passages).passages)

    async def aprocess(self, query: str | None, passages: Sequence[Passage | str]) -> StageOutput:
        return await asyncio.to_thread(self.process, query, passages)

    async def aapply(self, query: str | None, passages: Sequence[Passage | str]) -> list[Passage]:
        return list((await self.aprocess(query, passages)).passages)

    def __call__(self, query: str | None, passages: Sequence[Passage | str]) -> list[Passage]:
        return self.apply(query, passages)

    def _drop(self, passage: Passage, reason: str) -> Dropped:
        return Dropped(index=passage.index, stage=self.name, reason=reason, score=passage.score)

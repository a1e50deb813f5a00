"""The one record every adapter writes under the ``"ragprune"`` metadata key of each kept item.

Schema, version 1 (a JSON-ready ``dict``; :class:`PassageRecord` reads and writes it)::

    {
      "version": 1,
      "score": 4.41,              # the last score a ragprune stage gave (None: no stage scored it)
      "relevance_score": 4.41,    # the same number, under the key other rerank integrations use
      "previous_score": 0.82,     # the score the item arrived with (retriever score, earlier pass), or None
      "scores": [["provence", 4.41]],   # (stage, score) for every stage that scored it, in order
      "scored_by": "provence",    # the stage that gave "score" (None: no stage scored it)
      "spans": [[0, 82]],         # kept [start, end) character spans of the ORIGINAL text
      "tokens_before": 19,        # tokens of the original text ...
      "tokens_after": 19,         # ... and of the kept text, in "counter"
      "counter": "cl100k_base",   # the pipeline's token counter
      "rate": 1.0,                # tokens_after / tokens_before (1.0 for an empty original)
      "index": 0                  # position of the item in the call's input
    }

Dropped items carry no record (they are not returned); the framework event of the call
(LangChain's ``"ragprune_compression"`` custom event, LlamaIndex's
``RagpruneCompressionEvent``) lists each with its stage and reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragprune import Passage

__all__ = ["METADATA_KEY", "RECORD_VERSION", "PassageRecord"]

METADATA_KEY = "ragprune"
"""The one metadata key under which every adapter writes the record."""

RECORD_VERSION = 1


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class PassageRecord:
    """What ragprune did to one kept item (see the module docstring for the stored form)."""

    score: float | None
    previous_score: float | None
    scores: tuple[tuple[str, float], ...]
    spans: tuple[tuple[int, int], ...]
    tokens_before: int
    tokens_after: int
    counter: str
    index: int
    version: int = RECORD_VERSION

    @property
    def relevance_score(self) -> float | None:
        """The score under the name rerank integrations use."""
        return self.score

    @property
    def scored_by(self) -> str | None:
        """The stage that gave :attr:`score`."""
        return self.scores[-1][0] if self.scores else None

    @property
    def rate(self) -> float:
        return self.tokens_after / self.tokens_before if self.tokens_before else 1.0

    @classmethod
    def of(cls, passage: Passage, *, previous_score: float | None, counter: str) -> PassageRecord:
        """The record of a kept passage of a pipeline result."""
        return cls(
            score=passage.score if passage.scores else None,
            previous_score=_number(previous_score),
            scores=tuple((stage, float(s)) for stage, s in passage.scores),
            spans=tuple((int(a), int(b)) for a, b in passage.spans or ()),
            tokens_before=int(passage.tokens_before or 0),
            tokens_after=int(passage.tokens_after or 0),
            counter=counter,
            index=passage.index,
        )

    def as_dict(self) -> dict[str, Any]:
        """The stored form (JSON-ready: lists, numbers, strings)."""
        return {
            "version": self.version,
            "score": self.score,
            "relevance_score": self.relevance_score,
            "previous_score": self.previous_score,
            "scores": [[stage, s] for stage, s in self.scores],
            "scored_by": self.scored_by,
            "spans": [[a, b] for a, b in self.spans],
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "counter": self.counter,
            "rate": self.rate,
            "index": self.index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PassageRecord:
        """Read a stored record; ``ValueError`` for another version or a malformed one."""
        version = data.get("version")
        if version != RECORD_VERSION:
            raise ValueError(f"ragprune record version {version!r} is not {RECORD_VERSION}")
        try:
            return cls(
                score=_number(data["score"]),
                previous_score=_number(data["previous_score"]),
                scores=tuple((str(stage), float(s)) for stage, s in data["scores"]),
                spans=tuple((int(a), int(b)) for a, b in data["spans"]),
                tokens_before=int(data["tokens_before"]),
                tokens_after=int(data["tokens_after"]),
                counter=str(data["counter"]),
                index=int(data["index"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed ragprune record: {e}") from e

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> PassageRecord | None:
        """The record in an item's metadata, or ``None`` when it has none."""
        data = metadata.get(METADATA_KEY)
        return None if data is None else cls.from_dict(data)

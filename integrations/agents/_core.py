"""Framework-free pruning of one tool output: what every agent adapter shares.

A tool output is one text.  Plain text is split at blank lines into parts (one
``Passage`` each, ``index`` = position), so the pipeline can drop whole parts that do
not answer and keep the relevant sentences of the others; JSON, markdown and HTML go
whole (one passage: the pipeline's structure-aware units and records decide what a piece
of it is, see :mod:`ragprune.text.units`).  The kept parts
come back in their original order, joined by a blank line.  Nothing here prunes: the
pipeline does; this module decides when to call it and how to read its result back.

Guarantees: an output under ``min_tokens`` (or any output, while the conversation is
under ``trigger``) is returned unchanged; a JSON output comes back parsing, or
unchanged with the reason in the record; an output of which nothing is kept becomes a
one-line note saying so, never an empty text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragprune import Budget, Passage, Pipeline, PipelineResult
from ragprune.runtime.validation import check_choice, check_int
from ragprune.text.units import detect_structure

from .._shared import as_pipeline, check_query
from ..record import METADATA_KEY, RECORD_VERSION, PassageRecord

__all__ = [
    "EMPTY_NOTE",
    "METADATA_KEY",
    "PASSED_THROUGH_JSON",
    "Outcome",
    "ToolOutputPruner",
    "tool_args_query",
]

EMPTY_NOTE = ("[ragprune: nothing in this {tool} output ({tokens} tokens) was relevant to the question; "
              "the full output is kept with the message]")
"""The one line that replaces an output of which nothing is relevant (``on_empty="note"``)."""

PASSED_THROUGH_JSON = "passed through: pruning would break JSON"
PASSED_THROUGH_EMPTY_JSON = "passed through: nothing relevant, and a note would replace the JSON document"

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def paragraphs(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each non-blank block of ``text`` between blank lines."""
    out: list[tuple[int, int]] = []
    pos = 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        if text[pos:m.start()].strip():
            out.append((pos, m.start()))
        pos = m.end()
    if text[pos:].strip():
        out.append((pos, len(text)))
    return out


def parses_as_json(text: str) -> bool:
    """True for a JSON object or array (the kinds of document a tool returns)."""
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def tool_args_query(args: Any) -> str | None:
    """The string values of a tool call's arguments, joined: the query of ``query="tool_args"``."""
    if isinstance(args, str):
        return args.strip() or None
    if isinstance(args, dict):
        words = [v.strip() for v in args.values() if isinstance(v, str) and v.strip()]
        return " ".join(words) or None
    return None


@dataclass(frozen=True)
class Outcome:
    """What :meth:`ToolOutputPruner.prune` did with one output.

    ``text`` is what the model is shown; ``record`` the JSON-ready record stored under
    ``"ragprune"`` in the message; ``result`` the pipeline's result (``None`` when the
    pipeline did not run); ``pruned`` whether ``text`` differs from the original.
    """

    text: str
    original: str
    record: dict[str, Any]
    result: PipelineResult | None = None
    pruned: bool = False
    parts: tuple[tuple[int, int], ...] = field(default=(), repr=False)


def _check_names(name: str, value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of tool names, got {value!r}")
    names = list(value)
    for n in names:
        if not isinstance(n, str) or not n:
            raise TypeError(f"{name} must hold non-empty tool names (str), got {n!r}")
    return frozenset(names)


class ToolOutputPruner:
    """Prunes one tool output against a question with a ragprune pipeline.

    Args:
        stage: a ragprune stage, a list of stages, a :class:`ragprune.Pipeline` or a
            registered stage name (``ragprune.default_pipeline()`` is the shipped pruner).
        budget: a token cap per output (an ``int`` means ``Budget(max_tokens=int)``), after the stage.
        counter: token counter of the budget, the triggers and the record (default: the
            pipeline's own, else words).
        top_n: keep at most this many parts of an output.
        min_tokens: outputs of at most this many tokens are never pruned.
        trigger: prune only while the conversation holds more than this many tokens
            (``None``: always).
        tools: prune only the outputs of these tools (``None``: every tool).
        exclude_tools: never prune the outputs of these tools.
        on_empty: ``"note"`` (a one-line note replaces an output of which nothing is
            relevant), ``"keep"`` (the output passes through unchanged) or a string,
            the note to use (``{tool}`` and ``{tokens}`` are filled in).
        split: ``"paragraphs"`` (plain text split at blank lines, one passage each) or
            ``None`` (the output is one passage).
    """

    def __init__(self, stage: Any, *, budget: Budget | int | None = None, counter: Any = None,
                 top_n: int | None = None, min_tokens: int = 200, trigger: int | None = None,
                 tools: Sequence[str] | None = None, exclude_tools: Sequence[str] = (),
                 on_empty: str = "note", split: str | None = "paragraphs") -> None:
        self.pipeline: Pipeline = as_pipeline(stage, budget, counter, top_n)
        self.min_tokens = check_int("min_tokens", min_tokens, min=0)
        self.trigger = check_int("trigger", trigger, min=0, allow_none=True)
        self.tools = _check_names("tools", tools)
        self.exclude_tools = _check_names("exclude_tools", exclude_tools) or frozenset()
        if not isinstance(on_empty, str) or not on_empty.strip():
            raise TypeError(f'on_empty must be "note", "keep" or a non-empty note (str), got {on_empty!r}')
        self.on_empty = on_empty
        self.split = check_choice("split", split, ("paragraphs", None))

    @property
    def counter_name(self) -> str:
        return str(self.pipeline.counter.name)

    def count(self, texts: Sequence[str]) -> int:
        """Tokens of ``texts`` together, in the pipeline's counter."""
        return int(sum(self.pipeline.counter.count_many(list(texts)))) if texts else 0

    def applies_to(self, tool: str | None) -> bool:
        """Whether outputs of ``tool`` are pruned at all (``tools`` / ``exclude_tools``)."""
        if tool is not None and tool in self.exclude_tools:
            return False
        return self.tools is None or (tool is not None and tool in self.tools)

    # -- the three steps: decide, run, read back -------------------------------------------------

    def _skip(self, text: str, query: Any, tool: str | None, context_tokens: int | None) -> Outcome | None:
        """An unchanged Outcome when the output is not to be pruned, else ``None``."""
        if not self.applies_to(tool):
            return self._unchanged(text, tool, query, "tool not selected", count=False)
        tokens = self.count([text])
        if tokens <= self.min_tokens:
            return self._unchanged(text, tool, query, f"{tokens} tokens, at most min_tokens={self.min_tokens}",
                                   tokens=tokens)
        if self.trigger is not None and context_tokens is not None and context_tokens <= self.trigger:
            return self._unchanged(text, tool, query,
                                   f"conversation of {context_tokens} tokens, at most trigger={self.trigger}",
                                   tokens=tokens)
        if self.pipeline.requires_query and (not isinstance(query, str) or not query.strip()):
            return self._unchanged(text, tool, query, "no question to prune against", tokens=tokens)
        return None

    def _passages(self, text: str) -> tuple[list[Passage], tuple[tuple[int, int], ...], bool]:
        structure = detect_structure(text)
        is_json = structure == "json"
        if structure != "prose" or self.split is None:  # structured text: its own units and records
            parts: tuple[tuple[int, int], ...] = ((0, len(text)),)
        else:
            parts = tuple(paragraphs(text)) or ((0, len(text)),)
        return [Passage.from_text(text[a:b], i) for i, (a, b) in enumerate(parts)], parts, is_json

    def prune(self, text: str, query: Any, *, tool: str | None = None, context_tokens: int | None = None,
              where: str = "tool_output") -> Outcome:
        """Prune ``text`` (one tool output) against ``query``."""
        skipped = self._skip(text, query, tool, context_tokens)
        if skipped is not None:
            return skipped
        q = check_query(self.pipeline, query, type(self).__name__)
        passages, parts, is_json = self._passages(text)
        result = self.pipeline.run(q, passages)
        return self.read(text, q, result, parts, is_json, tool=tool, where=where)

    async def aprune(self, text: str, query: Any, *, tool: str | None = None, context_tokens: int | None = None,
                     where: str = "tool_output") -> Outcome:
        """Async :meth:`prune` (in a worker thread)."""
        return await asyncio.to_thread(self.prune, text, query, tool=tool, context_tokens=context_tokens, where=where)

    def read(self, text: str, query: str | None, result: PipelineResult, parts: Sequence[tuple[int, int]],
             is_json: bool, *, tool: str | None, where: str) -> Outcome:
        """The Outcome of a pipeline run over the parts of ``text``."""
        kept = sorted(result.passages, key=lambda p: p.index)
        pruned = "\n\n".join(p.text for p in kept if p.text.strip())
        structure = "json" if is_json else "text"
        record = self._record(text, query, result, parts, kept, tool=tool, where=where)
        if not pruned.strip():
            return self._empty(text, record, result, is_json, tool)
        if is_json and not parses_as_json(pruned):
            record.update(pruned=False, structure=PASSED_THROUGH_JSON, tokens_after=record["tokens_before"],
                          rate=1.0, spans=[[0, len(text)]])
            return Outcome(text, text, record, result, False, tuple(parts))
        record.update(structure=structure, tokens_after=self.count([pruned]))
        record["rate"] = record["tokens_after"] / record["tokens_before"] if record["tokens_before"] else 1.0
        record["pruned"] = pruned != text
        return Outcome(pruned, text, record, result, pruned != text, tuple(parts))

    def _empty(self, text: str, record: dict[str, Any], result: PipelineResult, is_json: bool,
               tool: str | None) -> Outcome:
        if is_json or self.on_empty == "keep":
            why = PASSED_THROUGH_EMPTY_JSON if is_json else "passed through: nothing relevant (on_empty='keep')"
            record.update(pruned=False, structure=why, tokens_after=record["tokens_before"], rate=1.0,
                          spans=[[0, len(text)]])
            return Outcome(text, text, record, result, False)
        template = EMPTY_NOTE if self.on_empty == "note" else self.on_empty
        note = template.replace("{tool}", tool or "tool").replace("{tokens}", str(record["tokens_before"]))
        after = self.count([note])
        record.update(pruned=True, note=True, structure="text", spans=[], tokens_after=after,
                      rate=after / record["tokens_before"] if record["tokens_before"] else 1.0)
        return Outcome(note, text, record, result, True)

    def _record(self, text: str, query: str | None, result: PipelineResult, parts: Sequence[tuple[int, int]],
                kept: Sequence[Passage], *, tool: str | None, where: str) -> dict[str, Any]:
        spans = [[parts[p.index][0] + a, parts[p.index][0] + b] for p in kept for a, b in (p.spans or ())]
        return {
            "version": RECORD_VERSION,
            "stage": where,
            "tool": tool,
            "query": query,
            "pruned": True,
            "note": False,
            "structure": "text",
            "tokens_before": self.count([text]),
            "tokens_after": None,
            "counter": self.counter_name,
            "rate": None,
            "spans": spans,
            "parts": len(parts),
            "kept": [PassageRecord.of(p, previous_score=None, counter=self.counter_name).as_dict() for p in kept],
            "dropped": [{"part": d.index, "stage": d.stage, "reason": d.reason, "score": d.score}
                        for d in result.dropped],
            "seconds": result.stats.seconds,
        }

    def _unchanged(self, text: str, tool: str | None, query: Any, why: str, *, tokens: int | None = None,
                   count: bool = True) -> Outcome:
        if tokens is None and count:
            tokens = self.count([text])
        record = {"version": RECORD_VERSION, "stage": "skipped", "tool": tool,
                  "query": query if isinstance(query, str) else None, "pruned": False, "note": False,
                  "structure": f"not pruned: {why}", "tokens_before": tokens, "tokens_after": tokens,
                  "counter": self.counter_name, "rate": 1.0}
        return Outcome(text, text, record)


def event_payload(outcome: Outcome, *, source: str, tool: str | None, call_id: str | None) -> dict[str, Any]:
    """The data of the ``ragprune_compression`` event for one pruned output (the shape the other
    LangChain adapters send, plus the tool, the call and the structure decision)."""
    assert outcome.result is not None
    stats = outcome.result.stats.as_dict()
    stats["tokens_after_output"] = outcome.record["tokens_after"]
    return {
        "source": source,
        "tool": tool,
        "tool_call_id": call_id,
        "structure": outcome.record["structure"],
        "stats": stats,
        "dropped": [{"index": d.index, "id": call_id, "stage": d.stage, "reason": d.reason, "score": d.score}
                    for d in outcome.result.dropped],
    }


class OutcomeCache:
    """A bounded memo of outcomes by (tool call id, original text, query): re-pruning the same
    older output against the same question on every model call costs nothing."""

    def __init__(self, size: int = 256) -> None:
        self.size = check_int("cache_size", size, min=0)
        self._items: OrderedDict[tuple[Any, ...], Outcome] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Outcome | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: tuple[Any, ...], outcome: Outcome) -> None:
        if self.size == 0:
            return
        self._items[key] = outcome
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

"""LangChain messages: a pruned ToolMessage, its original, and the pruning of what a model is shown.

:class:`RagpruneMessages` prunes the tool messages of a conversation against its latest
human message and returns new messages for the model, leaving the stored ones as they
are: the engine of the middleware's ``history=True`` and of the LangGraph
``pre_model_hook`` (``{"llm_input_messages": ...}``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda

from ..langchain._common import aemit, emit
from ._core import METADATA_KEY, Outcome, OutcomeCache, ToolOutputPruner, event_payload

__all__ = ["RagpruneMessages", "latest_question", "original_content", "pruned_message"]


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return str(message.text)


def latest_question(messages: Sequence[Any]) -> str | None:
    """The text of the latest human message (``None`` when there is none)."""
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            text = _text(m).strip()
            return text or None
    return None


def original_content(message: ToolMessage) -> Any:
    """The tool's own output of ``message``, pruned by ragprune or not."""
    record = message.response_metadata.get(METADATA_KEY)
    if not isinstance(record, dict) or not record.get("pruned"):
        return message.content
    if record.get("original_in") == "artifact":
        return message.artifact
    return record.get("original", message.content)


def pruned_message(message: ToolMessage, outcome: Outcome) -> ToolMessage:
    """A copy of ``message`` showing ``outcome.text``; the original output stays in ``artifact``
    (or, when the tool set an artifact of its own, in the record), the record under ``"ragprune"``
    in ``response_metadata`` (the way LangChain's context editing marks its edits)."""
    record = dict(outcome.record)
    update: dict[str, Any] = {"content": outcome.text}
    earlier = message.response_metadata.get(METADATA_KEY)
    if isinstance(earlier, dict) and earlier.get("pruned"):  # pruned before: its original is where it was
        record["original_in"] = earlier.get("original_in")
        if "original" in earlier:
            record["original"] = earlier["original"]
    elif message.artifact is None:
        update["artifact"] = outcome.original
        record["original_in"] = "artifact"
    else:
        record["original_in"] = "record"
        record["original"] = outcome.original
    update["response_metadata"] = {**message.response_metadata, METADATA_KEY: record}
    return message.model_copy(update=update)


def prunable(pruner: ToolOutputPruner, message: Any) -> bool:
    """A successful text tool message of a selected tool."""
    return (isinstance(message, ToolMessage) and message.status != "error"
            and pruner.applies_to(message.name) and isinstance(original_content(message), str))


class RagpruneMessages:
    """Prunes the tool messages of a conversation against its current question, for the model only.

    Each :class:`~langchain_core.messages.ToolMessage` not yet pruned against the current
    question (the latest human message, or ``query(messages)``) is pruned from its
    original output; every other message is passed as it is.  The caller's messages and
    the stored state are never changed: new messages are returned.  Outcomes are memoized
    (``cache_size``), so an older output is pruned once per question.

    Args:
        stage: a ragprune stage, list of stages, :class:`ragprune.Pipeline` or registered name,
            or a :class:`ToolOutputPruner` (then the other settings are its own).
        query: ``None`` (the latest human message) or a function of the messages returning the question.
        cache_size: outcomes kept in memory (0: none).
        **options: ``budget``, ``counter``, ``top_n``, ``min_tokens``, ``trigger``, ``tools``,
            ``exclude_tools``, ``on_empty``, ``split``, as for :class:`ToolOutputPruner`.
    """

    def __init__(self, stage: Any, *, query: Callable[[Sequence[BaseMessage]], str | None] | None = None,
                 cache_size: int = 256, **options: Any) -> None:
        if isinstance(stage, ToolOutputPruner):
            if options:
                raise TypeError(f"options {sorted(options)} given with a ToolOutputPruner: set them on it")
            self.pruner = stage
        else:
            self.pruner = ToolOutputPruner(stage, **options)
        if query is not None and not callable(query):
            raise TypeError(f"query must be None or a function of the messages, got {query!r}")
        self.query = query
        self._cache = OutcomeCache(cache_size)

    def question(self, messages: Sequence[BaseMessage]) -> str | None:
        return latest_question(messages) if self.query is None else self.query(messages)

    def _todo(self, messages: Sequence[Any], q: str | None) -> list[int]:
        if q is None:
            return []
        todo = []
        for i, m in enumerate(messages):
            if prunable(self.pruner, m):
                record = m.response_metadata.get(METADATA_KEY)
                if not (isinstance(record, dict) and record.get("query") == q):
                    todo.append(i)
        return todo

    def _key(self, message: ToolMessage, original: str, q: str) -> tuple[Any, ...]:
        return (message.tool_call_id, message.name, original, q)

    def _apply(self, message: ToolMessage, outcome: Outcome) -> BaseMessage:
        return pruned_message(message, outcome) if outcome.pruned else message

    def prune(self, messages: Sequence[Any]) -> list[Any]:
        """The messages the model is to see (new list; pruned tool messages are copies)."""
        out: list[Any] = list(messages)
        q = self.question(out)
        todo = self._todo(out, q)
        if not todo:
            return out
        assert q is not None
        tokens = self.pruner.count([_text(m) for m in out])
        for i in todo:
            m = out[i]
            original = original_content(m)
            key = self._key(m, original, q)
            outcome = self._cache.get(key)
            if outcome is None:
                outcome = self.pruner.prune(original, q, tool=m.name, context_tokens=tokens, where="history")
                self._cache.put(key, outcome)
                if outcome.result is not None:
                    emit(event_payload(outcome, source="RagpruneMessages", tool=m.name, call_id=m.tool_call_id),
                         None)
            out[i] = self._apply(m, outcome)
        return out

    async def aprune(self, messages: Sequence[Any]) -> list[Any]:
        """Async :meth:`prune`."""
        out: list[Any] = list(messages)
        q = self.question(out)
        todo = self._todo(out, q)
        if not todo:
            return out
        assert q is not None
        tokens = self.pruner.count([_text(m) for m in out])
        for i in todo:
            m = out[i]
            original = original_content(m)
            key = self._key(m, original, q)
            outcome = self._cache.get(key)
            if outcome is None:
                outcome = await self.pruner.aprune(original, q, tool=m.name, context_tokens=tokens, where="history")
                self._cache.put(key, outcome)
                if outcome.result is not None:
                    await aemit(event_payload(outcome, source="RagpruneMessages", tool=m.name,
                                              call_id=m.tool_call_id), None)
            out[i] = self._apply(m, outcome)
        return out

    # -- LangGraph ---------------------------------------------------------------------------------

    def __call__(self, state: Any) -> dict[str, Any]:
        """A LangGraph ``pre_model_hook``: ``{"llm_input_messages": pruned}`` (the state is not updated)."""
        return {"llm_input_messages": self.prune(_state_messages(state))}

    async def acall(self, state: Any) -> dict[str, Any]:
        """Async :meth:`__call__`."""
        return {"llm_input_messages": await self.aprune(_state_messages(state))}

    def as_pre_model_hook(self) -> RunnableLambda[Any, dict[str, Any]]:
        """This pruner as a LangGraph node / ``pre_model_hook`` with a sync and an async path."""
        return RunnableLambda(self.__call__, afunc=self.acall, name="ragprune_pre_model_hook")


def _state_messages(state: Any) -> list[BaseMessage]:
    messages = state.get("messages") if isinstance(state, dict) else getattr(state, "messages", None)
    if messages is None:
        raise ValueError("the graph state has no 'messages' to prune")
    return list(messages)

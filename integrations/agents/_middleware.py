"""RagpruneMiddleware: LangChain 1.x agent middleware that prunes each tool output against the question."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse, ToolCallRequest
from langchain_core.messages import BaseMessage, ToolMessage
from langgraph.types import Command

from ragprune import Budget

from ..langchain._common import aemit, emit
from ._core import Outcome, ToolOutputPruner, event_payload, tool_args_query
from ._messages import RagpruneMessages, latest_question, pruned_message

__all__ = ["RagpruneMiddleware"]

QueryOption = str | Callable[[ToolCallRequest], str | None]


class RagpruneMiddleware(AgentMiddleware):
    """Prunes tool outputs inside ``langchain.agents.create_agent`` with a ragprune pipeline.

    ``create_agent(model, tools, middleware=[RagpruneMiddleware(ragprune.default_pipeline())])``.

    Each tool's output (a text ``ToolMessage``) over ``min_tokens`` tokens is pruned
    against the question before the model sees it: plain text is split at blank lines
    and the pipeline keeps the relevant sentences of the relevant parts; a JSON document
    comes back parsing or unchanged.  The message keeps the full output in ``artifact``
    (when the tool set no artifact of its own; else in the record) and records what was
    done under ``response_metadata["ragprune"]``: tokens before and after, kept spans of
    the original, every dropped part with the stage and the reason, and the structure
    decision.  The totals and drops are sent as the ``"ragprune_compression"`` custom
    event, like every LangChain adapter of ragprune.

    Args:
        stage: a ragprune stage, list of stages, :class:`ragprune.Pipeline` or registered name.
        query: ``"human"`` (the latest human message; the tool call's arguments when there is
            none), ``"tool_args"`` (the string arguments of the tool call) or a function of
            the ``ToolCallRequest`` returning the question.
        budget: a token cap per output (``int``: ``Budget(max_tokens=...)``).
        counter: token counter of the budget, the triggers and the record.
        top_n: keep at most this many parts of an output.
        min_tokens: outputs of at most this many tokens are passed through (default 200).
        trigger: prune only while the conversation holds more than this many tokens.
        tools / exclude_tools: prune only these tools' outputs / never these.
        on_empty: ``"note"`` (a one-line note when nothing is relevant), ``"keep"`` or a note of your own.
        split: ``"paragraphs"`` or ``None`` (the output as one passage).
        history: also re-prune older tool outputs (from their originals) against the current
            question before each model call, in what the model is shown only (the stored
            messages keep what they hold).
    """

    def __init__(self, stage: Any, *, query: QueryOption = "human", budget: Budget | int | None = None,
                 counter: Any = None, top_n: int | None = None, min_tokens: int = 200, trigger: int | None = None,
                 tools: Sequence[str] | None = None, exclude_tools: Sequence[str] = (), on_empty: str = "note",
                 split: str | None = "paragraphs", history: bool = False) -> None:
        super().__init__()
        if not callable(query) and query not in ("human", "tool_args"):
            raise ValueError(f'query must be "human", "tool_args" or a function of the tool call request, '
                             f"got {query!r}")
        if not isinstance(history, bool):
            raise TypeError(f"history must be a bool, got {history!r}")
        self.pruner = ToolOutputPruner(stage, budget=budget, counter=counter, top_n=top_n, min_tokens=min_tokens,
                                       trigger=trigger, tools=tools, exclude_tools=exclude_tools,
                                       on_empty=on_empty, split=split)
        self.query = query
        self.history = history
        self.messages = RagpruneMessages(self.pruner)
        self.tools = []

    @property
    def pipeline(self) -> Any:
        """The pipeline this middleware runs."""
        return self.pruner.pipeline

    # -- tool calls ---------------------------------------------------------------------------------

    def _question(self, request: ToolCallRequest) -> str | None:
        if callable(self.query):
            return self.query(request)
        args_query = tool_args_query(request.tool_call.get("args"))
        if self.query == "tool_args":
            return args_query
        return latest_question(_messages(request.state)) or args_query

    def _target(self, request: ToolCallRequest, result: Any) -> ToolMessage | None:
        if not isinstance(result, ToolMessage) or result.status == "error" or not isinstance(result.content, str):
            return None
        return result if self.pruner.applies_to(result.name or request.tool_call.get("name")) else None

    def _context_tokens(self, request: ToolCallRequest, message: ToolMessage) -> int | None:
        if self.pruner.trigger is None:
            return None
        texts = [m.content if isinstance(m.content, str) else str(m.text) for m in _messages(request.state)]
        return self.pruner.count([*texts, str(message.content)])

    def _finish(self, message: ToolMessage, outcome: Outcome) -> tuple[ToolMessage, dict[str, Any] | None]:
        if outcome.result is None:
            return message, None
        payload = event_payload(outcome, source=self.name, tool=message.name, call_id=message.tool_call_id)
        return (pruned_message(message, outcome) if outcome.pruned else _recorded(message, outcome)), payload

    def wrap_tool_call(self, request: ToolCallRequest,
                       handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]) -> ToolMessage | Command[Any]:
        """Run the tool, then prune its output against the question."""
        result = handler(request)
        message = self._target(request, result)
        if message is None:
            return result
        name = message.name or request.tool_call.get("name")
        outcome = self.pruner.prune(str(message.content), self._question(request), tool=name,
                                    context_tokens=self._context_tokens(request, message))
        out, payload = self._finish(message, outcome)
        if payload is not None:
            emit(payload, None)
        return out

    async def awrap_tool_call(
        self, request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async :meth:`wrap_tool_call` (the pipeline runs in a worker thread)."""
        result = await handler(request)
        message = self._target(request, result)
        if message is None:
            return result
        name = message.name or request.tool_call.get("name")
        outcome = await self.pruner.aprune(str(message.content), self._question(request), tool=name,
                                           context_tokens=self._context_tokens(request, message))
        out, payload = self._finish(message, outcome)
        if payload is not None:
            await aemit(payload, None)
        return out

    # -- model calls: older outputs against the current question ---------------------------------

    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> Any:
        """With ``history=True``, show the model older tool outputs pruned against the current question."""
        if not self.history or not request.messages:
            return handler(request)
        return handler(request.override(messages=self.messages.prune(request.messages)))

    async def awrap_model_call(self, request: ModelRequest[Any],
                               handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]) -> Any:
        """Async :meth:`wrap_model_call`."""
        if not self.history or not request.messages:
            return await handler(request)
        return await handler(request.override(messages=await self.messages.aprune(request.messages)))


def _messages(state: Any) -> list[BaseMessage]:
    messages = state.get("messages") if isinstance(state, dict) else getattr(state, "messages", None)
    return list(messages or [])


def _recorded(message: ToolMessage, outcome: Outcome) -> ToolMessage:
    """The output, unchanged, with the record of why (JSON that pruning would break, ...)."""
    record = {**outcome.record, "original_in": "content"}
    return message.model_copy(update={"response_metadata": {**message.response_metadata, "ragprune": record}})

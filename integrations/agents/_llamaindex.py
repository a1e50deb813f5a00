"""LlamaIndex agents: a tool wrapper that prunes any tool's output against the user's request, and a
memory that shows older tool results pruned against the current request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.memory.types import BaseMemory
from llama_index.core.tools import FunctionTool, ToolOutput
from llama_index.core.tools.types import AsyncBaseTool, BaseTool, adapt_to_async_tool

from ..llamaindex._events import DroppedNode, RagpruneCompressionEvent
from ._core import Outcome, OutcomeCache, ToolOutputPruner, tool_args_query

__all__ = ["PrunedToolOutput", "RagpruneMemory", "RagpruneTool"]

dispatcher = get_dispatcher(__name__)

CONTEXT_PARAM = "ragprune_ctx"
"""Name under which an agent hands its workflow Context to a RagpruneTool (wrapping a tool that
needs none)."""


class PrunedToolOutput(ToolOutput):
    """A ToolOutput whose text was pruned: ``raw_output`` is still the tool's own, ``original_content``
    its full text, ``ragprune`` the record (tokens before/after, kept spans, drops, structure)."""

    original_content: str = ""
    ragprune: dict[str, Any] = Field(default_factory=dict)


def _dispatch(outcome: Outcome, component: str, tool: str) -> None:
    if outcome.result is None:
        return
    result = outcome.result
    dispatcher.event(RagpruneCompressionEvent(
        component=component, query=outcome.record.get("query"), stats=result.stats.as_dict(),
        kept_node_ids=[f"{tool}#{p.index}" for p in sorted(result.passages, key=lambda p: p.index)],
        dropped=[DroppedNode(node_id=f"{tool}#{d.index}", position=d.index, stage=d.stage, reason=d.reason,
                             score=d.score) for d in result.dropped],
    ))


def _output(out: ToolOutput, outcome: Outcome) -> ToolOutput:
    if outcome.result is None:
        return out
    pruned = PrunedToolOutput(tool_name=out.tool_name, blocks=[TextBlock(text=outcome.text)],
                              raw_input=out.raw_input, raw_output=out.raw_output, is_error=out.is_error)
    pruned.original_content = outcome.original
    pruned.ragprune = dict(outcome.record)
    return pruned


class RagpruneTool(FunctionTool):
    """Any LlamaIndex tool (FunctionTool, QueryEngineTool, RetrieverTool, ...) whose text output is
    pruned against the user's request before the agent's LLM sees it.

    ``FunctionAgent(tools=[RagpruneTool(search_tool, ragprune.default_pipeline())], ...)``: the tool
    keeps its name, description and schema.  Inside an agent (``FunctionAgent``, ``ReActAgent``,
    ``AgentWorkflow``) the question is the user's message of the run; called directly, or with
    ``query="tool_args"``, the string arguments of the call; or ``query(kwargs)`` of your own.
    The result is a :class:`PrunedToolOutput` (``raw_output`` and ``original_content`` keep the
    tool's own output), and a :class:`~ragprune.integrations.llamaindex.RagpruneCompressionEvent`
    (node ids ``"<tool>#<part>"``) is dispatched for each pruned output.

    Args:
        tool: the tool to wrap.
        stage: a ragprune stage, list of stages, :class:`ragprune.Pipeline` or registered name.
        query: ``"user"``, ``"tool_args"`` or a function of the call's keyword arguments.
        **options: ``budget``, ``counter``, ``top_n``, ``min_tokens``, ``on_empty``, ``split``, as
            for :class:`~ragprune.integrations.agents.ToolOutputPruner`.
    """

    def __init__(self, tool: BaseTool, stage: Any, *, query: str | Callable[[dict[str, Any]], str | None] = "user",
                 **options: Any) -> None:
        if not isinstance(tool, BaseTool):
            raise TypeError(f"tool must be a LlamaIndex tool (BaseTool), got {type(tool).__name__}")
        if not callable(query) and query not in ("user", "tool_args"):
            raise ValueError(f'query must be "user", "tool_args" or a function of the call\'s arguments, got {query!r}')
        self._inner: AsyncBaseTool = adapt_to_async_tool(tool)
        self._pruner = ToolOutputPruner(stage, **options)
        self._query = query
        super().__init__(fn=self._unused, metadata=tool.metadata)
        inner_ctx = getattr(tool, "ctx_param_name", None) if getattr(tool, "requires_context", False) else None
        self._inner_ctx: str | None = inner_ctx
        self._ctx_name: str = inner_ctx or CONTEXT_PARAM
        self.requires_context = True  # the agent hands over its Context: the user's request is in it
        self.ctx_param_name = self._ctx_name

    @staticmethod
    def _unused(*args: Any, **kwargs: Any) -> Any:  # pragma: no cover - call/acall are overridden
        raise NotImplementedError

    @property
    def tool(self) -> BaseTool:
        """The wrapped tool."""
        return self._inner

    @property
    def pruner(self) -> ToolOutputPruner:
        return self._pruner

    def _split(self, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        ctx = kwargs.pop(self._ctx_name, None)
        if self._inner_ctx is not None and ctx is not None:
            kwargs[self._inner_ctx] = ctx
        return ctx, kwargs

    def _args_query(self, kwargs: dict[str, Any]) -> str | None:
        if callable(self._query):
            return self._query(kwargs)
        public = {k: v for k, v in kwargs.items() if k != self._inner_ctx}
        return tool_args_query(public)

    def _target(self, out: ToolOutput) -> bool:
        return not out.is_error and bool(out.content) and self._pruner.applies_to(out.tool_name)

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Run the tool, then prune its output (sync: the question comes from the arguments)."""
        _, kwargs = self._split(dict(kwargs))
        out = self._inner.call(*args, **kwargs)
        if not self._target(out):
            return out
        outcome = self._pruner.prune(out.content, self._args_query(kwargs), tool=self.metadata.get_name())
        _dispatch(outcome, type(self).__name__, self.metadata.get_name())
        return _output(out, outcome)

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Run the tool, then prune its output against the user's request of the agent's run."""
        ctx, kwargs = self._split(dict(kwargs))
        out = await self._inner.acall(*args, **kwargs)
        if not self._target(out):
            return out
        question = None
        if self._query == "user" and ctx is not None:
            question = await ctx.store.get("user_msg_str", default=None)
        question = question or self._args_query(kwargs)
        outcome = await self._pruner.aprune(out.content, question, tool=self.metadata.get_name())
        _dispatch(outcome, type(self).__name__, self.metadata.get_name())
        return _output(out, outcome)


def _latest_user(messages: Sequence[ChatMessage]) -> str | None:
    for m in reversed(messages):
        if m.role == MessageRole.USER:
            text = "\n".join(b.text for b in m.blocks if isinstance(b, TextBlock)).strip()
            return text or None
    return None


class RagpruneMemory(BaseMemory):
    """A memory that shows the agent older tool results pruned against the current request.

    Wraps any memory (``Memory.from_defaults()``, ``ChatMemoryBuffer``, ...): what is stored is
    the wrapped memory's business and never changes; :meth:`get` returns copies in which each
    text tool message is pruned against the latest user message (outcomes are memoized).
    ``agent.run(user_msg=..., memory=RagpruneMemory(memory, ragprune.default_pipeline()))``.
    """

    memory: SerializeAsAny[BaseMemory] = Field(description="The memory that stores the conversation.")
    _pruner: ToolOutputPruner = PrivateAttr()
    _cache: OutcomeCache = PrivateAttr()

    def __init__(self, memory: BaseMemory, stage: Any, *, cache_size: int = 256, **options: Any) -> None:
        if not isinstance(memory, BaseMemory):
            raise TypeError(f"memory must be a LlamaIndex memory (BaseMemory), got {type(memory).__name__}")
        super().__init__(memory=memory)  # type: ignore[call-arg]  # a declared field (pydantic)
        self._pruner = ToolOutputPruner(stage, **options)
        self._cache = OutcomeCache(cache_size)

    @classmethod
    def class_name(cls) -> str:
        return "RagpruneMemory"

    @classmethod
    def from_defaults(cls, **kwargs: Any) -> RagpruneMemory:
        """``RagpruneMemory.from_defaults(stage=..., memory=...)`` (default memory: ``Memory.from_defaults()``)."""
        from llama_index.core.memory import Memory

        if "stage" not in kwargs:
            raise TypeError("RagpruneMemory.from_defaults needs stage=")
        memory = kwargs.pop("memory", None) or Memory.from_defaults()
        return cls(memory, kwargs.pop("stage"), **kwargs)

    @property
    def pruner(self) -> ToolOutputPruner:
        return self._pruner

    def _todo(self, messages: Sequence[ChatMessage]) -> tuple[str | None, list[int]]:
        q = _latest_user(messages)
        if q is None:
            return None, []
        return q, [i for i, m in enumerate(messages) if m.role == MessageRole.TOOL and m.content]

    def _apply(self, message: ChatMessage, outcome: Outcome) -> ChatMessage:
        if not outcome.pruned:
            return message
        return message.model_copy(update={"blocks": [TextBlock(text=outcome.text)]})

    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        messages = list(self.memory.get(input=input, **kwargs))
        q, todo = self._todo(messages)
        for i in todo:
            m = messages[i]
            key = (m.additional_kwargs.get("tool_call_id"), m.content, q)
            outcome = self._cache.get(key)
            if outcome is None:
                outcome = self._pruner.prune(str(m.content), q, where="history")
                self._cache.put(key, outcome)
                _dispatch(outcome, type(self).__name__, "memory")
            messages[i] = self._apply(m, outcome)
        return messages

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        messages = list(await self.memory.aget(input=input, **kwargs))
        q, todo = self._todo(messages)
        for i in todo:
            m = messages[i]
            key = (m.additional_kwargs.get("tool_call_id"), m.content, q)
            outcome = self._cache.get(key)
            if outcome is None:
                outcome = await self._pruner.aprune(str(m.content), q, where="history")
                self._cache.put(key, outcome)
                _dispatch(outcome, type(self).__name__, "memory")
            messages[i] = self._apply(m, outcome)
        return messages

    def get_all(self) -> list[ChatMessage]:
        return list(self.memory.get_all())

    async def aget_all(self) -> list[ChatMessage]:
        return list(await self.memory.aget_all())

    def put(self, message: ChatMessage) -> None:
        self.memory.put(message)

    async def aput(self, message: ChatMessage) -> None:
        await self.memory.aput(message)

    def put_messages(self, messages: list[ChatMessage]) -> None:
        self.memory.put_messages(messages)

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        await self.memory.aput_messages(messages)

    def set(self, messages: list[ChatMessage]) -> None:
        self.memory.set(messages)

    async def aset(self, messages: list[ChatMessage]) -> None:
        await self.memory.aset(messages)

    def reset(self) -> None:
        self.memory.reset()

    async def areset(self) -> None:
        await self.memory.areset()

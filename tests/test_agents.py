"""Agent adapters in real agent loops with scripted models: LangChain create_agent middleware, a LangGraph
pre-model hook, LlamaIndex FunctionAgent tools and memory."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from pydantic import Field

from ragprune import BaseStage, Dropped, Passage, Pipeline, StageOutput, WordCounter
from ragprune.integrations.agents import (
    EMPTY_NOTE,
    METADATA_KEY,
    PASSED_THROUGH_JSON,
    RagpruneMessages,
    RagpruneMiddleware,
    ToolOutputPruner,
    original_content,
)
from ragprune.integrations.langchain import EVENT_NAME

WORDS = WordCounter()
STOP = {"what", "which", "where", "when", "does", "the", "with", "from", "that", "this", "into", "about"}


def terms(text: str) -> set[str]:
    words = {w.strip(".,?!:;\"'()[]{}").lower() for w in text.split()}
    return {w for w in words if len(w) >= 4 and w not in STOP}


class KeywordPruner(BaseStage):
    """Keeps the sentences sharing a word (4+ letters) with the query; drops passages with none."""

    name = "keyword-pruner"
    requires_query = True

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        q = terms(query or "")
        kept: list[Passage] = []
        dropped: list[Dropped] = []
        for p in passages:
            units = [u for u in p.units("sentence") if terms(p.text[u[0]:u[1]]) & q]
            if units:
                kept.append(p.with_spans(units))
            else:
                dropped.append(self._drop(p, "no sentence shares a word with the query"))
        return StageOutput(tuple(kept), tuple(dropped))


class HalfCutter(BaseStage):
    """Keeps the first half of each passage's characters, whatever its structure."""

    name = "half-cutter"

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        return StageOutput(tuple(p.with_spans([(0, len(p.text) // 2)]) for p in passages))


PARAGRAPHS = [
    "The Eiffel Tower stands in Paris on the Champ de Mars. It was completed in 1889 for the World's Fair. "
    "Gustave Eiffel's company designed and built the tower.",
    "Mount Everest is Earth's highest mountain above sea level. It lies in the Himalayas on the border of "
    "Nepal and China. Climbers attempt the summit every spring.",
    "The Great Barrier Reef is the largest coral reef system. It lies off the coast of Queensland in Australia. "
    "Warming seas have bleached large parts of it.",
    "Berlin is the capital of Germany. The river Spree flows through its centre. Its television mast is the "
    "tallest structure in the country.",
]
SEARCH_OUTPUT = "\n\n".join(PARAGRAPHS)
JSON_OUTPUT = json.dumps([{"title": f"doc {i}", "url": f"https://example.org/{i}", "snippet": p}
                          for i, p in enumerate(PARAGRAPHS)])
QUESTION = "Which company built the Eiffel Tower in Paris?"


def pipeline() -> Pipeline:
    return Pipeline([KeywordPruner()])


def expected_pruned(question: str, text: str = SEARCH_OUTPUT) -> str:
    """The keyword stage's own result over the paragraphs, joined like the middleware does."""
    parts = text.split("\n\n")
    result = pipeline().run(question, parts)
    return "\n\n".join(p.text for p in sorted(result.passages, key=lambda p: p.index))


@tool
def search(query: str) -> str:
    """Search the web."""
    return SEARCH_OUTPUT


@tool
def search_json(query: str) -> str:
    """Search the web (JSON results)."""
    return JSON_OUTPUT


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return SEARCH_OUTPUT


class ScriptedChatModel(GenericFakeChatModel):
    """Answers from a script and records every list of messages it is given."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(copy.deepcopy(messages))
        return super()._generate(messages, *args, **kwargs)


def script(*calls: tuple[str, dict[str, Any]], answer: str = "The answer.") -> ScriptedChatModel:
    steps: list[AIMessage] = [
        AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call-{i}", "type": "tool_call"}])
        for i, (name, args) in enumerate(calls)
    ]
    return ScriptedChatModel(messages=iter([*steps, AIMessage(content=answer)]))


class EventLog(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == EVENT_NAME:
            with self._lock:
                self.events.append(data)


def tool_messages(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


def run_agent(middleware: Any, question: str = QUESTION, tools: Sequence[Any] = (search,),
              calls: Sequence[tuple[str, dict[str, Any]]] = (("search", {"query": "eiffel tower builder"}),),
              mode: str = "sync") -> tuple[ScriptedChatModel, dict[str, Any], EventLog]:
    model = script(*calls)
    agent = create_agent(model, tools=list(tools), middleware=[middleware])
    log = EventLog()
    inputs = {"messages": [HumanMessage(question)]}
    config: Any = {"callbacks": [log]}
    if mode == "sync":
        state = agent.invoke(inputs, config=config)
    else:
        state = asyncio.run(agent.ainvoke(inputs, config=config))
    return model, state, log


def stable(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "seconds"}
    out["kept"] = [{k: v for k, v in r.items()} for r in record.get("kept", [])]
    return out


# -- LangChain create_agent -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_model_receives_the_pruned_output_and_the_original_is_kept(mode: str) -> None:
    model, state, log = run_agent(RagpruneMiddleware(pipeline(), min_tokens=20), mode=mode)
    want = expected_pruned(QUESTION)
    assert "Eiffel" in want and "Everest" not in want  # the stage really prunes
    seen = tool_messages(model.seen[1])  # the second model call follows the tool call
    assert [m.content for m in seen] == [want]
    stored = tool_messages(state["messages"])[0]
    assert stored.content == want
    assert stored.artifact == SEARCH_OUTPUT and original_content(stored) == SEARCH_OUTPUT
    record = stored.response_metadata[METADATA_KEY]
    assert record["pruned"] and record["stage"] == "tool_output" and record["tool"] == "search"
    assert record["query"] == QUESTION and record["structure"] == "text"
    assert record["tokens_before"] == WORDS.count(SEARCH_OUTPUT)
    assert record["tokens_after"] == WORDS.count(want) < record["tokens_before"]
    assert {d["part"] for d in record["dropped"]} == {1, 2, 3}
    assert all(d["stage"] == "keyword-pruner" for d in record["dropped"])
    # the spans are spans of the original output
    assert "".join(SEARCH_OUTPUT[a:b] for a, b in record["spans"]).replace(" ", "") == want.replace(
        "\n\n", "").replace(" ", "")
    [event] = log.events
    assert event["source"] == "RagpruneMiddleware" and event["tool"] == "search"
    assert event["tool_call_id"] == "call-0" and event["stats"]["passages_in"] == 4
    assert event["stats"]["passages_out"] == 1 and len(event["dropped"]) == 3


def test_sync_and_async_agree() -> None:
    _, sync_state, _ = run_agent(RagpruneMiddleware(pipeline(), min_tokens=20))
    _, async_state, _ = run_agent(RagpruneMiddleware(pipeline(), min_tokens=20), mode="async")
    a, b = tool_messages(sync_state["messages"])[0], tool_messages(async_state["messages"])[0]
    assert a.content == b.content and a.artifact == b.artifact
    assert stable(a.response_metadata[METADATA_KEY]) == stable(b.response_metadata[METADATA_KEY])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_nothing_is_pruned_below_the_triggers(mode: str) -> None:
    tokens = WORDS.count(SEARCH_OUTPUT)
    for mw in (RagpruneMiddleware(pipeline(), min_tokens=tokens),
               RagpruneMiddleware(pipeline(), min_tokens=0, trigger=tokens + 50)):
        model, state, log = run_agent(mw, mode=mode)
        assert [m.content for m in tool_messages(model.seen[1])] == [SEARCH_OUTPUT]
        stored = tool_messages(state["messages"])[0]
        assert stored.artifact is None and METADATA_KEY not in stored.response_metadata
        assert log.events == []
    # one token over the triggers: pruned
    for mw in (RagpruneMiddleware(pipeline(), min_tokens=tokens - 1),
               RagpruneMiddleware(pipeline(), min_tokens=0, trigger=tokens)):
        model, _, _ = run_agent(mw, mode=mode)
        assert [m.content for m in tool_messages(model.seen[1])] == [expected_pruned(QUESTION)]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_nothing_relevant_leaves_a_note_and_the_original(mode: str) -> None:
    model, state, log = run_agent(RagpruneMiddleware(pipeline(), min_tokens=20),
                                  question="Who painted the Mona Lisa?", mode=mode)
    note = EMPTY_NOTE.format(tool="search", tokens=WORDS.count(SEARCH_OUTPUT))
    assert [m.content for m in tool_messages(model.seen[1])] == [note]
    stored = tool_messages(state["messages"])[0]
    assert stored.artifact == SEARCH_OUTPUT
    record = stored.response_metadata[METADATA_KEY]
    assert record["note"] and record["spans"] == [] and len(record["dropped"]) == 4
    assert len(log.events) == 1
    own = RagpruneMiddleware(pipeline(), min_tokens=20, on_empty="nothing on this in {tool}")
    model, _, _ = run_agent(own, question="Who painted the Mona Lisa?", mode=mode)
    assert [m.content for m in tool_messages(model.seen[1])] == ["nothing on this in search"]
    keep = RagpruneMiddleware(pipeline(), min_tokens=20, on_empty="keep")
    model, _, _ = run_agent(keep, question="Who painted the Mona Lisa?", mode=mode)
    assert [m.content for m in tool_messages(model.seen[1])] == [SEARCH_OUTPUT]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_json_is_never_broken(mode: str) -> None:
    calls = (("search_json", {"query": "eiffel"}),)
    # a stage that cuts the document in the middle: the original passes through, and the record says why
    with pytest.raises(ValueError):
        json.loads(JSON_OUTPUT[: len(JSON_OUTPUT) // 2])  # what the stage alone would give
    breaker = RagpruneMiddleware(Pipeline([HalfCutter()]), min_tokens=20)
    model, state, log = run_agent(breaker, tools=[search_json], calls=calls, mode=mode)
    [seen] = tool_messages(model.seen[1])
    assert seen.content == JSON_OUTPUT
    record = tool_messages(state["messages"])[0].response_metadata[METADATA_KEY]
    assert record["structure"] == PASSED_THROUGH_JSON and not record["pruned"]
    assert record["tokens_after"] == record["tokens_before"]
    assert log.events and log.events[0]["structure"] == PASSED_THROUGH_JSON
    # whatever the pipeline's units: the model gets JSON that parses
    for question in (QUESTION, "Who painted the Mona Lisa?"):
        model, state, _ = run_agent(RagpruneMiddleware(pipeline(), min_tokens=20), question=question,
                                    tools=[search_json], calls=calls, mode=mode)
        [seen] = tool_messages(model.seen[1])
        json.loads(str(seen.content))
        assert original_content(tool_messages(state["messages"])[0]) == JSON_OUTPUT


def test_tools_and_exclude_tools_choose_what_is_pruned() -> None:
    calls = (("search", {"query": "eiffel"}), ("weather", {"city": "Paris"}))
    for mw, pruned in ((RagpruneMiddleware(pipeline(), min_tokens=20, tools=["search"]), {"search"}),
                       (RagpruneMiddleware(pipeline(), min_tokens=20, exclude_tools=["search"]), {"weather"})):
        model, _, _ = run_agent(mw, tools=[search, weather], calls=calls)
        final = {m.name: m.content for m in tool_messages(model.seen[-1])}
        assert final == {name: expected_pruned(QUESTION) if name in pruned else SEARCH_OUTPUT
                         for name in ("search", "weather")}


def test_query_from_tool_args_or_a_function() -> None:
    calls = (("search", {"query": "Mount Everest summit"}),)
    model, _, _ = run_agent(RagpruneMiddleware(pipeline(), min_tokens=20, query="tool_args"), calls=calls)
    want = expected_pruned("Mount Everest summit")
    assert "Everest" in want and "Eiffel" not in want
    assert [m.content for m in tool_messages(model.seen[1])] == [want]
    asked: list[Any] = []

    def question(request: Any) -> str:
        asked.append(request.tool_call["name"])
        return "Great Barrier Reef coral"

    model, _, _ = run_agent(RagpruneMiddleware(pipeline(), min_tokens=20, query=question), calls=calls)
    assert [m.content for m in tool_messages(model.seen[1])] == [expected_pruned("Great Barrier Reef coral")]
    assert asked == ["search"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_history_is_pruned_again_for_a_new_question_without_rewriting_the_state(mode: str) -> None:
    mw = RagpruneMiddleware(pipeline(), min_tokens=20, history=True)
    model = script(("search", {"query": "eiffel"}))
    agent = create_agent(model, tools=[search], middleware=[mw])
    first = {"messages": [HumanMessage(QUESTION)]}
    state = agent.invoke(first) if mode == "sync" else asyncio.run(agent.ainvoke(first))
    stored_before = copy.deepcopy(state["messages"])
    second_question = "How high is Mount Everest in the Himalayas?"
    model.messages = iter([AIMessage(content="Very high.")])
    follow = {"messages": [*state["messages"], HumanMessage(second_question)]}
    state2 = agent.invoke(follow) if mode == "sync" else asyncio.run(agent.ainvoke(follow))
    [seen] = tool_messages(model.seen[-1])
    assert seen.content == expected_pruned(second_question)  # pruned again, from the original
    assert seen.response_metadata[METADATA_KEY]["stage"] == "history"
    assert [m.model_dump() for m in state2["messages"][: len(stored_before)]] == [
        m.model_dump() for m in stored_before]  # the stored messages are unchanged


def test_the_callers_messages_are_not_changed() -> None:
    messages: list[BaseMessage] = [
        HumanMessage(QUESTION),
        AIMessage(content="", tool_calls=[{"name": "search", "args": {}, "id": "c", "type": "tool_call"}]),
        ToolMessage(content=SEARCH_OUTPUT, tool_call_id="c", name="search"),
    ]
    snapshot = copy.deepcopy(messages)
    out = RagpruneMessages(pipeline(), min_tokens=20).prune(messages)
    assert [m.model_dump() for m in messages] == [m.model_dump() for m in snapshot]
    assert out[2] is not messages[2] and out[2].content == expected_pruned(QUESTION)
    assert out[:2] == messages[:2]


def test_bad_options_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="query"):
        RagpruneMiddleware(pipeline(), query="latest")
    with pytest.raises(ValueError, match="min_tokens"):
        RagpruneMiddleware(pipeline(), min_tokens=-1)
    with pytest.raises(TypeError, match="tools"):
        RagpruneMiddleware(pipeline(), tools="search")
    with pytest.raises(TypeError, match="on_empty"):
        RagpruneMiddleware(pipeline(), on_empty="")
    with pytest.raises(ValueError, match="split"):
        ToolOutputPruner(pipeline(), split="lines")
    with pytest.raises(TypeError, match="stage"):
        RagpruneMiddleware(object())


# -- LangGraph -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
def test_langgraph_pre_model_hook_prunes_what_the_model_sees_only(mode: str) -> None:
    model = script(("search", {"query": "eiffel"}))
    hook = RagpruneMessages(pipeline(), min_tokens=20)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(hook.prune(state["messages"]))]}

    async def acall_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(await hook.aprune(state["messages"]))]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model if mode == "sync" else acall_model)
    graph.add_node("tools", ToolNode([search]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["tools", END])
    graph.add_edge("tools", "model")
    app = graph.compile()
    inputs = {"messages": [HumanMessage(QUESTION)]}
    state = app.invoke(inputs) if mode == "sync" else asyncio.run(app.ainvoke(inputs))
    assert [m.content for m in tool_messages(model.seen[1])] == [expected_pruned(QUESTION)]
    assert tool_messages(state["messages"])[0].content == SEARCH_OUTPUT  # the state keeps the output
    update = hook({"messages": state["messages"]}) if mode == "sync" else asyncio.run(
        hook.acall({"messages": state["messages"]}))
    assert list(update) == ["llm_input_messages"]
    assert tool_messages(update["llm_input_messages"])[0].content == expected_pruned(QUESTION)


# -- LlamaIndex agents -----------------------------------------------------------------------------

def _scripted_llm(calls: Sequence[tuple[str, dict[str, Any]]]) -> tuple[Any, list[list[Any]]]:
    from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock
    from llama_index.core.llms import MockFunctionCallingLLM

    seen: list[list[Any]] = []
    steps = [ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id=f"call-{i}", tool_name=name,
                                                                 tool_kwargs=args)])
             for i, (name, args) in enumerate(calls)]

    def respond(messages: Sequence[Any], **kwargs: Any) -> Any:
        seen.append([m.model_copy(deep=True) for m in messages])
        return steps.pop(0) if steps else ChatMessage(role="assistant", content="The answer.")

    return MockFunctionCallingLLM(response_generator=respond), seen


def _li_tool_texts(messages: Sequence[Any]) -> list[str]:
    return [m.content for m in messages if m.role == "tool"]


class LIEvents:
    def __init__(self) -> None:
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler

        from ragprune.integrations.llamaindex import RagpruneCompressionEvent

        events: list[Any] = []

        class Handler(BaseEventHandler):
            def handle(self, event: Any, **kwargs: Any) -> None:
                if isinstance(event, RagpruneCompressionEvent):
                    events.append(event)

        self.events = events
        self.handler = Handler()

    def __enter__(self) -> LIEvents:
        from llama_index.core.instrumentation import get_dispatcher

        get_dispatcher().add_event_handler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        from llama_index.core.instrumentation import get_dispatcher

        get_dispatcher().event_handlers.remove(self.handler)


def _li_search_tool(output: str = SEARCH_OUTPUT) -> Any:
    from llama_index.core.tools import FunctionTool

    def web_search(query: str) -> str:
        """Search the web."""
        return output

    return FunctionTool.from_defaults(fn=web_search)


async def _run_function_agent(tool: Any, question: str, memory: Any = None) -> tuple[list[list[Any]], Any]:
    from llama_index.core.agent.workflow import FunctionAgent

    llm, seen = _scripted_llm([("web_search", {"query": "eiffel tower"})])
    agent = FunctionAgent(tools=[tool], llm=llm)
    handler = agent.run(user_msg=question, memory=memory) if memory is not None else agent.run(user_msg=question)
    tool_results = []
    async for ev in handler.stream_events():
        if type(ev).__name__ == "ToolCallResult":
            tool_results.append(ev)
    await handler
    return seen, tool_results


def test_llamaindex_function_agent_sees_the_pruned_tool_output() -> None:
    from ragprune.integrations.agents import PrunedToolOutput, RagpruneTool

    wrapped = RagpruneTool(_li_search_tool(), pipeline(), min_tokens=20)
    assert wrapped.metadata.name == "web_search"
    with LIEvents() as log:
        seen, results = asyncio.run(_run_function_agent(wrapped, QUESTION))
    # the agent's question, not the tool's arguments ("eiffel tower"), is what the output is pruned against
    assert _li_tool_texts(seen[1]) == [expected_pruned(QUESTION)]
    out = results[0].tool_output
    assert isinstance(out, PrunedToolOutput)
    assert out.raw_output == SEARCH_OUTPUT and out.original_content == SEARCH_OUTPUT
    assert out.ragprune["query"] == QUESTION and out.ragprune["tokens_after"] < out.ragprune["tokens_before"]
    [event] = log.events
    assert event.component == "RagpruneTool" and event.query == QUESTION
    assert event.kept_node_ids == ["web_search#0"]
    assert [(d.node_id, d.stage) for d in event.dropped] == [
        (f"web_search#{i}", "keyword-pruner") for i in (1, 2, 3)]


def test_llamaindex_tool_sync_and_async_agree_and_respect_the_trigger() -> None:
    from ragprune.integrations.agents import RagpruneTool

    wrapped = RagpruneTool(_li_search_tool(), pipeline(), min_tokens=20, query="tool_args")
    a = wrapped.call(query="Eiffel Tower company")
    b = asyncio.run(wrapped.acall(query="Eiffel Tower company"))
    assert a.content == b.content == expected_pruned("Eiffel Tower company")
    assert stable(a.ragprune) == stable(b.ragprune)  # type: ignore[attr-defined]
    small = RagpruneTool(_li_search_tool(), pipeline(), min_tokens=WORDS.count(SEARCH_OUTPUT))
    assert small.call(query="Eiffel Tower company").content == SEARCH_OUTPUT


def test_llamaindex_json_and_nothing_relevant() -> None:
    from ragprune.integrations.agents import RagpruneTool

    breaker = RagpruneTool(_li_search_tool(JSON_OUTPUT), Pipeline([HalfCutter()]), min_tokens=20)
    out = asyncio.run(breaker.acall(query="eiffel"))
    assert out.content == JSON_OUTPUT and out.ragprune["structure"] == PASSED_THROUGH_JSON  # type: ignore[attr-defined]
    wrapped = RagpruneTool(_li_search_tool(), pipeline(), min_tokens=20)
    seen, _ = asyncio.run(_run_function_agent(wrapped, "Who painted the Mona Lisa?"))
    assert _li_tool_texts(seen[1]) == [EMPTY_NOTE.format(tool="web_search", tokens=WORDS.count(SEARCH_OUTPUT))]


def test_llamaindex_memory_prunes_older_tool_results_for_the_new_question() -> None:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.memory import ChatMemoryBuffer

    from ragprune.integrations.agents import RagpruneMemory

    store = ChatMemoryBuffer.from_defaults(token_limit=100_000)
    history = [ChatMessage(role="user", content=QUESTION),
               ChatMessage(role="tool", content=SEARCH_OUTPUT, additional_kwargs={"tool_call_id": "c0"}),
               ChatMessage(role="assistant", content="Gustave Eiffel's company.")]
    store.set(history)
    memory = RagpruneMemory(store, pipeline(), min_tokens=20)
    question = "How high is Mount Everest in the Himalayas?"
    with LIEvents() as log:
        seen, _ = asyncio.run(_run_function_agent(_li_search_tool(), question, memory=memory))
    assert _li_tool_texts(seen[0]) == [expected_pruned(question)]  # the older result, for the new question
    assert _li_tool_texts(store.get_all())[0] == SEARCH_OUTPUT  # what is stored is unchanged
    assert log.events and log.events[0].component == "RagpruneMemory"
    with pytest.raises(TypeError, match="memory"):
        RagpruneMemory(object(), pipeline())  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_agent_benchmark_runs_offline_on_the_bundled_documents(tmp_path: Any) -> None:
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAGPRUNE_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, str(root / "examples" / "bench_agent.py"), "--questions", "3"],
                         capture_output=True, text=True, env=env, timeout=600, check=True)
    assert "bundled demo documents" in run.stderr
    rows = re.findall(r"^\| (text|json) \| (\d+) -> (\d+) \| ([\d.]+) \| .*? \| ([\d.]+) \| ([\d.]+|None) \| "
                      r"([\d.]+) \| ([\d.]+) \|", run.stdout, re.M)
    assert [r[0] for r in rows] == ["text", "json"], run.stdout
    for _, before, after, kept, recall, _, pruner_ms, _ in rows:
        assert 0 < int(after) <= int(before) and float(kept) <= 1.0
        assert 0.0 <= float(recall) <= 1.0 and float(pruner_ms) > 0

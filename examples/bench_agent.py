"""An agent answering HotpotQA test-split questions with a search tool, with and without RagpruneMiddleware.

A LangChain ``create_agent`` agent whose (scripted) model issues one ``search`` call per
question; the tool returns the question's 10 paragraphs, as plain text (title line, then
the paragraph, blocks separated by a blank line) or as JSON search results
(``[{"title", "url", "snippet"}]``).  For each format the script reports, per question:

* the tool tokens and the whole prompt's tokens the model receives (cl100k_base), with and
  without the middleware (the shipped pruner, ``ragprune.default_pipeline()``);
* supporting-sentence recall and answer retention in what the model receives
  (``ragprune.bench.metrics``: a gold sentence counts when 90% of it is kept);
* the latency the middleware adds per tool call, split into the pruner's time (the
  pipeline run) and the middleware's own overhead (everything else it does).

    python examples/bench_agent.py --questions 100

Questions come from the assets folder (``ragprune assets --only hotpotqa``; the last 1,000
questions are the test split); without it, the ten bundled demo documents and their three
questions are used (recall then counts every sentence of the answering document).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from example_data import default_hotpotqa, load_questions
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import Field

import ragprune
from ragprune.bench.metrics import aggregate, case_metrics
from ragprune.integrations.agents import RagpruneMiddleware
from ragprune.text.segment import sentence_spans
from ragprune.training.datasets import QACase, load_hotpotqa


class ScriptedModel(GenericFakeChatModel):
    """Issues one search call with the question, then answers; records what it receives."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def ask(self, question: str) -> None:
        self.seen = []
        call = {"name": "search", "args": {"query": question}, "id": "call-0", "type": "tool_call"}
        self.messages = iter([AIMessage(content="", tool_calls=[call]), AIMessage(content="answer")])


class Corpus:
    """The search tool's answer for the current question, in one format."""

    def __init__(self) -> None:
        self.case: QACase | None = None
        self.format = "text"

    def output(self) -> str:
        assert self.case is not None
        if self.format == "json":
            return json.dumps([{"title": t, "url": f"https://en.wikipedia.org/wiki/{t.replace(' ', '_')}",
                                "snippet": text} for t, text in self.case.passages], ensure_ascii=False)
        return "\n\n".join(f"{t}\n{text}" for t, text in self.case.passages)


class TimedMiddleware(RagpruneMiddleware):
    """Measures each tool call: the tool itself, the pruner (the pipeline run) and the rest."""

    timings: list[tuple[float, float]]

    def wrap_tool_call(self, request: Any, handler: Any) -> Any:
        tool_seconds = 0.0

        def timed_handler(req: Any) -> Any:
            nonlocal tool_seconds
            t0 = time.perf_counter()
            out = handler(req)
            tool_seconds = time.perf_counter() - t0
            return out

        t0 = time.perf_counter()
        out = super().wrap_tool_call(request, timed_handler)
        total = time.perf_counter() - t0 - tool_seconds
        record = out.response_metadata.get("ragprune", {}) if isinstance(out, ToolMessage) else {}
        pruner = float(record.get("seconds") or 0.0)
        self.timings.append((pruner, total - pruner))
        return out


def demo_cases(n: int) -> list[QACase]:
    """The bundled demo questions as cases; every sentence of an answering document is evidence."""
    cases = []
    for q in load_questions(None, n):
        spans = tuple(tuple(sentence_spans(text)) for _, text in q.paragraphs)
        gold = tuple((i, j) for i, (title, _) in enumerate(q.paragraphs) if title in q.support
                     for j in range(len(spans[i])))
        cases.append(QACase(id=q.id, question=q.question, answers=(q.answer,), passages=q.paragraphs,
                            sentence_spans=spans, gold_sentences=gold, gold_titles=tuple(q.support)))
    return cases


def kept_text_format(case: QACase, message: ToolMessage) -> list[Any]:
    """Per paragraph: the kept spans of its text (from the record), or the whole text, or None."""
    record = message.response_metadata.get("ragprune") or {}
    starts, pos = [], 0
    for title, text in case.passages:
        starts.append(pos + len(title) + 1)
        pos += len(title) + 1 + len(text) + 2
    if not record.get("pruned"):
        return [((0, len(text)),) for _, text in case.passages]
    out: list[Any] = []
    for (_, text), start in zip(case.passages, starts, strict=True):
        inside = tuple((max(a, start) - start, min(b, start + len(text)) - start) for a, b in record["spans"]
                       if b > start and a < start + len(text))
        out.append(inside or None)
    return out


def kept_json_format(case: QACase, message: ToolMessage) -> list[Any]:
    """Per paragraph: the snippet the model received, or None."""
    try:
        items = json.loads(str(message.content))
    except ValueError:
        return [None] * len(case.passages)
    by_title = {i.get("title"): i.get("snippet") for i in items if isinstance(i, dict)}
    return [by_title.get(title) for title, _ in case.passages]


def run(agent: Any, model: ScriptedModel, corpus: Corpus, cases: Sequence[QACase], counter: Any) -> dict[str, Any]:
    rows, tool_tokens, prompt_tokens = [], [], []
    for case in cases:
        corpus.case = case
        model.ask(case.question)
        agent.invoke({"messages": [HumanMessage(case.question)]})
        received = model.seen[1]
        [message] = [m for m in received if isinstance(m, ToolMessage)]
        tool_tokens.append(counter.count(str(message.content)))
        prompt_tokens.append(sum(counter.count_many([str(m.content) for m in received])))
        kept = kept_json_format(case, message) if corpus.format == "json" else kept_text_format(case, message)
        rows.append(case_metrics(case, kept, counter, seconds=0.0))
    agg = aggregate(rows)
    return {"tool_tokens": tool_tokens, "prompt_tokens": prompt_tokens, "recall": agg.recall,
            "answer": agg.answer_retention}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=100, help="HotpotQA test-split questions (first N)")
    ap.add_argument("--threshold", type=float, default=None, help="pruner threshold (default: the model's own)")
    ap.add_argument("--formats", nargs="+", default=["text", "json"], choices=["text", "json"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    path = default_hotpotqa()
    if path is not None and path.is_file():
        cases = load_hotpotqa("test", path=path, limit=args.questions)
    else:
        print("no HotpotQA file: using the bundled demo documents", file=sys.stderr)
        cases = demo_cases(args.questions)
    counter = ragprune.get_counter("cl100k_base")
    corpus = Corpus()

    @tool
    def search(query: str) -> str:
        """Search the web."""
        return corpus.output()

    pipeline = ragprune.default_pipeline(threshold=args.threshold)
    middleware = TimedMiddleware(pipeline, counter="cl100k_base", min_tokens=0)
    middleware.timings = []
    plain_model, pruned_model = ScriptedModel(messages=iter([])), ScriptedModel(messages=iter([]))
    plain = create_agent(plain_model, tools=[search])
    pruned = create_agent(pruned_model, tools=[search], middleware=[middleware])
    corpus.case = cases[0]
    pruned_model.ask(cases[0].question)
    pruned.invoke({"messages": [HumanMessage(cases[0].question)]})  # warm-up: loads the model
    print(f"{len(cases)} questions, tokens in cl100k_base\n")
    print("| format | tool tokens / question (without -> with) | kept | prompt tokens / question "
          "(without -> with) | sup. sentence recall | answer kept | pruner ms / call | middleware ms / call "
          "| overhead / pruner |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fmt in args.formats:
        corpus.format = fmt
        base = run(plain, plain_model, corpus, cases, counter)
        middleware.timings = []
        got = run(pruned, pruned_model, corpus, cases, counter)
        pruner_ms = statistics.mean(t[0] for t in middleware.timings) * 1000
        over_ms = statistics.mean(t[1] for t in middleware.timings) * 1000
        kept = sum(got["tool_tokens"]) / sum(base["tool_tokens"])
        print(f"| {fmt} | {statistics.mean(base['tool_tokens']):.0f} -> {statistics.mean(got['tool_tokens']):.0f} "
              f"| {kept:.3f} | {statistics.mean(base['prompt_tokens']):.0f} -> "
              f"{statistics.mean(got['prompt_tokens']):.0f} | {got['recall']:.3f} | "
              f"{got['answer'] if got['answer'] is None else format(got['answer'], '.3f')} | "
              f"{pruner_ms:.1f} | {over_ms:.2f} | {over_ms / pruner_ms if pruner_ms else float('nan'):.3f} |")


if __name__ == "__main__":
    main()

"""Smoke test of one installed extra combination, run by ``python3 dev.py matrix`` in a fresh venv.

    python tests/install_smoke.py core|models|models+langchain|models+llamaindex|all

It runs outside the checkout (only the installed wheel is importable), with
sockets blocked: what a combination promises must work offline, and what it
lacks must fail with one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import socket
import sys

QUESTION = "Who designed the iron frame of the Statue of Liberty?"
PASSAGES = [
    "The Statue of Liberty was designed by Frédéric Auguste Bartholdi. Its iron framework was built by "
    "Gustave Eiffel, whose company later built the Eiffel Tower.",
    "Mount Everest is the highest mountain above sea level. It lies in the Himalayas on the border of Nepal "
    "and China.",
    "Berlin is the capital of Germany. It has about 3.7 million inhabitants.",
]


class NetworkUsed(AssertionError):
    pass


def block_sockets() -> None:
    """Any connection or name look-up raises (unix sockets, used by nothing here, too)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkUsed("the network was used")

    socket.socket.connect = refuse  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    socket.create_connection = refuse  # type: ignore[assignment]


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def expect_import_error(call: object, extra: str) -> None:
    try:
        call()  # type: ignore[operator]
    except ImportError as e:
        message = str(e)
        assert f"ragprune[{extra}]" in message and "\n" not in message, message
        return
    raise AssertionError(f"expected an ImportError naming ragprune[{extra}]")


def check_core() -> None:
    import ragprune
    from ragprune.testing import LexicalReranker

    result = ragprune.Pipeline([LexicalReranker(top_n=1)], counter="words").run(QUESTION, PASSAGES)
    assert [p.index for p in result.passages] == [0], result.passages
    assert result.stats.tokens_after < result.stats.tokens_before


def check_default_pipeline() -> None:
    import ragprune

    result = ragprune.default_pipeline(budget=60).run(QUESTION, PASSAGES)
    assert result.passages and result.passages[0].index == 0, result.passages
    assert 0 < result.stats.tokens_after <= 60 < result.stats.tokens_before
    assert result.stats.counter == "cl100k_base", result.stats.counter


def check_langchain() -> None:
    from langchain_core.documents import Document

    import ragprune
    from ragprune.integrations.langchain import RagpruneCompressor

    docs = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(PASSAGES)]
    out = RagpruneCompressor(stage=ragprune.default_pipeline(), budget=60).compress_documents(docs, QUESTION)
    assert out and out[0].metadata["n"] == 0 and "ragprune" in out[0].metadata


def check_llamaindex() -> None:
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    import ragprune
    from ragprune.integrations.llamaindex import RagprunePostprocessor

    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0) for i, t in enumerate(PASSAGES)]
    post = RagprunePostprocessor(ragprune.default_pipeline(), budget=60)
    out = post.postprocess_nodes(nodes, query_bundle=QueryBundle(QUESTION))
    assert out and out[0].node.node_id == "n0"


def check_agents() -> None:
    import json

    import ragprune
    from ragprune.integrations.agents import RagpruneMiddleware, ToolOutputPruner

    assert RagpruneMiddleware(ragprune.default_pipeline()).name
    output = json.dumps([{"title": f"t{i}", "snippet": t} for i, t in enumerate(PASSAGES)])
    out = ToolOutputPruner(ragprune.default_pipeline(), min_tokens=0).prune(output, QUESTION)
    assert json.loads(out.text) and out.record["tokens_before"] > 0, out.record


def main(name: str) -> None:
    block_sockets()
    check_core()
    import ragprune

    if name == "core":
        assert not has("torch") and not has("tiktoken")
        expect_import_error(lambda: ragprune.default_pipeline(), "models")
        expect_import_error(lambda: ragprune.CrossEncoderReranker, "models")
        expect_import_error(lambda: ragprune.get_counter("cl100k_base"), "tiktoken")
    else:
        check_default_pipeline()
    langchain = name in ("models+langchain", "all")
    llamaindex = name in ("models+llamaindex", "all")
    if langchain:
        check_langchain()
    else:
        expect_import_error(lambda: importlib.import_module("ragprune.integrations.langchain"), "langchain")
    if llamaindex:
        check_llamaindex()
    else:
        expect_import_error(lambda: importlib.import_module("ragprune.integrations.llamaindex"), "llamaindex")
    if name == "all":
        check_agents()
    elif name != "core":
        agents = importlib.import_module("ragprune.integrations.agents")
        expect_import_error(lambda: agents.RagpruneMiddleware, "agents")
    print(f"{name}: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])

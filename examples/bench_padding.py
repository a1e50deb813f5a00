"""Padding and wall time of the model-backed stages: length-packed batches against the previous batching.

Each stage runs on CPU (or ``--device``) over the first N HotpotQA test-split questions
(``load_hotpotqa("test", limit=N)``, 10 paragraphs each, titles in metadata as ``ragprune bench`` builds them):

* ``pruner``: ``ragprune.default_pruner()`` (its windows);
* ``reranker``: ``CrossEncoderReranker`` with the ``ms-marco-minilm-l12`` cross-encoder, ``top_n=3``
  (one (question, paragraph) pair per paragraph);
* ``selector``: ``SentenceSelector`` with the same cross-encoder (raw logits, ``threshold=-2``, as
  ``ragprune bench``'s sentence-selector; one pair per sentence);
* ``token-clf``: ``TokenClassifierCompressor`` at ``rate=0.33`` on the MiniLM token classifier with a
  seeded random head that ``ragprune bench`` builds (``build_token_classifier``; its windows);
* ``emb-filter``: ``EmbeddingFilter`` at sentence level, ``top_n=10``, with the MiniLM bi-encoder
  (the question and every sentence), when ``--embedding-filter`` is given.

A stage whose model is not available offline is skipped, with the reason.  Every case goes through each stage
with the previous batching (the inputs of a call sorted by length and cut only by ``batch_size``; for the
pruner also a 16384-token cap; for the token classifier a ``batch_size * max_length`` cap and, on CPU, batches
split so that padding added at most a fifth; for a sentence-transformers bi-encoder its own batching; the
private ``_legacy_batching`` switch) and with the packed one (batches that pad at most a tenth of their
tokens, as few as that allows, under a 2048-token cap on CPU, 16384 on a GPU), back to back, alternating which
goes first, after one warm-up.  Reported per stage: the items (pairs, windows or texts) fed, the share of
padded tokens fed, the sum of the cases' median times over the repeats and their ratio (after / before), the
forward batches, and whether outputs are identical (same kept passages, spans and text, same dropped passages;
every score within 1e-5 of ``max(1, |score|)``, the sentence selector's sentence scores included; the largest
absolute and relative differences are shown).

    python examples/bench_padding.py --threads 2 --cases 20 --repeats 3   # about 4 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import functools
import operator
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("pruner", "reranker", "selector", "token-clf", "emb-filter")
Case = tuple[str, list[Any]]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--device", default="cpu", help="where the models run (e.g. cuda: a 16384-token cap there)")
    ap.add_argument("--cases", type=int, default=20, help="HotpotQA test-split questions (the first N)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    ap.add_argument("--stages", default=",".join(STAGES[:-1]),
                    help=f"comma-separated stages among {', '.join(STAGES)}")
    ap.add_argument("--embedding-filter", action="store_true", help="also the embedding filter (emb-filter)")
    ap.add_argument("--work-dir", type=Path, default=ROOT / ".cache" / "bench",
                    help="where the token classifier is built (once)")
    return ap.parse_args()


class Recorder:
    """A cross-encoder that keeps its last scores (a stage whose output holds no scores is compared on them)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.last: list[float] = []

    def score_pairs(self, query: Any, texts: Any) -> Any:
        scores = self.model.score_pairs(query, texts)
        self.last = [float(x) for x in scores]
        return scores


@dataclass
class Subject:
    """A stage, the object whose ``_legacy_batching`` switch and ``padding_stats`` it batches by, and
    optionally a :class:`Recorder` of its model's scores."""

    stage: Any
    batcher: Any
    recorder: Recorder | None = None

    def run(self, case: Case, legacy: bool) -> tuple[float, Any, Any]:
        """Seconds, (output, recorded scores) and padding statistics of one case, with the previous or the
        packed batching."""
        self.batcher._legacy_batching = legacy
        self.batcher.padding_stats(reset=True)
        start = time.perf_counter()
        output = self.stage.process(*case)
        seconds = time.perf_counter() - start
        recorded = list(self.recorder.last) if self.recorder is not None else []
        return seconds, (output, recorded), self.batcher.padding_stats(reset=True)


def _pruner(args: argparse.Namespace) -> Subject:
    import ragprune

    pruner = ragprune.default_pruner(device=args.device)
    return Subject(pruner, pruner)


def _reranker(args: argparse.Namespace) -> Subject:
    from ragprune.stages.cross_encoder import CrossEncoderReranker
    from ragprune.tools.assets import asset_path

    stage = CrossEncoderReranker(asset_path("ms-marco-minilm-l12"), top_n=3, device=args.device,
                                 local_files_only=True)
    return Subject(stage, stage.model)


def _selector(args: argparse.Namespace) -> Subject:
    from ragprune.runtime.encoders import CrossEncoderModel
    from ragprune.stages.sentence_selector import SentenceSelector
    from ragprune.tools.assets import asset_path

    scorer = CrossEncoderModel(asset_path("ms-marco-minilm-l12"), activation="none", device=args.device,
                               local_files_only=True)
    recorder = Recorder(scorer)  # the stage's output holds no sentence scores: compare those it computed
    return Subject(SentenceSelector(recorder, kind="cross-encoder", threshold=-2.0), scorer, recorder)


def _token_classifier(args: argparse.Namespace) -> Subject:
    from ragprune.bench.methods import build_token_classifier
    from ragprune.stages.token_classifier import TokenClassifierCompressor
    from ragprune.tools.assets import asset_path

    path = build_token_classifier(args.work_dir / "bench-minilm-bert-base-multilingual-cased-tc",
                                  encoder=asset_path("minilm"))
    stage = TokenClassifierCompressor(path, rate=0.33, device=args.device, local_files_only=True)
    return Subject(stage, stage)


def _embedding_filter(args: argparse.Namespace) -> Subject:
    from ragprune.stages.embedding_filter import EmbeddingFilter
    from ragprune.tools.assets import asset_path

    stage = EmbeddingFilter(asset_path("minilm"), level="sentence", top_n=10, device=args.device,
                            local_files_only=True)
    return Subject(stage, stage.model)


BUILDERS: dict[str, Callable[[argparse.Namespace], Subject]] = {
    "pruner": _pruner, "reranker": _reranker, "selector": _selector, "token-clf": _token_classifier,
    "emb-filter": _embedding_filter,
}


@dataclass
class StageRun:
    """Per batching (``True``: the previous one): per-case times over the repeats, outputs, padding."""

    times: dict[bool, list[list[float]]] = field(default_factory=lambda: {True: [], False: []})
    outputs: dict[bool, list[Any]] = field(default_factory=lambda: {True: [], False: []})
    stats: dict[bool, Any] = field(default_factory=dict)

    def seconds(self, legacy: bool) -> float:
        return sum(statistics.median(c) for c in self.times[legacy])


def measure(subject: Subject, cases: list[Case], repeats: int) -> StageRun:
    """Each case with both batchings back to back (which goes first alternates), so that both see the
    same load on the machine; a stage's time is the sum of its cases' medians over the repeats."""
    run = StageRun()
    for legacy in (True, False):  # warm-up
        subject.run(cases[0], legacy)
    for k, case in enumerate(cases):
        per_case: dict[bool, list[float]] = {True: [], False: []}
        for r in range(repeats):
            for legacy in ((True, False) if (r + k) % 2 == 0 else (False, True)):
                seconds, output, st = subject.run(case, legacy)
                per_case[legacy].append(seconds)
                if r == 0:
                    run.outputs[legacy].append(output)
                    run.stats[legacy] = run.stats[legacy] + st if legacy in run.stats else st
        for legacy in (True, False):
            run.times[legacy].append(per_case[legacy])
    subject.batcher._legacy_batching = False
    return run


def _scores(out: Any, recorded: list[float]) -> list[float | None]:
    """Every score of a stage's output: of each kept passage (all stages'), of each drop (by index), and
    those its model was recorded giving."""
    kept = [s for p in out.passages for _, s in p.scores]
    return [*kept, *(d.score for d in sorted(out.dropped, key=lambda d: d.index)), *recorded]


def compare(a_out: list[Any], b_out: list[Any]) -> tuple[bool, float, float]:
    """Same kept passages (order, spans, text) and dropped ones; the largest score difference, absolute
    and relative to ``max(1, |score|)`` (the pruner's scores are logits of up to about 10)."""
    same, worst, worst_rel = True, 0.0, 0.0
    for (a, a_rec), (b, b_rec) in zip(a_out, b_out, strict=True):
        same &= [(p.index, p.spans, p.text) for p in a.passages] == [(p.index, p.spans, p.text) for p in b.passages]
        same &= sorted(d.index for d in a.dropped) == sorted(d.index for d in b.dropped)
        sa, sb = _scores(a, a_rec), _scores(b, b_rec)
        same &= len(sa) == len(sb) and all((x is None) == (y is None) for x, y in zip(sa, sb, strict=False))
        pairs = [(x, y) for x, y in zip(sa, sb, strict=False) if x is not None and y is not None]
        worst = max([worst, *(abs(x - y) for x, y in pairs)])
        worst_rel = max([worst_rel, *(abs(x - y) / max(1.0, abs(x)) for x, y in pairs)])
    return same, worst, worst_rel


def _both(a: tuple[bool, float, float], b: tuple[bool, float, float]) -> tuple[bool, float, float]:
    return a[0] and b[0], max(a[1], b[1]), max(a[2], b[2])


def row(name: str, stats: dict[bool, Any], t_old: float, t_new: float, same: tuple[bool, float, float]) -> None:
    old, new = stats[True], stats[False]
    identical = same[0] and same[2] <= 1e-5
    print(f"{name:<10} {new.items:>6} | {old.padding_share:>12.1%} {new.padding_share:>11.1%} | {t_old:>7.2f} "
          f"{t_new:>7.2f} {t_new / t_old:>6.2f} | {old.batches:>5}>{new.batches:<5} | {identical!s:<9} "
          f"{same[1]:>8.1e} {same[2]:>8.1e}")


def main() -> None:
    args = parse_args()
    import torch

    from ragprune.bench.runner import case_passages
    from ragprune.training.datasets import load_hotpotqa

    torch.set_num_threads(args.threads)
    names = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.embedding_filter and "emb-filter" not in names:
        names.append("emb-filter")
    unknown = sorted(set(names) - set(STAGES))
    if unknown:
        raise SystemExit(f"unknown stages: {', '.join(unknown)} (choose among {', '.join(STAGES)})")
    cases: list[Case] = [(c.question, case_passages(c)) for c in load_hotpotqa("test", limit=args.cases)]
    from ragprune.runtime.batching import default_batch_tokens

    print(f"{len(cases)} HotpotQA test-split cases, {args.device} ({args.threads} threads), median of "
          f"{args.repeats} repeats after a warm-up; previous batching -> packed (at most 10% padding per batch, "
          f"{default_batch_tokens(args.device)}-token cap)")
    print(f"{'stage':<10} {'items':>6} | {'padding prev':>12} {'padding new':>11} | {'prev s':>7} {'new s':>7} "
          f"{'ratio':>6} | {'batches':>11} | identical max diff max rel.")
    runs: dict[str, StageRun] = {}
    for name in names:
        try:
            subject = BUILDERS[name](args)
        except (FileNotFoundError, ImportError, OSError) as e:
            print(f"{name:<10} skipped: {e}")
            continue
        run = runs[name] = measure(subject, cases, args.repeats)
        row(name, run.stats, run.seconds(True), run.seconds(False), compare(run.outputs[True], run.outputs[False]))
        del subject
    if len(runs) > 1:
        total = {legacy: functools.reduce(operator.add, (r.stats[legacy] for r in runs.values()))
                 for legacy in (True, False)}
        row("all", total, sum(r.seconds(True) for r in runs.values()), sum(r.seconds(False) for r in runs.values()),
            functools.reduce(_both, (compare(r.outputs[True], r.outputs[False]) for r in runs.values())))


if __name__ == "__main__":
    main()

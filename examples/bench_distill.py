"""Distilled query-aware token compressor vs its teacher, on held-out HotpotQA training questions (CPU, offline).

For each of the last ``--questions`` questions of the TRAINING split (the ones
``ragprune train distill`` holds out; never the test split), gold passages plus
``--negatives`` others are scored, side by side in this process, by:

* the teacher: SmolLM2-135M (offline GGUF), question-conditioned contrastive
  word scores, top ``--rate`` of each passage's words = the reference labels;
* the student: ``QueryTokenCompressor`` over the distilled pruner, keeping as
  many words per passage as the teacher;
* a query-free LM baseline: the teacher's self-information alone;
* the same student weights run the LLMLingua-2 way (``TokenClassifierCompressor``,
  question withheld, force tokens off), to show what the question adds and
  what the LLMLingua-2 path costs on the same backbone.

Prints word-level agreement (same keep decision) and F1 of the teacher's kept
words, and seconds per (question, passage) pair.

    RAGPRUNE_HOME=.cache/ragprune python examples/bench_distill.py \\
        --student .cache/train/distill/student --questions 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _token_classifier(student, rate):  # type: ignore[no-untyped-def]
    """The student's encoder and token head as a ``*ForTokenClassification`` model (query-free use)."""
    from transformers import AutoModelForTokenClassification

    from ragprune.stages.token_classifier import TokenClassifierCompressor

    pruner = student.scorer.model
    config = pruner.config.__class__.from_dict({**pruner.config.to_dict(), "num_labels": 2})
    model = AutoModelForTokenClassification.from_config(config)
    base = getattr(model, model.base_model_prefix)
    missing, unexpected = base.load_state_dict(pruner.backbone.state_dict(), strict=False)
    if [k for k in missing if "pooler" not in k] or [k for k in unexpected if "pooler" not in k]:
        raise RuntimeError(f"backbone mismatch: missing {missing}, unexpected {unexpected}")
    model.classifier.load_state_dict(pruner.token_head.state_dict())
    model.float().eval()
    return TokenClassifierCompressor(model, tokenizer=student.scorer.tokenizer, rate=rate, force_tokens=(),
                                     force_digits=False, max_length=student.scorer.max_length)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", default=str(REPO / ".cache/train/distill/student"))
    ap.add_argument("--teacher", default=None, help="default: the smollm2-gguf asset")
    ap.add_argument("--data", default=None, help="default: the hotpotqa asset")
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--negatives", type=int, default=1)
    ap.add_argument("--rate", type=float, default=None, help="default: the student's training rate")
    ap.add_argument("--with-support", action="store_true", default=None)
    ap.add_argument("--seed", type=int, default=1, help="negatives seed (the CLI's held-out seed is --seed + 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    import torch

    from ragprune.runtime.causal_lm import CausalLMScorer
    from ragprune.stages.query_compressor import QueryTokenCompressor
    from ragprune.tools.assets import asset_path
    from ragprune.training.datasets import load_hotpotqa
    from ragprune.training.distill import keep_top, pair_passages, support_mask, teacher_word_scores, word_labels

    torch.set_num_threads(args.threads)
    summary_path = Path(args.student) / "distill_summary.json"
    trained = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    rate = args.rate if args.rate is not None else float(trained.get("rate", 0.33))
    with_support = bool(trained.get("with_support", False)) if args.with_support is None else True
    self_info = float(trained.get("self_info_weight", 0.0))
    data = args.data or str(asset_path("hotpotqa"))
    cases = load_hotpotqa("train", data)
    start = len(cases) - args.questions
    held_out = cases[start:]
    trained_q = int(trained.get("start_question", 0)) + int(trained.get("train_questions", 0))
    if trained_q > start:
        raise SystemExit(f"the student trained on questions up to {trained_q}, overlapping the held-out ones")

    t0 = time.perf_counter()
    teacher = CausalLMScorer(args.teacher or str(asset_path("smollm2-gguf")), local_files_only=True)
    student = QueryTokenCompressor(args.student, local_files_only=True)
    tc = _token_classifier(student, rate)
    print(f"loaded in {time.perf_counter() - t0:.1f} s; rate={rate} with_support={with_support} "
          f"threads={args.threads}")
    warm = held_out[0].passages[0][1]
    student.word_probs(held_out[0].question, [warm])
    tc.apply(None, [warm])
    teacher.token_scores([warm])

    names = ("student", "lm self-info (no question)", "student, no question (LLMLingua-2 path)")
    same = dict.fromkeys(names, 0)
    counts = {n: [0, 0, 0] for n in names}
    seconds = {"teacher": 0.0, "student": 0.0, "student, no question (LLMLingua-2 path)": 0.0}
    words = pairs = 0
    for k, case in enumerate(held_out):
        chosen = pair_passages(case, args.negatives, args.seed, start + k)
        texts = [case.passages[i][1] for i in chosen]
        a = time.perf_counter()
        tw = teacher_word_scores(teacher, case.question, texts, self_info_weight=self_info)
        b = time.perf_counter()
        sw = student.word_probs(case.question, texts)
        c = time.perf_counter()
        seconds["teacher"] += b - a
        seconds["student"] += c - b
        pairs += len(chosen)
        for i, text, ts, (_, probs) in zip(chosen, texts, tw, sw, strict=True):
            spans = [case.sentence_spans[p][j] for p, j in case.gold_sentences if p == i]
            gold = word_labels(ts.score, rate, support_mask(ts.words, spans) if with_support else None).astype(bool)
            r = gold.sum() / len(gold)
            d = time.perf_counter()
            tc.rate = float(r)
            kept_tc = tc.apply(None, [text])
            seconds["student, no question (LLMLingua-2 path)"] += time.perf_counter() - d
            kept_spans = np.asarray(kept_tc[0].spans if kept_tc else [], dtype=np.int64).reshape(-1, 2)
            starts = ts.words[:, 0]
            inside = np.searchsorted(kept_spans[:, 0], starts, side="right") - 1
            tc_keep = (inside >= 0) & (starts < kept_spans[np.maximum(inside, 0), 1]) if len(kept_spans) else \
                np.zeros(len(gold), dtype=bool)
            preds = {names[0]: keep_top(probs, r), names[1]: keep_top(ts.self_info, r), names[2]: tc_keep}
            words += len(gold)
            for n, pred in preds.items():
                same[n] += int((pred == gold).sum())
                counts[n][0] += int((pred & gold).sum())
                counts[n][1] += int((pred & ~gold).sum())
                counts[n][2] += int((~pred & gold).sum())
    print(f"held-out train-split questions {start}..{len(cases) - 1}: {len(held_out)} questions, {pairs} pairs, "
          f"{words} words")
    print(f"{'against the teacher labels':42s} agreement     F1")
    figures: dict[str, object] = {"questions": len(held_out), "pairs": pairs, "words": words, "rate": rate}
    for n in names:
        agree, f1 = same[n] / max(1, words), _f1(*counts[n])
        figures[n] = {"agreement": agree, "f1": f1}
        print(f"{n:42s} {agree:9.3f} {f1:6.3f}")
    print(f"{'seconds per pair':42s}")
    for n, s in seconds.items():
        figures[f"seconds_per_pair/{n}"] = s / max(1, pairs)
        ratio = seconds["teacher"] / max(s, 1e-9)
        print(f"{n:42s} {s / max(1, pairs) * 1e3:9.1f} ms  (teacher time / this: {ratio:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

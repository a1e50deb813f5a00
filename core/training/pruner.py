"""Train a Provence-style pruner: token relevance and passage ranking, one encoder.

An example is ``(query, passage, sentence_labels, passage_label)``:
``sentence_labels`` holds one 0/1 per span of ``sentence_spans(passage)``
(1 = the sentence is needed to answer), ``passage_label`` is 1 for a relevant
passage.  Every passage token takes its sentence's label (a token belongs to
the sentence holding its last character, as at inference); the loss is the
token cross-entropy over passage tokens plus the binary cross-entropy of the
ranking logit.

Runs are reproducible: shuffling and head initialisation draw from a local
``torch.Generator`` seeded with ``seed`` (the global generator is neither
seeded nor used), and dropout is kept off during training so nothing else is
random.  Checkpoints are written in the pruner format of
:mod:`ragprune.stages.provence` and load with ``ProvencePruner(output_dir)``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime.device import resolve_device
from ..runtime.loading import load_tokenizer
from ..runtime.validation import check_int, check_number
from ..stages.provence import DEFAULT_THRESHOLD, FORMAT_FILE, PairTemplate, PrunerModel
from ..text.segment import sentence_spans

__all__ = ["PrunerExample", "TokenLabelExample", "EpochStats", "TrainResult", "train_pruner", "encode_example"]

logger = logging.getLogger("ragprune")


@dataclass(frozen=True, slots=True)
class PrunerExample:
    """One training pair; a plain 4-tuple in the same order is accepted too."""

    query: str
    passage: str
    sentence_labels: tuple[int, ...]
    passage_label: int


@dataclass(frozen=True, slots=True)
class TokenLabelExample:
    """One training pair labelled per word instead of per sentence.

    ``units`` are sorted, non-overlapping character spans of ``passage`` (e.g.
    its word units) and ``unit_labels`` one 0/1 per unit; a passage token takes
    the label of the unit holding its last character, tokens outside every unit
    are not trained.  :func:`train_pruner` accepts these wherever it accepts
    :class:`PrunerExample` (validation figures then count units, not sentences).
    """

    query: str
    passage: str
    units: tuple[tuple[int, int], ...]
    unit_labels: tuple[int, ...]
    passage_label: int


@dataclass(frozen=True, slots=True)
class EpochStats:
    """Figures of one epoch; validation figures are ``None`` without validation data.

    ``val_token_f1``: F1 of the keep label on passage tokens (probability >= 0.5);
    ``val_sentence_recall`` / ``val_sentence_precision``: of needed sentences,
    with sentences kept when their mean token relevance reaches the threshold;
    ``val_rank_accuracy``: fraction of passages whose ranking logit has the
    label's sign (>= 0 for relevant).
    """

    epoch: int
    train_loss: float
    train_token_loss: float
    train_rank_loss: float
    val_loss: float | None = None
    val_token_f1: float | None = None
    val_sentence_recall: float | None = None
    val_sentence_precision: float | None = None
    val_rank_accuracy: float | None = None


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What :func:`train_pruner` did."""

    output_dir: Path
    epochs: tuple[EpochStats, ...]
    step_losses: tuple[float, ...]
    steps: int
    seconds: float
    model: PrunerModel = field(repr=False, compare=False)
    tokenizer: Any = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class _Encoded:
    input_ids: np.ndarray
    token_types: np.ndarray
    labels: np.ndarray  # -100 outside passage tokens
    sentence_ids: np.ndarray  # -1 outside passage tokens
    sentence_labels: np.ndarray
    passage_label: float
    teacher_logit: float = math.nan  # a ranking teacher's logit for the pair (nan: none)


def _as_token_example(ex: TokenLabelExample, i: int) -> TokenLabelExample:
    if not isinstance(ex.query, str) or not isinstance(ex.passage, str):
        raise TypeError(f"examples[{i}]: query and passage must be str")
    if not ex.query.strip():
        raise ValueError(f"examples[{i}]: blank query")
    if len(ex.units) != len(ex.unit_labels):
        raise ValueError(f"examples[{i}]: {len(ex.unit_labels)} labels for {len(ex.units)} units")
    u = np.asarray(ex.units, dtype=np.int64).reshape(-1, 2)
    if len(u) and (u[0, 0] < 0 or u[-1, 1] > len(ex.passage) or bool((u[:, 1] < u[:, 0]).any())
                   or bool((u[1:, 0] < u[:-1, 1]).any())):
        raise ValueError(f"examples[{i}]: units must be sorted, non-overlapping spans of the passage")
    if any(int(v) not in (0, 1) for v in ex.unit_labels) or int(ex.passage_label) not in (0, 1):
        raise ValueError(f"examples[{i}]: labels must be 0 or 1")
    return ex


def _as_example(item: Any, i: int) -> PrunerExample | TokenLabelExample:
    if isinstance(item, TokenLabelExample):
        return _as_token_example(item, i)
    if isinstance(item, PrunerExample):
        ex = item
    else:
        try:
            query, passage, labels, passage_label = item
        except (TypeError, ValueError):
            raise TypeError(f"examples[{i}] must be a PrunerExample or a (query, passage, sentence_labels, "
                            f"passage_label) tuple, got {type(item).__name__}") from None
        ex = PrunerExample(query, passage, tuple(labels), passage_label)
    if not isinstance(ex.query, str) or not isinstance(ex.passage, str):
        raise TypeError(f"examples[{i}]: query and passage must be str")
    if not ex.query.strip():
        raise ValueError(f"examples[{i}]: blank query")
    n = len(sentence_spans(ex.passage))
    if len(ex.sentence_labels) != n:
        raise ValueError(f"examples[{i}]: {len(ex.sentence_labels)} sentence labels for {n} sentences "
                         "(labels align to sentence_spans(passage))")
    if any(int(v) not in (0, 1) for v in ex.sentence_labels) or int(ex.passage_label) not in (0, 1):
        raise ValueError(f"examples[{i}]: labels must be 0 or 1")
    return ex


def encode_example(ex: PrunerExample | TokenLabelExample, tokenizer: Any, template: PairTemplate,
                   max_length: int) -> _Encoded:
    """Model inputs and per-token labels for one example (passage truncated to fit)."""
    enc = tokenizer([ex.query, ex.passage], add_special_tokens=False, return_offsets_mapping=True,
                    return_attention_mask=False, return_token_type_ids=False, verbose=False)
    q_ids = np.asarray(enc["input_ids"][0], dtype=np.int64)
    p_ids = np.asarray(enc["input_ids"][1], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"][1], dtype=np.int64).reshape(-1, 2)
    q_room = max(1, (max_length - template.n_special) // 2)
    q_ids = q_ids[:q_room]
    room = max_length - template.n_special - len(q_ids)
    p_ids, offsets = p_ids[:room], offsets[:room]
    ids, types, start = template.encode(q_ids, p_ids)
    by_unit = isinstance(ex, TokenLabelExample)
    units = ex.units if isinstance(ex, TokenLabelExample) else sentence_spans(ex.passage)
    spans = np.asarray(units, dtype=np.int64).reshape(-1, 2)
    sent_labels = np.asarray([int(v) for v in (ex.unit_labels if isinstance(ex, TokenLabelExample)
                                               else ex.sentence_labels)], dtype=np.int64)
    sid = np.full(len(ids), -1, dtype=np.int64)
    labels = np.full(len(ids), -100, dtype=np.int64)
    if len(p_ids) and len(spans):
        last = offsets[:, 1] - 1
        tok_sid = np.clip(np.searchsorted(spans[:, 0], last, side="right") - 1, 0, len(spans) - 1)
        valid = offsets[:, 1] > offsets[:, 0]
        if by_unit:  # units need not cover the passage: tokens outside every unit are not trained
            valid &= (last >= spans[tok_sid, 0]) & (last < spans[tok_sid, 1])
        tok_sid = np.where(valid, tok_sid, -1)
        sid[start : start + len(p_ids)] = tok_sid
        labels[start : start + len(p_ids)] = np.where(valid, sent_labels[np.maximum(tok_sid, 0)], -100)
    return _Encoded(ids, types, labels, sid, sent_labels, float(int(ex.passage_label)))


def _collate(items: Sequence[_Encoded], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    longest = max(len(e.input_ids) for e in items)
    n = len(items)
    ids = np.full((n, longest), pad_id, dtype=np.int64)
    types = np.zeros((n, longest), dtype=np.int64)
    mask = np.zeros((n, longest), dtype=np.int64)
    labels = np.full((n, longest), -100, dtype=np.int64)
    for i, e in enumerate(items):
        k = len(e.input_ids)
        ids[i, :k], types[i, :k], mask[i, :k], labels[i, :k] = e.input_ids, e.token_types, 1, e.labels
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "token_type_ids": torch.from_numpy(types).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
        "labels": torch.from_numpy(labels).to(device),
        "passage_labels": torch.tensor([e.passage_label for e in items], dtype=torch.float32, device=device),
        "teacher_logits": torch.tensor([e.teacher_logit for e in items], dtype=torch.float32, device=device),
    }


def _losses(model: PrunerModel, batch: dict[str, torch.Tensor],
            teacher_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Token loss, and ranking loss: binary cross-entropy on the passage labels plus, with a teacher,
    ``teacher_weight`` x the Huber distance of the ranking logit to the teacher's logit (kept in its scale)."""
    out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    labels = batch["labels"]
    if bool((labels != -100).any()):
        token_loss = torch.nn.functional.cross_entropy(out.token_logits.float().reshape(-1, 2), labels.reshape(-1),
                                                       ignore_index=-100)
    else:
        token_loss = out.token_logits.sum() * 0.0
    rank_logits = out.rank_logits.float()
    rank_loss = torch.nn.functional.binary_cross_entropy_with_logits(rank_logits, batch["passage_labels"])
    teacher = batch["teacher_logits"]
    taught = ~torch.isnan(teacher)
    if teacher_weight > 0 and bool(taught.any()):
        rank_loss = rank_loss + teacher_weight * torch.nn.functional.smooth_l1_loss(rank_logits[taught],
                                                                                   teacher[taught])
    return token_loss, rank_loss, out


def _evaluate(model: PrunerModel, data: Sequence[_Encoded], pad_id: int, device: torch.device, batch_size: int,
              threshold: float, rank_weight: float, teacher_weight: float = 0.0) -> dict[str, float]:
    tp = fp = fn = 0
    s_tp = s_fp = s_fn = 0
    rank_ok = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for b in range(0, len(data), batch_size):
            items = data[b : b + batch_size]
            batch = _collate(items, pad_id, device)
            token_loss, rank_loss, out = _losses(model, batch, teacher_weight)
            loss_sum += float(token_loss + rank_weight * rank_loss) * len(items)
            probs = torch.softmax(out.token_logits.float(), dim=-1)[..., 1].cpu().numpy()
            ranks = out.rank_logits.float().cpu().numpy()
            for i, e in enumerate(items):
                k = len(e.input_ids)
                p = probs[i, :k]
                m = e.labels != -100
                pred, gold = p[m] >= 0.5, e.labels[m] == 1
                tp += int((pred & gold).sum())
                fp += int((pred & ~gold).sum())
                fn += int((~pred & gold).sum())
                ns = len(e.sentence_labels)
                seen = e.sentence_ids >= 0
                sums = np.bincount(e.sentence_ids[seen], weights=p[seen], minlength=ns)
                counts = np.bincount(e.sentence_ids[seen], minlength=ns)
                means = np.divide(sums, counts, out=np.zeros(ns), where=counts > 0)
                kept, needed = means >= threshold, e.sentence_labels == 1
                s_tp += int((kept & needed).sum())
                s_fp += int((kept & ~needed).sum())
                s_fn += int((~kept & needed).sum())
                rank_ok += int((ranks[i] >= 0.0) == (e.passage_label >= 0.5))
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {
        "loss": loss_sum / max(1, len(data)),
        "token_f1": f1,
        "sentence_recall": s_tp / (s_tp + s_fn) if (s_tp + s_fn) else 1.0,
        "sentence_precision": s_tp / (s_tp + s_fp) if (s_tp + s_fp) else 1.0,
        "rank_accuracy": rank_ok / max(1, len(data)),
    }


_GROUP_BATCHES = 64  # batches per length-sorted pool


def _batches(data: Sequence[_Encoded], batch_size: int, generator: torch.Generator, by_length: bool) -> list[list[int]]:
    """One epoch's batches: a random permutation, cut into pools of batches sorted by length when ``by_length``."""
    order = torch.randperm(len(data), generator=generator).tolist()
    if not by_length:
        return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    pool = batch_size * _GROUP_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(data[i].input_ids))
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def _starting_model(base_model: str | os.PathLike[str], *, ranking: str, max_length: int, threshold: float,
                    generator: torch.Generator, device: torch.device, local_files_only: bool) -> PrunerModel:
    """An existing pruner directory to keep training, or fresh heads on an encoder; float32 either way."""
    base = Path(str(base_model))
    if (base / FORMAT_FILE).is_file():
        return PrunerModel.from_pretrained(base, device=device, dtype="float32", local_files_only=True)
    return PrunerModel.from_encoder(base_model, ranking=ranking, max_length=max_length, threshold=threshold,
                                    generator=generator, device=device, dtype="float32",
                                    local_files_only=local_files_only)


def _adamw(model: PrunerModel, lr: float, weight_decay: float) -> tuple[torch.optim.AdamW, list[torch.nn.Parameter]]:
    """AdamW over the trainable parameters (no weight decay on biases and norms), and those parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    return optimizer, params


def _warmup_then_decay(total: int, warmup: int) -> Callable[[int], float]:
    """The learning-rate factor at each step: linear warm-up over ``warmup`` steps, then linear decay to 0."""

    def schedule(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return schedule


def _progress_bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="train pruner", unit="step")


def _train_step(model: PrunerModel, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, params: list[torch.nn.Parameter],
                rank_weight: float, max_grad_norm: float, teacher_weight: float = 0.0) -> tuple[float, float, float]:
    """One optimizer step on ``batch``; returns the (total, token, ranking) losses."""
    token_loss, rank_loss, _ = _losses(model, batch, teacher_weight)
    loss = token_loss + rank_weight * rank_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm and max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    return float(loss.detach()), float(token_loss.detach()), float(rank_loss.detach())


def teacher_logits(teacher: Any, examples: Sequence[PrunerExample | TokenLabelExample], *, device: Any = "cpu",
                   batch_size: int = 16, local_files_only: bool = False) -> np.ndarray:
    """A cross-encoder's raw logit for each example's (query, passage) pair (float32, in order).

    ``teacher`` is a :class:`~ragprune.runtime.encoders.CrossEncoderModel` or what loads one (a directory or a hub
    id, read with ``local_files_only``).
    """
    from ..runtime.encoders import CrossEncoderModel

    if not isinstance(teacher, CrossEncoderModel):
        teacher = CrossEncoderModel(teacher, device=device, activation="none", batch_size=max(16, batch_size),
                                    local_files_only=local_files_only or Path(str(teacher)).is_dir())
    elif teacher.activation != "none":
        raise ValueError("rank_teacher: a CrossEncoderModel with activation='none' (raw logits) is needed")
    if not examples:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(teacher.score_pairs([e.query for e in examples], [e.passage for e in examples]),
                      dtype=np.float32)


def train_pruner(
    examples: Iterable[PrunerExample | TokenLabelExample | tuple[str, str, Sequence[int], int]],
    *,
    base_model: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    epochs: int = 1,
    batch_size: int = 8,
    lr: float = 3e-5,
    seed: int = 0,
    max_length: int = 512,
    device: Any = "auto",
    val_examples: Iterable[PrunerExample | TokenLabelExample | tuple[str, str, Sequence[int], int]] | None = None,
    progress: bool = True,
    ranking: str = "cls-linear",
    rank_weight: float = 1.0,
    threshold: float = DEFAULT_THRESHOLD,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_grad_norm: float = 1.0,
    save_every_epoch: bool = False,
    group_by_length: bool = True,
    local_files_only: bool = False,
    rank_teacher: Any = None,
    teacher_weight: float = 0.5,
) -> TrainResult:
    """Fine-tune a pruner and save it to ``output_dir``.

    Args:
        examples: training examples (see the module docstring).
        base_model: an encoder (directory or hub id) to put fresh heads on, or
            an existing pruner directory to keep training.
        output_dir: where the final checkpoint goes (``epoch-N/`` subfolders
            too with ``save_every_epoch``).
        epochs, batch_size, lr, weight_decay, warmup_ratio, max_grad_norm:
            AdamW with linear warm-up and decay.
        seed: seeds the local generator (head init and shuffling).
        max_length: tokens per example, special tokens included; longer
            passages are truncated.  Saved as the pruner's window size.
        device: ``"auto"`` or a torch device; training runs in float32.
        val_examples: evaluated after every epoch (see :class:`EpochStats`).
        progress: show a tqdm progress bar.
        ranking: ``"cls-linear"`` or ``"sequence-classifier"`` (see
            :mod:`ragprune.stages.provence`).
        rank_weight: weight of the ranking loss.
        threshold: sentence threshold for validation, saved as the default.
        group_by_length: batch examples of similar length (less padding, the
            same examples per epoch); the batch order stays random.
        rank_teacher: a cross-encoder (directory or hub id, or a loaded
            :class:`~ragprune.runtime.encoders.CrossEncoderModel`) whose raw logit
            for each (query, passage) pair the ranking logit is also pulled towards
            (``teacher_weight`` x Huber distance), so that a ranker the model starts
            from keeps ranking as it did while the token head learns; scored once,
            before training, on ``device``.
        teacher_weight: weight of that distance inside the ranking loss.
    """
    epochs = check_int("epochs", epochs, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    lr = check_number("lr", lr, min=0.0, min_inclusive=False, finite=True)
    warmup_ratio = check_number("warmup_ratio", warmup_ratio, min=0.0, max=1.0, max_inclusive=False)
    teacher_weight = check_number("teacher_weight", teacher_weight, min=0.0, finite=True)
    train_set = [_as_example(x, i) for i, x in enumerate(examples)]
    if not train_set:
        raise ValueError("examples is empty")
    val_set = [_as_example(x, i) for i, x in enumerate(val_examples or ())]

    generator = torch.Generator().manual_seed(int(seed))
    dev = resolve_device(device)
    base = Path(str(base_model))
    model = _starting_model(base_model, ranking=ranking, max_length=max_length, threshold=threshold,
                            generator=generator, device=dev, local_files_only=local_files_only)
    model.spec = type(model.spec)(ranking=model.spec.ranking, max_length=max_length, threshold=float(threshold))
    tokenizer = load_tokenizer(base_model, local_files_only=local_files_only or base.is_dir())
    template = PairTemplate.from_tokenizer(tokenizer)
    pad_id = template.pad_id
    train_data = [encode_example(e, tokenizer, template, max_length) for e in train_set]
    val_data = [encode_example(e, tokenizer, template, max_length) for e in val_set]
    if rank_teacher is not None:
        logits = teacher_logits(rank_teacher, [*train_set, *val_set], device=dev, batch_size=batch_size,
                                local_files_only=local_files_only)
        n = len(train_data)
        train_data = [dataclasses.replace(e, teacher_logit=float(x))
                      for e, x in zip(train_data, logits[:n], strict=True)]
        val_data = [dataclasses.replace(e, teacher_logit=float(x)) for e, x in zip(val_data, logits[n:], strict=True)]

    steps_per_epoch = math.ceil(len(train_data) / batch_size)
    total = steps_per_epoch * epochs
    warmup = int(round(warmup_ratio * total))
    optimizer, params = _adamw(model, lr, weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_decay(total, warmup))
    out_dir = Path(output_dir)
    bar = _progress_bar(progress, total)
    step_losses: list[float] = []
    stats: list[EpochStats] = []
    started = time.perf_counter()
    # Dropout stays off (eval mode) so a run depends on ``seed`` alone; gradients flow as usual.
    model.eval()
    try:
        for epoch in range(1, epochs + 1):
            batches = _batches(train_data, batch_size, generator, group_by_length)
            sums = np.zeros(3)
            for batch_ids in batches:
                items = [train_data[i] for i in batch_ids]
                losses = _train_step(model, _collate(items, pad_id, dev), optimizer, scheduler, params, rank_weight,
                                     max_grad_norm, teacher_weight)
                value = losses[0]
                step_losses.append(value)
                sums += np.array(losses) * len(items)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}")
            means = sums / len(train_data)
            row: dict[str, Any] = {"epoch": epoch, "train_loss": float(means[0]), "train_token_loss": float(means[1]),
                                   "train_rank_loss": float(means[2])}
            if val_data:
                v = _evaluate(model, val_data, pad_id, dev, batch_size, float(threshold), rank_weight, teacher_weight)
                row.update(val_loss=v["loss"], val_token_f1=v["token_f1"], val_sentence_recall=v["sentence_recall"],
                           val_sentence_precision=v["sentence_precision"], val_rank_accuracy=v["rank_accuracy"])
            stats.append(EpochStats(**row))
            logger.info("pruner epoch %d: %s", epoch, row)
            if save_every_epoch:
                model.save_pretrained(out_dir / f"epoch-{epoch}", tokenizer=tokenizer)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    model.save_pretrained(out_dir, tokenizer=tokenizer)
    return TrainResult(output_dir=out_dir, epochs=tuple(stats), step_losses=tuple(step_losses), steps=len(step_losses),
                       seconds=time.perf_counter() - started, model=model, tokenizer=tokenizer)

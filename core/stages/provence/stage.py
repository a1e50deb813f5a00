"""The Provence stage: query-aware sentence pruning and reranking in one forward pass."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import numpy as np
import torch

from ...budget import Budget, deprecated_stage_budget
from ...passage import BaseStage, Dropped, Passage, StageOutput
from ...runtime.batching import PackedBatching
from ...runtime.loading import LoadKwargs, LoadOptions, load_tokenizer
from ...runtime.locks import TokenizerLock
from ...runtime.quantize import QUANTIZE, quantize_int8
from ...runtime.tokenize import token_ids_and_offsets
from ...runtime.validation import check_choice, check_int, check_number, renamed
from ...text.segment import sentence_spans
from ...text.tokens import TokenCounter, get_counter
from ...text.units import ReadingView, reading_view
from .model import PrunerModel
from .relevance import PairTemplate, _Window, _window_starts, sentence_relevance, span_relevance

logger = logging.getLogger("ragprune")


@dataclass(frozen=True, slots=True)
class _Launched:
    """A queued forward pass: where each item's piece starts in its row and how long it is, and the
    (device) keep probabilities and ranking logits."""

    pieces: list[tuple[int, int]]
    keep: torch.Tensor
    ranks: torch.Tensor


class ProvencePruner(PackedBatching, TokenizerLock, BaseStage):
    """Query-aware sentence pruning and reranking in one forward pass (Provence).

    Args:
        model: a pruner directory or hub id (see the module docstring), or a
            :class:`PrunerModel` (then ``tokenizer`` is required).
        tokenizer: a fast tokenizer, or a path; defaults to the model directory.
        threshold: keep sentences whose mean token relevance is ``>=`` this;
            default: the model's (0.1, as Provence uses).  0 keeps every
            sentence; above 1 keeps none.
        gate: passage-level abstention: a passage whose ranking probability (the
            sigmoid of its ranking logit) is below ``gate`` is dropped whole, with
            the reason, whatever its sentences score; default: the model's
            (``ragprune_pruner.json``'s ``"gate"``, none for older models); ``0`` turns it off.
        always_keep_first: also keep a passage's first sentence (a title) when
            any other sentence of it is kept.
        reorder: sort passages by ranking score (ties keep input order);
            ``False`` keeps the input order.
        top_n: keep at most this many passages (the best scored), after pruning.
        budget, counter: deprecated (budgets live in the Pipeline): a :class:`Budget`
            applied last, counted with ``counter``; accepted for one release.
        max_length: tokens per window, special tokens included (default: the
            model's, capped by the tokenizer's limit).
        stride: tokens shared by consecutive windows of a long passage
            (default: a quarter of a window's passage room).
        batch_size / max_batch_tokens: bounds of each forward batch (in windows,
            and in tokens padding included); ``batch_size=None`` (default): as many
            windows as the token cap allows; ``max_batch_tokens`` defaults to 2048 on
            CPU, where bigger batches gain nothing, and on a GPU grows with its memory
            (:func:`~ragprune.runtime.batching.default_batch_tokens`).
        shape_buckets: batches in a bounded set of shapes (widths rounded up to a short
            ladder, row counts from one; :class:`~ragprune.runtime.batching.ShapeBuckets`),
            so that a GPU pays for each shape's first kernels once (:meth:`warmup` pays
            them all at load); ``None`` (default): on GPUs, not on CPU.
        quantize: ``"int8"``: dynamic int8 quantization of the encoder's linear layers
            (CPU only; about twice as fast there); the threshold and gate then default
            to the model's int8 calibration (``ragprune_pruner.json``'s ``"int8"``) when
            it has one, so the int8 model keeps about the same share of tokens.
        options / device / dtype / local_files_only / revision: how a path or hub id
            is loaded (:class:`~ragprune.runtime.loading.LoadOptions` and its shorthands).
        top_k: deprecated name of ``top_n`` (accepted for one release, with a
            ``DeprecationWarning``).

    Scores are the raw ranking logits, recorded under ``"provence"``.  Blank
    passages pass through unchanged and unscored (last, when reordering).
    Long passages are split into windows; per-token relevance is averaged
    over overlapping windows, and a passage's score is its best window's.
    The windows of all passages of a call are sorted by length and cut into
    batches that pad at most a tenth of their tokens; :meth:`padding_stats`
    counts the tokens fed.  Outputs do not depend on the batching (up to float rounding).
    """

    name = "provence"
    requires_query = True

    def __init__(
        self,
        model: str | os.PathLike[str] | PrunerModel,
        *,
        tokenizer: Any = None,
        threshold: float | None = None,
        gate: float | None = None,
        always_keep_first: bool = False,
        reorder: bool = True,
        top_n: int | None = None,
        budget: Budget | None = None,
        counter: Any = None,
        max_length: int | None = None,
        stride: int | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        shape_buckets: bool | None = None,
        top_k: int | None = None,
        quantize: str | None = None,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        top_n = renamed("top_k", top_k, "top_n", top_n)
        if quantize is not None:
            check_choice("quantize", quantize, QUANTIZE)
        threshold = check_number("threshold", threshold, allow_none=True)
        gate = check_number("gate", gate, min=0.0, max=1.0, allow_none=True)
        top_n = check_int("top_n", top_n, min=1, allow_none=True)
        budget = deprecated_stage_budget("ProvencePruner", budget)
        max_length = check_int("max_length", max_length, min=1, allow_none=True)
        stride = check_int("stride", stride, min=0, allow_none=True)
        batch_size = check_int("batch_size", batch_size, min=1, allow_none=True)
        max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1, allow_none=True)
        if shape_buckets is not None and not isinstance(shape_buckets, bool):
            raise TypeError(f"shape_buckets must be None or a bool, got {type(shape_buckets).__name__}")
        self.model, tokenizer = self._load(model, tokenizer, LoadOptions.resolve(options, **load))
        self.quantize = quantize
        if quantize == "int8":
            self.model = quantize_int8(self.model)
        self.source = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
        self.tokenizer = tokenizer
        self.template = PairTemplate.from_tokenizer(tokenizer)
        spec = self.model.spec
        own_threshold, own_gate = ((spec.int8_threshold, spec.int8_gate) if quantize == "int8"
                                   and spec.int8_threshold is not None else (spec.threshold, spec.gate))
        self.threshold = float(own_threshold if threshold is None else threshold)
        self.gate: float | None = own_gate if gate is None else (gate or None)
        self.always_keep_first = bool(always_keep_first)
        self.reorder = bool(reorder)
        self.top_n = top_n
        self.budget = budget
        self.counter: TokenCounter = get_counter(counter)
        limit = spec.max_length if max_length is None else max_length
        tok_limit = getattr(tokenizer, "model_max_length", None)
        if max_length is None and isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
            limit = min(limit, tok_limit)
        positions = _positions(self.model.config)
        if positions is not None and limit > positions:
            raise ValueError(f"max_length must be <= {positions} (the model's positions), got {limit}")
        if limit < self.template.n_special + 4:
            raise ValueError(f"max_length {limit} leaves no room for query and passage tokens")
        self.max_length = limit
        self.stride = stride
        self._init_packing(batch_size, max_batch_tokens, self.model.device, shape_buckets)
        self.sentence_windows = True  # windows of long passages start at sentence starts
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        q = f", quantize={self.quantize!r}" if self.quantize else ""
        return (f"ProvencePruner({self.source!r}, threshold={self.threshold:g}, gate={self.gate}{q}, "
                f"top_n={self.top_n}, "
                f"reorder={self.reorder}, always_keep_first={self.always_keep_first}, "
                f"max_length={self.max_length}, device={str(self.model.device)!r})")

    @staticmethod
    def _load(model: Any, tokenizer: Any, opts: LoadOptions) -> tuple[PrunerModel, Any]:
        if isinstance(model, PrunerModel):
            if tokenizer is None:
                raise ValueError("tokenizer is required when model is a PrunerModel object")
            loaded = model.eval()
        elif isinstance(model, (str, os.PathLike)):
            loaded = PrunerModel.from_pretrained(model, options=opts)
            if tokenizer is None:
                tokenizer = model
        else:
            raise TypeError(f"model must be a path, hub id or PrunerModel, got {type(model).__name__}")
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(tokenizer, local_files_only=opts.local_files_only, revision=opts.revision)
        return loaded, tokenizer

    # ----------------------------------------------------------------- scoring
    def _tokenize(self, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        with self._lock:  # long texts piece by piece, so memory stays flat in their length
            return token_ids_and_offsets(self.tokenizer, texts)

    def score(self, query: str, texts: Sequence[str], records: Sequence[Sequence[tuple[int, int]]] | None = None,
              ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Per-token keep probabilities, token offsets (in each text) and ranking logits.

        All windows of all texts are sorted by length and go through the model
        in batches of similar lengths (see :meth:`batches`).  ``records[j]``, when
        not empty, are character spans of ``texts[j]`` read one at a time (the results
        of a JSON list, the sections of a page): each gets its own windows, so the
        model scores every record as a passage of its own; tokens outside every
        record score 0.
        """
        return self.score_many([(query, texts, records)])[0]

    def score_many(self, calls: Sequence[tuple[str, Sequence[str], Sequence[Sequence[tuple[int, int]]] | None]],
                   ) -> list[tuple[list[np.ndarray], list[np.ndarray], np.ndarray]]:
        """:meth:`score` of several ``(query, texts, records)`` calls in shared forward passes.

        The windows of every call, each paired with its own query, are grouped by
        length together (:meth:`batches`), so one pass may hold windows of several
        calls (a server batching concurrent requests).  Each call's result equals its
        own :meth:`score` up to float rounding.
        """
        flat = [t for query, texts, _ in calls for t in (query, *texts)]
        all_ids, all_offsets = self._tokenize(flat) if flat else ([], [])
        n_special = self.template.n_special
        q_room = max(1, (self.max_length - n_special) // 2)
        queries, p_ids, p_offsets = [], [], []
        windows: list[tuple[int, _Window]] = []  # (call, window)
        at = 0
        for c, (_, texts, records) in enumerate(calls):
            if len(all_ids[at]) > q_room:
                logger.debug("query truncated from %d to %d tokens", len(all_ids[at]), q_room)
            q_ids = all_ids[at][:q_room]
            ids, offsets = all_ids[at + 1 : at + 1 + len(texts)], all_offsets[at + 1 : at + 1 + len(texts)]
            at += 1 + len(texts)
            queries.append(q_ids)
            p_ids.append(ids)
            p_offsets.append(offsets)
            room = self.max_length - n_special - len(q_ids)
            overlap = room // 4 if self.stride is None else min(self.stride, room // 2)
            for j, tok in enumerate(ids):
                for lo, hi in _token_ranges(offsets[j], len(tok), records[j] if records else ()):
                    anchors = self._anchors(texts[j], offsets[j], lo, hi) if hi - lo > room else ()
                    windows.extend((c, _Window(j, lo + s, min(lo + s + room, hi)))
                                   for s in _window_starts(hi - lo, room, overlap, anchors))
        lengths = [n_special + len(queries[c]) + w.end - w.start for c, w in windows]
        batches = self._counted_batches(lengths)
        results: list[tuple[np.ndarray, float]] = [(np.zeros(0), 0.0)] * len(windows)
        # On a GPU the next batch is built and queued before the previous one's results are read back,
        # so the device runs while the host prepares and post-processes (on CPU this is plain sequence).
        pending: tuple[list[int], _Launched] | None = None
        for batch in [*batches, None]:
            launched = None
            if batch is not None:
                items = [(queries[windows[i][0]], p_ids[windows[i][0]][windows[i][1].passage]
                          [windows[i][1].start : windows[i][1].end]) for i in batch]
                launched = (batch, self._launch(items))
            if pending is not None:
                for i, r in zip(pending[0], self._collect(pending[1]), strict=True):
                    results[i] = r
            pending = launched
        return _gather(len(calls), p_ids, p_offsets, windows, results)

    def _anchors(self, text: str, offsets: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Token positions (from ``lo``) where the sentences of tokens ``[lo, hi)`` of ``text`` start."""
        if not self.sentence_windows:
            return np.zeros(0, dtype=np.int64)
        a, b = int(offsets[lo, 0]), int(offsets[hi - 1, 1])
        starts = np.asarray([a + s for s, _ in sentence_spans(text[a:b])], dtype=np.int64)
        tok = np.searchsorted(offsets[lo:hi, 0], starts, side="left")
        return np.unique(tok[(tok > 0) & (tok < hi - lo)])

    _legacy_batch_size = 16  # the batching before packing: 16 windows a batch

    def _warm(self, rows: int, width: int) -> None:
        q_ids = np.full(1, self.template.pad_id, dtype=np.int64)
        piece = np.full(max(1, width - self.template.n_special - 1), self.template.pad_id, dtype=np.int64)
        self._forward([(q_ids, piece)] * rows)

    def _forward(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, float]]:
        """Keep probabilities of each ``(query ids, passage piece)`` and its ranking logit, in one pass."""
        return self._collect(self._launch(items))

    def _launch(self, items: list[tuple[np.ndarray, np.ndarray]]) -> _Launched:
        """Queue the forward pass of ``items`` on the model's device (:meth:`_collect` reads it back)."""
        encoded = [self.template.encode(q_ids, piece) for q_ids, piece in items]
        longest = self.pad_width(max(len(ids) for ids, _, _ in encoded))
        n = len(encoded)
        input_ids = np.full((n, longest), self.template.pad_id, dtype=np.int64)
        token_types = np.zeros((n, longest), dtype=np.int64)
        mask = np.zeros((n, longest), dtype=np.int64)
        for i, (ids, types, _) in enumerate(encoded):
            input_ids[i, : len(ids)] = ids
            token_types[i, : len(ids)] = types
            mask[i, : len(ids)] = 1
        dev = self.model.device
        with torch.inference_mode():
            out = self.model(torch.from_numpy(input_ids).to(dev), torch.from_numpy(mask).to(dev),
                             torch.from_numpy(token_types).to(dev))
            keep = torch.softmax(out.token_logits.float(), dim=-1)[..., 1]
            ranks = out.rank_logits.float()
        return _Launched([(start, len(piece)) for (_, _, start), (_, piece) in zip(encoded, items, strict=True)],
                         keep, ranks)

    @staticmethod
    def _collect(launched: _Launched) -> list[tuple[np.ndarray, float]]:
        keep = launched.keep.cpu().numpy()
        ranks = launched.ranks.cpu().numpy()
        return [(keep[i, start : start + n].astype(np.float64), float(ranks[i]))
                for i, (start, n) in enumerate(launched.pieces)]

    def unit_relevance(self, query: str, passages: Sequence[Passage],
                       ) -> tuple[list[list[tuple[int, int]]], list[np.ndarray], np.ndarray]:
        """Each passage's units (:meth:`Passage.units`), their relevance, and its ranking logit.

        Prose is read as it is; a structured passage through its reading view (its units
        and fields without the syntax, record by record: :func:`ragprune.text.units.reading_view`).
        A blank passage has no units and a ranking logit of ``-inf``.
        """
        work = [i for i, p in enumerate(passages) if not p.is_blank]
        views = [_view(passages[i]) for i in work]
        token_probs, offsets, work_ranks = self.score(
            query, [passages[i].text if v is None else v.text for i, v in zip(work, views, strict=True)],
            [[] if v is None else v.records for v in views])
        units: list[list[tuple[int, int]]] = [[] for _ in passages]
        relevance: list[np.ndarray] = [np.zeros(0, dtype=np.float64) for _ in passages]
        ranks = np.full(len(passages), -np.inf)
        for k, i in enumerate(work):
            view, p = views[k], passages[i]
            units[i] = p.units("sentence") if view is None else view.units
            relevance[i] = (sentence_relevance(p, offsets[k], token_probs[k], units[i]) if view is None
                            else span_relevance(offsets[k], token_probs[k], view.unit_spans))
            ranks[i] = work_ranks[k]
        return units, relevance, ranks

    # ----------------------------------------------------------------- pruning
    def _prune_one(self, p: Passage, units: list[tuple[int, int]], means: np.ndarray) -> Passage | Dropped:
        """One scored passage, pruned to its kept units, or its drop (passage gate, or no unit kept)."""
        assert p.score is not None
        if self.gate is not None and (prob := _sigmoid(p.score)) < self.gate:
            return self._drop(p, f"nothing relevant: ranking probability {prob:.3g} below the passage gate "
                                 f"{self.gate:g}")
        keep = means >= self.threshold
        if not keep.any():
            best = float(means.max()) if len(means) else 0.0
            return self._drop(p, f"no sentence reached threshold {self.threshold:g} "
                                 f"(best sentence relevance {best:.3g})")
        if self.always_keep_first:
            keep[0] = True
        if not keep.all():
            p = p.keep_units([u for u, flag in zip(units, keep, strict=True) if flag])
        return p

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        assert query is not None
        units_of, relevance, ranks = self.unit_relevance(query, passages)
        kept: list[tuple[float, int, Passage]] = []
        dropped: list[Dropped] = []
        for i, p in enumerate(passages):
            if p.is_blank:
                continue
            out = self._prune_one(p.with_score(self.name, float(ranks[i])), units_of[i], relevance[i])
            if isinstance(out, Dropped):
                dropped.append(out)
            else:
                kept.append((float(ranks[i]), i, out))
        by_score = sorted(kept, key=lambda t: (-t[0], t[1]))
        if self.top_n is not None:
            for rank, t in enumerate(by_score[self.top_n :], start=self.top_n):
                dropped.append(self._drop(t[2], f"rank {rank + 1} beyond top_n={self.top_n}"))
            by_score = by_score[: self.top_n]
        blanks = [(i, passages[i].with_score(self.name, None)) for i, p in enumerate(passages) if p.is_blank]
        if self.reorder:
            ordered = [t[2] for t in by_score] + [p for _, p in blanks]
        else:
            merged = [(t[1], t[2]) for t in by_score] + blanks
            ordered = [p for _, p in sorted(merged, key=lambda t: t[0])]
        if self.budget is not None:
            fitted = self.budget.fit(ordered, self.counter, stage=self.name)
            ordered = list(fitted.passages)
            dropped.extend(fitted.dropped)
        return StageOutput(tuple(ordered), tuple(dropped))


def _gather(n_calls: int, p_ids: list[list[np.ndarray]], p_offsets: list[list[np.ndarray]],
            windows: list[tuple[int, _Window]], results: list[tuple[np.ndarray, float]],
            ) -> list[tuple[list[np.ndarray], list[np.ndarray], np.ndarray]]:
    """Per call: token probabilities averaged over the windows holding each token, offsets, ranks."""
    sums = [[np.zeros(len(ids), dtype=np.float64) for ids in per] for per in p_ids]
    counts = [[np.zeros(len(ids), dtype=np.float64) for ids in per] for per in p_ids]
    ranks = [np.full(len(per), -np.inf) for per in p_ids]
    for (c, w), (probs, rank) in zip(windows, results, strict=True):
        sums[c][w.passage][w.start : w.end] += probs
        counts[c][w.passage][w.start : w.end] += 1.0
        ranks[c][w.passage] = max(ranks[c][w.passage], rank)
    return [([s / np.maximum(k, 1.0) for s, k in zip(sums[c], counts[c], strict=True)], p_offsets[c], ranks[c])
            for c in range(n_calls)]


def _sigmoid(x: float) -> float:
    return float(0.5 * (1.0 + np.tanh(0.5 * x)))  # no overflow for large |x|


def _view(p: Passage) -> ReadingView | None:
    """What the model reads of a structured passage (``None`` for prose: its text as it is)."""
    layout = p.layout()
    if layout.structure == "prose":
        return None
    assert p.original is not None
    return reading_view(p.original, layout, p.units("unit"), p.spans or ())


def _token_ranges(offsets: np.ndarray, n: int, records: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token ranges ``[lo, hi)`` of the records (whole text when there are none)."""
    if not records or n == 0:
        return [(0, n)]
    starts = offsets[:, 0]
    out = []
    for a, b in records:
        lo, hi = int(np.searchsorted(starts, a, "left")), int(np.searchsorted(starts, b, "left"))
        if hi > lo:
            out.append((lo, hi))
    return out or [(0, n)]


def _positions(config: Any) -> int | None:
    """Tokens the encoder can attend to (RoBERTa-style models reserve two positions)."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int):
        return None
    return n - 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else n


"""CrossEncoderReranker: score every passage against the query, sort, keep the best."""

from __future__ import annotations

import math
import os
from typing import Any, Unpack

import numpy as np

from ..passage import BaseStage, Dropped, Passage, StageOutput
from ..runtime.batching import PaddingStats
from ..runtime.device import resolve_device
from ..runtime.encoders import CrossEncoderModel
from ..runtime.loading import LoadKwargs, LoadOptions
from ..runtime.quantize import check_quantize, quantize_cross_encoder, require_cpu
from ..runtime.validation import check_int, check_number

__all__ = ["CrossEncoderReranker"]


class CrossEncoderReranker(BaseStage):
    """Reranks passages with a cross-encoder (query and passage read together).

    Every non-blank passage is scored against the query in one batched call
    (pairs sorted by length, in batches that pad at most a tenth of their
    tokens: :meth:`CrossEncoderModel.batches`; :meth:`padding_stats` counts
    the tokens fed); passages are sorted by score, best first (ties keep
    input order), then those under ``threshold`` and those ranked beyond
    ``top_n`` are dropped, each with its reason.  The new score is recorded
    with ``Passage.with_score``, so ``original_score`` and earlier scores stay.
    Blank passages are never sent to the model: they rank last with score
    ``None`` (and so fail any ``threshold``).

    Args:
        model: a :class:`~ragprune.runtime.encoders.CrossEncoderModel`, or anything it
            accepts (a local directory, a hub id, a loaded ``CrossEncoder`` or
            sequence-classification model).
        top_n: keep at most this many passages.
        threshold: minimum score kept (in the model's score scale: a
            probability with the default activation).
        batch_size, max_batch_tokens, max_length, activation, tokenizer, and the loading
            options (``options`` / ``device`` / ``dtype`` / ``local_files_only`` / ``revision``):
            passed to :class:`CrossEncoderModel` when ``model`` is not one already
            (``max_batch_tokens``: tokens per forward pass, padding included; default:
            2048 on CPU, more on GPUs; ``batch_size=None``: as many pairs as that allows).
        quantize: ``"int8"``: dynamic int8 quantization of the model's linear layers
            (:func:`~ragprune.runtime.quantize.quantize_int8`; weights int8 per output channel,
            activations quantized per batch), CPU only: ``ValueError`` for a model on
            another device, or loaded for one (``device="auto"`` on a machine with a GPU:
            pass ``device="cpu"``).  A model or :class:`CrossEncoderModel` passed in is
            left as it is: the stage runs a quantized copy.  Scores move a little (the
            ranking mostly stays); default ``None``: the model as loaded.
    """

    name = "cross-encoder"
    requires_query = True

    def __init__(
        self,
        model: Any,
        *,
        top_n: int | None = None,
        threshold: float | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_length: int | None = None,
        activation: str = "auto",
        tokenizer: Any = None,
        quantize: str | None = None,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        self.top_n = check_int("top_n", top_n, min=0, allow_none=True)
        self.threshold = check_number("threshold", threshold, allow_none=True)
        self.quantize = check_quantize(quantize)
        from_path = isinstance(model, (str, os.PathLike))
        if isinstance(model, CrossEncoderModel):
            self.model = model
        else:
            opts = LoadOptions.resolve(options, **load)
            if self.quantize is not None and from_path:
                require_cpu(resolve_device(opts.device), f"device={opts.device!r} selects")  # before loading anything
            self.model = CrossEncoderModel(model, tokenizer=tokenizer, max_length=max_length, batch_size=batch_size,
                                           max_batch_tokens=max_batch_tokens, activation=activation, options=opts)
        if self.quantize is not None:
            # a model this stage loaded itself is quantized in place; any other one is copied first
            self.model = quantize_cross_encoder(self.model, inplace=from_path)

    def __repr__(self) -> str:
        q = f", quantize={self.quantize!r}" if self.quantize else ""
        return f"CrossEncoderReranker({self.model!r}, top_n={self.top_n}, threshold={self.threshold}{q})"

    def padding_stats(self, *, reset: bool = False) -> PaddingStats:
        """Real and padded tokens fed to the model so far (then zeroed if ``reset``); a
        :class:`CrossEncoderModel` shared with other stages counts their calls too."""
        return self.model.padding_stats(reset=reset)

    def score(self, query: str, passages: list[Passage]) -> list[float | None]:
        """The model's score of each passage (``None`` for blank ones), in input order."""
        live = [i for i, p in enumerate(passages) if not p.is_blank]
        out: list[float | None] = [None] * len(passages)
        if live:
            raw = self.model.score_pairs(query, [passages[i].text for i in live])
            for i, s in zip(live, raw.tolist(), strict=True):
                out[i] = s
        return out

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        assert query is not None
        scores = self.score(query, passages)
        # Sort key: score descending, NaN and blank (None) last, ties by input position.
        keys = np.array([-s if s is not None and not math.isnan(s) else np.inf for s in scores], dtype=np.float64)
        order = np.argsort(keys, kind="stable").tolist()
        kept: list[Passage] = []
        dropped: list[Dropped] = []
        for rank, i in enumerate(order, start=1):
            s = scores[i]
            p = passages[i].with_score(self.name, s)
            if self.threshold is not None and (s is None or math.isnan(s) or s < self.threshold):
                why = "blank passage (unscored)" if s is None else f"score {s:.4g}"
                dropped.append(self._drop(p, f"{why} below threshold {self.threshold:g}"))
            elif self.top_n is not None and len(kept) >= self.top_n:
                dropped.append(self._drop(p, f"rank {rank} beyond top_n={self.top_n}"))
            else:
                kept.append(p)
        return StageOutput(tuple(kept), tuple(dropped))

"""Reusable model wrappers: a cross-encoder scorer and a bi-encoder embedder.

Both load once (a local directory, a hub id, or an already-loaded model
object), run batched and length-sorted under ``torch.inference_mode()``, and
are safe to call from several threads at once.  The inputs of a call are
sorted by length and cut into batches that pad at most a tenth of their
tokens, under a device-aware token cap (2048 on CPU, more on GPUs;
:class:`~ragprune.runtime.batching.PackedBatching`); results come back in
input order, and ``padding_stats()`` counts the real and padded tokens fed.
A local path never touches the network; a hub id is looked up in the local
cache first.

Public API (stable, used by several stages):

``CrossEncoderModel(model, *, tokenizer=None, device="auto", dtype="auto",
local_files_only=False, max_length=None, batch_size=32, activation="auto",
max_batch_tokens=None)``
    ``.score_pairs(queries_or_query, texts) -> np.ndarray`` (float32, one
    score per pair; a single query string is paired with every text).

``BiEncoderModel(model, *, device="auto", dtype="auto", local_files_only=False,
batch_size=64, normalize=True, tokenizer=None, max_length=None, max_batch_tokens=None)``
    ``.encode(texts) -> np.ndarray`` (float32, shape ``(n, dim)``).

Texts much longer than the model's window are cut (by characters, exactly
past the last token the model could see) before tokenization, so a
1,000,000-character passage costs about as much as one window.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from .batching import PackedBatching
from .device import resolve_device, resolve_dtype
from .loading import LoadKwargs, LoadOptions, ModelLoadError, _load, load_model, load_tokenizer, require_models
from .locks import TokenizerLock
from .validation import check_choice, check_int

require_models("ragprune.runtime.encoders")

__all__ = ["CrossEncoderModel", "BiEncoderModel", "as_bi_encoder"]

logger = logging.getLogger("ragprune")

_ACTIVATIONS = ("auto", "sigmoid", "softmax", "none")
# Above this many characters a text is checked and cut before tokenization.
_CHARS_PER_TOKEN_GUESS = 16
_MIN_CUT_CHARS = 2048


# --------------------------------------------------------------------------- helpers


def _check_texts(texts: object, argument: str) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{argument} must be a sequence of str, not a single {type(texts).__name__}")
    if not isinstance(texts, Sequence):
        raise TypeError(f"{argument} must be a sequence of str, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{argument}[{i}] must be str, got {type(t).__name__}")
    return out


def _position_limit(config: Any) -> int | None:
    """Usable positions of a transformer config (RoBERTa-style models reserve pad+1)."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or n <= 0:
        return None
    model_type = str(getattr(config, "model_type", ""))
    if "roberta" in model_type or model_type in ("camembert", "longformer", "mpnet", "ibert"):
        pad = getattr(config, "pad_token_id", None)
        n -= (pad if isinstance(pad, int) else 1) + 1
    return n


def _resolve_max_length(explicit: int | None, tokenizer: Any, config: Any, saved: int | None) -> int:
    """Explicit > saved (sentence-transformers config) > tokenizer > config positions; capped by positions."""
    limit = _position_limit(config)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if not isinstance(tok_max, int) or tok_max <= 0 or tok_max > 1_000_000:
        tok_max = None
    for candidate in (explicit, saved, tok_max, limit, 512):
        if candidate is not None:
            length = int(candidate)
            break
    if limit is not None and length > limit:
        if explicit is not None:
            logger.warning("max_length %d exceeds the model's %d positions; using %d", length, limit, limit)
        length = limit
    return length


def _clip_long_texts(tokenizer: Any, lock: threading.Lock, texts: list[str], max_tokens: int) -> list[str]:
    """Cut texts whose beginning already holds more than ``max_tokens`` tokens.

    The model truncates to ``max_tokens`` anyway; cutting first keeps
    tokenization of huge passages bounded.  The cut is checked with the
    tokenizer, and widened until the kept prefix holds more tokens than the
    model can see, so the model input is unchanged.
    """
    start = max(max_tokens * _CHARS_PER_TOKEN_GUESS, _MIN_CUT_CHARS)
    out = texts
    for i, text in enumerate(texts):
        if len(text) <= start:
            continue
        cut = start
        while cut < len(text):
            with lock:
                n = len(tokenizer(text[:cut], add_special_tokens=False, truncation=False, verbose=False)["input_ids"])
            if n > max_tokens:
                break
            cut *= 4
        if cut < len(text):
            if out is texts:
                out = list(texts)
            out[i] = text[:cut]
    return out


def _pad(rows: list[list[int]], pad_value: int, left: bool, width: int | None = None) -> np.ndarray:
    width = max(max(len(r) for r in rows), width or 0)
    arr = np.full((len(rows), width), pad_value, dtype=np.int64)
    for k, r in enumerate(rows):
        if left:
            arr[k, width - len(r):] = r
        else:
            arr[k, : len(r)] = r
    return arr


def _batch_tensors(features: dict[str, list[list[int]]], lengths: Sequence[int], batch: Sequence[int], *,
                   pad_id: int, left: bool, width: int, device: Any) -> dict[str, Any]:
    """The model inputs of items ``batch`` of tokenized ``features``, padded to ``width`` (or their longest)
    on ``device``; the attention mask comes from ``lengths``."""
    import torch

    inputs = {}
    for n, rows in features.items():
        if n != "attention_mask":
            pad = pad_id if n == "input_ids" else 0
            inputs[n] = torch.from_numpy(_pad([rows[i] for i in batch], pad, left, width)).to(device)
    mask = _pad([[1] * lengths[i] for i in batch], 0, left, width)
    inputs["attention_mask"] = torch.from_numpy(mask).to(device)
    return inputs


def _dummy_inputs(names: Sequence[str], rows: int, width: int, *, pad_id: int, left: bool,
                  device: Any) -> dict[str, Any]:
    """Inputs of shape ``[rows, width]`` (pad ids, every position attended): a warm-up batch."""
    features = {n: [[pad_id if n == "input_ids" else 0] * width] * rows for n in names}
    return _batch_tensors(features, [width] * rows, range(rows), pad_id=pad_id, left=left, width=width,
                          device=device)


def _model_device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return resolve_device("cpu")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _local_or_cached_file(name: str, filename: str) -> Path | None:
    """A file of a local model directory, or of a hub id's local cache (never the network)."""
    path = Path(name).expanduser()
    if path.is_dir():
        f = path / filename
        return f if f.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        found = try_to_load_from_cache(name, filename)
    except Exception:  # invalid repo id and the like: nothing cached
        return None
    return Path(found) if isinstance(found, str) else None


# --------------------------------------------------------------------------- cross-encoder


def _activation_from_path(path: str | None) -> str | None:
    if not path:
        return None
    last = path.rsplit(".", 1)[-1].lower()
    if last == "sigmoid":
        return "sigmoid"
    if last == "identity":
        return "none"
    if last == "softmax":
        return "softmax"
    logger.warning("unknown saved activation %r; using the default for the number of labels", path)
    return None


class CrossEncoderModel(PackedBatching, TokenizerLock):
    """Scores (query, text) pairs with a sequence-classification model.

    Args:
        model: a local directory or hub id of a sentence-transformers
            ``CrossEncoder`` checkpoint or any ``AutoModelForSequenceClassification``;
            or an already-loaded ``CrossEncoder`` or ``PreTrainedModel`` (used as
            is, on its own device).
        tokenizer: a tokenizer object or path; default: the model's own.
        options, device, dtype, local_files_only, revision: how a path or hub id is
            loaded (:class:`~ragprune.runtime.loading.LoadOptions` and its shorthands).
        max_length: tokens per pair; default: the checkpoint's own limit.  The
            query is kept and the text truncated (a query longer than half the
            window is truncated too).
        batch_size: pairs per forward pass (at most); ``None`` (default): as many as
            ``max_batch_tokens`` allows.
        activation: ``"auto"`` (one logit: the checkpoint's saved
            sentence-transformers activation, else sigmoid; two labels:
            softmax), ``"sigmoid"``,
            ``"softmax"`` (probability of label 1) or ``"none"`` (the raw
            logit; for two labels ``logit1 - logit0``).
        max_batch_tokens: tokens per forward pass, padding included (a longer pair
            gets a pass of its own); default: 2048 on CPU, where bigger batches
            gain nothing, on a GPU more with more memory
            (:func:`~ragprune.runtime.batching.default_batch_tokens`).
        shape_buckets: batches in a bounded set of shapes (see
            :class:`~ragprune.runtime.batching.ShapeBuckets` and :meth:`warmup`);
            ``None`` (default): on GPUs, not on CPU.

    The pairs of a call are sorted by length and cut into batches that pad at
    most a tenth of their tokens, in as few batches as the bounds allow
    (:meth:`batches`); :meth:`padding_stats` counts the tokens fed.  Scores do
    not depend on the batching (up to float rounding).
    """

    def __init__(
        self,
        model: Any,
        *,
        tokenizer: Any = None,
        max_length: int | None = None,
        batch_size: int | None = None,
        activation: str = "auto",
        max_batch_tokens: int | None = None,
        shape_buckets: bool | None = None,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        batch_size = check_int("batch_size", batch_size, min=1, allow_none=True)
        max_length = check_int("max_length", max_length, min=1, allow_none=True)
        max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1, allow_none=True)
        check_choice("activation", activation, _ACTIVATIONS)
        opts = LoadOptions.resolve(options, **load)
        self._lock = threading.Lock()
        self.model, tokenizer, self.name, saved_activation, saved_max_length = self._load(model, tokenizer, opts)
        self.tokenizer = tokenizer
        self.model.eval()
        self.device = _model_device(self.model)
        self._init_packing(batch_size, max_batch_tokens, self.device, shape_buckets)
        config = self.model.config
        self.num_labels = int(getattr(config, "num_labels", 1))
        if self.num_labels not in (1, 2):
            raise ValueError(
                f"a cross-encoder needs one logit or two labels; {self.name!r} has {self.num_labels} labels"
            )
        self.activation = self._activation(activation, saved_activation)
        self.max_length = _resolve_max_length(max_length, tokenizer, config, saved_max_length)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._left_pad = getattr(tokenizer, "padding_side", "right") == "left"
        accepted = set(inspect.signature(self.model.forward).parameters)
        self._input_names = [n for n in getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])
                             if n in accepted or n == "input_ids"]
        logger.debug("cross-encoder %s: %d label(s), activation=%s, max_length=%d, device=%s",
                     self.name, self.num_labels, self.activation, self.max_length, self.device)

    def _activation(self, activation: str, saved: str | None) -> str:
        if activation == "auto":
            # Two labels: the probability of label 1 (a saved Identity is only
            # sentence-transformers' default for several labels).
            return (saved or "sigmoid") if self.num_labels == 1 else "softmax"
        if activation == "softmax" and self.num_labels == 1:
            return "sigmoid"  # softmax of a single logit is constant; sigmoid is what is meant
        return activation

    @classmethod
    def _load(cls, model: Any, tokenizer: Any, opts: LoadOptions) -> tuple[Any, Any, str, str | None, int | None]:
        """The transformers model, the tokenizer, a name, and any saved activation / max length."""
        saved_activation: str | None = None
        saved_max_length: int | None = None
        if isinstance(model, (str, os.PathLike)):
            name = str(model)
            model_dir, saved_activation, saved_max_length = cls._inspect_checkpoint(name)
            from transformers import AutoModelForSequenceClassification

            loaded = load_model(AutoModelForSequenceClassification, model_dir, **opts.as_kwargs())
            if tokenizer is None:
                tokenizer = model_dir
        elif hasattr(model, "transformers_model") or (hasattr(model, "predict") and hasattr(model, "tokenizer")):
            # A loaded sentence-transformers CrossEncoder.
            inner = getattr(model, "transformers_model", None) or model.model
            if inner is None:
                raise TypeError("this CrossEncoder has no transformers model to run")
            loaded = inner
            tokenizer = model.tokenizer if tokenizer is None else tokenizer
            fn = getattr(model, "activation_fn", None)
            if fn is not None:
                saved_activation = _activation_from_path(f"{type(fn).__module__}.{type(fn).__name__}")
            saved_max_length = getattr(model, "max_length", None)
            name = str(getattr(inner, "name_or_path", "") or type(model).__name__)
        elif hasattr(model, "config") and callable(model):
            loaded = model
            if tokenizer is None:
                tokenizer = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
                if not tokenizer:
                    raise ValueError("pass tokenizer= with an already-loaded model that has no name_or_path")
            name = str(getattr(model, "name_or_path", "") or type(model).__name__)
        else:
            raise TypeError(f"model must be a path, a hub id or a loaded model, got {type(model).__name__}")
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(str(tokenizer), local_files_only=opts.local_files_only,
                                       revision=opts.revision)
        return loaded, tokenizer, name, saved_activation, saved_max_length

    @staticmethod
    def _inspect_checkpoint(name: str) -> tuple[str, str | None, int | None]:
        """The directory holding the weights, and any saved activation / max length."""
        model_dir = name
        activation: str | None = None
        max_length: int | None = None
        modules_file = _local_or_cached_file(name, "modules.json")
        if modules_file is not None:
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
            if len(modules) != 1 or "Transformer" not in str(modules[0].get("type", "")):
                raise ModelLoadError(
                    f"cannot load cross-encoder {name!r}: only single-Transformer sentence-transformers "
                    f"cross-encoders are supported, found modules {[m.get('type') for m in modules]}"
                )
            sub = modules[0].get("path", "")
            if sub and Path(name).expanduser().is_dir():
                model_dir = str(Path(name).expanduser() / sub)
            bert_cfg = _local_or_cached_file(model_dir if sub else name, "sentence_bert_config.json")
            if bert_cfg is not None:
                value = (_read_json(bert_cfg) or {}).get("max_seq_length")
                max_length = value if isinstance(value, int) and value > 0 else None
        st_cfg = _local_or_cached_file(name, "config_sentence_transformers.json")
        if st_cfg is not None:
            activation = _activation_from_path((_read_json(st_cfg) or {}).get("activation_fn"))
        if activation is None:
            cfg_file = _local_or_cached_file(model_dir if Path(model_dir).is_dir() else name, "config.json")
            cfg = (_read_json(cfg_file) or {}) if cfg_file is not None else {}
            st_part = cfg.get("sentence_transformers")
            path = st_part.get("activation_fn") if isinstance(st_part, dict) else None
            activation = _activation_from_path(path or cfg.get("sbert_ce_default_activation_function"))
        return model_dir, activation, max_length

    def __repr__(self) -> str:
        return (f"CrossEncoderModel({self.name!r}, labels={self.num_labels}, activation={self.activation!r}, "
                f"max_length={self.max_length}, device={str(self.device)!r})")

    def _scores_from_logits(self, logits: Any) -> Any:
        import torch

        logits = logits.float()
        if self.num_labels == 1:
            x = logits[:, 0]
            return x if self.activation == "none" else torch.sigmoid(x)
        diff = logits[:, 1] - logits[:, 0]
        return diff if self.activation == "none" else torch.sigmoid(diff)  # sigmoid(l1 - l0) == softmax[1]

    def score_pairs(self, queries_or_query: str | Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """One relevance score per (query, text) pair, in input order (float32).

        ``queries_or_query`` is one query for all texts, or one query per text.
        Identical pairs are scored once, all in length-packed batches (:meth:`batches`).
        """
        texts = _check_texts(texts, "texts")
        if isinstance(queries_or_query, str):
            queries = [queries_or_query] * len(texts)
        else:
            queries = _check_texts(queries_or_query, "queries_or_query")
            if len(queries) != len(texts):
                raise ValueError(f"got {len(queries)} queries for {len(texts)} texts")
        if not texts:
            return np.zeros(0, dtype=np.float32)
        unique: dict[tuple[str, str], int] = {}
        where = np.fromiter((unique.setdefault(pair, len(unique)) for pair in zip(queries, texts, strict=True)),
                            dtype=np.int64, count=len(texts))
        uq = [q for q, _ in unique]
        ut = _clip_long_texts(self.tokenizer, self._lock, [t for _, t in unique], self.max_length)
        uq = _clip_long_texts(self.tokenizer, self._lock, uq, self.max_length)
        with self._lock:
            enc = self.tokenizer(uq, ut, truncation="longest_first", max_length=self.max_length, padding=False)
        features = {n: enc[n] for n in self._input_names if n in enc}
        ids = features["input_ids"]
        lengths = [len(r) for r in ids]
        scores = np.empty(len(ids), dtype=np.float32)
        import torch

        with torch.inference_mode():
            for batch in self._counted_batches(lengths):
                logits = self.model(**self._inputs(features, lengths, batch)).logits
                scores[batch] = self._scores_from_logits(logits).cpu().numpy()
        return scores[where]

    def _inputs(self, features: dict[str, list[list[int]]], lengths: Sequence[int],
                batch: Sequence[int]) -> dict[str, Any]:
        width = self.pad_width(max(lengths[i] for i in batch))
        return _batch_tensors(features, lengths, batch, pad_id=self._pad_id, left=self._left_pad, width=width,
                              device=self.device)

    def _warm(self, rows: int, width: int) -> None:
        import torch

        inputs = _dummy_inputs(self._input_names, rows, width, pad_id=self._pad_id, left=self._left_pad,
                               device=self.device)
        with torch.inference_mode():
            self.model(**inputs)


# --------------------------------------------------------------------------- bi-encoder


def _load_sentence_transformer(name: str, *, device: Any, dtype: Any, local_files_only: bool) -> Any:
    from sentence_transformers import SentenceTransformer

    # The shared loader's policy: a local directory never touches the network; a hub id
    # is read from the cache first, and reaching the hub is refused when offline.
    return _load(SentenceTransformer, name, "sentence-transformers model", local_files_only=local_files_only,
                 revision=None, device=str(device), trust_remote_code=False,
                 model_kwargs={"dtype": dtype, "use_safetensors": True})


class BiEncoderModel(PackedBatching, TokenizerLock):
    """Embeds texts with a sentence-transformers model or a plain encoder (mean pooling).

    Args:
        model: a local directory or hub id (a sentence-transformers checkpoint,
            recognised by its ``modules.json``, else a plain Hugging Face encoder
            whose token states are mean-pooled); or an already-loaded
            ``SentenceTransformer`` or ``PreTrainedModel`` (used as is).
        options, device, dtype, local_files_only, revision: how a path or hub id is
            loaded (:class:`~ragprune.runtime.loading.LoadOptions` and its shorthands).
        batch_size: texts per forward pass (at most).
        normalize: L2-normalize embeddings (dot product = cosine).
        tokenizer: tokenizer for a plain encoder passed as an object.
        max_length: tokens per text; default: the model's own limit.
        max_batch_tokens: tokens per forward pass, padding included (a longer
            text gets a pass of its own); default: 2048 on CPU, more on GPUs
            (:func:`~ragprune.runtime.batching.default_batch_tokens`).

    The texts of a call are sorted by length and cut into batches that pad at
    most a tenth of their tokens (:meth:`batches`; a sentence-transformers
    model runs each batch through its own ``encode``); :meth:`padding_stats`
    counts the tokens fed.  Embeddings do not depend on the batching (up to
    float rounding).
    """

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int = 64,
        normalize: bool = True,
        tokenizer: Any = None,
        max_length: int | None = None,
        max_batch_tokens: int | None = None,
        options: LoadOptions | None = None,
        **load: Unpack[LoadKwargs],
    ) -> None:
        batch_size = check_int("batch_size", batch_size, min=1)
        max_length = check_int("max_length", max_length, min=1, allow_none=True)
        max_batch_tokens = check_int("max_batch_tokens", max_batch_tokens, min=1, allow_none=True)
        self.normalize = bool(normalize)
        opts = LoadOptions.resolve(options, **load)
        self._lock = threading.Lock()
        self._st: Any = None
        self.model: Any = None
        if isinstance(model, (str, os.PathLike)):
            self.name = str(model)
            tokenizer = self._load_path(self.name, tokenizer, max_length, opts)
        elif hasattr(model, "encode") and hasattr(model, "tokenizer"):
            self._st = model
            self.name = type(model).__name__
            if max_length is not None and max_length != model.max_seq_length:
                logger.warning("max_length=%d ignored: a loaded SentenceTransformer keeps its max_seq_length=%s",
                               max_length, model.max_seq_length)
                max_length = None
        elif hasattr(model, "config") and callable(model):
            self.model = model
            self.name = str(getattr(model, "name_or_path", "") or type(model).__name__)
            if tokenizer is None:
                tokenizer = getattr(model, "name_or_path", None)
                if not tokenizer:
                    raise ValueError("pass tokenizer= with an already-loaded model that has no name_or_path")
            if isinstance(tokenizer, (str, os.PathLike)):
                tokenizer = load_tokenizer(str(tokenizer), local_files_only=opts.local_files_only)
        else:
            raise TypeError(f"model must be a path, a hub id or a loaded model, got {type(model).__name__}")
        self._finish(tokenizer, max_length)
        # sentence-transformers pads each batch itself, to its longest text: no shape buckets there
        self._init_packing(batch_size, max_batch_tokens, self.device, False if self._st is not None else None)

    def _load_path(self, name: str, tokenizer: Any, max_length: int | None, opts: LoadOptions) -> Any:
        """Load a sentence-transformers checkpoint (into ``_st``) or a plain encoder (into ``model``)."""
        if _local_or_cached_file(name, "modules.json") is not None:
            kind = "sentence-transformers"
        elif Path(name).expanduser().is_dir() or _local_or_cached_file(name, "config.json") is not None:
            kind = "plain"
        else:  # a hub id not cached yet: sentence-transformers loads either kind of repository
            kind = "sentence-transformers"
        if kind == "sentence-transformers":
            dev = resolve_device(opts.device)
            self._st = _load_sentence_transformer(name, device=dev, dtype=resolve_dtype(opts.dtype, dev),
                                                  local_files_only=opts.local_files_only)
            if max_length is not None:
                self._st.max_seq_length = max_length
            return tokenizer
        from transformers import AutoModel

        self.model = load_model(AutoModel, name, **opts.as_kwargs())
        return load_tokenizer(tokenizer or name, local_files_only=opts.local_files_only, revision=opts.revision)

    def _finish(self, tokenizer: Any, max_length: int | None) -> None:
        if self._st is not None:
            self._st.eval()
            self.tokenizer = self._st.tokenizer
            self.max_length = int(self._st.max_seq_length or 512)
            self.device = self._st.device
        else:
            self.model.eval()
            self.tokenizer = tokenizer
            self.max_length = _resolve_max_length(max_length, tokenizer, self.model.config, None)
            self.device = _model_device(self.model)
            self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            self._left_pad = getattr(tokenizer, "padding_side", "right") == "left"
            accepted = set(inspect.signature(self.model.forward).parameters)
            self._input_names = [n for n in getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])
                                 if n in accepted or n == "input_ids"]

    def __repr__(self) -> str:
        kind = "sentence-transformers" if self._st is not None else "mean-pooled"
        return f"BiEncoderModel({self.name!r}, {kind}, max_length={self.max_length}, device={str(self.device)!r})"

    @property
    def dimension(self) -> int | None:
        """The embedding width, when the model declares it."""
        if self._st is not None:
            getter = getattr(self._st, "get_embedding_dimension", None) or getattr(
                self._st, "get_sentence_embedding_dimension", None)
            return int(getter()) if getter is not None and getter() is not None else None
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], *, normalize: bool | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (float32, ``(n, dim)``), in input order.  Identical texts are embedded once.

        ``normalize``: L2-normalize these embeddings (default: the model's ``normalize``).
        """
        texts = _check_texts(texts, "texts")
        if not texts:
            dim = self.dimension
            return np.zeros((0, dim or 0), dtype=np.float32)
        unique: dict[str, int] = {}
        where = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=len(texts))
        utexts = _clip_long_texts(self.tokenizer, self._lock, list(unique), self.max_length)
        if self._st is not None:
            emb = self._encode_sentence_transformer(utexts)
        else:
            emb = self._encode_mean_pooled(utexts)
        if self.normalize if normalize is None else normalize:
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.maximum(norms, np.float32(1e-12))
        return np.ascontiguousarray(emb[where], dtype=np.float32)

    def _encode_sentence_transformer(self, texts: list[str]) -> np.ndarray:
        """Embeddings from the sentence-transformers model, one ``encode`` call per packed batch."""
        import torch

        # The lock guards the model's (non re-entrant) fast tokenizer, which
        # sentence-transformers calls too.
        with self._lock, torch.inference_mode():
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, verbose=False)
            lengths = [len(r) for r in enc["input_ids"]]
            if self._legacy_batching:  # sentence-transformers' own batching: by characters, batch_size each
                order = np.argsort([-len(t) for t in texts]).tolist()
                size = self.batch_size if self.batch_size is not None else self._legacy_batch_size
                self._padding.add(lengths, [order[i : i + size] for i in range(0, len(order), size)])
                emb = self._st.encode(texts, batch_size=size, convert_to_tensor=True,
                                      show_progress_bar=False, normalize_embeddings=False)
                return np.asarray(emb.float().cpu().numpy())  # fp16/bf16 on GPU: numpy has no bfloat16
            out: np.ndarray | None = None
            for batch in self._counted_batches(lengths):
                emb = self._st.encode([texts[i] for i in batch], batch_size=len(batch), convert_to_tensor=True,
                                      show_progress_bar=False, normalize_embeddings=False)
                arr = emb.float().cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), arr.shape[1]), dtype=np.float32)
                out[batch] = arr
        assert out is not None
        return out

    def _warm(self, rows: int, width: int) -> None:
        import torch

        inputs = _dummy_inputs(self._input_names, rows, width, pad_id=self._pad_id, left=self._left_pad,
                               device=self.device)
        with torch.inference_mode():
            self.model(**inputs)

    def _encode_mean_pooled(self, texts: list[str]) -> np.ndarray:
        import torch

        with self._lock:
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)
        features = {n: enc[n] for n in self._input_names if n in enc}
        lengths = [len(r) for r in features["input_ids"]]
        out: np.ndarray | None = None
        with torch.inference_mode():
            for batch in self._counted_batches(lengths):
                inputs = _batch_tensors(features, lengths, batch, pad_id=self._pad_id, left=self._left_pad,
                                        width=self.pad_width(max(lengths[i] for i in batch)), device=self.device)
                mask = inputs["attention_mask"]
                hidden = self.model(**inputs).last_hidden_state.float()
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                arr = pooled.cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), arr.shape[1]), dtype=np.float32)
                out[batch] = arr
        assert out is not None
        return out


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities between rows of ``a`` and rows of ``b`` (float32)."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.asarray(an @ bn.T, dtype=np.float32)


def as_bi_encoder(model: Any, **kwargs: Any) -> BiEncoderModel:
    """``model`` itself when it is a loaded :class:`BiEncoderModel`, else one loaded with ``kwargs``."""
    return model if isinstance(model, BiEncoderModel) else BiEncoderModel(model, **kwargs)

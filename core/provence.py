"""Provence-style query-aware sentence pruning, with reranking in the same pass.

One forward pass of an encoder over ``[CLS] query [SEP] passage [SEP]`` (the
tokenizer's own pair template) gives two things:

* a per-token relevance: a token-classification head with two labels
  (0 = drop, 1 = keep); the relevance of a token is the softmax probability of
  label 1;
* a passage relevance: a ranking head giving one logit per pair.

Token relevance is averaged over the passage tokens of each sentence, and the
sentences whose mean reaches ``threshold`` are kept, so how much is kept adapts
to the content.  A passage with no sentence kept is dropped (and reported); the
passages are reranked by the ranking logit in the same call.

Model format ("ragprune pruner", format version 1)
--------------------------------------------------
A directory, loadable with no remote code::

    config.json            a standard transformers config of the backbone
    tokenizer files        any fast tokenizer (tokenizer.json, vocab, ...)
    model.safetensors      the backbone's own state dict, keys unprefixed
                           (exactly as the backbone class saves them), plus
                             token_head.weight  [2, hidden]  token_head.bias  [2]
                             rank_head.weight   [1, hidden]  rank_head.bias   [1]
                           (the rank_head tensors only for ranking "cls-linear")
    ragprune_pruner.json   {"format": "ragprune-pruner", "format_version": 1,
                            "ranking": "cls-linear" | "sequence-classifier",
                            "token_labels": {"0": "drop", "1": "keep"},
                            "max_length": 512, "threshold": 0.1}

``ranking`` says where the passage logit comes from:

* ``"cls-linear"``: the backbone is an ``AutoModel`` encoder; ``rank_head`` is
  a linear layer on the last hidden state of the first token ([CLS]/<s>).
  The directory also loads as a plain encoder with ``AutoModel``.
* ``"sequence-classifier"``: the backbone is an
  ``AutoModelForSequenceClassification`` with one label, whose logit is the
  ranking score (its own pooler/classifier layers); the token head reads the
  last entry of its hidden states.  The directory also loads as a plain
  cross-encoder.

In both cases ``token_head`` is applied to the last hidden states.

Released Provence-style checkpoints are read without remote code by mapping
their state-dict keys into :class:`PrunerModel` (ranking "sequence-classifier"):

* naver Provence (``naver/provence-reranker-debertav3-v1``): a DeBERTa-v3
  sequence classifier (``deberta.*``, ``pooler.dense.*``, ``classifier.*`` with
  one label) plus ``token_classifier.{weight,bias}`` ([2, hidden]) on the last
  hidden states; ``token_classifier`` becomes ``token_head``.
* OpenProvence (``hotchpotch/open-provence-*``): ``config.json`` of model type
  ``open_provence`` with the backbone config under ``base_model_config``;
  ``ranking_model.*`` is a one-label sequence classifier and
  ``pruning_head.classifier.{weight,bias}`` the token head (keys without the
  ``ranking_model.`` prefix are read too).  Its ``default_threadshold`` and
  ``max_length`` become the pruner's defaults.

Only ``model.safetensors`` weights are read.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ._batching import run_sorted
from ._budget import Budget
from ._compute import ModelLoadError, _load, load_tokenizer, resolve_device, resolve_dtype
from ._passage import BaseStage, Dropped, Passage, StageOutput
from ._tokens import TokenCounter, get_counter

__all__ = [
    "FORMAT_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PrunerSpec",
    "PrunerOutput",
    "PrunerModel",
    "PairTemplate",
    "ProvencePruner",
]

logger = logging.getLogger("ragprune")

FORMAT_FILE = "ragprune_pruner.json"
FORMAT_NAME = "ragprune-pruner"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
RANKINGS = ("cls-linear", "sequence-classifier")
DEFAULT_THRESHOLD = 0.1
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.spm", "tokenizer*", "*.tiktoken"]


@dataclass(frozen=True, slots=True)
class PrunerSpec:
    """The contents of ``ragprune_pruner.json``."""

    ranking: str = "cls-linear"
    max_length: int = 512
    threshold: float = DEFAULT_THRESHOLD
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS}, got {self.ranking!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 8:
            raise ValueError(f"max_length must be an int >= 8, got {self.max_length!r}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "ranking": self.ranking,
            "token_labels": {"0": "drop", "1": "keep"},
            "max_length": self.max_length,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrunerSpec:
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"{FORMAT_FILE} has format {data.get('format')!r}, expected {FORMAT_NAME!r}")
        version = int(data.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise ValueError(f"{FORMAT_FILE} has format_version {version}; this ragprune reads up to {FORMAT_VERSION}")
        labels = data.get("token_labels", {"0": "drop", "1": "keep"})
        if str(labels.get("1", labels.get(1))) != "keep":
            raise ValueError(f"{FORMAT_FILE}: token label 1 must mean 'keep', got {labels!r}")
        return cls(ranking=str(data.get("ranking", "cls-linear")), max_length=int(data.get("max_length", 512)),
                   threshold=float(data.get("threshold", DEFAULT_THRESHOLD)), format_version=version)


class PrunerOutput(NamedTuple):
    """``token_logits``: ``[batch, seq, 2]``; ``rank_logits``: ``[batch]``."""

    token_logits: torch.Tensor
    rank_logits: torch.Tensor


def _skip_init_linear(n_in: int, n_out: int) -> nn.Linear:
    # No draw from the global random generator: weights are set right after.
    return nn.utils.skip_init(nn.Linear, n_in, n_out)


class PrunerModel(nn.Module):
    """An encoder with a token-relevance head and a passage-ranking head.

    Build one with :meth:`from_pretrained` (a pruner directory, or a Provence /
    OpenProvence checkpoint) or :meth:`from_encoder` (fresh heads on any
    encoder, for training).  See the module docstring for the saved format.
    """

    def __init__(self, backbone: nn.Module, spec: PrunerSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or PrunerSpec()
        self.backbone: Any = backbone
        config: Any = backbone.config
        hidden = int(config.hidden_size)
        self.token_head = _skip_init_linear(hidden, 2)
        self.rank_head = _skip_init_linear(hidden, 1) if self.spec.ranking == "cls-linear" else None
        params = inspect.signature(backbone.forward).parameters
        self._takes_token_types = "token_type_ids" in params
        self._with_hidden_states = self.spec.ranking == "sequence-classifier"

    @property
    def config(self) -> Any:
        return self.backbone.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def init_heads(self, generator: torch.Generator | None = None) -> None:
        """Initialise the heads (normal, std = the config's initializer_range; zero bias)."""
        std = float(getattr(self.config, "initializer_range", 0.02) or 0.02)
        with torch.no_grad():
            for head in (self.token_head, self.rank_head):
                if head is None:
                    continue
                w = torch.empty(head.weight.shape, dtype=torch.float32)
                w.normal_(0.0, std, generator=generator)
                head.weight.copy_(w.to(head.weight.dtype))
                head.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> PrunerOutput:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._takes_token_types:
            kwargs["token_type_ids"] = token_type_ids
        if self._with_hidden_states:
            out = self.backbone(**kwargs, output_hidden_states=True, return_dict=True)
            hidden = out.hidden_states[-1]
            rank = out.logits[:, 0]
        else:
            out = self.backbone(**kwargs, return_dict=True)
            hidden = out.last_hidden_state
            assert self.rank_head is not None
            rank = self.rank_head(hidden[:, 0]).squeeze(-1)
        hidden = hidden.to(self.token_head.weight.dtype)
        return PrunerOutput(self.token_head(hidden), rank)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, path: str | os.PathLike[str], *, tokenizer: Any = None) -> Path:
        """Write the pruner directory (config, weights, spec; the tokenizer when given)."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.config.save_pretrained(str(out))
        tensors: dict[str, torch.Tensor] = {}
        for key, value in self.backbone.state_dict().items():
            tensors[key] = value.detach().to("cpu").clone().contiguous()
        for prefix, head in (("token_head", self.token_head), ("rank_head", self.rank_head)):
            if head is not None:
                for key, value in head.state_dict().items():
                    tensors[f"{prefix}.{key}"] = value.detach().to("cpu").clone().contiguous()
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt", "ragprune": FORMAT_NAME})
        (out / FORMAT_FILE).write_text(json.dumps(self.spec.to_dict(), indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(out))
        return out

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], *, device: Any = "auto", dtype: Any = "auto",
                        local_files_only: bool = False, revision: str | None = None) -> PrunerModel:
        """Load a pruner directory, or a naver Provence / OpenProvence checkpoint.

        ``name_or_path`` is a local directory or a hub id (looked up in the local
        cache first; ``local_files_only=True`` never touches the network).
        """
        directory = resolve_model_dir(name_or_path, local_files_only=local_files_only, revision=revision)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        try:
            model = _load_directory(cls, directory, dt)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            if isinstance(e, ModelLoadError):
                raise
            raise ModelLoadError(f"cannot load a pruner model from {str(name_or_path)!r}: {e}") from e
        model.to(dev)
        model.eval()
        logger.debug("loaded pruner %s (%s) on %s (%s)", name_or_path, model.spec.ranking, dev, dt)
        return model

    @classmethod
    def from_encoder(cls, name_or_path: str | os.PathLike[str], *, ranking: str = "cls-linear",
                     max_length: int = 512, threshold: float = DEFAULT_THRESHOLD,
                     generator: torch.Generator | None = None, device: Any = "auto", dtype: Any = "auto",
                     local_files_only: bool = False) -> PrunerModel:
        """Fresh heads (drawn from ``generator``) on a pretrained encoder, for training."""
        from transformers import AutoModel, AutoModelForSequenceClassification

        from ._compute import load_model

        spec = PrunerSpec(ranking=ranking, max_length=max_length, threshold=threshold)
        if ranking == "cls-linear":
            backbone = load_model(AutoModel, name_or_path, device="cpu", dtype="float32",
                                  local_files_only=local_files_only)
        else:
            backbone = load_model(AutoModelForSequenceClassification, name_or_path, device="cpu",
                                  dtype="float32", local_files_only=local_files_only, num_labels=1)
        model = cls(backbone, spec)
        model.init_heads(generator)
        dev = resolve_device(device)
        model.to(device=dev, dtype=resolve_dtype(dtype, dev))
        return model


def resolve_model_dir(name_or_path: str | os.PathLike[str], *, local_files_only: bool = False,
                      revision: str | None = None) -> Path:
    """A local directory for ``name_or_path`` (a hub id is looked up in the cache first)."""

    def loader(name: str, *, local_files_only: bool, revision: str | None = None) -> Path:
        if Path(name).is_dir():
            return Path(name)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, revision=revision, local_files_only=local_files_only,
                                      allow_patterns=_HUB_PATTERNS))

    return _load(loader, name_or_path, "pruner model", local_files_only=local_files_only,  # type: ignore[no-any-return]
                 revision=revision)


def _config_from_dict(data: dict[str, Any], **overrides: Any) -> Any:
    from transformers import AutoConfig

    data = {k: v for k, v in data.items() if k not in ("auto_map", "architectures", "_name_or_path")}
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ValueError("the backbone config has no model_type")
    data.update(overrides)
    return AutoConfig.for_model(model_type, **data)


def _backbone_class(config: Any, ranking: str) -> Any:
    from transformers.models.auto import modeling_auto

    mapping = (modeling_auto.MODEL_MAPPING if ranking == "cls-linear"
               else modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING)
    try:
        return mapping[type(config)]
    except KeyError:
        raise ValueError(f"transformers has no {'encoder' if ranking == 'cls-linear' else 'sequence classifier'} "
                         f"class for model type {config.model_type!r}") from None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _load_directory(cls: type[PrunerModel], directory: Path, dt: torch.dtype) -> PrunerModel:
    from safetensors.torch import load_file

    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"no {WEIGHTS_FILE} in {str(directory)!r} (only safetensors weights are read)")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"no config.json in {str(directory)!r}")
    raw_config = _read_json(config_path)
    state = load_file(str(weights))

    heads: dict[str, torch.Tensor] = {}
    if (directory / FORMAT_FILE).is_file():
        spec = PrunerSpec.from_dict(_read_json(directory / FORMAT_FILE))
        config = _config_from_dict(raw_config)
        backbone_state = {}
        for key, value in state.items():
            if key.startswith(("token_head.", "rank_head.")):
                heads[key] = value
            else:
                backbone_state[key] = value
    elif raw_config.get("model_type") == "open_provence":
        base = raw_config.get("base_model_config")
        if not isinstance(base, dict):
            raise ModelLoadError(f"OpenProvence config in {str(directory)!r} has no base_model_config")
        threshold = raw_config.get("default_threadshold", raw_config.get("default_threshold"))
        spec = PrunerSpec(ranking="sequence-classifier", max_length=int(raw_config.get("max_length") or 512),
                          threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold))
        config = _config_from_dict(base, num_labels=1)
        prefixed = any(k.startswith("ranking_model.") for k in state)
        backbone_state = {}
        for key, value in state.items():
            if key.startswith("pruning_head.classifier."):
                heads["token_head." + key[len("pruning_head.classifier."):]] = value
            elif key.startswith("pruning_head."):
                raise ModelLoadError(f"unsupported OpenProvence pruning head tensor {key!r} (weighted pooling)")
            elif prefixed and key.startswith("ranking_model."):
                backbone_state[key[len("ranking_model."):]] = value
            elif not prefixed:
                backbone_state[key] = value
    elif "token_classifier.weight" in state:
        spec = PrunerSpec(ranking="sequence-classifier", max_length=512, threshold=DEFAULT_THRESHOLD)
        n_labels = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 1
        if n_labels != 1:
            raise ModelLoadError(f"Provence checkpoint {str(directory)!r} has {n_labels} ranking labels, expected 1")
        config = _config_from_dict(raw_config, num_labels=1)
        backbone_state = {}
        for key, value in state.items():
            if key.startswith("token_classifier."):
                heads["token_head." + key[len("token_classifier."):]] = value
            else:
                backbone_state[key] = value
    else:
        raise ModelLoadError(
            f"{str(directory)!r} is not a pruner model: no {FORMAT_FILE}, not an OpenProvence config, "
            "and no Provence token_classifier weights"
        )

    backbone_cls = _backbone_class(config, spec.ranking)
    backbone, info = backbone_cls.from_pretrained(None, config=config, state_dict=backbone_state, dtype=dt,
                                                  output_loading_info=True)
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("position_ids"))
    if missing:
        raise ModelLoadError(f"{str(directory)!r}: backbone weights missing from {WEIGHTS_FILE}: {missing[:8]}")
    model = cls(backbone, spec)
    needed = ["token_head.weight", "token_head.bias"]
    if model.rank_head is not None:
        needed += ["rank_head.weight", "rank_head.bias"]
    absent = [k for k in needed if k not in heads]
    if absent:
        raise ModelLoadError(f"{str(directory)!r}: head weights missing from {WEIGHTS_FILE}: {absent}")
    with torch.no_grad():
        model.token_head.weight.copy_(heads["token_head.weight"])
        model.token_head.bias.copy_(heads["token_head.bias"])
        if model.rank_head is not None:
            model.rank_head.weight.copy_(heads["rank_head.weight"].reshape(model.rank_head.weight.shape))
            model.rank_head.bias.copy_(heads["rank_head.bias"].reshape(model.rank_head.bias.shape))
    model.to(dt)
    return model


# ---------------------------------------------------------------------- input
@dataclass(frozen=True, slots=True)
class PairTemplate:
    """Where the tokenizer puts its special tokens around a (query, passage) pair.

    Learnt once from the tokenizer itself, so ``[CLS] q [SEP] p [SEP]`` (BERT,
    DeBERTa) and ``<s> q </s></s> p </s>`` (XLM-R) come out as the tokenizer
    would write them.
    """

    before: tuple[int, ...]
    between: tuple[int, ...]
    after: tuple[int, ...]
    before_types: tuple[int, ...]
    between_types: tuple[int, ...]
    after_types: tuple[int, ...]
    query_type: int
    passage_type: int
    pad_id: int

    @property
    def n_special(self) -> int:
        return len(self.before) + len(self.between) + len(self.after)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> PairTemplate:
        enc = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
        try:
            seq = enc.sequence_ids(0)
        except (ValueError, AttributeError) as e:
            raise ValueError("the pruner needs a fast (Rust-backed) tokenizer") from e
        ids = list(enc["input_ids"])
        types = list(enc.get("token_type_ids") or [0] * len(ids))
        a = [i for i, s in enumerate(seq) if s == 0]
        b = [i for i, s in enumerate(seq) if s == 1]
        if not a or not b or a[-1] >= b[0] or a != list(range(a[0], a[-1] + 1)) or b != list(range(b[0], b[-1] + 1)):
            raise ValueError(f"unsupported pair template for tokenizer {type(tokenizer).__name__}")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = 0
        return cls(
            before=tuple(ids[: a[0]]), between=tuple(ids[a[-1] + 1 : b[0]]), after=tuple(ids[b[-1] + 1 :]),
            before_types=tuple(types[: a[0]]), between_types=tuple(types[a[-1] + 1 : b[0]]),
            after_types=tuple(types[b[-1] + 1 :]), query_type=int(types[a[0]]), passage_type=int(types[b[0]]),
            pad_id=int(pad),
        )

    def encode(self, query_ids: np.ndarray, passage_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Input ids, token type ids, and where the passage tokens start."""
        ids = np.concatenate([np.asarray(self.before, np.int64), query_ids, np.asarray(self.between, np.int64),
                              passage_ids, np.asarray(self.after, np.int64)])
        types = np.concatenate([
            np.asarray(self.before_types, np.int64), np.full(len(query_ids), self.query_type, np.int64),
            np.asarray(self.between_types, np.int64), np.full(len(passage_ids), self.passage_type, np.int64),
            np.asarray(self.after_types, np.int64),
        ])
        return ids, types, len(self.before) + len(query_ids) + len(self.between)


def _window_starts(n: int, room: int, overlap: int) -> list[int]:
    """Starts of windows of ``room`` tokens covering ``n`` tokens, ``overlap`` shared."""
    if n <= room:
        return [0]
    step = max(1, room - overlap)
    starts = list(range(0, n - room, step))
    starts.append(n - room)
    return starts


def _piece_table(p: Passage) -> tuple[np.ndarray, np.ndarray]:
    """Start of each kept span in ``original`` and in ``text`` coordinates."""
    assert p.original is not None
    spans = p.spans or ()
    orig_starts = np.fromiter((a for a, _ in spans), dtype=np.int64, count=len(spans))
    if len(spans) == 1 and spans[0][0] == 0 and p.text == p.original:
        return orig_starts, np.zeros(1, dtype=np.int64)
    text_starts = np.empty(len(spans), dtype=np.int64)
    pos = 0
    for k, (a, b) in enumerate(spans):  # one step per kept span (render_spans may insert one space)
        piece = p.original[a:b]
        if not p.text.startswith(piece, pos):
            pos += 1
        text_starts[k] = pos
        pos += b - a
    return orig_starts, text_starts


def sentence_relevance(p: Passage, offsets: np.ndarray, token_probs: np.ndarray,
                       units: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean token relevance of each sentence ``units`` (original coordinates).

    ``offsets`` are ``[n, 2]`` character offsets of the tokens in ``p.text``;
    a token belongs to the sentence holding its last character.  Sentences
    with no token get 0.
    """
    n_units = len(units)
    if n_units == 0:
        return np.zeros(0, dtype=np.float64)
    orig_starts, text_starts = _piece_table(p)
    u = np.asarray(units, dtype=np.int64)
    piece = np.searchsorted(orig_starts, u[:, 0], side="right") - 1
    u_text = u + (text_starts[piece] - orig_starts[piece])[:, None]
    if len(offsets) == 0:
        return np.zeros(n_units, dtype=np.float64)
    last = offsets[:, 1] - 1
    valid = offsets[:, 1] > offsets[:, 0]
    sid = np.searchsorted(u_text[:, 0], last, side="right") - 1
    ok = valid & (sid >= 0)
    sid_c = np.clip(sid, 0, n_units - 1)
    ok &= last < u_text[sid_c, 1]
    sums = np.bincount(sid_c[ok], weights=token_probs[ok].astype(np.float64), minlength=n_units)
    counts = np.bincount(sid_c[ok], minlength=n_units)
    return np.divide(sums, counts, out=np.zeros(n_units, dtype=np.float64), where=counts > 0)


@dataclass(frozen=True, slots=True)
class _Window:
    passage: int
    start: int
    end: int


class ProvencePruner(BaseStage):
    """Query-aware sentence pruning and reranking in one forward pass (Provence).

    Args:
        model: a pruner directory or hub id (see the module docstring), or a
            :class:`PrunerModel` (then ``tokenizer`` is required).
        tokenizer: a fast tokenizer, or a path; defaults to the model directory.
        threshold: keep sentences whose mean token relevance is ``>=`` this;
            default: the model's (0.1, as Provence uses).  0 keeps every
            sentence; above 1 keeps none.
        always_keep_first: also keep a passage's first sentence (a title) when
            any other sentence of it is kept.
        reorder: sort passages by ranking score (ties keep input order);
            ``False`` keeps the input order.
        top_k: keep at most this many passages (the best scored), after pruning.
        budget: an optional :class:`Budget` applied last, counted with ``counter``.
        counter: token counter for ``budget`` (see :func:`get_counter`).
        max_length: tokens per window, special tokens included (default: the
            model's, capped by the tokenizer's limit).
        stride: tokens shared by consecutive windows of a long passage
            (default: a quarter of a window's passage room).
        batch_size / max_batch_tokens: bounds of each forward batch.
        device / dtype / local_files_only / revision: how to load the model.

    Scores are the raw ranking logits, recorded under ``"provence"``.  Blank
    passages pass through unchanged and unscored (last, when reordering).
    Long passages are split into windows; per-token relevance is averaged
    over overlapping windows, and a passage's score is its best window's.
    """

    name = "provence"
    requires_query = True

    def __init__(
        self,
        model: str | os.PathLike[str] | PrunerModel,
        *,
        tokenizer: Any = None,
        threshold: float | None = None,
        always_keep_first: bool = False,
        reorder: bool = True,
        top_k: int | None = None,
        budget: Budget | None = None,
        counter: Any = None,
        max_length: int | None = None,
        stride: int | None = None,
        batch_size: int = 16,
        max_batch_tokens: int | None = 16384,
        device: Any = "auto",
        dtype: Any = "auto",
        local_files_only: bool = False,
        revision: str | None = None,
    ) -> None:
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or math.isnan(threshold)):
            raise ValueError(f"threshold must be a number, got {threshold!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 0):
            raise ValueError(f"stride must be an int >= 0, got {stride!r}")
        if isinstance(model, PrunerModel):
            if tokenizer is None:
                raise ValueError("tokenizer is required when model is a PrunerModel object")
            self.model = model.eval()
        elif isinstance(model, (str, os.PathLike)):
            self.model = PrunerModel.from_pretrained(model, device=device, dtype=dtype,
                                                     local_files_only=local_files_only, revision=revision)
            if tokenizer is None:
                tokenizer = model
        else:
            raise TypeError(f"model must be a path, hub id or PrunerModel, got {type(model).__name__}")
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(tokenizer, local_files_only=local_files_only)
        self.tokenizer = tokenizer
        self.template = PairTemplate.from_tokenizer(tokenizer)
        spec = self.model.spec
        self.threshold = float(spec.threshold if threshold is None else threshold)
        self.always_keep_first = bool(always_keep_first)
        self.reorder = bool(reorder)
        self.top_k = top_k
        self.budget = budget
        self.counter: TokenCounter = get_counter(counter)
        limit = spec.max_length if max_length is None else int(max_length)
        tok_limit = getattr(tokenizer, "model_max_length", None)
        if max_length is None and isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
            limit = min(limit, tok_limit)
        if limit < self.template.n_special + 4:
            raise ValueError(f"max_length {limit} leaves no room for query and passage tokens")
        self.max_length = limit
        self.stride = stride
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- scoring
    def _tokenize(self, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        with self._lock:
            enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True,
                                 return_attention_mask=False, return_token_type_ids=False, verbose=False)
        ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
        offs = [np.asarray(x, dtype=np.int64).reshape(-1, 2) for x in enc["offset_mapping"]]
        return ids, offs

    def score(self, query: str, texts: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Per-token keep probabilities, token offsets (in each text) and ranking logits.

        All windows of all texts go through the model in one length-sorted,
        batched call.
        """
        if not texts:
            return [], [], np.zeros(0, dtype=np.float64)
        all_ids, all_offsets = self._tokenize([query, *texts])
        q_ids = all_ids[0]
        p_ids, p_offsets = all_ids[1:], all_offsets[1:]
        n_special = self.template.n_special
        q_room = max(1, (self.max_length - n_special) // 2)
        if len(q_ids) > q_room:
            logger.debug("query truncated from %d to %d tokens", len(q_ids), q_room)
            q_ids = q_ids[:q_room]
        room = self.max_length - n_special - len(q_ids)
        overlap = room // 4 if self.stride is None else min(self.stride, room // 2)
        windows: list[_Window] = []
        for j, ids in enumerate(p_ids):
            windows.extend(_Window(j, s, min(s + room, len(ids))) for s in _window_starts(len(ids), room, overlap))
        lengths = [n_special + len(q_ids) + w.end - w.start for w in windows]

        def run(batch: list[_Window]) -> list[tuple[np.ndarray, float]]:
            return self._forward(q_ids, [p_ids[w.passage][w.start:w.end] for w in batch])

        results = run_sorted(windows, lengths, run, max_batch_size=self.batch_size,
                             max_batch_tokens=self.max_batch_tokens)
        sums = [np.zeros(len(ids), dtype=np.float64) for ids in p_ids]
        counts = [np.zeros(len(ids), dtype=np.float64) for ids in p_ids]
        ranks = np.full(len(texts), -np.inf)
        for w, r in zip(windows, results, strict=True):
            probs: np.ndarray = r[0]  # type: ignore[index]
            rank: float = r[1]  # type: ignore[index]
            sums[w.passage][w.start:w.end] += probs
            counts[w.passage][w.start:w.end] += 1.0
            ranks[w.passage] = max(ranks[w.passage], rank)
        token_probs = [s / np.maximum(c, 1.0) for s, c in zip(sums, counts, strict=True)]
        return token_probs, p_offsets, ranks

    def _forward(self, q_ids: np.ndarray, pieces: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        encoded = [self.template.encode(q_ids, piece) for piece in pieces]
        longest = max(len(ids) for ids, _, _ in encoded)
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
            keep = torch.softmax(out.token_logits.float(), dim=-1)[..., 1].cpu().numpy()
            ranks = out.rank_logits.float().cpu().numpy()
        return [
            (keep[i, start : start + len(piece)].astype(np.float64), float(ranks[i]))
            for i, ((_, _, start), piece) in enumerate(zip(encoded, pieces, strict=True))
        ]

    # ----------------------------------------------------------------- pruning
    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        assert query is not None
        work = [i for i, p in enumerate(passages) if not p.is_blank]
        token_probs, offsets, ranks = self.score(query, [passages[i].text for i in work])
        kept: list[tuple[float, int, Passage]] = []
        dropped: list[Dropped] = []
        for k, i in enumerate(work):
            p = passages[i].with_score(self.name, float(ranks[k]))
            units = p.units("sentence")
            means = sentence_relevance(p, offsets[k], token_probs[k], units)
            keep = means >= self.threshold
            if not keep.any():
                best = float(means.max()) if len(means) else 0.0
                dropped.append(self._drop(p, f"no sentence reached threshold {self.threshold:g} "
                                             f"(best sentence relevance {best:.3g})"))
                continue
            if self.always_keep_first:
                keep[0] = True
            if not keep.all():
                p = p.with_spans([u for u, flag in zip(units, keep, strict=True) if flag])
            kept.append((float(ranks[k]), i, p))
        by_score = sorted(kept, key=lambda t: (-t[0], t[1]))
        if self.top_k is not None:
            for rank, t in enumerate(by_score[self.top_k :], start=self.top_k):
                dropped.append(self._drop(t[2], f"rank {rank + 1} beyond top_k={self.top_k}"))
            by_score = by_score[: self.top_k]
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

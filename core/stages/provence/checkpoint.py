"""The pruner's checkpoint formats: ragprune's own directory and the released Provence checkpoints.

See :mod:`ragprune.stages.provence` for the format; only ``model.safetensors`` weights are read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...runtime.loading import ModelLoadError, _load
from ...runtime.validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    from .model import PrunerModel

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
    gate: float | None = None
    """Passage gate: passages whose ranking probability (sigmoid of the ranking logit) is below it are
    dropped whole, whatever their sentences score; ``None``: no gate (files without ``"gate"``)."""
    int8_threshold: float | None = None
    """The threshold of the int8 model (``quantize="int8"``), calibrated to keep the same share of tokens as
    ``threshold`` does in float; ``None``: not calibrated (``threshold`` is used)."""
    int8_gate: float | None = None
    """The passage gate of the int8 model, calibrated like ``int8_threshold``."""

    def __post_init__(self) -> None:
        check_choice("ranking", self.ranking, RANKINGS)
        object.__setattr__(self, "max_length", check_int("max_length", self.max_length, min=8))
        object.__setattr__(self, "threshold", check_number("threshold", self.threshold, finite=True))
        for name in ("gate", "int8_gate"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), min=0.0, max=1.0, allow_none=True))
        object.__setattr__(self, "int8_threshold", check_number("int8_threshold", self.int8_threshold,
                                                                finite=True, allow_none=True))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "ranking": self.ranking,
            "token_labels": {"0": "drop", "1": "keep"},
            "max_length": self.max_length,
            "threshold": self.threshold,
        }
        if self.gate is not None:
            out["gate"] = self.gate
        if self.int8_threshold is not None:
            out["int8"] = {"threshold": self.int8_threshold, "gate": self.int8_gate}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrunerSpec:
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"{FORMAT_FILE} has format {data.get('format')!r}, expected {FORMAT_NAME!r}")
        version = int(data.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise ValueError(f"{FORMAT_FILE} has format_version {version}; this ragprune reads up to {FORMAT_VERSION}")
        int8 = data.get("int8") or {}
        if not isinstance(int8, dict):
            raise ValueError(f"{FORMAT_FILE}: 'int8' must be an object, got {int8!r}")
        labels = data.get("token_labels", {"0": "drop", "1": "keep"})
        if str(labels.get("1", labels.get(1))) != "keep":
            raise ValueError(f"{FORMAT_FILE}: token label 1 must mean 'keep', got {labels!r}")
        return cls(ranking=str(data.get("ranking", "cls-linear")), max_length=int(data.get("max_length", 512)),
                   threshold=float(data.get("threshold", DEFAULT_THRESHOLD)), format_version=version,
                   gate=_optional_float(data.get("gate")), int8_threshold=_optional_float(int8.get("threshold")),
                   int8_gate=_optional_float(int8.get("gate")))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


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


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """A checkpoint directory in ragprune's terms: spec, backbone config and weights, and head weights."""

    spec: PrunerSpec
    config: Any
    backbone_state: dict[str, torch.Tensor]
    heads: dict[str, torch.Tensor]


def _read_ragprune(directory: Path, raw_config: dict[str, Any], state: dict[str, torch.Tensor]) -> _Checkpoint:
    """ragprune's own directory: ``ragprune_pruner.json``, heads stored under their own names."""
    spec = PrunerSpec.from_dict(_read_json(directory / FORMAT_FILE))
    config = _config_from_dict(raw_config)
    heads: dict[str, torch.Tensor] = {}
    backbone_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(("token_head.", "rank_head.")):
            heads[key] = value
        else:
            backbone_state[key] = value
    return _Checkpoint(spec, config, backbone_state, heads)


def _read_open_provence(directory: Path, raw_config: dict[str, Any], state: dict[str, torch.Tensor]) -> _Checkpoint:
    """An OpenProvence checkpoint: the backbone config nested in ``base_model_config``, a linear pruning head."""
    base = raw_config.get("base_model_config")
    if not isinstance(base, dict):
        raise ModelLoadError(f"OpenProvence config in {str(directory)!r} has no base_model_config")
    threshold = raw_config.get("default_threadshold", raw_config.get("default_threshold"))
    spec = PrunerSpec(ranking="sequence-classifier", max_length=int(raw_config.get("max_length") or 512),
                      threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold))
    config = _config_from_dict(base, num_labels=1)
    prefixed = any(k.startswith("ranking_model.") for k in state)
    heads: dict[str, torch.Tensor] = {}
    backbone_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("pruning_head.classifier."):
            heads["token_head." + key[len("pruning_head.classifier."):]] = value
        elif key.startswith("pruning_head."):
            raise ModelLoadError(f"unsupported OpenProvence pruning head tensor {key!r} (weighted pooling)")
        elif prefixed and key.startswith("ranking_model."):
            backbone_state[key[len("ranking_model."):]] = value
        elif not prefixed:
            backbone_state[key] = value
    return _Checkpoint(spec, config, backbone_state, heads)


def _read_provence(directory: Path, raw_config: dict[str, Any], state: dict[str, torch.Tensor]) -> _Checkpoint:
    """A released Provence checkpoint: a sequence classifier with a ``token_classifier`` head."""
    spec = PrunerSpec(ranking="sequence-classifier", max_length=512, threshold=DEFAULT_THRESHOLD)
    n_labels = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 1
    if n_labels != 1:
        raise ModelLoadError(f"Provence checkpoint {str(directory)!r} has {n_labels} ranking labels, expected 1")
    config = _config_from_dict(raw_config, num_labels=1)
    heads: dict[str, torch.Tensor] = {}
    backbone_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("token_classifier."):
            heads["token_head." + key[len("token_classifier."):]] = value
        else:
            backbone_state[key] = value
    return _Checkpoint(spec, config, backbone_state, heads)


def _read_checkpoint(directory: Path, raw_config: dict[str, Any], state: dict[str, torch.Tensor]) -> _Checkpoint:
    """Recognise the directory's format and read it."""
    if (directory / FORMAT_FILE).is_file():
        return _read_ragprune(directory, raw_config, state)
    if raw_config.get("model_type") == "open_provence":
        return _read_open_provence(directory, raw_config, state)
    if "token_classifier.weight" in state:
        return _read_provence(directory, raw_config, state)
    raise ModelLoadError(
        f"{str(directory)!r} is not a pruner model: no {FORMAT_FILE}, not an OpenProvence config, "
        "and no Provence token_classifier weights"
    )


def _build_backbone(directory: Path, ckpt: _Checkpoint, dt: torch.dtype) -> Any:
    """The transformers backbone with the checkpoint's weights; every weight but position ids must be present."""
    backbone_cls = _backbone_class(ckpt.config, ckpt.spec.ranking)
    backbone, info = backbone_cls.from_pretrained(None, config=ckpt.config, state_dict=ckpt.backbone_state, dtype=dt,
                                                  output_loading_info=True)
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("position_ids"))
    if missing:
        raise ModelLoadError(f"{str(directory)!r}: backbone weights missing from {WEIGHTS_FILE}: {missing[:8]}")
    return backbone


def _copy_heads(model: PrunerModel, heads: dict[str, torch.Tensor], directory: Path) -> None:
    """Copy the token head (and the rank head, when the model has one) into ``model``."""
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


def _load_directory(cls: type[PrunerModel], directory: Path, dt: torch.dtype) -> PrunerModel:
    from safetensors.torch import load_file

    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"no {WEIGHTS_FILE} in {str(directory)!r} (only safetensors weights are read)")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"no config.json in {str(directory)!r}")
    raw_config = _read_json(config_path)
    ckpt = _read_checkpoint(directory, raw_config, load_file(str(weights)))
    model = cls(_build_backbone(directory, ckpt, dt), ckpt.spec)
    _copy_heads(model, ckpt.heads, directory)
    model.to(dt)
    return model

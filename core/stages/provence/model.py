"""The pruner network: an encoder with a token-relevance head and a passage-ranking head."""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple, Unpack

import torch
from torch import nn

from ...runtime.device import resolve_device, resolve_dtype
from ...runtime.loading import LoadKwargs, LoadOptions, ModelLoadError
from .checkpoint import (
    DEFAULT_THRESHOLD,
    FORMAT_FILE,
    FORMAT_NAME,
    WEIGHTS_FILE,
    PrunerSpec,
    _load_directory,
    resolve_model_dir,
)

logger = logging.getLogger("ragprune")


class PrunerOutput(NamedTuple):
    """``token_logits``: ``[batch, seq, 2]``; ``rank_logits``: ``[batch]``."""

    token_logits: torch.Tensor
    rank_logits: torch.Tensor


def _skip_init_linear(n_in: int, n_out: int) -> nn.Linear:
    # No draw from the global random generator: weights are set right after.
    layer: nn.Linear = nn.utils.skip_init(nn.Linear, n_in, n_out)
    return layer


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
        weight = self.token_head.weight  # a method, not a tensor, once the head is dynamically quantized
        hidden = hidden.to(weight.dtype if isinstance(weight, torch.Tensor) else torch.float32)
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
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], *, options: LoadOptions | None = None,
                        **load: Unpack[LoadKwargs]) -> PrunerModel:
        """Load a pruner directory, or a naver Provence / OpenProvence checkpoint.

        ``name_or_path`` is a local directory or a hub id (looked up in the local
        cache first; ``local_files_only=True`` never touches the network).  Loading
        options: :class:`~ragprune.runtime.loading.LoadOptions` or its shorthands.
        """
        opts = LoadOptions.resolve(options, **load)
        directory = resolve_model_dir(name_or_path, local_files_only=opts.local_files_only, revision=opts.revision)
        dev = resolve_device(opts.device)
        dt = resolve_dtype(opts.dtype, dev)
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

        from ...runtime.loading import load_model

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

"""Device and dtype resolution, and offline-first model loading.

Nothing here touches global state: no seeds, no backend flags, no environment
variables are written.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "resolve_dtype", "load_tokenizer", "load_model", "import_model_module",
           "require_models", "ModelLoadError", "MODELS_HINT"]

logger = logging.getLogger("ragprune")


class ModelLoadError(OSError):
    """A model or tokenizer could not be loaded; the message names the path or id."""


MODELS_HINT = "pip install 'ragprune[models]'"
_MODEL_PACKAGES = frozenset({"torch", "transformers", "sentence_transformers", "safetensors", "tokenizers"})


def require_models(what: str) -> None:
    """Raise one clear ImportError when the packages of the ``models`` extra are missing."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{what} needs {' and '.join(missing)}, which is not installed: {MODELS_HINT}")


def import_model_module(module: str) -> ModuleType:
    """Import a model-backed ragprune module; a missing model package is one clear ImportError."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in _MODEL_PACKAGES:
            raise
        raise ImportError(f"{module} needs {top}, which is not installed: {MODELS_HINT}") from e


def resolve_device(device: Any = "auto") -> torch.device:
    """``"auto"``/``None``: cuda > mps > cpu; anything else is honoured as given."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """``"auto"``/``None``: fp16 on CUDA and MPS, fp32 on CPU.

    Half precision is only allowed on GPUs: asking for fp16/bf16 on CPU raises
    ``ValueError`` (it is slow and inaccurate there).
    """
    import torch

    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(sorted(_DTYPES))}")
        dtype = getattr(torch, _DTYPES[dtype])
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a str or torch.dtype, got {type(dtype).__name__}")
    if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu":
        raise ValueError(f"{dtype} is only supported on GPU devices; use float32 on CPU")
    return dtype


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or os.sep in name.replace("/", "", 1)
        or name.count("/") > 1
        or (os.altsep is not None and os.altsep in name)
        or Path(name).exists()
    )


def _load(loader: Any, name_or_path: str | os.PathLike[str], what: str, *, local_files_only: bool,
          revision: str | None, **kwargs: Any) -> Any:
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        if not path.is_dir():
            raise ModelLoadError(f"cannot load {what}: {name!r} is not a directory")
        try:
            return loader(str(path), local_files_only=True, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load {what} from directory {name!r}: {e}") from e
    # A hub id: the local cache first, so a cached model never touches the network.
    try:
        return loader(name, local_files_only=True, revision=revision, **kwargs)
    except (OSError, ValueError) as cached_error:
        if local_files_only or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise ModelLoadError(
                f"cannot load {what} {name!r}: it is not a local directory and is not in the "
                "Hugging Face cache (local_files_only=True). Download it first or pass a path."
            ) from cached_error
    try:
        return loader(name, local_files_only=False, revision=revision, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load {what} {name!r} from the hub: {e}") from e


def load_tokenizer(name_or_path: str | os.PathLike[str], *, local_files_only: bool = False,
                   revision: str | None = None, **kwargs: Any) -> Any:
    """Load a Hugging Face tokenizer with no remote code."""
    require_models("loading a tokenizer")
    from transformers import AutoTokenizer

    return _load(AutoTokenizer.from_pretrained, name_or_path, "tokenizer",
                 local_files_only=local_files_only, revision=revision,
                 trust_remote_code=False, **kwargs)


def load_model(auto_class: Any, name_or_path: str | os.PathLike[str], *, device: Any = "auto",
               dtype: Any = "auto", local_files_only: bool = False, revision: str | None = None,
               **kwargs: Any) -> Any:
    """Load ``auto_class`` weights (safetensors only, no remote code) in eval mode.

    Returns the model on the resolved device in the resolved dtype.
    """
    require_models("loading a model")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model = _load(auto_class.from_pretrained, name_or_path, "model",
                  local_files_only=local_files_only, revision=revision,
                  trust_remote_code=False, use_safetensors=True, dtype=dt, **kwargs)
    model.to(dev)
    model.eval()
    logger.debug("loaded %s from %s on %s (%s)", type(model).__name__, name_or_path, dev, dt)
    return model

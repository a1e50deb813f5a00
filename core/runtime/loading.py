"""Offline-first model loading: local paths never reach a hub, safetensors only, no remote code.

Nothing here touches global state: no seeds, no backend flags, no environment
variables are written.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any, TypedDict

from .device import resolve_device, resolve_dtype

__all__ = ["LoadOptions", "LoadKwargs", "load_tokenizer", "load_model", "import_model_module", "require_models",
           "ModelLoadError", "MODELS_HINT"]

logger = logging.getLogger("ragprune")


class ModelLoadError(OSError):
    """A model or tokenizer could not be loaded; the message names the path or id."""


MODELS_HINT = "pip install 'ragprune[models]'"
_MODEL_PACKAGES = frozenset({"torch", "transformers", "sentence_transformers", "safetensors", "tokenizers"})


class LoadKwargs(TypedDict, total=False):
    """The loading options a model-backed constructor takes as keywords (shorthands for :class:`LoadOptions`)."""

    device: Any
    dtype: Any
    local_files_only: bool
    revision: str | None


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How a model is loaded, kept apart from what the stage does with it.

    Attributes:
        device: ``"auto"`` (cuda > mps > cpu) or a torch device.
        dtype: ``"auto"`` (float32, except float16 on Apple GPUs) or a dtype.
        local_files_only: never reach a hub (local paths never do anyway).
        revision: hub revision (branch, tag or commit) of a hub id.

    Every model-backed stage takes one as ``options=``; its keywords ``device=``,
    ``dtype=``, ``local_files_only=`` and ``revision=`` are shorthands that
    override the matching field.  Used only when the stage loads a path or hub
    id: an already-loaded model stays where it is.
    """

    device: Any = "auto"
    dtype: Any = "auto"
    local_files_only: bool = False
    revision: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.local_files_only, bool):
            raise TypeError(f"local_files_only must be a bool, got {self.local_files_only!r}")
        if self.revision is not None and not isinstance(self.revision, str):
            raise TypeError(f"revision must be a str or None, got {self.revision!r}")

    @classmethod
    def resolve(cls, options: LoadOptions | None = None, /, **shorthands: Any) -> LoadOptions:
        """``options`` (default: all defaults) with the given shorthand keywords applied."""
        if options is not None and not isinstance(options, LoadOptions):
            raise TypeError(f"options must be a LoadOptions or None, got {type(options).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(shorthands) - names)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; loading options are "
                            f"{', '.join(sorted(names))}")
        base = options if options is not None else cls()
        return replace(base, **shorthands) if shorthands else base

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments of :func:`load_model`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


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


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or os.sep in name.replace("/", "", 1)
        or name.count("/") > 1
        or (os.altsep is not None and os.altsep in name)
        or Path(name).exists()
        # "models/my-reranker" where ./models exists: a missing local folder, not a hub id
        or ("/" in name and Path(name.split("/", 1)[0]).is_dir())
    )


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickle_weights(directory: Path, what: str) -> None:
    """``ModelLoadError`` when a folder (or a module folder one level down) holds pickle weights and
    no safetensors beside them: ragprune reads safetensors only, whatever torch's defaults."""
    for folder in [directory, *(d for d in directory.iterdir() if d.is_dir())]:
        pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in _PICKLE_SUFFIXES
                         and not p.name.startswith("training_args"))
        if pickles and not any(folder.glob("*.safetensors")):
            raise ModelLoadError(f"cannot load {what} from {str(directory)!r}: {folder / pickles[0]} is a pickle "
                                 "file and ragprune loads safetensors only (convert it with safetensors' "
                                 "save_file, or save the model with safe_serialization=True)")


def _load(loader: Any, name_or_path: str | os.PathLike[str], what: str, *, local_files_only: bool,
          revision: str | None, **kwargs: Any) -> Any:
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        if not path.is_dir():
            raise ModelLoadError(f"cannot load {what}: {name!r} is not a directory")
        refuse_pickle_weights(path, what)
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

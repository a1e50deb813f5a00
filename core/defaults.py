"""The embedded default: ragprune's own pruner, shipped inside the package.

``default_pipeline()`` needs no download: it loads the Provence-style pruner in
``ragprune/models/pruner-minilm`` (the ms-marco MiniLM-L-12 cross-encoder
fine-tuned on HotpotQA's training split and generated out-of-domain cases,
Apache-2.0) from the package directory with
``local_files_only=True``, and adds an optional final token budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .budget import Budget, as_budget
from .models import PRUNER_MINILM
from .pipeline import Pipeline

__all__ = ["DEFAULT_PRUNER_PATH", "default_pipeline", "default_pruner"]

DEFAULT_PRUNER_PATH: Path = PRUNER_MINILM
"""Directory of the shipped pruner (the :mod:`ragprune.stages.provence` format)."""


def default_pruner(*, device: Any = "auto", threshold: float | None = None, **kwargs: Any) -> Any:
    """The shipped :class:`~ragprune.ProvencePruner` (local files only; ``kwargs`` go to its constructor)."""
    from .runtime.loading import ModelLoadError, import_model_module

    ProvencePruner = import_model_module("ragprune.stages.provence").ProvencePruner
    if not (DEFAULT_PRUNER_PATH / "model.safetensors").is_file():
        raise ModelLoadError(f"the shipped pruner is missing from {DEFAULT_PRUNER_PATH} (a broken installation?)")
    return ProvencePruner(DEFAULT_PRUNER_PATH, device=device, threshold=threshold, local_files_only=True, **kwargs)


def default_pipeline(budget: int | Budget | None = None, counter: Any = "cl100k_base",
                     device: Any = "auto", threshold: float | None = None,
                     gate: float | None = None) -> Pipeline:
    """A ready pipeline: the shipped pruner, then ``budget`` if given.

    Args:
        budget: ``None`` (prune only), an int (a hard cap in tokens of ``counter``)
            or a :class:`~ragprune.Budget`.
        counter: how tokens are counted for the budget and the statistics
            (default: OpenAI's ``cl100k_base``, read offline).
        device: ``"auto"`` (cuda > mps > cpu) or a torch device.
        threshold: the pruner's sentence threshold (default: the model's own,
            chosen on held-out data; lower keeps more).
        gate: the pruner's passage gate, a ranking probability below which a
            passage is dropped whole as "nothing relevant" (default: the model's
            own, chosen on held-out data; ``0`` turns abstention off).

    The pruner reranks the passages, drops those about something else, keeps
    the sentences relevant to the query and drops passages with none; the
    budget then caps what is left.
    """
    final = as_budget(budget)
    return Pipeline([default_pruner(device=device, threshold=threshold, gate=gate)], budget=final, counter=counter)

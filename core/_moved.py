"""Old import paths of modules that moved into their rooms; each goes in the next release."""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "alias"]

MOVED = {
    "ragprune.cross_encoder": "ragprune.stages.cross_encoder",
    "ragprune.embedding_filter": "ragprune.stages.embedding_filter",
    "ragprune.token_classifier": "ragprune.stages.token_classifier",
    "ragprune.provence": "ragprune.stages.provence",
    "ragprune.sentence_selector": "ragprune.stages.sentence_selector",
    "ragprune.llmlingua": "ragprune.stages.llmlingua",
    "ragprune.longllmlingua": "ragprune.stages.longllmlingua",
    "ragprune.selective_context": "ragprune.stages.selective_context",
    "ragprune.query_compressor": "ragprune.stages.query_compressor",
    "ragprune.reorder": "ragprune.stages.reorder",
    "ragprune.assets": "ragprune.tools.assets",
    "ragprune.datasets": "ragprune.training.datasets",
    "ragprune.distill": "ragprune.training.distill",
    "ragprune.train_cli": "ragprune.training.cli",
    "ragprune.distill_cli": "ragprune.training.distill_cli",
}
"""Old module path -> new module path."""


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path will be removed in the next release",
                  DeprecationWarning, stacklevel=4)


def alias(old: str) -> ModuleType:
    """Make the module being imported as ``old`` the module at its new path."""
    new = MOVED[old]
    _warn(old, new)
    module = importlib.import_module(new)
    sys.modules[old] = module
    return module

"""Training and distillation: the pruner (:mod:`.pruner`), the distilled token compressor
(:mod:`.distill`), their data sets (:mod:`.datasets`) and the ``ragprune train`` command (:mod:`.cli`).

Importing this package imports neither torch nor transformers.  The names that
``ragprune.training`` held before it became a package (``train_pruner``,
``PrunerExample``, ...) still resolve, with a deprecation warning: import them
from :mod:`ragprune.training.pruner`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_PRUNER_NAMES = frozenset({"PrunerExample", "TokenLabelExample", "EpochStats", "TrainResult", "train_pruner",
                           "encode_example"})


def __getattr__(name: str) -> Any:
    if name not in _PRUNER_NAMES:
        raise AttributeError(f"module 'ragprune.training' has no attribute {name!r}")
    warnings.warn(f"ragprune.training.{name} moved to ragprune.training.pruner.{name}; the old path will be "
                  "removed in the next release", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module("ragprune.training.pruner"), name)

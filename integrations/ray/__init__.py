"""Beyond one process: whole data sets on Ray Data, a served pruner on Ray Serve, and its client.

* :func:`prune_dataset` -- any stage or pipeline over a Ray Dataset of ``{query, passages}``
  rows (``map_batches`` with a callable class: the model loads once per actor).
* :func:`build_app` -- the Ray Serve application behind ``ragprune serve`` (``POST /v1/prune``,
  ``POST /v1/rerank``), batching concurrent requests into shared forward passes.
* :class:`RemoteStage` -- that service as a stage (sync and async), in place of a local model.

Needs ``pip install ragprune[ray]``.  Names load on first use: ``RemoteStage`` needs only
``httpx``; the others import Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .batch import PruneBatch, prune_dataset
    from .client import RemoteStage, RemoteStageError
    from .serve import PrunerService, build_app

__all__ = ["PruneBatch", "PrunerService", "RemoteStage", "RemoteStageError", "build_app", "prune_dataset"]

_WHERE = {"PruneBatch": "batch", "prune_dataset": "batch", "RemoteStage": "client", "RemoteStageError": "client",
          "PrunerService": "serve", "build_app": "serve"}
_NEEDS = {"batch": "ray", "client": "httpx", "serve": "ray"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] in ("ray", "httpx", "fastapi", "pydantic", "pyarrow"):
            raise ImportError(f"ragprune.integrations.ray.{name} needs {_NEEDS[module]}: "
                              "pip install ragprune[ray]") from e
        raise

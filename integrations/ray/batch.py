"""Whole data sets on Ray Data: ``map_batches`` with a callable class, the model loaded once per actor."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ragprune import Budget, Pipeline
from ragprune.registry import from_config
from ragprune.runtime.validation import check_int, check_number

from .._shared import as_pipeline
from .rows import error_fields, prune_row, with_results
from .shared_forward import SharedForward

__all__ = ["PruneBatch", "PruneJSONBatch", "prune_dataset", "stage_config"]


def stage_config(stage: Any, budget: Budget | int | None = None, counter: Any = None) -> dict[str, Any]:
    """The config of the pipeline that ``stage`` (a stage, a pipeline, a name, a list) with ``budget``
    and ``counter`` means (see :func:`ragprune.integrations._shared.as_pipeline`)."""
    pipeline = as_pipeline(stage, budget, counter)
    try:
        config: dict[str, Any] = pipeline.config()
        return config
    except TypeError as e:
        raise TypeError(f"the stage must be rebuildable from its config() to run on Ray actors: {e}") from e


class _Runner:
    """What each actor holds: the pipeline rebuilt from its config, and the shared forward passes."""

    def __init__(self, config: Mapping[str, Any], share_forward: bool, max_calls: int) -> None:
        pipeline = from_config(dict(config))
        self.pipeline: Pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline([pipeline])
        self.shared = SharedForward(self.pipeline, max_calls) if share_forward else None

    def run(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        if self.shared is None:
            return [prune_row(self.pipeline, r) for r in rows]
        pipeline = self.pipeline
        results = self.shared.run_many([functools.partial(prune_row, pipeline, r) for r in rows])
        out: list[dict[str, Any]] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r  # not bad input (prune_row reports that): a failure of the model or the machine
            out.append(r)
        return out


class PruneBatch:
    """Ray Data callable class: a ``pyarrow.Table`` of rows in, the same rows with the result columns out.

    Built once per actor (the model loads once); see :func:`prune_dataset`.
    """

    def __init__(self, config: Mapping[str, Any], share_forward: bool = True, max_calls: int = 32) -> None:
        self.runner = _Runner(config, share_forward, max_calls)

    def __call__(self, table: Any) -> Any:
        return with_results(table, self.runner.run(table.to_pylist()))


class PruneJSONBatch:
    """Ray Data callable class for rows carried as JSON text (column ``row``): input of any shape.

    Out: the column ``result``, the JSON text of the result fields of each row (a row that is
    not a JSON object gets an ``error``).  ``ragprune prune --engine ray`` uses it.
    """

    def __init__(self, config: Mapping[str, Any], share_forward: bool = True, max_calls: int = 32) -> None:
        self.runner = _Runner(config, share_forward, max_calls)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows: list[Any] = []
        for text in batch["row"]:
            try:
                rows.append(json.loads(str(text)))
            except ValueError as e:
                rows.append(e)
        parsed = [r for r in rows if not isinstance(r, Exception)]
        results = iter(self.runner.run(parsed))
        out = [error_fields(r) if isinstance(r, Exception) else next(results) for r in rows]
        return {**{k: v for k, v in batch.items() if k != "row"},
                "result": [json.dumps(r, ensure_ascii=False) for r in out]}


def prune_dataset(dataset: Any, stage: Any, *, budget: Budget | int | None = None, counter: Any = None,
                  batch_size: int = 32, concurrency: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                  share_forward: bool = True, **map_batches_args: Any) -> Any:
    """Apply ``stage`` to every row of a Ray ``dataset`` of ``{query, passages[, metadata]}`` rows.

    Args:
        dataset: a ``ray.data.Dataset``; the row format is in :mod:`ragprune.integrations.ray.rows`.
        stage: a stage, a :class:`~ragprune.Pipeline`, a registered stage name or a list of
            stages; it travels to the actors as its ``config()`` (the model by path) and each
            actor rebuilds it once.
        budget, counter: a final token budget and its counter, as for every adapter.
        batch_size: rows per batch given to an actor.  The forward passes of all the rows of
            a batch are shared (``share_forward``; see :mod:`.shared_forward`): raise it on
            a GPU.
        concurrency: the actor pool size (an int, or a ``(min, max)`` pair for autoscaling).
        num_cpus, num_gpus: resources of each actor (``num_gpus=1``: one GPU per actor, the
            stage's ``device="auto"`` then picks it).
        map_batches_args: passed on to ``Dataset.map_batches``.

    Returns the lazy dataset of the input rows with the result columns added: ``kept``
    (texts, spans, scores, token counts), ``dropped`` (with reasons), ``tokens_before``,
    ``tokens_after``, ``counter`` and ``error``.  A row with bad input gets its ``error``
    and is never dropped.
    """
    config = stage_config(stage, budget, counter)
    batch_size = check_int("batch_size", batch_size, min=1)
    if not isinstance(concurrency, tuple):
        concurrency = check_int("concurrency", concurrency, min=1)
    num_cpus = check_number("num_cpus", num_cpus, min=0.0)
    num_gpus = check_number("num_gpus", num_gpus, min=0.0)
    return dataset.map_batches(
        PruneBatch, fn_constructor_kwargs={"config": config, "share_forward": share_forward,
                                           "max_calls": batch_size},
        batch_size=batch_size, batch_format="pyarrow", concurrency=concurrency, num_cpus=num_cpus,
        num_gpus=num_gpus, **map_batches_args)

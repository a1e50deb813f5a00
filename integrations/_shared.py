"""What every adapter shares, framework-free: from the caller's arguments to one Pipeline, and the query check.

Adapters only translate (Document / Node -> Passage -> back, by ``index``); this
module decides what a ``stage`` / ``budget`` / ``counter`` argument means, the same
way in every framework.
"""

from __future__ import annotations

from typing import Any

from ragprune import Budget, Pipeline, create_stage
from ragprune.budget import as_budget
from ragprune.passage import check_query as check_query_text
from ragprune.runtime.validation import check_int
from ragprune.stages.top_n import TopN

__all__ = ["as_budget", "as_pipeline", "check_query", "query_stages"]


def as_pipeline(stage: Any, budget: Budget | int | None = None, counter: Any = None,
                top_n: int | None = None) -> Pipeline:
    """One :class:`ragprune.Pipeline` from a pipeline, a stage, a list of stages or a registered stage name.

    A pipeline given alone is used as it is.  Given with ``budget``, ``counter`` or
    ``top_n`` it is nested: the outer pipeline keeps the ``top_n`` best of what it
    returns, then applies the budget, counting with ``counter`` (by default the
    wrapped pipeline's own counter, so a budget means the same tokens in every adapter).
    """
    final = as_budget(budget)
    cap = check_int("top_n", top_n, min=0, allow_none=True)
    stages = _stages(stage)
    inner = stages[0] if len(stages) == 1 and isinstance(stages[0], Pipeline) else None
    if inner is not None and final is None and counter is None and cap is None:
        return inner
    if inner is not None and counter is None:
        counter = inner.counter
    return Pipeline([*stages, *([TopN(cap)] if cap is not None else [])], final, counter)


def _stages(stage: Any) -> list[Any]:
    if isinstance(stage, str):
        stage = create_stage(stage)
    stages = list(stage) if isinstance(stage, (list, tuple)) else [stage]
    if not stages:
        raise ValueError("stage must be a stage, a Pipeline, a registered name or a non-empty list of stages")
    for i, s in enumerate(stages):
        if not callable(getattr(s, "apply", None)):
            where = "stage" if len(stages) == 1 and not isinstance(stage, (list, tuple)) else f"stage[{i}]"
            raise TypeError(f"{where} must be a ragprune stage or Pipeline (with apply(query, passages)), "
                            f"got {type(s).__name__}")
    return stages


def query_stages(stage: Any) -> list[str]:
    """Names of the stages in ``stage`` (a pipeline or a stage) that need a query."""
    if isinstance(stage, Pipeline):
        return [name for s in stage.stages for name in query_stages(s)]
    return [type(stage).__name__] if getattr(stage, "requires_query", False) else []


def check_query(pipeline: Pipeline, query: Any, owner: str, hint: str = "") -> str | None:
    """The query, validated like every stage's (``str`` or ``None``, valid Unicode, within the
    pipeline's limits), and non-blank when a stage needs one (naming those stages)."""
    checked: str | None = check_query_text(query, required=False, stage=owner, limits=pipeline.limits)
    if pipeline.requires_query and (checked is None or not checked.strip()):
        needing = ", ".join(query_stages(pipeline))
        raise ValueError(f"{owner} needs a non-empty query: {needing} require(s) one{hint}; got {query!r}")
    return checked

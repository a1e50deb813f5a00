"""Pipelines: ordered stages plus a final budget, reporting what was saved."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .budget import Budget
from .passage import (
    DEFAULT_LIMITS,
    BaseStage,
    Dropped,
    InputLimits,
    Passage,
    Stage,
    StageOutput,
    check_query,
    to_passages,
)
from .runtime.validation import check_choice
from .text.tokens import TokenCounter, get_counter
from .text.units import STRUCTURES

__all__ = ["Pipeline", "PipelineResult", "CompressionStats", "StageTiming"]


@dataclass(frozen=True, slots=True)
class StageTiming:
    stage: str
    seconds: float
    passages_in: int
    passages_out: int


@dataclass(frozen=True, slots=True)
class CompressionStats:
    """Totals for one pipeline call, in the pipeline's token counter."""

    tokens_before: int
    tokens_after: int
    passages_in: int
    passages_out: int
    seconds: float
    counter: str
    stages: tuple[StageTiming, ...] = ()

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def rate(self) -> float:
        """Fraction of tokens kept (1.0 when there was nothing to keep)."""
        return self.tokens_after / self.tokens_before if self.tokens_before else 1.0

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tokens_saved"] = self.tokens_saved
        d["rate"] = self.rate
        return d


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """Kept passages (in the final order), every drop with its reason, and totals."""

    passages: tuple[Passage, ...]
    dropped: tuple[Dropped, ...]
    stats: CompressionStats


def _stage_config(stage: Any) -> dict[str, Any]:
    config = getattr(stage, "config", None)
    if not callable(config):
        raise TypeError(f"{type(stage).__name__} has no config(): it cannot be serialized")
    data: dict[str, Any] = config()
    return data


def _stage_name(stage: Any) -> str:
    return str(getattr(stage, "name", None) or type(stage).__name__)


def _run_stage(stage: Any, query: str | None, passages: list[Passage], limits: InputLimits) -> StageOutput:
    if isinstance(stage, BaseStage):
        return stage.process(query, passages, limits=limits)
    kept = list(stage.apply(query, passages))
    kept_ids = {p.index for p in kept}
    name = _stage_name(stage)
    dropped = tuple(
        Dropped(p.index, name, f"dropped by {name}", p.score) for p in passages if p.index not in kept_ids
    )
    return StageOutput(tuple(kept), dropped)


class Pipeline(BaseStage):
    """Runs ``stages`` in order, then ``budget``; itself a stage.

    Args:
        stages: objects with ``apply(query, passages)``.
        budget: applied after the last stage (``None``: no final budget).
        counter: how tokens are counted for the budget and the statistics
            (see :func:`ragprune.get_counter`; default: words).
        limits: how much input one call accepts (:class:`InputLimits`: characters per
            passage, passages per call, query length; an error or truncation).
        structure: how passages are read into units when they do not say
            (``Passage.structure == "auto"``): ``"auto"`` detects JSON, HTML, markdown
            or prose from each text; ``"prose"``, ``"markdown"``, ``"json"`` or
            ``"html"`` reads every such passage that way (see :mod:`ragprune.text.units`).
    """

    name = "pipeline"

    def __init__(self, stages: Sequence[Stage] = (), budget: Budget | None = None,
                 counter: Any = None, limits: InputLimits = DEFAULT_LIMITS, structure: str = "auto") -> None:
        for i, s in enumerate(stages):
            if not callable(getattr(s, "apply", None)):
                raise TypeError(f"stages[{i}] ({type(s).__name__}) has no apply(query, passages) method")
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
        self.stages = tuple(stages)
        self.budget = budget
        self.counter: TokenCounter = get_counter(counter)
        if not isinstance(limits, InputLimits):
            raise TypeError(f"limits must be an InputLimits, got {type(limits).__name__}")
        self.limits = limits
        self.structure = check_choice("structure", structure, STRUCTURES)

    @property
    def requires_query(self) -> bool:  # type: ignore[override]
        return any(getattr(s, "requires_query", False) for s in self.stages)

    def __repr__(self) -> str:
        return f"Pipeline(stages={list(self.stages)!r}, budget={self.budget!r}, counter={self.counter!r})"

    def warmup(self) -> int:
        """:meth:`BaseStage.warmup` of every stage that has one; the forward passes run."""
        total = 0
        for stage in self.stages:
            warm = getattr(stage, "warmup", None)
            if callable(warm):
                total += int(warm())
        return total

    def config(self) -> dict[str, Any]:
        """How to build this pipeline again (its stages' configs, the budget, the counter), JSON-ready."""
        from .registry import counter_config

        return {"class": "ragprune.pipeline:Pipeline", "stages": [_stage_config(s) for s in self.stages],
                "budget": None if self.budget is None else dataclasses.asdict(self.budget),
                "counter": counter_config(self.counter), "limits": dataclasses.asdict(self.limits),
                "structure": self.structure}

    def run(self, query: str | None, passages: Sequence[Passage | str]) -> PipelineResult:
        """Run every stage and the budget; return kept passages, drops and totals."""
        t0 = time.perf_counter()
        q = check_query(query, required=self.requires_query, stage="Pipeline", limits=self.limits)
        items = to_passages(passages, limits=self.limits)
        if self.structure != "auto":
            items = [p if p.structure != "auto" else dataclasses.replace(p, structure=self.structure) for p in items]
        before = self.counter.count_many([p.original or "" for p in items])
        before_by_index = {p.index: n for p, n in zip(items, before, strict=True)}
        current = items
        dropped: list[Dropped] = []
        timings: list[StageTiming] = []
        for stage in self.stages:
            if not current:
                break
            s0 = time.perf_counter()
            out = _run_stage(stage, q, current, self.limits)
            timings.append(StageTiming(_stage_name(stage), time.perf_counter() - s0, len(current), len(out.passages)))
            current = list(out.passages)
            dropped.extend(out.dropped)
        if self.budget is not None and current:
            s0 = time.perf_counter()
            out = self.budget.fit(current, self.counter, original_tokens=sum(before), stage="budget")
            timings.append(StageTiming("budget", time.perf_counter() - s0, len(current), len(out.passages)))
            current = list(out.passages)
            dropped.extend(out.dropped)
        after = self.counter.count_many([p.text for p in current])
        final = tuple(
            dataclasses.replace(p, tokens_before=before_by_index.get(p.index), tokens_after=n)
            for p, n in zip(current, after, strict=True)
        )
        stats = CompressionStats(
            tokens_before=sum(before), tokens_after=sum(after), passages_in=len(items),
            passages_out=len(final), seconds=time.perf_counter() - t0,
            counter=self.counter.name, stages=tuple(timings),
        )
        return PipelineResult(final, tuple(dropped), stats)

    async def arun(self, query: str | None, passages: Sequence[Passage | str]) -> PipelineResult:
        import asyncio

        return await asyncio.to_thread(self.run, query, passages)

    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        r = self.run(query, passages)
        return StageOutput(r.passages, r.dropped)

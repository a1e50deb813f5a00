"""Evaluation and benchmark harness: which compressor keeps the evidence for the fewest tokens, how fast.

    ragprune bench --quick                        # 100 HotpotQA test cases, every method
    >>> from ragprune.bench import build_methods, run_bench, write_all
    >>> from ragprune.training.datasets import load_hotpotqa
    >>> result = run_bench(load_hotpotqa("test", limit=100), build_methods(["cross-encoder", "none"]))
    >>> write_all(result, "bench-results")

Importing this package imports neither torch nor any peer library; methods
load their models in ``load()``.
"""

from __future__ import annotations

from .methods import (
    DEFAULT_METHODS,
    METHOD_NAMES,
    BaseMethod,
    MethodConfig,
    MethodUnavailable,
    PlainMethod,
    ScoredMethod,
    StageMethod,
    build_method,
    build_methods,
)
from .metrics import Aggregate, CaseMetrics, Kept, aggregate, case_metrics, normalize
from .report import Goal, closest_to_goal, markdown, write_all, write_json, write_markdown, write_plots
from .runner import BenchResult, MethodResult, PointResult, case_passages, run_bench

__all__ = [
    "Aggregate",
    "BaseMethod",
    "BenchResult",
    "CaseMetrics",
    "DEFAULT_METHODS",
    "Goal",
    "Kept",
    "METHOD_NAMES",
    "MethodConfig",
    "MethodResult",
    "MethodUnavailable",
    "PlainMethod",
    "PointResult",
    "ScoredMethod",
    "StageMethod",
    "aggregate",
    "build_method",
    "build_methods",
    "case_metrics",
    "case_passages",
    "closest_to_goal",
    "markdown",
    "normalize",
    "run_bench",
    "write_all",
    "write_json",
    "write_markdown",
    "write_plots",
]

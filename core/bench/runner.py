"""Run methods over QA cases: models loaded once, each compression call timed alone.

For each method in turn: ``load()`` (timed apart), then every case: a scored
method is scored once and each sweep point selected from the cached scores; a
plain method is run once per point.  Only those calls sit inside the timer;
metrics are computed outside it.  Peak memory is sampled from the process RSS
(``psutil``, every 10 ms, in a background thread) from just before ``load()``
to the end of the method's last case, and reported as the peak minus the RSS
before ``load()``; on CUDA, ``torch.cuda.max_memory_allocated`` is reported too.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..passage import Passage
from ..runtime.validation import check_choice, check_rate
from ..text.tokens import TokenCounter, get_counter
from ..text.units import STRUCTURES
from ..training.datasets import QACase
from .methods import BaseMethod, MethodUnavailable, PlainMethod, ScoredMethod
from .metrics import Aggregate, CaseMetrics, aggregate, case_metrics, is_answerable

__all__ = ["PointResult", "MethodResult", "BenchResult", "run_bench", "case_passages"]

logger = logging.getLogger("ragprune")


@dataclass(frozen=True)
class PointResult:
    """One method at one sweep point: the aggregate and every case."""

    point: float
    is_default: bool
    summary: Aggregate
    cases: tuple[CaseMetrics, ...]


@dataclass(frozen=True)
class MethodResult:
    name: str
    info: dict[str, Any]
    load_seconds: float
    score_seconds: float  # scored methods: total scoring time over all cases (0 for plain ones)
    peak_rss_delta_mb: float | None
    peak_cuda_mb: float | None
    points: tuple[PointResult, ...]
    notes: tuple[str, ...] = ()

    def default(self) -> PointResult:
        return next(p for p in self.points if p.is_default)


@dataclass(frozen=True)
class BenchResult:
    methods: tuple[MethodResult, ...]
    skipped: tuple[tuple[str, str], ...]  # (method, why)
    n_cases: int
    counter: str
    min_coverage: float
    wall_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def case_passages(case: QACase, structure: str = "auto") -> list[Passage]:
    """The case's passage texts as ragprune passages (titles go to metadata, not text).

    ``structure`` is how ragprune stages read each passage into units (see :class:`~ragprune.Passage`).
    """
    return [Passage.from_text(text, i, metadata={"title": title}, structure=structure)
            for i, (title, text) in enumerate(case.passages)]


class _RssSampler:
    """Peak resident memory of this process while running, sampled in a daemon thread."""

    def __init__(self, interval: float = 0.01) -> None:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is a dependency of the bench extra
            self._proc = None
        else:
            self._proc = psutil.Process()
        self.interval = interval
        self.start_rss = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        return int(self._proc.memory_info().rss) if self._proc is not None else 0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _RssSampler:
        if self._proc is not None:
            self.start_rss = self.peak = self._rss()
            self._thread = threading.Thread(target=self._loop, name="ragprune-bench-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self.peak = max(self.peak, self._rss())
            self._stop.set()
            self._thread.join()

    @property
    def delta_mb(self) -> float | None:
        return (self.peak - self.start_rss) / 2**20 if self._proc is not None else None


def _cuda_peak_reset() -> bool:
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


def _cuda_peak_mb() -> float:
    import torch

    return float(torch.cuda.max_memory_allocated()) / 2**20


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, unit="case", leave=True, dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            pass
    return None


_Timed = list[tuple[float, list[Any], float]]  # (point, outputs, seconds) per sweep point


def _time_scored(method: ScoredMethod, question: str, passages: list[Passage],
                 points: Sequence[float]) -> tuple[_Timed, float]:
    """Score once, then select at every point; each point's time includes the scoring time (also returned)."""
    t0 = time.perf_counter()
    scores = method.score(question, passages)
    spent = time.perf_counter() - t0
    timed: _Timed = []
    for pt in points:
        t0 = time.perf_counter()
        outputs = method.select(scores, passages, pt)
        timed.append((pt, outputs, spent + time.perf_counter() - t0))
    return timed, spent


def _time_plain(method: PlainMethod, question: str, passages: list[Passage], points: Sequence[float]) -> _Timed:
    """Run the method once per point, each call timed alone."""
    timed: _Timed = []
    for pt in points:
        t0 = time.perf_counter()
        outputs = method.run(question, passages, pt)
        timed.append((pt, outputs, time.perf_counter() - t0))
    return timed


def _time_case(method: BaseMethod, question: str, passages: list[Passage],
               points: Sequence[float]) -> tuple[_Timed, float]:
    """One case at every point: the timed outputs and the seconds spent scoring (0 for a plain method)."""
    if isinstance(method, ScoredMethod):
        return _time_scored(method, question, passages, points)
    if isinstance(method, PlainMethod):
        return _time_plain(method, question, passages, points), 0.0
    raise TypeError(f"{type(method).__name__} is neither a ScoredMethod nor a PlainMethod")


def _method_notes(method: BaseMethod) -> tuple[str, ...]:
    raised = getattr(method, "raised", 0)
    if raised:
        return (f"raised 'zero sentences' on {raised} passage calls (counted as dropped)",)
    return ()


@dataclass(frozen=True)
class _Setup:
    """What every method of one run shares."""

    counter: TokenCounter
    befores: list[int]
    answerable: list[bool]
    min_coverage: float
    progress: bool
    structure: str = "auto"
    validity: Callable[[str], bool] | None = None


def _run_method(method: BaseMethod, cases: Sequence[QACase], setup: _Setup) -> MethodResult:
    points = tuple(method.points)
    if not points:
        raise ValueError(f"method {method.name} has no sweep points")
    default = method.default_point()
    rows: dict[float, list[CaseMetrics]] = {pt: [] for pt in points}
    score_total = 0.0
    cuda = _cuda_peak_reset()
    with _RssSampler() as rss:
        t0 = time.perf_counter()
        method.load()
        load_seconds = time.perf_counter() - t0
        cuda = cuda or _cuda_peak_reset()
        bar = _progress(len(cases), method.name, setup.progress)
        try:
            for case, before, ans in zip(cases, setup.befores, setup.answerable, strict=True):
                timed, spent = _time_case(method, case.question, case_passages(case, setup.structure), points)
                score_total += spent
                for pt, outputs, secs in timed:
                    rows[pt].append(case_metrics(case, outputs, setup.counter, seconds=secs,
                                                 min_coverage=setup.min_coverage, answerable=ans,
                                                 tokens_before=before, validity=setup.validity))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    cuda_mb = _cuda_peak_mb() if cuda else None
    results = tuple(PointResult(point=pt, is_default=pt == default, summary=aggregate(rows[pt]),
                                cases=tuple(rows[pt])) for pt in points)
    return MethodResult(name=method.name, info=method.describe(), load_seconds=load_seconds,
                        score_seconds=score_total, peak_rss_delta_mb=rss.delta_mb, peak_cuda_mb=cuda_mb,
                        points=results, notes=_method_notes(method))


def run_bench(cases: Sequence[QACase], methods: Sequence[BaseMethod], *, counter: Any = "cl100k_base",
              min_coverage: float = 0.9, progress: bool = True, settings: dict[str, Any] | None = None,
              preload: Sequence[str] = (), structure: str = "auto",
              validity: Callable[[str], bool] | None = None) -> BenchResult:
    """Run every method over ``cases`` and measure it (see the module docstring).

    ``structure`` is how the passages are read into units (``"auto"``: detected;
    ``"prose"``: sentences, whatever the format); ``validity`` checks that each kept
    text still parses (reported as the share of valid outputs).

    ``preload`` names modules (e.g. ``"torch"``) imported before any method, so
    their import time and memory are charged to no method.  A method whose
    ``load()`` raises :class:`MethodUnavailable` (or ``ImportError``) is skipped
    with a logged warning and listed in ``skipped``.
    """
    import importlib

    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            logger.debug("preload: %s is not installed", name)
    if not cases:
        raise ValueError("no cases to run")
    min_coverage = check_rate("min_coverage", min_coverage)
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    check_choice("structure", structure, STRUCTURES)
    tc = get_counter(counter)
    start = time.perf_counter()
    setup = _Setup(counter=tc, befores=[sum(tc.count_many([t for _, t in c.passages])) for c in cases],
                   answerable=[is_answerable(c) for c in cases], min_coverage=min_coverage, progress=progress,
                   structure=structure, validity=validity)
    done: list[MethodResult] = []
    skipped: list[tuple[str, str]] = []
    for m in methods:
        try:
            done.append(_run_method(m, cases, setup))
        except (MethodUnavailable, ImportError) as e:
            logger.warning("skipping %s: %s", m.name, e)
            skipped.append((m.name, str(e)))
        finally:
            m.close()
            gc.collect()
    return BenchResult(methods=tuple(done), skipped=tuple(skipped), n_cases=len(cases),
                       counter=repr(tc), min_coverage=min_coverage, wall_seconds=time.perf_counter() - start,
                       settings=dict(settings or {}))

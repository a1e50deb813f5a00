"""Concurrent pipeline calls that share the model's forward passes.

A served pruner answers many small requests (one question, ten passages); on a GPU one
forward pass over 256 windows costs about what a pass over 16 costs, so requests must
share passes.  :class:`SharedForward` runs the calls of a batch (the requests that
``serve.batch`` gathered, or the rows of one Ray Data batch) each in its own thread,
through the *unchanged* pipeline code: stages, budgets, statistics and drop reasons are
exactly those of ``Pipeline.run``.  Only the scoring entry point of each
:class:`~ragprune.ProvencePruner` in the pipeline is intercepted: a call that reaches
``score(query, texts)`` waits at a rendezvous until every other call of the batch has
either reached it too or finished; then the windows of all waiting calls -- each with its
own query -- are sorted by length and cut into forward batches together
(:func:`score_many`), and each call gets back exactly what its own ``score()`` would have
returned (up to float rounding: padding differs).  Everything before and after the
forward passes (tokenization, sentence selection, the budget) runs per call, in parallel
threads.

Stages other than ``ProvencePruner`` run per call (their own batching applies within
each call); a pipeline without one still gains the threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

__all__ = ["SharedForward", "score_many"]

T = TypeVar("T")

ScoreResult = tuple[list[np.ndarray], list[np.ndarray], np.ndarray]


def _pruners(stage: Any) -> Iterator[Any]:
    from ragprune import Pipeline
    from ragprune.stages.provence import ProvencePruner

    if isinstance(stage, Pipeline):
        for s in stage.stages:
            yield from _pruners(s)
    elif isinstance(stage, ProvencePruner):
        yield stage


@dataclass
class _Call:
    stage: Any
    query: str
    texts: list[str]
    records: Sequence[Sequence[tuple[int, int]]] | None
    result: ScoreResult | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Rendezvous:
    """The calls of one batch: flushed when none is still running outside ``score``."""

    running: int
    pending: list[_Call] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def score(self, call: _Call) -> ScoreResult:
        with self.cond:
            self.pending.append(call)
            self.running -= 1
            self._flush_if_ready()
            while not call.done:
                self.cond.wait()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def leave(self) -> None:
        with self.cond:
            self.running -= 1
            self._flush_if_ready()

    def _flush_if_ready(self) -> None:
        if self.running > 0 or not self.pending:
            return
        calls, self.pending = self.pending, []
        by_stage: dict[int, list[_Call]] = {}
        for c in calls:
            by_stage.setdefault(id(c.stage), []).append(c)
        for group in by_stage.values():
            _score_group(group)
        self.running += len(calls)
        self.cond.notify_all()


def _score_group(group: list[_Call]) -> None:
    """Score ``group`` in shared passes; if that fails, each call alone (so one bad call fails alone)."""
    try:
        results = score_many(group[0].stage, [(c.query, c.texts, c.records) for c in group])
    except Exception:
        results = None
    for k, c in enumerate(group):
        try:
            c.result = results[k] if results is not None else score_many(c.stage, [(c.query, c.texts, c.records)])[0]
        except Exception as e:  # raised in the call's own thread
            c.error = e
        c.done = True


class SharedForward:
    """Runs calls of ``pipeline`` concurrently, sharing the forward passes of its pruners.

    Args:
        pipeline: the pipeline (or stage) the calls run; its ``ProvencePruner`` stages
            get a scoring hook that is inert outside :meth:`run_many`.
        max_calls: most calls run at once (threads).

    The pipeline must be this object's own (a served replica's, an actor's): the hook
    is set on its pruner instances.
    """

    def __init__(self, pipeline: Any, max_calls: int = 32) -> None:
        self.pipeline = pipeline
        self._local = threading.local()
        self.pruners = list(_pruners(pipeline))
        for stage in self.pruners:
            self._hook(stage)
        self._pool = ThreadPoolExecutor(max(1, max_calls), thread_name_prefix="ragprune-shared")
        self.max_calls = max(1, max_calls)
        # one group at a time: a group waits for all its threads, which must not queue behind another group's
        self._busy = threading.Lock()

    def _hook(self, stage: Any) -> None:
        original = stage.score
        local = self._local

        def score(query: str, texts: Sequence[str],
                  records: Sequence[Sequence[tuple[int, int]]] | None = None) -> ScoreResult:
            rendezvous: _Rendezvous | None = getattr(local, "rendezvous", None)
            if rendezvous is None or not texts:
                return original(query, texts, records)  # type: ignore[no-any-return]
            return rendezvous.score(_Call(stage, query, list(texts), records))

        stage.score = score

    def _enter(self, rendezvous: _Rendezvous, fn: Callable[[], T]) -> T:
        self._local.rendezvous = rendezvous
        try:
            return fn()
        finally:
            self._local.rendezvous = None
            rendezvous.leave()

    def run_many(self, calls: Sequence[Callable[[], T]]) -> list[T | BaseException]:
        """Run ``calls`` (each calls the pipeline once or more); their results, or what each raised.

        At most ``max_calls`` run together; longer lists run in consecutive groups, and
        concurrent ``run_many`` calls take turns.
        """
        out: list[T | BaseException] = []
        for start in range(0, len(calls), self.max_calls):
            group = calls[start : start + self.max_calls]
            if len(group) == 1 or not self.pruners:
                out.extend(self._run_plain(group))
                continue
            with self._busy:
                rendezvous = _Rendezvous(running=len(group))
                futures = [self._pool.submit(self._enter, rendezvous, fn) for fn in group]
                for f in futures:
                    error = f.exception()
                    out.append(error if error is not None else f.result())
        return out

    def _run_plain(self, calls: Sequence[Callable[[], T]]) -> list[T | BaseException]:
        out: list[T | BaseException] = []
        for fn in calls:
            try:
                out.append(fn())
            except Exception as e:
                out.append(e)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def score_many(stage: Any, calls: Sequence[tuple[str, Sequence[str], Sequence[Sequence[tuple[int, int]]] | None]],
               ) -> list[ScoreResult]:
    """``[stage.score(query, texts, records) for ...]`` in shared forward passes (the pruner's own
    :meth:`~ragprune.ProvencePruner.score_many`)."""
    return list(stage.score_many(calls))

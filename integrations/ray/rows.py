"""Rows in, rows out: the one codec the Ray Data path, ``ragprune prune`` and the served pruner share.

An input row is a mapping::

    {"query": "who wrote ...?",
     "passages": ["text", {"text": "...", "score": 0.8, "metadata": {...}}, ...],
     "metadata": {...}}          # optional, any other field too: carried through untouched

A passage is a string or an object with ``text`` (and optionally ``score``, the retrieval
score, and ``metadata``).  Its ``index`` is its position in ``passages``: its identity.

The result fields added to each row (:data:`RESULT_COLUMNS`)::

    "kept":    [{"index", "text", "spans", "score", "previous_score", "scored_by", "scores",
                 "tokens_before", "tokens_after", "rate"}, ...]     # in the pipeline's final order
    "dropped": [{"index", "stage", "reason", "score"}, ...]
    "tokens_before", "tokens_after": totals in "counter", the pipeline's token counter
    "error":   None, or "ValueError: ..." for a row that could not be pruned (bad input)

Each kept item holds the fields of :class:`ragprune.integrations.record.PassageRecord`, with
``scores`` as ``{"stage", "score"}`` objects so that a column has one type (Arrow, Parquet);
``spans`` are ``[start, end)`` character offsets of the passage's text as given.  A row
that fails has empty ``kept`` / ``dropped``, null totals and its ``error``: it is never
left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ragprune import Passage, Pipeline
from ragprune.pipeline import PipelineResult

from ..record import PassageRecord

__all__ = ["RESULT_COLUMNS", "error_fields", "prune_row", "result_fields", "result_schema", "row_passages",
           "with_results"]

RESULT_COLUMNS = ("kept", "dropped", "tokens_before", "tokens_after", "counter", "error")
"""The fields :func:`prune_row` adds to a row (an input field of the same name is replaced)."""

BAD_INPUT = (ValueError, TypeError, KeyError)
"""What a row with bad input raises: reported in its ``error`` field, never raised."""


def _passage(item: Any, i: int) -> Passage:
    if isinstance(item, str):
        return Passage.from_text(item, i)
    if not isinstance(item, Mapping):
        raise TypeError(f"passages[{i}] must be a string or an object with 'text', got {type(item).__name__}")
    text = item.get("text")
    if not isinstance(text, str):
        raise TypeError(f"passages[{i}].text must be a string, got {type(text).__name__}")
    score = item.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                              or not math.isfinite(score)):
        raise TypeError(f"passages[{i}].score must be a finite number or null, got {score!r}")
    metadata = item.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"passages[{i}].metadata must be an object or null, got {type(metadata).__name__}")
    return Passage.from_text(text, i, score=score, metadata=metadata)


def row_passages(row: Mapping[str, Any]) -> tuple[str | None, list[Passage]]:
    """The query and the passages of an input row (``ValueError`` / ``TypeError`` for bad input)."""
    if not isinstance(row, Mapping):
        raise TypeError(f"a row must be an object, got {type(row).__name__}")
    if "query" not in row:
        raise ValueError("the row has no 'query'")
    if "passages" not in row:
        raise ValueError("the row has no 'passages'")
    query, items = row["query"], row["passages"]
    if query is not None and not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise TypeError(f"passages must be a list, got {type(items).__name__}")
    return query, [_passage(item, i) for i, item in enumerate(items)]


def _kept(p: Passage, counter: str) -> dict[str, Any]:
    record = PassageRecord.of(p, previous_score=p.original_score, counter=counter)
    return {
        "index": p.index,
        "text": p.text,
        "spans": [[a, b] for a, b in record.spans],
        "score": record.score,
        "previous_score": record.previous_score,
        "scored_by": record.scored_by,
        "scores": [{"stage": stage, "score": s} for stage, s in record.scores],
        "tokens_before": record.tokens_before,
        "tokens_after": record.tokens_after,
        "rate": record.rate,
    }


def result_fields(result: PipelineResult) -> dict[str, Any]:
    """The result fields of one pipeline call (see the module docstring)."""
    counter = result.stats.counter
    return {
        "kept": [_kept(p, counter) for p in result.passages],
        "dropped": [{"index": d.index, "stage": d.stage, "reason": d.reason, "score": d.score}
                    for d in result.dropped],
        "tokens_before": result.stats.tokens_before,
        "tokens_after": result.stats.tokens_after,
        "counter": counter,
        "error": None,
    }


def error_fields(error: BaseException) -> dict[str, Any]:
    """The result fields of a row that failed: its error, one line, nothing kept."""
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, KeyError):
        message = f"missing {message}"
    return {"kept": [], "dropped": [], "tokens_before": None, "tokens_after": None, "counter": None,
            "error": f"{type(error).__name__}: {message}"}


def prune_row(pipeline: Pipeline, row: Mapping[str, Any]) -> dict[str, Any]:
    """The result fields of ``row`` run through ``pipeline``; bad input is reported, not raised."""
    try:
        query, passages = row_passages(row)
        return result_fields(pipeline.run(query, passages))
    except BAD_INPUT as e:
        return error_fields(e)


def result_schema() -> Any:
    """The Arrow schema of the result fields (``pyarrow.Schema``; needs ``pyarrow``)."""
    import pyarrow as pa

    kept = pa.struct([
        ("index", pa.int64()), ("text", pa.string()), ("spans", pa.list_(pa.list_(pa.int64()))),
        ("score", pa.float64()), ("previous_score", pa.float64()), ("scored_by", pa.string()),
        ("scores", pa.list_(pa.struct([("stage", pa.string()), ("score", pa.float64())]))),
        ("tokens_before", pa.int64()), ("tokens_after", pa.int64()), ("rate", pa.float64()),
    ])
    dropped = pa.struct([("index", pa.int64()), ("stage", pa.string()), ("reason", pa.string()),
                         ("score", pa.float64())])
    return pa.schema([("kept", pa.list_(kept)), ("dropped", pa.list_(dropped)), ("tokens_before", pa.int64()),
                      ("tokens_after", pa.int64()), ("counter", pa.string()), ("error", pa.string())])


def with_results(table: Any, results: Sequence[Mapping[str, Any]]) -> Any:
    """``table`` (a ``pyarrow.Table`` of input rows) with the result columns of ``results`` set."""
    import pyarrow as pa

    schema = result_schema()
    out = table.drop_columns([c for c in RESULT_COLUMNS if c in table.column_names])
    for field in schema:
        out = out.append_column(field, pa.array([r[field.name] for r in results], type=field.type))
    return out

"""``ragprune prune``: prune every row of a JSONL file into a JSONL or Parquet file, resumably.

Input: one JSON object per line, ``{"id"?, "query", "passages", ...}`` (the row format of
:mod:`ragprune.integrations.ray.rows`); a row's id is its ``id`` field (a string or an
integer, unique in the file), else its line number.  Output: each input row with its id and
the result fields (``kept``, ``dropped``, ``tokens_before``, ``tokens_after``, ``counter``,
``error``).  A row whose input is bad (no query, a passage that is not text) is written
with its ``error``; a line that is not a JSON object stops the command before any work.

An existing output is never replaced silently: ``--resume`` continues it (the rows already
written are skipped; the new ones are added), ``--overwrite`` replaces it.  JSONL output
is appended row batch by row batch; Parquet output is gathered in ``OUTPUT.partial/`` (one
file per row batch) and written to ``OUTPUT`` when the run completes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli import (
    Command,
    CommandError,
    UsageError,
    add_model_argument,
    check_counter,
    check_file,
    check_model_path,
    int_at_least,
    number_in,
)

__all__ = ["PRUNE_COMMAND", "load_pipeline", "pipeline_config", "read_rows"]

_RESULT = ("kept", "dropped", "tokens_before", "tokens_after", "counter", "error")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="FILE.jsonl", help="rows to prune, one JSON object a line")
    parser.add_argument("--output", required=True, metavar="FILE", help="where to write: a .jsonl or .parquet file")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: in this process; ray: Ray Data actors (pip install ragprune[ray]) "
                             "(default: %(default)s)")
    add_model_argument(parser)
    parser.add_argument("--budget", type=int_at_least(0), default=None, metavar="N",
                        help="keep at most N tokens of each row's passages")
    parser.add_argument("--counter", default="cl100k_base",
                        help="token counter of the budget and the counts (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="model device (default: %(default)s)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=32,
                        help="rows per batch; their forward passes are shared (default: %(default)s)")
    parser.add_argument("--concurrency", type=int_at_least(1), default=1,
                        help="--engine ray: actors (default: %(default)s)")
    parser.add_argument("--num-cpus", type=number_in(0), default=1.0,
                        help="--engine ray: CPUs per actor (default: %(default)s)")
    parser.add_argument("--num-gpus", type=number_in(0), default=0.0,
                        help="--engine ray: GPUs per actor (default: %(default)s)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an existing output: skip the rows it already holds")
    again.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _partial(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def _validate(args: argparse.Namespace) -> None:
    check_file("--input", args.input)
    output = Path(args.output).expanduser()
    if output.suffix not in (".jsonl", ".parquet"):
        raise UsageError(f"--output {args.output}: must end in .jsonl or .parquet")
    if not output.parent.is_dir():
        raise UsageError(f"--output {args.output}: no such directory {output.parent}")
    if output.exists() and not output.is_file():
        raise UsageError(f"--output {args.output}: exists and is not a file")
    unfinished = output.suffix == ".parquet" and _partial(output).exists()
    if (output.exists() or unfinished) and not (args.resume or args.overwrite):
        what = "exists" if output.exists() else f"has an unfinished run ({_partial(output).name})"
        raise UsageError(f"--output {args.output} {what}: pass --resume to continue it (rows already written "
                         "are skipped) or --overwrite to replace it")
    if args.model != "default":
        check_model_path("--model", args.model)
    check_counter("--counter", args.counter)
    needed = (["ray"] if args.engine == "ray" else []) + (["pyarrow"] if output.suffix == ".parquet" else [])
    for module in needed:
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"{'--engine ray' if module == 'ray' else '--output *.parquet'} needs {module}: "
                             "pip install ragprune[ray]") from None


_PRUNER = "ragprune.stages.provence.stage:ProvencePruner"


def pipeline_config(model: str, budget: int | None, counter: str, device: str) -> dict[str, Any]:
    """The config of the pipeline ``--model`` names, with ``--budget``; nothing is loaded.

    ``default``: the shipped pruner (as :func:`ragprune.default_pipeline` builds it); a
    directory: a pruner in that format; a file: a stage or pipeline ``config()`` (JSON).
    """
    import dataclasses

    from ..budget import as_budget

    final = as_budget(budget)
    path = Path(model).expanduser()
    if model != "default" and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UsageError(f"--model {model}: not JSON ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("class"), str):
            raise UsageError(f"--model {model}: not a stage or pipeline config (no 'class')")
        if final is None and data["class"] == "ragprune.pipeline:Pipeline":
            return data
        return {"class": "ragprune.pipeline:Pipeline", "stages": [data],
                "budget": None if final is None else dataclasses.asdict(final), "counter": counter}
    if model == "default":
        from ..defaults import DEFAULT_PRUNER_PATH

        path = DEFAULT_PRUNER_PATH
    pruner = {"class": _PRUNER, "args": [str(path)],
              "kwargs": {"device": device, "threshold": None, "local_files_only": True}}
    return {"class": "ragprune.pipeline:Pipeline", "stages": [pruner],
            "budget": None if final is None else dataclasses.asdict(final), "counter": counter}


def load_pipeline(config: dict[str, Any]) -> Any:
    """The pipeline of ``config`` (a ``UsageError`` for a config that builds none)."""
    from ..registry import from_config

    try:
        return from_config(config)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--model: {e}") from e


@dataclass(frozen=True)
class Row:
    id: str | int
    line: int
    text: str


def read_rows(path: Path) -> list[Row]:
    """The rows of a JSONL file with their ids; a ``UsageError`` for a line that is not a JSON object."""
    rows: list[Row] = []
    seen: dict[str | int, int] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as e:
                raise UsageError(f"--input {path} line {n}: not JSON ({e})") from None
            if not isinstance(data, dict):
                raise UsageError(f"--input {path} line {n}: not a JSON object")
            rid = data.get("id", n)
            if isinstance(rid, bool) or not isinstance(rid, (str, int)):
                raise UsageError(f"--input {path} line {n}: id must be a string or an integer, got {rid!r}")
            if rid in seen:
                raise UsageError(f"--input {path} line {n}: id {rid!r} repeats line {seen[rid]}")
            seen[rid] = n
            rows.append(Row(rid, n, line))
    return rows


# ---------------------------------------------------------------- writers


class _JsonlWriter:
    def __init__(self, output: Path, resume: bool) -> None:
        self.output = output
        self.done = self._written() if resume and output.exists() else set()
        self.f = output.open("a" if resume else "w", encoding="utf-8")

    def _written(self) -> set[Any]:
        """Ids already in the output; an incomplete last line (an interrupted run) is cut off."""
        done: set[Any] = set()
        good = 0
        with self.output.open("rb") as f:
            for raw in f:
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("incomplete line")
                    done.add(json.loads(raw)["id"])
                except (ValueError, KeyError, TypeError):
                    break
                good += len(raw)
        if good < self.output.stat().st_size:
            print(f"ragprune prune: {self.output}: cut an incomplete last row (an interrupted run)", file=sys.stderr)
            os.truncate(self.output, good)
        return done

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class _ParquetWriter:
    def __init__(self, output: Path, resume: bool) -> None:
        import pyarrow.parquet as pq

        self.output, self.parts = output, _partial(output)
        self.resume = resume
        if not resume and self.parts.is_dir():
            for part in self.parts.glob("part-*.parquet"):
                part.unlink()
        self.parts.mkdir(exist_ok=True)
        self.done: set[Any] = set()
        for path in ([output] if resume and output.exists() else []) + sorted(self.parts.glob("part-*.parquet")):
            self.done.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
        self.n = len(list(self.parts.glob("part-*.parquet")))

    def write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..integrations.ray.rows import with_results

        try:
            table = with_results(pa.Table.from_pylist([{k: v for k, v in r.items() if k not in _RESULT}
                                                       for r in rows]), rows)
        except (pa.ArrowException, ValueError, TypeError) as e:
            raise CommandError(f"the rows cannot be written as Parquet ({e}); write a .jsonl output") from e
        tmp = self.parts / f".part-{self.n:06d}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.parts / f"part-{self.n:06d}.parquet")
        self.n += 1

    def close(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted(self.parts.glob("part-*.parquet"))
        if parts:
            tables = ([pq.read_table(self.output)] if self.resume and self.output.exists() else [])
            tables += [pq.read_table(p) for p in parts]
            try:
                merged = pa.concat_tables(tables, promote_options="permissive")
            except pa.ArrowException as e:
                raise CommandError(f"the row batches in {self.parts} have different columns ({e})") from e
            tmp = self.output.with_name(f".{self.output.name}.tmp")
            pq.write_table(merged, tmp)
            os.replace(tmp, self.output)
            for p in parts:
                p.unlink()
        self.parts.rmdir()


# ---------------------------------------------------------------- engines


def _chunks(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _out_row(row: Row, result: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(row.text)
    return {**{k: v for k, v in data.items() if k not in _RESULT}, "id": row.id, **result}


def _run_local(args: argparse.Namespace, config: dict[str, Any], todo: list[Row]) -> Iterator[list[dict[str, Any]]]:
    from ..integrations.ray.rows import prune_row
    from ..integrations.ray.shared_forward import SharedForward

    pipeline = load_pipeline(config)
    shared = SharedForward(pipeline, max_calls=args.batch_size)
    try:
        for chunk in _chunks(todo, args.batch_size):
            data = [json.loads(r.text) for r in chunk]
            results = shared.run_many([lambda d=d: prune_row(pipeline, d) for d in data])
            for r in results:
                if isinstance(r, BaseException):
                    raise CommandError(f"pruning failed: {type(r).__name__}: {r}") from r
            yield [_out_row(row, res) for row, res in zip(chunk, results, strict=True)]  # type: ignore[arg-type,unused-ignore]
    finally:
        shared.close()


def _run_ray(args: argparse.Namespace, config: dict[str, Any], todo: list[Row]) -> Iterator[list[dict[str, Any]]]:
    import ray
    import ray.data

    from ..integrations.ray.batch import PruneJSONBatch

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        items = ray.data.from_items([{"line": r.line, "row": r.text} for r in todo])
        ds = items.map_batches(PruneJSONBatch, fn_constructor_kwargs={"config": config,
                                                                   "max_calls": args.batch_size},
                            batch_size=args.batch_size, batch_format="numpy", concurrency=args.concurrency,
                            num_cpus=args.num_cpus, num_gpus=args.num_gpus)
        by_line = {r.line: r for r in todo}
        for batch in ds.iter_batches(batch_size=args.batch_size, batch_format="numpy"):
            yield [_out_row(by_line[int(line)], json.loads(str(res)))
                   for line, res in zip(batch["line"], batch["result"], strict=True)]
    finally:
        if started:
            ray.shutdown()


def _progress(total: int, enabled: bool) -> Any:
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, unit="row", desc="ragprune prune", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass
    return None


def _run(args: argparse.Namespace) -> int:
    output = Path(args.output).expanduser()
    rows = read_rows(Path(args.input).expanduser())
    writer = (_JsonlWriter if output.suffix == ".jsonl" else _ParquetWriter)(output, bool(args.resume))
    todo = [r for r in rows if r.id not in writer.done]
    skipped = len(rows) - len(todo)
    errors = 0
    try:
        if todo:
            config = pipeline_config(args.model, args.budget, args.counter, args.device)
            bar = _progress(len(todo), not args.no_progress)
            engine = _run_ray if args.engine == "ray" else _run_local
            for out in engine(args, config, todo):
                writer.write(out)
                errors += sum(r["error"] is not None for r in out)
                if bar is not None:
                    bar.update(len(out))
            if bar is not None:
                bar.close()
    finally:
        writer.close()
    note = f"; {skipped} already there" if skipped else ""
    print(f"ragprune prune: {len(todo)} rows written to {output} ({errors} with an error){note}", file=sys.stderr)
    return 0


PRUNE_COMMAND = Command(
    help="prune every row of a JSONL file into a JSONL or Parquet file (resumable)",
    configure=_configure,
    run=_run,
    validate=_validate,
)

"""``ragprune bench``: run compressors and peers over QA cases and write the results.

Top-level imports stay light (the parser imports every command module).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..cli import Command

if TYPE_CHECKING:
    from ..training.datasets import QACase
    from .methods import MethodConfig
    from .runner import BenchResult

__all__ = ["BENCH_COMMAND"]

logger = logging.getLogger("ragprune")

QUICK_CASES = 100
# Imported before any method runs, so no method's load time or memory includes them.
_PRELOAD = ("torch", "transformers", "sentence_transformers")
_MODEL_FREE = frozenset({"none", "lexical-reranker"})


def _configure(parser: argparse.ArgumentParser) -> None:
    from .methods import DEFAULT_METHODS, METHOD_NAMES

    parser.add_argument("--data", default="hotpotqa",
                        help="'hotpotqa' (the offline asset; --split picks the split) or a JSONL file "
                             "(see ragprune.training.datasets.load_jsonl)")
    parser.add_argument("--split", default="test", choices=("test", "train", "all"),
                        help="HotpotQA split (report test figures only; default: test)")
    parser.add_argument("--cases", type=int, default=None, help="use the first N cases (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases, all selected methods")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help=f"methods to run (default: {' '.join(DEFAULT_METHODS)}); valid: "
                             f"{', '.join(METHOD_NAMES)}")
    parser.add_argument("--points", nargs="+", default=[], metavar="METHOD=V1,V2",
                        help="override a method's sweep points, e.g. cross-encoder=1,2,3")
    parser.add_argument("--counter", default="cl100k_base",
                        help="token counter: a tiktoken encoding, 'words', or a tokenizer directory")
    parser.add_argument("--min-coverage", type=float, default=0.9,
                        help="share of a gold sentence's characters that must be kept for it to count")
    parser.add_argument("--out", default="bench-results", help="output folder (default: bench-results)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--assets-dir", default=None, help="assets folder (default: $RAGPRUNE_HOME)")
    parser.add_argument("--minilm", default=None, help="bi-encoder directory (default: the minilm asset)")
    parser.add_argument("--cross-encoder", default=None,
                        help="cross-encoder directory (default: the ms-marco-minilm-l12 asset)")
    parser.add_argument("--pruner", default=None,
                        help="a Provence pruner directory for 'provence' (default: the shipped pruner)")
    parser.add_argument("--student", default=None,
                        help="a distilled query-aware token compressor directory: enables 'query-token-compressor'")
    parser.add_argument("--token-classifier", default=None,
                        help="token classifier directory (default: MiniLM with a random head, built once "
                             "under .cache/bench)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for this run")


def _parse_points(items: list[str]) -> dict[str, Sequence[float]]:
    out: dict[str, Sequence[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--points takes METHOD=V1,V2,...; got {item!r}")
        try:
            out[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError as e:
            raise ValueError(f"--points {item!r}: {e}") from e
    return out


def _tiktoken_cache() -> str | None:
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "_static" / "tiktoken_cache"
    return str(path) if path.is_dir() else None


def _prepare_runtime(threads: int | None) -> None:
    """Point tiktoken at an offline cache and set torch's thread count before any method loads."""
    # llmlingua loads a tiktoken encoding when constructed: point it at llama-index-core's offline copy.
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        cache = _tiktoken_cache()
        if cache is not None:
            os.environ["TIKTOKEN_CACHE_DIR"] = cache
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _load_cases(args: argparse.Namespace, n: int | None) -> tuple[list[QACase], str]:
    """The cases selected by ``--data``/``--split`` (at most ``n``) and a description of the data."""
    from ..training.datasets import load_hotpotqa, load_jsonl

    if args.data == "hotpotqa":
        from ..tools.assets import asset_path

        cases = load_hotpotqa(args.split, asset_path("hotpotqa", args.assets_dir), limit=n)
        return cases, f"HotpotQA distractor, {args.split} split"
    return load_jsonl(args.data, limit=n), str(args.data)


def _method_config(args: argparse.Namespace) -> MethodConfig:
    from .methods import MethodConfig

    return MethodConfig(minilm=args.minilm, cross_encoder=args.cross_encoder, pruner=args.pruner,
                        student=args.student, token_classifier=args.token_classifier,
                        work_dir=Path(".cache") / "bench", assets_dir=args.assets_dir, device=args.device,
                        counter=args.counter)


def _print_summary(result: BenchResult, n_cases: int, paths: Sequence[Path], wall: float) -> None:
    """What ran, where it was written, what was skipped and which method came closest to the goal."""
    from .report import closest_to_goal

    print(f"{n_cases} cases, {len(result.methods)} methods in {wall:.1f} s; wrote "
          + ", ".join(str(p) for p in paths))
    for name, why in result.skipped:
        print(f"skipped {name}: {why}")
    best = closest_to_goal(result)
    if best:
        name, pt, short = best[0]
        print(f"closest to the goal: {name} at {pt:g} (shortfall {short:.3f})")


def _run(args: argparse.Namespace) -> int:
    from .methods import build_methods
    from .report import write_all
    from .runner import run_bench

    n = QUICK_CASES if args.quick and args.cases is None else args.cases
    if n is not None and n < 1:
        print("error: --cases must be >= 1", file=sys.stderr)
        return 2
    _prepare_runtime(args.threads)
    try:
        points = _parse_points(args.points)
        cases, data = _load_cases(args, n)
        if not cases:
            print("error: no cases loaded", file=sys.stderr)
            return 1
        out = Path(args.out)
        methods = build_methods(args.methods, _method_config(args), points)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not methods:
        print("error: none of the selected methods can run here", file=sys.stderr)
        return 1
    start = time.perf_counter()
    result = run_bench(cases, methods, counter=args.counter, min_coverage=args.min_coverage,
                       progress=not args.no_progress,
                       settings={"data": data, "cases": len(cases), "methods": [m.name for m in methods],
                                 "device": args.device, "threads": args.threads},
                       preload=_PRELOAD if any(m.name not in _MODEL_FREE for m in methods) else ())
    command = "ragprune " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    paths = write_all(result, out, plots=not args.no_plots, command=command)
    _print_summary(result, len(cases), paths, time.perf_counter() - start)
    return 0


BENCH_COMMAND = Command(
    help="measure compressors and peers: tokens kept, evidence recall, answer retention, latency",
    configure=_configure,
    run=_run,
)

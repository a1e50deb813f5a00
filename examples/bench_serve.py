"""The served pruner vs in-process calls, and the Ray Data batch path vs a Python loop, measured in one run.

    python examples/bench_serve.py [--cases 40] [--clients 1 8 32] [--replicas 1] [--num-gpus 0]

Cases: HotpotQA questions (``ragprune assets --only hotpotqa``) with their ten passages, or the
demo data.  Reported, each against in-process sequential calls on the same cases:

* served, batching across requests (``serve.batch`` + shared forward passes), with N
  concurrent clients: requests/s, p50 / p95 latency;
* served, one request at a time (``max_batch_size=1``), same clients;
* the forward passes alone (the pruner's ``score()`` over all passages at once) for the share
  of the model's throughput the service reaches;
* Ray Data (``prune_dataset``) rows/s vs a plain loop of ``Pipeline.run``.

Everything runs on loopback in a local Ray instance that the script starts and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
from typing import Any

import httpx
import ray
from ray import serve

import ragprune
from ragprune.integrations.ray import build_app, prune_dataset


def cases(n: int) -> list[tuple[str, list[str]]]:
    try:
        from ragprune.tools.assets import asset_path

        data = json.loads(asset_path("hotpotqa").read_text(encoding="utf-8"))[-n:]
        return [(c["question"], [f"{t}. {''.join(s).strip()}" for t, s in c["context"]]) for c in data]
    except FileNotFoundError:
        from pathlib import Path

        root = Path(__file__).resolve().parent / "data"
        docs = [d["text"] for d in json.loads((root / "demo_docs.json").read_text())]
        qs = [q["question"] for q in json.loads((root / "demo_questions.json").read_text())]
        return [(qs[k % len(qs)], docs) for k in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(url: str, work: list[tuple[str, list[str]]], clients: int) -> dict[str, float]:
    """``clients`` concurrent clients, each sending its share of ``work`` one request after another."""
    latencies: list[float] = []
    queue = list(enumerate(work))

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            _, (q, passages) = queue.pop()
            t0 = time.perf_counter()
            r = await http.post(f"{url}/v1/prune", json={"query": q, "passages": passages})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    seconds = time.perf_counter() - t0
    latencies.sort()
    return {"rps": len(work) / seconds, "p50": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]}


def serve_run(work: list[tuple[str, list[str]]], clients: list[int], args: argparse.Namespace,
              max_batch_size: int) -> dict[int, dict[str, float]]:
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(None, num_replicas=args.replicas, num_gpus=args.num_gpus, num_cpus=1,
                        max_batch_size=max_batch_size, batch_wait_timeout_s=0.005),
              name="ragprune", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    asyncio.run(load(url, work[:4], 2))  # warm up
    out = {n: asyncio.run(load(url, work, n)) for n in clients}
    serve.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--num-gpus", type=float, default=0.0)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    work = cases(args.cases)
    import torch

    torch.set_num_threads(1)  # as many threads as a replica or an actor of one CPU gets (OMP_NUM_THREADS=1)
    n_passages = sum(len(p) for _, p in work)
    pipeline = ragprune.default_pipeline()
    pipeline.run(*work[0])
    t0 = time.perf_counter()
    for q, p in work:
        pipeline.run(q, p)
    local_s = time.perf_counter() - t0
    pruner = pipeline.stages[0]
    from ragprune.integrations.ray.shared_forward import score_many

    t0 = time.perf_counter()
    score_many(pruner, [(q, p, None) for q, p in work])
    forward_s = time.perf_counter() - t0

    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        batched = serve_run(work, args.clients, args, max_batch_size=64)
        single = serve_run(work, args.clients, args, max_batch_size=1)
        rows = [{"query": q, "passages": p} for q, p in work]
        t0 = time.perf_counter()
        prune_dataset(ray.data.from_items(rows), pipeline, batch_size=16, concurrency=1,
                      num_gpus=args.num_gpus).materialize()
        data_s = time.perf_counter() - t0
    finally:
        serve.shutdown()
        ray.shutdown()

    figures: dict[str, Any] = {"cases": len(work), "passages": n_passages, "device": str(pruner.model.device),
                               "in_process_rps": len(work) / local_s, "forward_only_passages_s": n_passages / forward_s,
                               "ray_data_rows_s": len(work) / data_s, "loop_rows_s": len(work) / local_s,
                               "served": {}}
    print(f"{len(work)} cases, {n_passages} passages, device {figures['device']}")
    print(f"in process, sequential:  {figures['in_process_rps']:7.2f} requests/s")
    print(f"forward passes only:     {figures['forward_only_passages_s']:7.1f} passages/s")
    print(f"{'clients':>8} {'batched r/s':>12} {'p50 s':>7} {'p95 s':>7} {'single r/s':>11} {'p50 s':>7} "
          f"{'p95 s':>7} {'batched/single':>15} {'batched/in-process':>19} {'share of fwd':>13}")
    for n in args.clients:
        b, s = batched[n], single[n]
        share = b["rps"] * n_passages / len(work) / figures["forward_only_passages_s"]
        figures["served"][n] = {"batched": b, "single": s, "share_of_forward": share}
        print(f"{n:>8} {b['rps']:12.2f} {b['p50']:7.2f} {b['p95']:7.2f} {s['rps']:11.2f} {s['p50']:7.2f} "
              f"{s['p95']:7.2f} {b['rps'] / s['rps']:15.2f} {b['rps'] / figures['in_process_rps']:19.2f} "
              f"{share:13.0%}")
    print(f"Ray Data: {figures['ray_data_rows_s']:.2f} rows/s vs a Python loop {figures['loop_rows_s']:.2f} rows/s "
          f"({figures['ray_data_rows_s'] / figures['loop_rows_s']:.2f}x, actor start-up and model load included)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()

"""Beyond one process: Ray Data, the served pruner (Ray Serve, HTTP on loopback), RemoteStage.

One local Ray instance (``num_cpus=2``, loopback only) and one Serve application are shared by
the module and shut down at its end; every wait is bounded.  Cases: HotpotQA questions when
the asset is present (``ragprune assets``), else the bundled demo data.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
httpx = pytest.importorskip("httpx")

import ragprune  # noqa: E402
from ragprune.integrations._shared import as_pipeline  # noqa: E402
from ragprune.integrations.ray import RemoteStage, RemoteStageError, build_app, prune_dataset  # noqa: E402
from ragprune.integrations.ray.rows import prune_row  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.enable_socket,
    pytest.mark.allow_hosts(["127.0.0.1"]),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"


def _cases(n: int) -> list[dict[str, Any]]:
    """``n`` rows ``{id, query, passages}``: HotpotQA test cases (titles and first sentences) or the demo data."""
    try:
        from ragprune.tools.assets import asset_path

        data = json.loads(asset_path("hotpotqa").read_text(encoding="utf-8"))
        return [{"id": f"hotpot-{k}", "query": c["question"],
                 "passages": [f"{title}. {''.join(sents[:2]).strip()}" for title, sents in c["context"]]}
                for k, c in enumerate(data[-n:])]
    except FileNotFoundError:
        docs = json.loads((EXAMPLES / "demo_docs.json").read_text(encoding="utf-8"))
        questions = json.loads((EXAMPLES / "demo_questions.json").read_text(encoding="utf-8"))
        texts = [d["text"] for d in docs]
        return [{"id": f"demo-{k}", "query": questions[k % len(questions)]["question"],
                 "passages": texts[k % 3:] + texts[: k % 3]} for k in range(n)]


@pytest.fixture(scope="module")
def pipeline() -> ragprune.Pipeline:
    return ragprune.default_pipeline(device="cpu")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(ray_local: None) -> str:
    """The default pipeline served by two replicas on a loopback port; its base URL."""
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app(None, num_replicas=2, num_cpus=0.5, max_batch_size=16, batch_wait_timeout_s=0.02,
                    max_body_bytes=200_000)
    serve.run(app, name="ragprune", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=5).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("the service did not come up in 120 s")


def _same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Identical kept passages, spans, drops and totals; scores equal up to float rounding."""
    assert got["error"] == want["error"]
    assert [(k["index"], k["text"], k["spans"], k["tokens_after"]) for k in got["kept"]] == \
        [(k["index"], k["text"], k["spans"], k["tokens_after"]) for k in want["kept"]]
    for a, b in zip(got["kept"], want["kept"], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)
    assert [(d["index"], d["stage"]) for d in got["dropped"]] == [(d["index"], d["stage"]) for d in want["dropped"]]
    assert (got["tokens_before"], got["tokens_after"]) == (want["tokens_before"], want["tokens_after"])


# ---------------------------------------------------------------- rows, no Ray


@pytest.mark.parametrize(("row", "error"), [
    ({"passages": ["x"]}, "no 'query'"),
    ({"query": "q"}, "no 'passages'"),
    ({"query": 3, "passages": ["x"]}, "query must be a string"),
    ({"query": "q", "passages": "x"}, "passages must be a list"),
    ({"query": "q", "passages": [3]}, "passages[0] must be a string"),
    ({"query": "q", "passages": [{"text": 1}]}, "passages[0].text must be a string"),
    ({"query": " ", "passages": ["x"]}, "needs a query"),
])
def test_bad_rows_get_an_error_not_an_exception(pipeline: ragprune.Pipeline, row: dict[str, Any], error: str) -> None:
    out = prune_row(pipeline, row)
    assert out["error"] is not None and error in out["error"] and "\n" not in out["error"]
    assert out["kept"] == [] and out["dropped"] == []


# ---------------------------------------------------------------- Ray Data


def test_ray_data_gives_the_in_process_results(ray_local: None, pipeline: ragprune.Pipeline) -> None:
    rows = _cases(200)
    bad = [{"id": "bad-0", "query": None, "passages": ["a passage"]},
           {"id": "bad-1", "query": "q", "passages": []}]
    ds = ray.data.from_items(rows + bad)
    out = {r["id"]: r for r in prune_dataset(ds, pipeline, batch_size=32, concurrency=1, num_cpus=1).take_all()}
    assert set(out) == {r["id"] for r in rows + bad}  # no row is left out
    for r in rows:
        _same(out[r["id"]], prune_row(pipeline, r))
        assert list(out[r["id"]]["passages"]) == r["passages"]  # input columns are kept
    assert "needs a query" in out["bad-0"]["error"]
    assert out["bad-1"]["error"] is None and list(out["bad-1"]["kept"]) == []


# ---------------------------------------------------------------- served


def _post(url: str, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", timeout=60, **kw, **({"json": body} if body is not None else {}))


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/v1/prune", {"passages": ["x"]}, 422, "query"),
    ("/v1/prune", {"query": 3, "passages": ["x"]}, 422, "query"),
    ("/v1/prune", {"query": "q", "passages": "x"}, 422, "passages"),
    ("/v1/prune", {"query": "q", "passages": [{"txt": "x"}]}, 422, "passages"),
    ("/v1/prune", {"query": "q", "passages": ["x"], "budget": -1}, 422, "budget"),
    ("/v1/prune", {"query": "q", "passages": ["x"], "extra": 1}, 422, "extra"),
    ("/v1/prune", {"query": " ", "passages": ["x"]}, 422, "needs a query"),
    ("/v1/prune", {"query": "q", "passages": ["x" * 250_000]}, 413, "limit"),
    ("/v1/rerank", {"query": "q"}, 422, "documents"),
    ("/v1/rerank", {"query": "q", "documents": ["x"], "top_n": 0}, 422, "top_n"),
])
def test_malformed_requests_get_4xx(service: str, path: str, body: Any, status: int, message: str) -> None:
    r = _post(service, path, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and "Traceback" not in error and "\n" not in error


def test_not_json_gets_400(service: str) -> None:
    r = httpx.post(f"{service}/v1/prune", content=b"{not json", timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]


def test_prune_answers_the_in_process_result(service: str, pipeline: ragprune.Pipeline) -> None:
    row = _cases(1)[0]
    passages = [{"text": t, "id": f"p{i}", "metadata": {"k": i}} for i, t in enumerate(row["passages"])]
    r = _post(service, "/v1/prune", {"query": row["query"], "passages": passages, "budget": 60})
    assert r.status_code == 200, r.text
    data = r.json()
    want = as_pipeline(pipeline, 60).run(row["query"], row["passages"])
    assert [p["index"] for p in data["passages"]] == [p.index for p in want.passages]
    assert [p["spans"] for p in data["passages"]] == [[list(s) for s in p.spans or ()] for p in want.passages]
    assert all(p["id"] == f"p{p['index']}" and p["metadata"] == {"k": p["index"]} for p in data["passages"])
    assert {d["id"] for d in data["dropped"]} == {f"p{d.index}" for d in want.dropped}
    assert data["stats"]["tokens_after"] == want.stats.tokens_after <= 60


def test_rerank_has_the_common_shape(service: str, pipeline: ragprune.Pipeline) -> None:
    row = _cases(1)[0]
    r = _post(service, "/v1/rerank", {"query": row["query"], "documents": row["passages"], "top_n": 3,
                                      "return_documents": True})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3
    assert all(set(x) == {"index", "relevance_score", "document"} for x in results)
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0]["document"]["text"] == row["passages"][results[0]["index"]]


def test_fifty_concurrent_clients_get_the_in_process_results(service: str, pipeline: ragprune.Pipeline) -> None:
    cases = _cases(10)
    want = {c["id"]: pipeline.run(c["query"], c["passages"]) for c in cases}
    stage = RemoteStage(service, retries=2)

    async def one(k: int) -> tuple[str, ragprune.StageOutput]:
        c = cases[k % len(cases)]
        return c["id"], await stage.aprocess(c["query"], c["passages"])

    async def all_of_them() -> list[tuple[str, ragprune.StageOutput]]:
        return await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(50))), timeout=300)

    got = asyncio.run(all_of_them())
    assert len(got) == 50
    for cid, out in got:
        ref = want[cid]
        assert [(p.index, p.spans, p.text) for p in out.passages] == [(p.index, p.spans, p.text) for p in ref.passages]
        assert [p.score for p in out.passages] == pytest.approx([p.score for p in ref.passages], abs=1e-3)
        assert [(d.index, d.stage) for d in out.dropped] == [(d.index, d.stage) for d in ref.dropped]


def test_remote_stage_keeps_identity_and_maps_spans(service: str, pipeline: ragprune.Pipeline) -> None:
    row = _cases(1)[0]
    meta = [{"source": i} for i in range(len(row["passages"]))]
    # passages already cut by an earlier stage: the service sees their text, spans come back in original offsets
    passages = []
    for i, t in enumerate(row["passages"]):
        p = ragprune.Passage.from_text(t, 10 + i, metadata=meta[i])
        cut = t.find(". ")
        passages.append(p.with_spans([(0, cut + 1), (cut + 2, len(t))]) if cut > 0 and i % 2 else p)
    budget = ragprune.Budget(max_tokens=80)
    remote = ragprune.Pipeline([RemoteStage(service)], budget, "cl100k_base").run(row["query"], passages)
    local = ragprune.Pipeline([pipeline.stages[0]], budget, "cl100k_base").run(row["query"], passages)
    assert [(p.index, p.spans, p.text) for p in remote.passages] == [(p.index, p.spans, p.text) for p in local.passages]
    for p in remote.passages:
        assert p.metadata is meta[p.index - 10] and p.original == row["passages"][p.index - 10]
    assert {d.index for d in remote.dropped} == {d.index for d in local.dropped}
    with pytest.raises(ValueError, match="refused"):
        RemoteStage(service).process("q", ["x" * 250_000])


def test_a_replica_killed_mid_load_loses_no_request(service: str, pipeline: ragprune.Pipeline) -> None:
    cases = _cases(8)
    want = {c["id"]: pipeline.run(c["query"], c["passages"]) for c in cases}
    stage = RemoteStage(service, retries=6, backoff=0.5, timeout=120)

    async def one(k: int) -> tuple[str, Any]:
        c = cases[k % len(cases)]
        try:
            return c["id"], await stage.aprocess(c["query"], c["passages"])
        except RemoteStageError as e:
            return c["id"], e

    async def kill_one_replica() -> None:
        await asyncio.sleep(1.0)
        names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]]
        assert names, "no replica found"
        ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=False)

    async def load() -> list[tuple[str, Any]]:
        killer = asyncio.create_task(kill_one_replica())
        results = await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(40))), timeout=400)
        await killer
        return results

    results = asyncio.run(load())
    assert len(results) == 40  # every request answered: a result or a clear error
    ok = 0
    for cid, out in results:
        if isinstance(out, RemoteStageError):
            assert "did not answer" in str(out)
            continue
        ok += 1
        assert [(p.index, p.spans) for p in out.passages] == [(p.index, p.spans) for p in want[cid].passages]
    assert ok >= 20


# ---------------------------------------------------------------- ragprune prune --engine ray


def test_prune_command_on_ray(ray_local: None, tmp_path: Path, pipeline: ragprune.Pipeline) -> None:
    from ragprune.cli import main

    rows = _cases(6)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.parquet"
    assert main(["prune", "--input", str(src), "--output", str(out), "--engine", "ray", "--batch-size", "3",
                 "--no-progress", "--num-cpus", "0.5"]) == 0
    import pyarrow.parquet as pq

    got = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    for r in rows:
        _same(got[r["id"]], prune_row(pipeline, r))

"""The served pruner: a Ray Serve application with an HTTP JSON API and batching across requests.

Endpoints (JSON in, JSON out)::

    POST /v1/prune    {"query": str, "passages": [str | {"text", "id"?, "score"?, "metadata"?}],
                       "budget"?: int (max tokens), "threshold"?: float (min score), "rate"?: float}
                  ->  {"passages": [{"index", "id", "text", "spans", "score", "previous_score", "scored_by",
                                     "scores": [{"stage", "score"}], "tokens_before", "tokens_after", "rate",
                                     "metadata"}],
                       "dropped": [{"index", "id", "stage", "reason", "score"}],
                       "stats": {"tokens_before", "tokens_after", "tokens_saved", "rate", ...}}
    POST /v1/rerank   {"query": str, "documents": [str | {"text"}], "top_n"?: int, "return_documents"?: bool}
                  ->  {"results": [{"index", "relevance_score", "document"?: {"text"}}], "meta": {...}}
    GET  /v1/health   {"status": "ok", "pipeline": ...}

``/v1/prune`` answers exactly what ``as_pipeline(pipeline, budget).run(query, passages)``
returns in process; ``spans`` are offsets of the passage text as sent, ``index`` its position
and ``id`` / ``metadata`` what the request gave.  ``/v1/rerank`` has the shape of the common
rerank APIs (Cohere, Jina): every document, best first (``top_n`` of them), scored by the
pipeline's last scoring stage (the shipped pruner: its raw ranking logit; documents it
could not score, blank ones, come last with ``relevance_score`` null).

Batching across requests: every request is one call of ``serve.batch``; the calls gathered
within ``batch_wait_timeout_s`` (at most ``max_batch_size``) run together through
:class:`~ragprune.integrations.ray.shared_forward.SharedForward`, so the windows of all their
passages go through the model in shared forward passes, each paired with its own query
(the pruner's ``score()`` of each request is answered from one joint :func:`score_many`).
With ``max_concurrent_batches=1`` a replica runs one batch at a time and the requests that
arrive meanwhile form the next, bigger batch: the busier the service, the bigger the passes.

Malformed requests are answered 4xx with ``{"error": "<one line>"}``: 400 (not JSON), 413 (a
body over ``max_body_bytes``), 422 (wrong or missing fields, input over the pipeline's
limits); an unexpected failure is a 500 with a one-line ``error`` and no stack trace.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations as objects, and the
# deployment class travels to the replicas by value, without the module's other globals.

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from ray import serve

from ragprune import Budget, Passage, Pipeline
from ragprune.pipeline import PipelineResult

from .._shared import as_pipeline
from .rows import _kept
from .shared_forward import SharedForward

__all__ = ["PruneRequest", "PrunerService", "RerankRequest", "build_app"]

logger = logging.getLogger("ragprune")

DEFAULT_MAX_BODY_BYTES = 16 * 2**20

Number = Annotated[float, Field(allow_inf_nan=False, strict=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PassageIn(_Strict):
    text: StrictStr
    id: StrictStr | StrictInt | None = None
    score: Number | None = None
    metadata: dict[str, Any] | None = None


class PruneRequest(_Strict):
    query: StrictStr
    passages: list[StrictStr | PassageIn]
    budget: Annotated[StrictInt, Field(ge=0)] | None = None
    threshold: Number | None = None
    rate: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] | None = None


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    text: StrictStr


class RerankRequest(_Strict):
    query: StrictStr
    documents: list[StrictStr | RerankDocument]
    top_n: Annotated[StrictInt, Field(ge=1)] | None = None
    return_documents: StrictBool = False
    model: StrictStr | None = None


class HTTPError(Exception):
    """An answer other than 200, with its one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Job:
    query: str
    passages: list[Passage]
    budget: Budget | None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _validation_message(error: ValidationError) -> str:
    parts = []
    for e in error.errors()[:5]:
        where = ".".join(str(x) for x in e["loc"] if not str(x).startswith(("str", "PassageIn", "RerankDocument")))
        parts.append(f"{where or 'body'}: {e['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _budget(request: PruneRequest) -> Budget | None:
    if request.budget is None and request.threshold is None and request.rate is None:
        return None
    try:
        return Budget(max_tokens=request.budget, rate=request.rate, threshold=request.threshold)
    except (TypeError, ValueError) as e:
        raise HTTPError(422, _one_line(e)) from e


def _prune_answer(result: PipelineResult, request: PruneRequest) -> dict[str, Any]:
    ids = [None if isinstance(p, str) else p.id for p in request.passages]
    counter = result.stats.counter
    kept = [{**_kept(p, counter), "id": ids[p.index], "metadata": dict(p.metadata) if p.metadata else None}
            for p in result.passages]
    dropped = [{"index": d.index, "id": ids[d.index], "stage": d.stage, "reason": d.reason, "score": d.score}
               for d in result.dropped]
    return {"passages": kept, "dropped": dropped, "stats": result.stats.as_dict()}


def _rerank_answer(result: PipelineResult, request: RerankRequest, texts: list[str]) -> dict[str, Any]:
    score: dict[int, float | None] = {i: None for i in range(len(texts))}
    for d in result.dropped:
        score[d.index] = d.score
    for p in result.passages:
        score[p.index] = p.score if p.scores else None
    order = sorted(score, key=lambda i: (score[i] is None, -(score[i] or 0.0), i))
    if request.top_n is not None:
        order = order[: request.top_n]
    results: list[dict[str, Any]] = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": score[i]}
        if request.return_documents:
            item["document"] = {"text": texts[i]}
        results.append(item)
    return {"results": results, "meta": {"model": request.model, "passages_in": len(texts),
                                         "seconds": result.stats.seconds}}


def _build(config: Mapping[str, Any] | None) -> Pipeline:
    from ragprune import default_pipeline
    from ragprune.registry import from_config

    if config is None:
        return default_pipeline()
    built = from_config(dict(config))
    return built if isinstance(built, Pipeline) else Pipeline([built])


app = FastAPI(title="ragprune", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment(name="ragprune", max_ongoing_requests=64)
@serve.ingress(app)
class PrunerService:
    """One replica: the pipeline (rebuilt from its config, or the shipped default), batched calls.

    Args:
        config: the pipeline's ``config()``; ``None``: ``ragprune.default_pipeline()``.
        max_batch_size, batch_wait_timeout_s: of ``serve.batch`` (requests per batch, and
            how long the first request of a batch waits for others).
        max_body_bytes: the largest request body accepted (413 above).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, max_batch_size: int = 32,
                 batch_wait_timeout_s: float = 0.005, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.pipeline = _build(config)
        self.pipeline.warmup()  # every batch shape once, on GPUs (nothing on CPU)
        self.shared = SharedForward(self.pipeline, max_calls=max_batch_size)
        self.max_body_bytes = int(max_body_bytes)
        self._batched.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, jobs: list[_Job]) -> list[PipelineResult | BaseException]:
        def call(job: _Job) -> PipelineResult:
            return as_pipeline(self.pipeline, job.budget).run(job.query, job.passages)

        return await asyncio.to_thread(self.shared.run_many, [lambda j=j: call(j) for j in jobs])

    async def _run(self, query: str, passages: list[Passage], budget: Budget | None) -> PipelineResult:
        outcome = await self._batched(_Job(query, passages, budget))
        if isinstance(outcome, (ValueError, TypeError)):
            raise HTTPError(422, _one_line(outcome))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _body(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HTTPError(413, f"the request body ({int(declared):,} bytes) is over the limit of "
                                 f"{self.max_body_bytes:,} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > self.max_body_bytes:
                raise HTTPError(413, f"the request body is over the limit of {self.max_body_bytes:,} bytes")
        try:
            return json.loads(bytes(body))
        except ValueError as e:
            raise HTTPError(400, f"the request body is not JSON: {_one_line(e)}") from e

    async def _answer(self, request: Request, kind: str) -> JSONResponse:
        try:
            data = await self._body(request)
            if kind == "prune":
                return JSONResponse(await self._prune(PruneRequest.model_validate(data)))
            return JSONResponse(await self._rerank(RerankRequest.model_validate(data)))
        except ValidationError as e:
            return JSONResponse({"error": _validation_message(e)}, status_code=422)
        except HTTPError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except Exception as e:  # never a stack trace to the caller; the log has it
            logger.exception("ragprune serve: /v1/%s failed", kind)
            return JSONResponse({"error": f"internal error ({type(e).__name__}); see the service log"},
                                status_code=500)

    async def _prune(self, request: PruneRequest) -> dict[str, Any]:
        passages = [Passage.from_text(p, i) if isinstance(p, str)
                    else Passage.from_text(p.text, i, score=p.score, metadata=p.metadata)
                    for i, p in enumerate(request.passages)]
        result = await self._run(request.query, passages, _budget(request))
        return _prune_answer(result, request)

    async def _rerank(self, request: RerankRequest) -> dict[str, Any]:
        texts = [d if isinstance(d, str) else d.text for d in request.documents]
        result = await self._run(request.query, [Passage.from_text(t, i) for i, t in enumerate(texts)], None)
        return _rerank_answer(result, request, texts)

    @app.post("/v1/prune")
    async def prune(self, request: Request) -> JSONResponse:
        return await self._answer(request, "prune")

    @app.post("/v1/rerank")
    async def rerank(self, request: Request) -> JSONResponse:
        return await self._answer(request, "rerank")

    @app.get("/v1/health")
    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "pipeline": repr(self.pipeline)}


def build_app(stage: Any = None, *, num_replicas: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
              max_batch_size: int = 32, batch_wait_timeout_s: float = 0.005,
              max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_ongoing_requests: int | None = None) -> Any:
    """The Ray Serve application of ``stage`` (``None``: the shipped default pipeline).

    Args:
        stage: a stage, a pipeline, a registered name, or a pipeline config (a ``dict``);
            it travels to the replicas as its config and each replica rebuilds it once.
        num_replicas: replicas (each holds the model once).
        num_cpus, num_gpus: resources of each replica (``num_gpus=1``: a GPU per replica,
            the stage's ``device="auto"`` then picks it; fractions share one GPU).
        max_batch_size, batch_wait_timeout_s: cross-request batching (see the module docstring).
        max_body_bytes: the largest request body (413 above).
        max_ongoing_requests: requests a replica holds at once (default: twice ``max_batch_size``,
            so a full batch can gather while another runs).

    Run it with ``serve.run(build_app(...))`` or ``ragprune serve``.
    """
    from ragprune.runtime.validation import check_int, check_number

    from .batch import stage_config

    config = None if stage is None else stage if isinstance(stage, dict) else stage_config(stage)
    max_batch_size = check_int("max_batch_size", max_batch_size, min=1)
    ongoing = check_int("max_ongoing_requests", max_ongoing_requests, min=1, allow_none=True) or 2 * max_batch_size
    options = {"num_cpus": check_number("num_cpus", num_cpus, min=0.0),
               "num_gpus": check_number("num_gpus", num_gpus, min=0.0)}
    return PrunerService.options(  # type: ignore[attr-defined]
        num_replicas=check_int("num_replicas", num_replicas, min=1), ray_actor_options=options,
        max_ongoing_requests=ongoing,
    ).bind(config, max_batch_size, check_number("batch_wait_timeout_s", batch_wait_timeout_s, min=0.0),
           check_int("max_body_bytes", max_body_bytes, min=1))

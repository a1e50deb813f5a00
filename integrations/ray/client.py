"""``RemoteStage``: a served pruner used as a stage, in place of a local model (sync and async, httpx).

Only text travels: each passage's current text and its ``index`` (as the request's ``id``);
scores, metadata and what earlier stages cut stay in the caller's process.  The answer's
spans (offsets of the text sent) are mapped back onto the caller's passages, so the kept
passages are the caller's own, with the same ``index``, ``metadata`` (the same object) and
``original``, and ``spans`` in ``original`` coordinates: a remote stage composes with local
stages, budgets and every adapter like a local one.

Failures: a 4xx answer (bad input) raises ``ValueError`` with the server's message, as a
local stage would; a connection error, a timeout or a 5xx answer is retried
(``retries`` times, with exponential backoff: pruning is idempotent), then raises
:class:`RemoteStageError`.  Nothing is sent on construction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ragprune import BaseStage, Dropped, Passage, StageOutput
from ragprune.runtime.validation import check_int, check_number

__all__ = ["RemoteStage", "RemoteStageError"]

_RETRY_STATUS = frozenset({500, 502, 503, 504})


class RemoteStageError(RuntimeError):
    """The service could not answer (after the retries): unreachable, timing out or failing."""


def _to_original(p: Passage, spans: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Spans of ``p.text`` as spans of ``p.original`` (a range over an inserted space is split)."""
    pieces = [(int(a), int(b)) for a, b in spans]
    assert p.original is not None
    if p.spans == ((0, len(p.original)),):  # nothing cut yet: the same coordinates
        return pieces
    m = p.offset_map()
    starts, text_starts, ends = m.original_starts.tolist(), m.text_starts.tolist(), m.original_ends.tolist()
    out: list[tuple[int, int]] = []
    for a, b in pieces:
        for o0, t0, o1 in zip(starts, text_starts, ends, strict=True):
            lo, hi = max(a, t0), min(b, t0 + (o1 - o0))
            if hi > lo:
                out.append((o0 + lo - t0, o0 + hi - t0))
    return out


class RemoteStage(BaseStage):  # type: ignore[misc]  # ragprune is Any to mypy when checking integrations/
    """A stage answered by ``ragprune serve`` (``POST {url}/v1/prune``).

    Args:
        url: the service's base URL (``http://127.0.0.1:8000``).
        timeout: seconds for one attempt.
        retries: further attempts after a connection error, a timeout or a 5xx answer.
        backoff: seconds before the first retry, doubled each time.
        headers: extra HTTP headers (an API key of a gateway in front of the service).

    Its ``config()`` is its settings, so it pickles by reference and travels to Ray actors.
    """

    name = "remote"
    requires_query = True

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 3, backoff: float = 0.2,
                 headers: Mapping[str, str] | None = None) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = check_number("timeout", timeout, min=0.0, min_inclusive=False)
        self.retries = check_int("retries", retries, min=0)
        self.backoff = check_number("backoff", backoff, min=0.0)
        self.headers = dict(headers or {})
        self._client: Any = None

    def __repr__(self) -> str:
        return f"RemoteStage({self.url!r})"

    # ---------------------------------------------------------------- the request and the answer
    @staticmethod
    def _payload(query: str | None, passages: Sequence[Passage]) -> dict[str, Any]:
        return {"query": query, "passages": [{"text": p.text, "id": p.index} for p in passages]}

    def _answer(self, data: Any, passages: Sequence[Passage]) -> StageOutput:
        by_index = {p.index: p for p in passages}
        try:
            kept: list[Passage] = []
            for item in data["passages"]:
                p = by_index[int(item["id"])]
                p = p.with_spans(_to_original(p, item["spans"]))
                for s in item["scores"]:
                    p = p.with_score(str(s["stage"]), float(s["score"]))
                kept.append(p)
            dropped = tuple(Dropped(int(d["id"]), str(d["stage"]), str(d["reason"]),
                                    None if d.get("score") is None else float(d["score"])) for d in data["dropped"])
        except (KeyError, TypeError, ValueError) as e:
            raise RemoteStageError(f"{self.url}/v1/prune answered something that is not a prune result: "
                                   f"{type(e).__name__}: {e}") from e
        return StageOutput(tuple(kept), dropped)

    def _check(self, response: Any) -> Any | None:
        """The JSON answer; ``None`` for a status worth retrying; ``ValueError`` for a 4xx."""
        if response.status_code in _RETRY_STATUS:
            return None
        if 400 <= response.status_code < 500:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ValueError(f"{self.url}/v1/prune refused the request ({response.status_code}): {message}")
        if response.status_code != 200:
            raise RemoteStageError(f"{self.url}/v1/prune answered {response.status_code}: {response.text[:200]}")
        return response.json()

    def _failed(self, last: str) -> RemoteStageError:
        return RemoteStageError(f"{self.url}/v1/prune did not answer after {self.retries + 1} attempt(s); "
                                f"last: {last}")

    # ---------------------------------------------------------------- sync
    def _process(self, query: str | None, passages: list[Passage]) -> StageOutput:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, headers=self.headers)
        payload, last = self._payload(query, passages), ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(f"{self.url}/v1/prune", json=payload)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            data = self._check(response)
            if data is not None:
                return self._answer(data, passages)
            last = f"HTTP {response.status_code}"
        raise self._failed(last)

    # ---------------------------------------------------------------- async
    async def aprocess(self, query: str | None, passages: Sequence[Passage | str]) -> StageOutput:
        import httpx

        from ragprune.passage import check_query, to_passages

        q = check_query(query, required=self.requires_query, stage=type(self).__name__)
        items = to_passages(passages)
        if not items:
            return StageOutput(())
        payload, last = self._payload(q, items), ""
        async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers) as client:
            for attempt in range(self.retries + 1):
                if attempt:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    response = await client.post(f"{self.url}/v1/prune", json=payload)
                except httpx.TransportError as e:
                    last = f"{type(e).__name__}: {e}"
                    continue
                data = self._check(response)
                if data is not None:
                    return self._answer(data, items)
                last = f"HTTP {response.status_code}"
        raise self._failed(last)

    def close(self) -> None:
        """Close the pooled connections of the sync client (a later call opens new ones)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        return state

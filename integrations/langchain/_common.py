"""Translation between LangChain Documents and ragprune Passages, and the compression event."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks, adispatch_custom_event, dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_serializer, field_validator

from ragprune import Budget, Passage, Pipeline, PipelineResult
from ragprune.registry import from_config

from .._shared import as_budget, as_pipeline, check_query
from ..record import METADATA_KEY, PassageRecord

__all__ = ["EVENT_NAME", "METADATA_KEY", "PREVIOUS_SCORE_KEYS"]

EVENT_NAME = "ragprune_compression"
"""Name of the custom LangChain event carrying the totals and the drops of one call."""

PREVIOUS_SCORE_KEYS = ("relevance_score", "score", "similarity_score")
"""Incoming metadata keys read (in this order) as the score a Document already had."""


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def previous_score(metadata: Mapping[str, Any]) -> float | None:
    """The score a Document arrives with: that of an earlier ragprune pass, else the first
    finite number under :data:`PREVIOUS_SCORE_KEYS`."""
    earlier = metadata.get(METADATA_KEY)
    if isinstance(earlier, Mapping):
        for key in ("score", "previous_score"):
            if (score := _number(earlier.get(key))) is not None:
                return score
    for key in PREVIOUS_SCORE_KEYS:
        if (score := _number(metadata.get(key))) is not None:
            return score
    return None


def as_documents(documents: Any) -> list[Document]:
    """``documents`` as a list, checked: a sequence of Document."""
    if documents is None or isinstance(documents, (str, bytes, Document, Mapping)):
        raise TypeError(f"documents must be a sequence of Document, not {type(documents).__name__}")
    docs = list(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise TypeError(f"documents[{i}] must be a langchain_core Document, got {type(doc).__name__}")
        text = getattr(doc, "page_content", None)  # Document.model_construct() skips validation
        if not isinstance(text, str):
            raise TypeError(f"documents[{i}].page_content must be str, got {type(text).__name__}")
        if getattr(doc, "metadata", None) is None:
            docs[i] = doc.model_copy(update={"metadata": {}})  # a copy: the caller's Document is left as it is
        elif not isinstance(doc.metadata, Mapping):
            raise TypeError(f"documents[{i}].metadata must be a dict, got {type(doc.metadata).__name__}")
    return docs


def to_passages(documents: Sequence[Document]) -> list[Passage]:
    """One Passage per Document, ``index`` = position; metadata is passed by reference, never mutated."""
    return [Passage.from_text(d.page_content, i, score=previous_score(d.metadata), metadata=d.metadata)
            for i, d in enumerate(documents)]


def to_documents(result: PipelineResult, documents: Sequence[Document], counter: str) -> list[Document]:
    """New Documents for the kept passages, in the pipeline's order; ids and other fields kept."""
    out = []
    for p in result.passages:
        doc = documents[p.index]
        rec = PassageRecord.of(p, previous_score=p.original_score, counter=counter)
        metadata = {**doc.metadata, METADATA_KEY: rec.as_dict()}
        out.append(doc.model_copy(update={"page_content": p.text, "metadata": metadata}))
    return out


def event_payload(result: PipelineResult, documents: Sequence[Document], source: str) -> dict[str, Any]:
    """The data of the :data:`EVENT_NAME` event: totals plus every drop with its reason."""
    return {
        "source": source,
        "stats": result.stats.as_dict(),
        "dropped": [
            {"index": d.index, "id": documents[d.index].id, "stage": d.stage, "reason": d.reason, "score": d.score}
            for d in result.dropped
        ],
    }


def _config(callbacks: Callbacks) -> Any:
    # ``None`` lets ensure_config pick up the enclosing run's config (e.g. inside a RunnableLambda).
    return ensure_config(None if callbacks is None else {"callbacks": callbacks})


def emit(payload: dict[str, Any], callbacks: Callbacks) -> None:
    """Dispatch the event to the run's handlers; a no-op when there are none.

    Handlers given without a parent run (``compress_documents(..., callbacks=[handler])``)
    get a run named after the component, so the event still reaches them.
    """
    manager = get_callback_manager_for_config(_config(callbacks))
    if not manager.handlers:
        return
    if manager.parent_run_id is not None:
        dispatch_custom_event(EVENT_NAME, payload, config={"callbacks": manager})
        return
    run = manager.on_chain_start(None, {"passages_in": payload["stats"]["passages_in"]}, name=payload["source"])
    dispatch_custom_event(EVENT_NAME, payload, config={"callbacks": run.get_child()})
    run.on_chain_end({"passages_out": payload["stats"]["passages_out"]})


async def aemit(payload: dict[str, Any], callbacks: Callbacks) -> None:
    """Async :func:`emit`."""
    manager = get_async_callback_manager_for_config(_config(callbacks))
    if not manager.handlers:
        return
    if manager.parent_run_id is not None:
        await adispatch_custom_event(EVENT_NAME, payload, config={"callbacks": manager})
        return
    run = await manager.on_chain_start(None, {"passages_in": payload["stats"]["passages_in"]},
                                       name=payload["source"])
    await adispatch_custom_event(EVENT_NAME, payload, config={"callbacks": run.get_child()})
    await run.on_chain_end({"passages_out": payload["stats"]["passages_out"]})


def run_sync(pipeline: Pipeline, documents: Sequence[Document], query: Any, callbacks: Callbacks,
             owner: str) -> list[Document]:
    q = check_query(pipeline, query, owner)
    docs = as_documents(documents)
    result = pipeline.run(q, to_passages(docs))
    emit(event_payload(result, docs, owner), callbacks)
    return to_documents(result, docs, pipeline.counter.name)


async def run_async(pipeline: Pipeline, documents: Sequence[Document], query: Any, callbacks: Callbacks,
                    owner: str) -> list[Document]:
    q = check_query(pipeline, query, owner)
    docs = as_documents(documents)
    result = await pipeline.arun(q, to_passages(docs))  # in a worker thread: the event loop stays free
    await aemit(event_payload(result, docs, owner), callbacks)
    return to_documents(result, docs, pipeline.counter.name)


class PipelineFields(BaseModel):
    """Fields shared by the compressor, the transformer and the retriever (the same names as the
    LlamaIndex adapters): ``stage`` (also positional), ``budget``, ``counter``, ``top_n``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    stage: Any
    """A ragprune stage (``LexicalReranker()``, ``CrossEncoderReranker(...)``, ...) or a ``Pipeline``."""

    budget: Budget | None = None
    """Final token budget; an ``int`` means ``Budget(max_tokens=int)``. ``None``: only the stage's own."""

    counter: Any = None
    """Token counter for the budget and the statistics (see ``ragprune.get_counter``); default: words,
    or the wrapped Pipeline's own counter."""

    top_n: int | None = None
    """Keep at most this many items (the best, after the stage), before the budget. ``None``: no cap."""

    _pipeline: Pipeline = PrivateAttr()

    def __init__(self, stage: Any = None, /, **data: Any) -> None:
        if stage is not None:
            if "stage" in data:
                raise TypeError("stage given twice (positionally and as stage=)")
            data["stage"] = stage
        super().__init__(**data)

    @field_validator("stage", mode="before")
    @classmethod
    def _stage_from_config(cls, value: Any) -> Any:
        return from_config(value) if isinstance(value, dict) else value

    @field_serializer("stage")
    def _stage_config(self, value: Any) -> Any:
        return value.config()  # JSON: the stage's class and settings (model by path)

    @field_serializer("budget")
    def _budget_fields(self, value: Budget | None) -> Any:
        return None if value is None else dataclasses.asdict(value)

    @field_validator("stage")
    @classmethod
    def _check_stage(cls, value: Any) -> Any:
        if not callable(getattr(value, "apply", None)):
            raise ValueError(f"stage must be a ragprune stage or Pipeline (with apply(query, passages)), "
                             f"got {type(value).__name__}")
        return value

    @field_validator("budget", mode="before")
    @classmethod
    def _int_budget(cls, value: Any) -> Any:
        return Budget(**value) if isinstance(value, dict) else as_budget(value)

    def model_post_init(self, context: Any, /) -> None:
        self._pipeline = as_pipeline(self.stage, self.budget, self.counter, self.top_n)

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this component runs."""
        return self._pipeline

    @classmethod
    def default(cls, *, budget: Budget | int | None = None, top_n: int | None = None,
                threshold: float | None = None, device: Any = "auto", **fields: Any) -> Any:
        """This component over ragprune's shipped pruner (offline), counting in ``cl100k_base``."""
        from ragprune import default_pruner

        return cls(default_pruner(threshold=threshold, device=device), budget=budget, top_n=top_n,
                   counter="cl100k_base", **fields)

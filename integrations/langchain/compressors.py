"""ragprune stages as a LangChain document compressor and document transformer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, BaseDocumentTransformer, Document

from ._common import PipelineFields, run_async, run_sync

__all__ = ["RagpruneCompressor", "RagpruneTransformer"]


class RagpruneCompressor(PipelineFields, BaseDocumentCompressor):
    """Reranks, prunes and compresses retrieved Documents with a ragprune stage or Pipeline.

    Returns one new Document per kept input, in the stage's order, with the compressed
    text, the input's ``id`` and a shallow copy of its metadata plus a ``"ragprune"``
    record: ``score`` (the last stage score; ``None`` when no stage scored), ``previous_score``
    (an earlier ragprune score, else the incoming ``relevance_score``/``score``), ``tokens_before``,
    ``tokens_after``, ``rate``, ``kept_spans``, ``scored_by`` (stage names) and ``index``
    (position in this call's input).
    Totals and every dropped Document (with its reason) are sent as the custom event
    ``"ragprune_compression"``.  The caller's Documents are never mutated.

    Example:
        ```python
        from ragprune import Budget
        from ragprune.testing import LexicalReranker
        compressor = RagpruneCompressor(stage=LexicalReranker(top_n=4), budget=Budget(max_tokens=300))
        docs = compressor.compress_documents(docs, "who founded the city?")
        ```
    """

    def compress_documents(
        self, documents: Sequence[Document], query: str | None, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Compress ``documents`` for ``query`` (``None`` is allowed only for query-free stages).

        Raises:
            ValueError: the stage needs a query and ``query`` is ``None`` or blank.
            TypeError: ``documents`` is not a sequence of Document.
        """
        return run_sync(self.pipeline, documents, query, callbacks, type(self).__name__)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str | None, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`; the stages run in a worker thread, off the event loop."""
        return await run_async(self.pipeline, documents, query, callbacks, type(self).__name__)


class RagpruneTransformer(PipelineFields, BaseDocumentTransformer):
    """Query-free compression of Documents (e.g. a token compressor, a reorderer) as a transformer.

    Same output guarantees and event as :class:`RagpruneCompressor`.  Fits in
    ``DocumentCompressorPipeline(transformers=[...])`` and anywhere a
    ``BaseDocumentTransformer`` is accepted.  A stage that needs a query is refused:
    use :class:`RagpruneCompressor` for it.
    """

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        if self.pipeline.requires_query:
            raise ValueError(f"{type(self.stage).__name__} needs a query; RagpruneTransformer is query-free: "
                             "use RagpruneCompressor instead")

    def transform_documents(
        self, documents: Sequence[Document], *, callbacks: Callbacks | None = None, **kwargs: Any
    ) -> Sequence[Document]:
        """Compress ``documents`` without a query.  ``callbacks`` receive the compression event."""
        _no_extra(kwargs)
        return run_sync(self.pipeline, documents, None, callbacks, type(self).__name__)

    async def atransform_documents(
        self, documents: Sequence[Document], *, callbacks: Callbacks | None = None, **kwargs: Any
    ) -> Sequence[Document]:
        """Async :meth:`transform_documents`, off the event loop."""
        _no_extra(kwargs)
        return await run_async(self.pipeline, documents, None, callbacks, type(self).__name__)


def _no_extra(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")

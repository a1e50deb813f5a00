"""LlamaIndex ``BaseEmbedding`` over ragprune's bi-encoder (:class:`ragprune.BiEncoderModel`)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from ragprune.runtime.encoders import BiEncoderModel, as_bi_encoder

__all__ = ["RagpruneEmbedding"]


class RagpruneEmbedding(BaseEmbedding):
    """Sentence embeddings from a local or cached bi-encoder, for ``VectorStoreIndex`` and postprocessors.

    Use it as ``VectorStoreIndex(nodes, embed_model=RagpruneEmbedding("path/to/all-MiniLM-L6-v2"))``.

    Args:
        model: a local directory or hub id of a sentence-transformers model or plain
            encoder, a loaded ``SentenceTransformer`` / ``PreTrainedModel``, or a
            :class:`ragprune.BiEncoderModel` (used as is).  A local directory never
            touches the network; a bad path raises :class:`ragprune.ModelLoadError`.
        device: ``"auto"`` (cuda > mps > cpu) or a torch device.
        batch_size: texts per forward pass; also the default ``embed_batch_size``.
        local_files_only: never contact a hub (local paths never do anyway).
        normalize: L2-normalize the vectors (dot product = cosine).
        kwargs: other ``BaseEmbedding`` fields (``model_name``, ``embed_batch_size``, ...).

    Queries and texts are embedded the same way (a symmetric bi-encoder).  The async
    methods run the model in a worker thread, off the event loop.
    """

    device: str = Field(default="auto", description='"auto" (cuda > mps > cpu) or a torch device.')
    batch_size: int = Field(default=64, gt=0, description="Texts per forward pass (ignored for a BiEncoderModel).")
    local_files_only: bool = Field(default=False, description="Never contact a hub (local paths never do).")
    normalize: bool = Field(default=True, description="L2-normalize the vectors (dot product = cosine).")

    _encoder: BiEncoderModel = PrivateAttr()

    def __init__(self, model: Any, *, device: Any = "auto", batch_size: int = 64, local_files_only: bool = False,
                 normalize: bool = True, **kwargs: Any) -> None:
        if "model_name" not in kwargs:
            if isinstance(model, (str, os.PathLike)):
                kwargs["model_name"] = str(model)
            else:
                kwargs["model_name"] = str(getattr(model, "name", None) or type(model).__name__)
        kwargs.setdefault("embed_batch_size", min(batch_size, 2048))  # LlamaIndex caps it at 2048
        if isinstance(model, BiEncoderModel):
            device = model.device
        fields: dict[str, Any] = {"device": str(device), "batch_size": batch_size,
                                  "local_files_only": local_files_only, "normalize": normalize}
        super().__init__(**fields, **kwargs)
        self._encoder = as_bi_encoder(model, device=device, batch_size=batch_size,
                                      local_files_only=local_files_only, normalize=normalize)

    @classmethod
    def class_name(cls) -> str:
        return "RagpruneEmbedding"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> RagpruneEmbedding:
        """Rebuild from :meth:`to_dict`: the model loads again from ``model_name`` (its path or hub id)."""
        data = {**data, **kwargs}
        data.pop("class_name", None)
        return cls(data.pop("model_name"), **data)

    @property
    def encoder(self) -> BiEncoderModel:
        """The loaded bi-encoder (shared: it is safe to use from several threads)."""
        return self._encoder

    def _embed(self, texts: list[str]) -> list[list[float]]:
        # normalize=False keeps the encoder's own setting
        return self._encoder.encode(texts, normalize=self.normalize or None).tolist()  # type: ignore[no-any-return]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(list(texts))

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

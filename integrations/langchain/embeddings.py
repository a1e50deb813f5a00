"""LangChain ``Embeddings`` over ragprune's bi-encoder (:class:`ragprune.BiEncoderModel`)."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ragprune.runtime.encoders import BiEncoderModel, as_bi_encoder

__all__ = ["RagpruneEmbeddings"]


class RagpruneEmbeddings(BaseModel, Embeddings):
    """Sentence embeddings from a local or cached bi-encoder, for any LangChain vector store or filter.

    ``RagpruneEmbeddings("path/to/all-MiniLM-L6-v2")`` loads the model once; a local
    directory never touches the network and a bad path raises
    :class:`ragprune.ModelLoadError` naming it.  Queries and documents are embedded
    the same way (a symmetric bi-encoder), so ``embed_query(t) == embed_documents([t])[0]``.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    model: Any = Field(description="A local directory or hub id of a sentence-transformers model or plain "
                                   "encoder, a loaded SentenceTransformer / PreTrainedModel, or a BiEncoderModel.")
    device: Any = Field(default="auto", description='"auto" (cuda > mps > cpu) or a torch device.')
    batch_size: int = Field(default=64, ge=1, description="Texts per forward pass (ignored for a BiEncoderModel).")
    local_files_only: bool = Field(default=False, description="Never contact a hub (local paths never do).")
    normalize: bool = Field(default=True, description="L2-normalize the vectors (dot product = cosine).")

    _encoder: BiEncoderModel = PrivateAttr()

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)

    def model_post_init(self, context: Any, /) -> None:
        self._encoder = as_bi_encoder(self.model, device=self.device, batch_size=self.batch_size,
                                      local_files_only=self.local_files_only, normalize=self.normalize)

    @property
    def encoder(self) -> BiEncoderModel:
        """The loaded bi-encoder (shared: it is safe to use from several threads)."""
        return self._encoder

    def _embed(self, texts: list[str]) -> list[list[float]]:
        # normalize=False keeps the encoder's own setting
        return self._encoder.encode(texts, normalize=self.normalize or None).tolist()  # type: ignore[no-any-return]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in input order (an empty list gives an empty list)."""
        if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
        return self._embed(list(texts))

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query (embedded exactly as a document)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        return self._embed([text])[0]

    def __repr_args__(self) -> Any:
        model = self.model
        shown = str(model) if isinstance(model, (str, os.PathLike)) else repr(self._encoder)
        return [("model", shown), ("device", str(self._encoder.device)), ("normalize", self.normalize)]

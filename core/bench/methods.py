"""Methods the benchmark can run: ragprune stages and peers behind two small interfaces.

``ScoredMethod`` -- a trade-off curve for the price of one scoring pass:
``score(query, passages)`` runs the model once per case and returns per-unit
scores (per sentence, per passage or per word); ``select(scores, point)``
turns one sweep point (a threshold, a top-n, a rate) into one ``Kept`` value
per passage.  Both calls are timed; a point's latency is score + select.

``PlainMethod`` -- a black box run once per case and sweep point:
``run(query, passages, point)``.  Peers (LangChain, LlamaIndex, llmlingua),
"no compression" and any ragprune stage or pipeline given as an object
(:class:`StageMethod`) are plain methods.

Both load their models in ``load()`` (timed separately, never inside a case)
and free them in ``close()``.  Methods are built by name with
:func:`build_methods`; :data:`METHOD_NAMES` lists the names.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..passage import Passage
from ..text.segment import Span
from .metrics import Kept

__all__ = [
    "METHOD_NAMES",
    "MethodConfig",
    "MethodUnavailable",
    "BaseMethod",
    "ScoredMethod",
    "PlainMethod",
    "SentenceScores",
    "EmbeddingFilterMethod",
    "SentenceSelectorMethod",
    "RerankerMethod",
    "LexicalRerankerMethod",
    "LexicalPrunerMethod",
    "ProvenceMethod",
    "TokenClassifierMethod",
    "QueryTokenCompressorMethod",
    "NoCompression",
    "StageMethod",
    "LangChainEmbeddingsFilter",
    "LangChainCrossEncoderReranker",
    "LlamaIndexSentenceOptimizer",
    "LLMLingua2",
    "build_methods",
    "build_token_classifier",
]

logger = logging.getLogger("ragprune")


class MethodUnavailable(RuntimeError):
    """A method cannot run here (a package or model is missing); the benchmark skips it with a warning."""


def _whole(p: Passage) -> tuple[Span, ...]:
    return tuple(p.spans or ())


class BaseMethod:
    """Common fields: ``name``, the swept ``parameter``, its ``points`` and the ``default`` point."""

    name: str = "method"
    kind: str = "plain"  # "scored" | "plain"
    level: str = "passage"  # what is scored or kept: "passage" | "sentence" | "word"
    parameter: str = ""
    points: tuple[float, ...] = ()
    default: float | None = None
    peer: bool = False

    def load(self) -> None:
        """Load models (timed apart from the cases)."""

    def close(self) -> None:
        """Drop model references so the next method starts from a clean slate."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "level": self.level, "parameter": self.parameter,
                "points": list(self.points), "default": self.default, "peer": self.peer}

    def default_point(self) -> float:
        if self.default is not None and self.default in self.points:
            return self.default
        return self.points[len(self.points) // 2]


class ScoredMethod(BaseMethod):
    """Score once per case, select many times."""

    kind = "scored"

    def score(self, query: str, passages: list[Passage]) -> Any:
        raise NotImplementedError

    def select(self, scores: Any, passages: list[Passage], point: float) -> list[Kept]:
        raise NotImplementedError


class _ModelStageMethod(ScoredMethod):
    """A scored method backed by one ragprune stage built from ``model`` on ``load``."""

    def __init__(self, model: Any, **options: Any) -> None:
        self._model = model
        self._options = options
        self.stage: Any = None

    def _build(self) -> Any:
        raise NotImplementedError

    def load(self) -> None:
        self.stage = self._build()

    def close(self) -> None:
        self.stage = None


class PlainMethod(BaseMethod):
    """Run once per case and point."""

    def run(self, query: str, passages: list[Passage], point: float) -> list[Kept]:
        raise NotImplementedError


# --------------------------------------------------------------------------- sentence level


@dataclass(frozen=True)
class SentenceScores:
    """Per-sentence scores of one case: ``units[j]`` are passage ``j``'s sentence spans."""

    units: tuple[tuple[Span, ...], ...]
    scores: tuple[np.ndarray, ...]  # one float64 array per passage, aligned with units


def _sentence_units(passages: list[Passage]) -> list[list[Span]]:
    return [[] if p.is_blank else p.units("sentence") for p in passages]


def _select_sentences(s: SentenceScores, passages: list[Passage], threshold: float) -> list[Kept]:
    """Keep sentences scoring ``>= threshold``; a passage with none kept is dropped; blank ones pass."""
    out: list[Kept] = []
    for p, units, scores in zip(passages, s.units, s.scores, strict=True):
        if not units:
            out.append(_whole(p))
            continue
        keep = scores >= threshold
        if not keep.any():
            out.append(None)
        elif keep.all():
            out.append(_whole(p))
        else:
            out.append(_whole(p.keep_units([u for u, k in zip(units, keep.tolist(), strict=True) if k])))
    return out


def _split(flat: np.ndarray, units: list[list[Span]]) -> tuple[np.ndarray, ...]:
    bounds = np.cumsum([0, *[len(u) for u in units]])
    return tuple(np.asarray(flat[bounds[j]:bounds[j + 1]], dtype=np.float64) for j in range(len(units)))


class EmbeddingFilterMethod(_ModelStageMethod):
    """``EmbeddingFilter(level="sentence")`` swept over its cosine threshold."""

    name = "embedding-filter"
    level = "sentence"
    parameter = "threshold"
    points = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    default = 0.3

    def _build(self) -> Any:
        from ..stages.embedding_filter import EmbeddingFilter

        return EmbeddingFilter(self._model, level="sentence", **self._options)

    def score(self, query: str, passages: list[Passage]) -> SentenceScores:
        units = _sentence_units(passages)
        texts = [p.original[a:b] for p, u in zip(passages, units, strict=True) for a, b in u]  # type: ignore[index]
        flat = self.stage.similarities(query, texts)[0] if texts else np.zeros(0)
        return SentenceScores(tuple(tuple(u) for u in units), _split(flat, units))

    def select(self, scores: SentenceScores, passages: list[Passage], point: float) -> list[Kept]:
        return _select_sentences(scores, passages, point)


class SentenceSelectorMethod(_ModelStageMethod):
    """``SentenceSelector`` with a cross-encoder, swept over its threshold (raw logits by default)."""

    name = "sentence-selector"
    level = "sentence"
    parameter = "threshold"
    points: tuple[float, ...] = (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0)
    default = -2.0

    def __init__(self, model: Any, *, activation: str = "none", context_window: int = 0, **options: Any) -> None:
        super().__init__(model, **options)
        self._activation = activation
        self._context_window = context_window

    def _build(self) -> Any:
        from ..runtime.encoders import CrossEncoderModel
        from ..stages.sentence_selector import SentenceSelector

        scorer = self._model if hasattr(self._model, "score_pairs") else CrossEncoderModel(
            self._model, activation=self._activation, **self._options)
        return SentenceSelector(scorer, threshold=0.0, context_window=self._context_window)

    def score(self, query: str, passages: list[Passage]) -> SentenceScores:
        units = _sentence_units(passages)
        texts = [t for p, u in zip(passages, units, strict=True) if u for t in self.stage._context_texts(p, u)]
        flat = self.stage.score_texts(query, texts)
        return SentenceScores(tuple(tuple(u) for u in units), _split(flat, units))

    def select(self, scores: SentenceScores, passages: list[Passage], point: float) -> list[Kept]:
        return _select_sentences(scores, passages, point)


class GatedSentenceSelectorMethod(SentenceSelectorMethod):
    """The cross-encoder as a sentence selector at its best settings: each sentence scored with its
    neighbours as context, and a passage gate (a passage whose own logit is at or below ``gate`` is
    dropped whole); swept over the sentence logit threshold.  Two passes: sentences, then passages."""

    name = "sentence-selector-context"
    points: tuple[float, ...] = (-6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
    default = -1.0

    def __init__(self, model: Any, *, gate: float = -4.0, **options: Any) -> None:
        super().__init__(model, context_window=1, **options)
        self.gate = float(gate)

    def score(self, query: str, passages: list[Passage]) -> SentenceScores:
        s = super().score(query, passages)
        live = [j for j, u in enumerate(s.units) if u]
        logits = self.stage.score_texts(query, [passages[j].text for j in live]) if live else []
        scores = list(s.scores)
        for j, logit in zip(live, logits, strict=True):
            if float(logit) <= self.gate:
                scores[j] = np.full(len(scores[j]), -np.inf)
        return SentenceScores(s.units, tuple(scores))


def _pruner_threshold(model: Any, quantize: str | None = None) -> float | None:
    """The threshold saved with a local pruner directory (its int8 one for ``quantize="int8"``), if any."""
    import json

    from ..stages.provence import FORMAT_FILE

    path = Path(str(model)) / FORMAT_FILE
    if not path.is_file():
        return None
    spec = json.loads(path.read_text(encoding="utf-8"))
    value = (spec.get("int8") or {}).get("threshold") if quantize == "int8" else None
    value = spec.get("threshold") if value is None else value
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class ProvenceMethod(_ModelStageMethod):
    """``ProvencePruner`` swept over its sentence relevance threshold (passages kept in place)."""

    name = "provence"
    level = "sentence"
    parameter = "threshold"
    points: tuple[float, ...] = (0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.015, 0.02, 0.03, 0.045, 0.07, 0.1,
                                 0.15, 0.2, 0.3, 0.5, 0.7, 0.9)
    default = 0.1

    def __init__(self, model: Any, **options: Any) -> None:
        super().__init__(model, **options)
        if options.get("quantize"):
            self.name = f"provence-{options['quantize']}"
        own = _pruner_threshold(model, options.get("quantize"))  # the default is the model's own threshold
        if own is not None:
            self.default = own
            self.points = tuple(sorted({*self.points, own}))

    def _build(self) -> Any:
        from ..stages.provence import ProvencePruner

        return ProvencePruner(self._model, **self._options)

    def score(self, query: str, passages: list[Passage]) -> SentenceScores:
        units, scores, ranks = self.stage.unit_relevance(query, passages)  # what the stage itself reads
        gate = self.stage.gate
        if gate is not None:  # the stage's passage gate drops a passage whatever the threshold
            probs = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(ranks, dtype=np.float64)))
            scores = [np.full(len(sc), -np.inf) if pr < gate else sc for sc, pr in zip(scores, probs, strict=True)]
        return SentenceScores(tuple(tuple(u) for u in units), tuple(scores))

    def select(self, scores: SentenceScores, passages: list[Passage], point: float) -> list[Kept]:
        return _select_sentences(scores, passages, point)


# --------------------------------------------------------------------------- passage level


def _select_top(scores: Sequence[float | None], passages: list[Passage], top_n: float) -> list[Kept]:
    """Keep the ``top_n`` best passages (ties by input order; unscored last)."""
    n = int(top_n)
    keys = np.array([-s if s is not None and not math.isnan(s) else np.inf for s in scores], dtype=np.float64)
    order = np.argsort(keys, kind="stable")[:n]
    keep = np.zeros(len(passages), dtype=bool)
    keep[order] = True
    return [_whole(p) if k else None for p, k in zip(passages, keep.tolist(), strict=True)]


class RerankerMethod(_ModelStageMethod):
    """``CrossEncoderReranker`` swept over ``top_n``."""

    name = "cross-encoder"
    level = "passage"
    parameter = "top_n"
    points = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    default = 3.0

    def __init__(self, model: Any, **options: Any) -> None:
        super().__init__(model, **options)
        if options.get("quantize"):
            self.name = f"cross-encoder-{options['quantize']}"

    def _build(self) -> Any:
        from ..stages.cross_encoder import CrossEncoderReranker

        return CrossEncoderReranker(self._model, **self._options)

    def score(self, query: str, passages: list[Passage]) -> list[float | None]:
        return list(self.stage.score(query, passages))

    def select(self, scores: list[float | None], passages: list[Passage], point: float) -> list[Kept]:
        return _select_top(scores, passages, point)


class LexicalRerankerMethod(ScoredMethod):
    """The model-free :class:`ragprune.testing.LexicalReranker`, swept over ``top_n`` (for tests and smoke runs)."""

    name = "lexical-reranker"
    level = "passage"
    parameter = "top_n"
    points = (1.0, 2.0, 3.0, 5.0)
    default = 2.0

    def __init__(self) -> None:
        self.stage: Any = None

    def load(self) -> None:
        from ..testing import LexicalReranker

        self.stage = LexicalReranker()

    def score(self, query: str, passages: list[Passage]) -> list[float | None]:
        by_index = {p.index: p.score for p in self.stage.apply(query, passages)}
        return [by_index.get(p.index) for p in passages]

    def select(self, scores: list[float | None], passages: list[Passage], point: float) -> list[Kept]:
        return _select_top(scores, passages, point)


class LexicalPrunerMethod(ScoredMethod):
    """The model-free :class:`ragprune.testing.LexicalPruner`, swept over ``min_terms`` (for tests and smoke
    runs): keeps the units sharing at least that many terms with the query."""

    name = "lexical-pruner"
    level = "sentence"
    parameter = "min_terms"
    points = (1.0, 2.0, 3.0, 4.0)
    default = 2.0

    def score(self, query: str, passages: list[Passage]) -> SentenceScores:
        from ..testing import _terms

        q = _terms(query)
        units = _sentence_units(passages)
        scores = tuple(np.asarray([len(q & _terms((p.original or "")[a:b])) for a, b in u], dtype=np.float64)
                       for p, u in zip(passages, units, strict=True))
        return SentenceScores(tuple(tuple(u) for u in units), scores)

    def select(self, scores: SentenceScores, passages: list[Passage], point: float) -> list[Kept]:
        return _select_sentences(scores, passages, point)


# --------------------------------------------------------------------------- word level


class TokenClassifierMethod(_ModelStageMethod):
    """``TokenClassifierCompressor`` swept over ``rate`` (word keep probabilities computed once)."""

    name = "token-classifier"
    level = "word"
    parameter = "rate"
    points = (0.2, 0.33, 0.5, 0.7, 0.9)
    default = 0.33

    def _build(self) -> Any:
        from ..stages.token_classifier import TokenClassifierCompressor

        return TokenClassifierCompressor(self._model, **self._options)

    def score(self, query: str, passages: list[Passage]) -> list[Any]:
        st = self.stage
        work = [w for w in (st._words(pos, p) for pos, p in enumerate(passages) if not p.is_blank) if w is not None]
        if work:
            st._tokenize(work)
            st._score(work)
        return [(w, st._costs(w)) for w in work]

    def select(self, scores: list[Any], passages: list[Passage], point: float) -> list[Kept]:
        out: list[Kept] = [_whole(p) for p in passages]
        for w, cost in scores:
            total = int(cost.sum())
            cap = math.ceil(point * total - 1e-9)
            result = self.stage._select(w, cost, total, cap, point)
            out[w.pos] = None if isinstance(result, str) else _whole(result)
        return out


class QueryTokenCompressorMethod(_ModelStageMethod):
    """``QueryTokenCompressor`` swept over its word keep-probability threshold (probabilities computed once)."""

    name = "query-token-compressor"
    level = "word"
    parameter = "threshold"
    points = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
    default = 0.3

    def _build(self) -> Any:
        from ..stages.query_compressor import QueryTokenCompressor

        return QueryTokenCompressor(self._model, rate=None, threshold=self.default, **self._options)

    def score(self, query: str, passages: list[Passage]) -> list[Any]:
        return list(self.stage.word_probs(query, passages))

    def select(self, scores: list[Any], passages: list[Passage], point: float) -> list[Kept]:
        out: list[Kept] = []
        for p, (words, probs) in zip(passages, scores, strict=True):
            if p.is_blank or not words:
                out.append(_whole(p))
                continue
            chosen = [w for w, pr in zip(words, probs, strict=True) if pr >= point]
            out.append(tuple(p.keep_units(chosen).spans or ()) if chosen else None)
        return out


# --------------------------------------------------------------------------- plain


class NoCompression(PlainMethod):
    """Every passage kept whole: the reference point."""

    name = "none"
    parameter = ""
    points = (1.0,)
    default = 1.0

    def run(self, query: str, passages: list[Passage], point: float) -> list[Kept]:
        return [_whole(p) for p in passages]


class StageMethod(PlainMethod):
    """Any ragprune stage or :class:`~ragprune.Pipeline` given as an object (one point).

    ``factory(point)`` may build a stage per sweep point instead; ``points``
    then lists them.
    """

    kind = "plain"

    def __init__(self, name: str, stage: Any = None, *, factory: Callable[[float], Any] | None = None,
                 parameter: str = "", points: Sequence[float] = (1.0,), level: str = "passage") -> None:
        if (stage is None) == (factory is None):
            raise ValueError("give exactly one of stage and factory")
        self.name = name
        self.level = level
        self.parameter = parameter
        self.points = tuple(float(x) for x in points)
        self.default = self.points[len(self.points) // 2]
        self._stage = stage
        self._factory = factory
        self._built: dict[float, Any] = {}

    def load(self) -> None:
        if self._factory is not None:
            self._built = {pt: self._factory(pt) for pt in self.points}

    def close(self) -> None:
        self._built = {}

    def run(self, query: str, passages: list[Passage], point: float) -> list[Kept]:
        stage = self._stage if self._stage is not None else self._built[point]
        result = stage.run(query, passages) if hasattr(stage, "run") and hasattr(stage, "stages") else None
        kept = list(result.passages) if result is not None else stage.apply(query, passages)
        by_index = {p.index: _whole(p) for p in kept}
        return [by_index.get(p.index) for p in passages]


# --------------------------------------------------------------------------- peers


def _require(module: str, hint: str) -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MethodUnavailable(f"{module} is not installed ({hint})")


def _cpu_or(device: str) -> str:
    from ..runtime.device import resolve_device

    return str(resolve_device(device))


class LangChainEmbeddingsFilter(PlainMethod):
    """LangChain ``EmbeddingsFilter`` (passage level, top ``k``) over MiniLM embeddings."""

    name = "langchain-embeddings-filter"
    level = "passage"
    parameter = "k"
    points = (3.0,)
    default = 3.0
    peer = True

    def __init__(self, model: Any, device: str = "auto") -> None:
        self._model = model
        self._device = device
        self._filter: Any = None

    def load(self) -> None:
        _require("langchain_classic", "pip install langchain-classic")
        _require("langchain_community", "EmbeddingsFilter needs it: pip install langchain-community")
        from langchain_classic.retrievers.document_compressors import EmbeddingsFilter

        from ragprune.integrations.langchain import RagpruneEmbeddings

        self._embeddings = RagpruneEmbeddings(self._model, device=_cpu_or(self._device), batch_size=64,
                                              local_files_only=True)
        self._filter = EmbeddingsFilter(embeddings=self._embeddings, k=int(self.default_point()))
        self._cls = EmbeddingsFilter

    def close(self) -> None:
        self._filter = None
        self._embeddings = None

    def run(self, query: str, passages: list[Passage], point: float) -> list[Kept]:
        from langchain_core.documents import Document

        filt = self._filter if int(point) == self._filter.k else self._cls(embeddings=self._embeddings, k=int(point))
        docs = [Document(page_content=p.text, metadata={"i": i}) for i, p in enumerate(passages)]
        kept = {d.metadata["i"]: d.page_content for d in filt.compress_documents(docs, query)}
        return [(_whole(p) if kept[i] == p.text else kept[i]) if i in kept else None
                for i, p in enumerate(passages)]


class LangChainCrossEncoderReranker(PlainMethod):
    """LangChain ``CrossEncoderReranker`` (``top_n``) over a sentence-transformers ``CrossEncoder``.

    The model object implements LangChain's ``BaseCrossEncoder`` the way
    ``langchain_community``'s ``HuggingFaceCrossEncoder`` does:
    ``CrossEncoder.predict`` over the (query, text) pairs.
    """

    name = "langchain-cross-encoder"
    level = "passage"
    parameter = "top_n"
    points = (3.0,)
    default = 3.0
    peer = True

    def __init__(self, model: Any, device: str = "auto") -> None:
        self._model = model
        self._device = device
        self._cross: Any = None

    def load(self) -> None:
        _require("langchain_classic", "pip install langchain-classic")
        from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        from langchain_core.cross_encoders import BaseCrossEncoder
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(str(self._model), device=_cpu_or(self._device), local_files_only=True)

        class STCrossEncoder(BaseCrossEncoder):
            def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
                return [float(x) for x in ce.predict(text_pairs, show_progress_bar=False)]

        self._cross = STCrossEncoder()
        self._cls = CrossEncoderReranker

    def close(self) -> None:
        self._cross = None

    def run(self, query: str, passages: list[Passage], point: float) -> list[Kept]:
        from langchain_core.documents import Document

        reranker = self._cls(model=self._cross, top_n=int(point))
        docs = [Document(page_content=p.text, metadata={"i": i}) for i, p in enumerate(passages)]
        kept = {d.metadata["i"] for d in reranker.compress_documents(docs, query)}
        return [_whole(p) if i in kept else None for i, p in enumerate(passages)]


class LlamaIndexSentenceOptimizer(PlainMethod):
    """LlamaIndex ``SentenceEmbeddingOptimizer`` (``percentile_cutoff``, defaults otherwise) over MiniLM.

    It rewrites each node's text (best sentences, with one sentence of context
    on each side, joined by spaces), so its output is text.  It is called one
    node at a time with one shared ``QueryBundle`` (the query is embedded
    once); a node for which it raises "Optimizer returned zero sentences"
    counts as dropped.
    """

    name = "llamaindex-optimizer"
    level = "sentence"
    parameter = "percentile_cutoff"
    points = (0.5,)
    default = 0.5
    peer = True

    def __init__(self, model: Any, device: str = "auto") -> None:
        self._model = model
        self._device = device
        self._embed: Any = None
        self.raised = 0

    def load(self) -> None:
        _require("llama_index.core", "pip install llama-index-core")
        from llama_index.core.postprocessor.optimizer import SentenceEmbeddingOptimizer

        from ragprune.integrations.llamaindex import RagpruneEmbedding

        self._embed = RagpruneEmbedding(self._model, device=_cpu_or(self._device), batch_size=64,
                                        local_files_only=True, model_name="all-MiniLM-L6-v2", embed_batch_size=10)
        self._cls = SentenceEmbeddingOptimizer

    def close(self) -> None:
        self._embed = None

    def run(self, query: str, passages: list[Passage], point: float) -> list[Kept]:
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        optimizer = self._cls(embed_model=self._embed, percentile_cutoff=point)
        bundle = QueryBundle(query_str=query)
        out: list[Kept] = []
        for p in passages:
            node = NodeWithScore(node=TextNode(text=p.text))
            try:
                result = optimizer.postprocess_nodes([node], query_bundle=bundle)
            except ValueError as e:
                if "zero sentences" not in str(e):
                    raise
                self.raised += 1
                out.append(None)
                continue
            text = result[0].node.get_content()
            out.append(_whole(p) if text == p.text else text)
        return out


def build_token_classifier(out: Path, *, seed: int = 0, encoder: Any = None) -> Path:
    """A MiniLM token classifier with a seeded random 2-label head, saved as safetensors.

    Its name contains ``bert-base-multilingual-cased`` because llmlingua's word
    merging accepts only such names.  The head is untrained: what it keeps
    means nothing; it exists to compare speed on the same weights.
    """
    out = Path(out)
    if "bert-base-multilingual-cased" not in out.name:
        raise ValueError(f"the directory name must contain 'bert-base-multilingual-cased', got {out.name!r}")
    marker = out / f".seed-{seed}"
    if (out / "model.safetensors").is_file() and marker.is_file():
        return out
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    from ..tools.assets import asset_path

    src = str(encoder) if encoder is not None else str(asset_path("minilm"))
    model = BertForTokenClassification.from_pretrained(src, num_labels=2, local_files_only=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 0.05)
        model.classifier.bias.zero_()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(src, local_files_only=True).save_pretrained(str(out))
    marker.write_text("")
    return out


class LLMLingua2(PlainMethod):
    """The ``llmlingua`` package's LLMLingua-2 ``PromptCompressor.compress_prompt`` (token level only).

    Each case's passages go in as one context list with
    ``use_context_level_filter=False``; ``compressed_prompt_list`` gives one
    text per passage.  Needs ``TIKTOKEN_CACHE_DIR`` pointing at a folder
    holding the cl100k_base file (``ragprune bench`` sets it to llama-index-core's
    copy), since its constructor loads that encoding.
    """

    name = "llmlingua2"
    level = "word"
    parameter = "rate"
    points = (0.33,)
    default = 0.33
    peer = True

    def __init__(self, model: Any, device: str = "auto") -> None:
        self._model = model
        self._device = device
        self._compressor: Any = None

    def load(self) -> None:
        _require("llmlingua", "pip install --no-deps llmlingua")
        if not os.environ.get("TIKTOKEN_CACHE_DIR"):
            raise MethodUnavailable("llmlingua fetches a tiktoken encoding on construction: set TIKTOKEN_CACHE_DIR "
                                    "to a folder holding it (e.g. llama_index/core/_static/tiktoken_cache)")
        from llmlingua import PromptCompressor

        self._compressor = PromptCompressor(model_name=str(self._model), use_llmlingua2=True,
                                            device_map=_cpu_or(self._device))

    def close(self) -> None:
        self._compressor = None

    def run(self, query: str, passages: list[Passage], point: float) -> list[Kept]:
        live = [i for i, p in enumerate(passages) if not p.is_blank]
        out: list[Kept] = [_whole(p) for p in passages]
        if not live:
            return out
        res = self._compressor.compress_prompt([passages[i].text for i in live], rate=point,
                                               use_context_level_filter=False)
        texts = res["compressed_prompt_list"]
        if len(texts) != len(live):
            raise RuntimeError(f"llmlingua returned {len(texts)} contexts for {len(live)}")
        for i, t in zip(live, texts, strict=True):
            out[i] = t if t.strip() else None
        return out


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MethodConfig:
    """Where the models come from, and how they run."""

    minilm: Any = None  # bi-encoder path (default: the "minilm" asset)
    cross_encoder: Any = None  # cross-encoder path (default: the "ms-marco-minilm-l12" asset)
    pruner: Any = None  # a Provence pruner directory (default: the shipped pruner)
    student: Any = None  # a distilled query-aware token compressor directory: enables "query-token-compressor"
    token_classifier: Any = None  # token classifier directory (default: built from MiniLM with a random head)
    work_dir: Any = None  # where a built token classifier is saved
    assets_dir: Any = None
    device: str = "auto"
    counter: Any = "cl100k_base"


METHOD_NAMES: tuple[str, ...] = (
    "none",
    "embedding-filter",
    "sentence-selector",
    "sentence-selector-context",
    "cross-encoder",
    "cross-encoder-int8",
    "provence",
    "provence-int8",
    "token-classifier",
    "langchain-embeddings-filter",
    "langchain-cross-encoder",
    "llamaindex-optimizer",
    "llmlingua2",
    "query-token-compressor",
    "lexical-reranker",
    "lexical-pruner",
)
DEFAULT_METHODS: tuple[str, ...] = METHOD_NAMES[:-3]  # the student needs --student; the last two are test doubles


def _asset(name: str, config: MethodConfig) -> Path:
    from ..tools.assets import asset_path

    try:
        return asset_path(name, config.assets_dir)
    except FileNotFoundError as e:
        raise MethodUnavailable(str(e)) from e


def _token_classifier_dir(config: MethodConfig) -> Path:
    if config.token_classifier is not None:
        return Path(config.token_classifier)
    base = Path(config.work_dir) if config.work_dir is not None else Path(".cache") / "bench"
    return build_token_classifier(base / "bench-minilm-bert-base-multilingual-cased-tc",
                                  encoder=_asset("minilm", config))


def _minilm(config: MethodConfig) -> Any:
    """The bi-encoder: ``config.minilm`` or the "minilm" asset."""
    return config.minilm or _asset("minilm", config)


def _cross_encoder(config: MethodConfig) -> Any:
    """The cross-encoder: ``config.cross_encoder`` or the "ms-marco-minilm-l12" asset."""
    return config.cross_encoder or _asset("ms-marco-minilm-l12", config)


def _build_provence(config: MethodConfig) -> BaseMethod:
    if config.pruner is None:
        from ..defaults import DEFAULT_PRUNER_PATH

        return ProvenceMethod(DEFAULT_PRUNER_PATH, device=config.device, local_files_only=True)
    return ProvenceMethod(config.pruner, device=config.device, local_files_only=True)


def _build_provence_int8(config: MethodConfig) -> BaseMethod:
    from ..defaults import DEFAULT_PRUNER_PATH

    return ProvenceMethod(config.pruner or DEFAULT_PRUNER_PATH, device="cpu", local_files_only=True,
                          quantize="int8")


def _build_query_token_compressor(config: MethodConfig) -> BaseMethod:
    if config.student is None:
        raise MethodUnavailable("query-token-compressor needs a distilled student: pass --student PATH "
                                "(ragprune train distill)")
    return QueryTokenCompressorMethod(config.student, device=config.device, local_files_only=True)


def _build_token_classifier(config: MethodConfig) -> BaseMethod:
    _require("ragprune.stages.token_classifier", "core/token_classifier.py")
    return TokenClassifierMethod(_token_classifier_dir(config), device=config.device, local_files_only=True,
                                 counter=config.counter)


_BUILDERS: dict[str, Callable[[MethodConfig], BaseMethod]] = {
    "none": lambda config: NoCompression(),
    "lexical-reranker": lambda config: LexicalRerankerMethod(),
    "lexical-pruner": lambda config: LexicalPrunerMethod(),
    "embedding-filter": lambda config: EmbeddingFilterMethod(_minilm(config), device=config.device,
                                                             local_files_only=True),
    "sentence-selector": lambda config: SentenceSelectorMethod(_cross_encoder(config), device=config.device,
                                                               local_files_only=True),
    "sentence-selector-context": lambda config: GatedSentenceSelectorMethod(
        _cross_encoder(config), device=config.device, local_files_only=True),
    "cross-encoder": lambda config: RerankerMethod(_cross_encoder(config), device=config.device,
                                                   local_files_only=True),
    "cross-encoder-int8": lambda config: RerankerMethod(_cross_encoder(config), device="cpu", local_files_only=True,
                                                        quantize="int8"),
    "provence": _build_provence,
    "provence-int8": _build_provence_int8,
    "query-token-compressor": _build_query_token_compressor,
    "token-classifier": _build_token_classifier,
    "langchain-embeddings-filter": lambda config: LangChainEmbeddingsFilter(_minilm(config), config.device),
    "langchain-cross-encoder": lambda config: LangChainCrossEncoderReranker(_cross_encoder(config), config.device),
    "llamaindex-optimizer": lambda config: LlamaIndexSentenceOptimizer(_minilm(config), config.device),
    "llmlingua2": lambda config: LLMLingua2(_token_classifier_dir(config), config.device),
}


def build_method(name: str, config: MethodConfig | None = None) -> BaseMethod:
    """One method by name; ``MethodUnavailable`` when its package or model is missing."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHOD_NAMES)}")
    return builder(config or MethodConfig())


def build_methods(names: Sequence[str] | None = None, config: MethodConfig | None = None,
                  points: dict[str, Sequence[float]] | None = None) -> list[BaseMethod]:
    """Methods by name (default: all but the test double); unavailable ones are skipped with a warning.

    ``points`` overrides a method's sweep points (``{"cross-encoder": [1, 2]}``).
    """
    names = list(DEFAULT_METHODS if names is None else names)
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHOD_NAMES)}")
    points = dict(points or {})
    bad = [n for n in points if n not in names]
    if bad:
        raise ValueError(f"points given for method(s) not selected: {', '.join(bad)}")
    out: list[BaseMethod] = []
    for n in names:
        try:
            m = build_method(n, config)
        except MethodUnavailable as e:
            logger.warning("skipping %s: %s", n, e)
            continue
        if n in points:
            pts = tuple(float(x) for x in points[n])
            if not pts:
                raise ValueError(f"no points given for {n}")
            m.points = pts
            if m.default not in pts:
                m.default = pts[len(pts) // 2]
        out.append(m)
    return out

"""Provence-style query-aware sentence pruning, with reranking in the same pass.

One forward pass of an encoder over ``[CLS] query [SEP] passage [SEP]`` (the
tokenizer's own pair template) gives two things:

* a per-token relevance: a token-classification head with two labels
  (0 = drop, 1 = keep); the relevance of a token is the softmax probability of
  label 1;
* a passage relevance: a ranking head giving one logit per pair.

Token relevance is averaged over the passage tokens of each sentence, and the
sentences whose mean reaches ``threshold`` are kept, so how much is kept adapts
to the content.  A passage with no sentence kept is dropped (and reported); the
passages are reranked by the ranking logit in the same call.

Model format ("ragprune pruner", format version 1)
--------------------------------------------------
A directory, loadable with no remote code::

    config.json            a standard transformers config of the backbone
    tokenizer files        any fast tokenizer (tokenizer.json, vocab, ...)
    model.safetensors      the backbone's own state dict, keys unprefixed
                           (exactly as the backbone class saves them), plus
                             token_head.weight  [2, hidden]  token_head.bias  [2]
                             rank_head.weight   [1, hidden]  rank_head.bias   [1]
                           (the rank_head tensors only for ranking "cls-linear")
    ragprune_pruner.json   {"format": "ragprune-pruner", "format_version": 1,
                            "ranking": "cls-linear" | "sequence-classifier",
                            "token_labels": {"0": "drop", "1": "keep"},
                            "max_length": 512, "threshold": 0.1}

``ranking`` says where the passage logit comes from:

* ``"cls-linear"``: the backbone is an ``AutoModel`` encoder; ``rank_head`` is
  a linear layer on the last hidden state of the first token ([CLS]/<s>).
  The directory also loads as a plain encoder with ``AutoModel``.
* ``"sequence-classifier"``: the backbone is an
  ``AutoModelForSequenceClassification`` with one label, whose logit is the
  ranking score (its own pooler/classifier layers); the token head reads the
  last entry of its hidden states.  The directory also loads as a plain
  cross-encoder.

In both cases ``token_head`` is applied to the last hidden states.

Released Provence-style checkpoints are read without remote code by mapping
their state-dict keys into :class:`PrunerModel` (ranking "sequence-classifier"):

* naver Provence (``naver/provence-reranker-debertav3-v1``): a DeBERTa-v3
  sequence classifier (``deberta.*``, ``pooler.dense.*``, ``classifier.*`` with
  one label) plus ``token_classifier.{weight,bias}`` ([2, hidden]) on the last
  hidden states; ``token_classifier`` becomes ``token_head``.
* OpenProvence (``hotchpotch/open-provence-*``): ``config.json`` of model type
  ``open_provence`` with the backbone config under ``base_model_config``;
  ``ranking_model.*`` is a one-label sequence classifier and
  ``pruning_head.classifier.{weight,bias}`` the token head (keys without the
  ``ranking_model.`` prefix are read too).  Its ``default_threadshold`` and
  ``max_length`` become the pruner's defaults.

Only ``model.safetensors`` weights are read.
"""


from __future__ import annotations

from .checkpoint import (
    DEFAULT_THRESHOLD,
    FORMAT_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    RANKINGS,
    WEIGHTS_FILE,
    PrunerSpec,
    resolve_model_dir,
)
from .model import PrunerModel, PrunerOutput
from .relevance import PairTemplate, sentence_relevance
from .stage import ProvencePruner

__all__ = [
    "DEFAULT_THRESHOLD",
    "FORMAT_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RANKINGS",
    "WEIGHTS_FILE",
    "PairTemplate",
    "PrunerModel",
    "PrunerOutput",
    "PrunerSpec",
    "ProvencePruner",
    "resolve_model_dir",
    "sentence_relevance",
]

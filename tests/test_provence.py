"""ProvencePruner and the pruner model format, with tiny random models."""

from __future__ import annotations

import json
import random
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import TINY_BERT, save_wordpiece_tokenizer  # noqa: E402
from ragprune import Budget, Passage, Pipeline, WordCounter, render_spans  # noqa: E402
from ragprune.runtime.loading import ModelLoadError  # noqa: E402
from ragprune.stages.provence import (  # noqa: E402
    FORMAT_FILE,
    ProvencePruner,
    PrunerModel,
    sentence_relevance,
)

QUERY = "what is the capital of france?"
PASSAGES = [
    "Paris is the capital of France. The cat sat on the mat. Berlin is a large city in Germany.",
    "The dog sat. Who was first? The river is small.",
    "Which city is the capital? Paris. The answer is Paris!",
    "北京是中国的首都。The capital of France is Paris.",
]


def vocab_size(tok: Any) -> int:
    return max(tok.get_vocab().values()) + 1


def make_encoder(path: Path, *, seed: int = 0) -> Path:
    """A tiny random BERT encoder (AutoModel) with the shared WordPiece tokenizer."""
    from transformers import BertConfig, BertModel

    tok = save_wordpiece_tokenizer(path)
    config = BertConfig(vocab_size=vocab_size(tok), **TINY_BERT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(str(path))
    return path


def make_pruner(path: Path, encoder: Path, *, seed: int = 0, token_scale: float = 2.0,
                max_length: int = 128) -> Path:
    """A pruner with spread-out random token relevance, saved in the ragprune format."""
    from transformers import AutoTokenizer

    g = torch.Generator().manual_seed(seed)
    model = PrunerModel.from_encoder(encoder, generator=g, device="cpu", max_length=max_length)
    with torch.no_grad():
        model.token_head.weight.normal_(0.0, token_scale, generator=g)
        model.rank_head.weight.normal_(0.0, 1.0, generator=g)
    model.save_pretrained(path, tokenizer=AutoTokenizer.from_pretrained(str(encoder)))
    return path


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("enc"))


@pytest.fixture(scope="module")
def pruner_dir(tmp_path_factory: pytest.TempPathFactory, encoder_dir: Path) -> Path:
    return make_pruner(tmp_path_factory.mktemp("pruner"), encoder_dir)


@pytest.fixture(scope="module")
def pruner(pruner_dir: Path) -> ProvencePruner:
    return ProvencePruner(pruner_dir, device="cpu")


def check_extractive(p: Passage) -> None:
    assert p.original is not None
    assert p.text == render_spans(p.original, p.spans or ())
    for a, b in p.spans or ():
        assert 0 <= a < b <= len(p.original)


def sentence_means(pr: ProvencePruner, query: str, passages: list[Passage]) -> list[np.ndarray]:
    probs, offsets, _ = pr.score(query, [p.text for p in passages])
    return [sentence_relevance(p, o, t, p.units("sentence")) for p, o, t in zip(passages, offsets, probs, strict=True)]


# ----------------------------------------------------------------------------- format


def test_saved_format_is_documented_and_loads_as_plain_encoder(pruner_dir: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModel

    spec = json.loads((pruner_dir / FORMAT_FILE).read_text())
    assert spec["format"] == "ragprune-pruner" and spec["format_version"] == 1
    assert spec["ranking"] == "cls-linear" and spec["token_labels"]["1"] == "keep"
    assert spec["threshold"] == pytest.approx(0.1) and spec["max_length"] == 128
    with safe_open(str(pruner_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert tuple(f.get_tensor("token_head.weight").shape) == (2, 32)
        assert tuple(f.get_tensor("rank_head.weight").shape) == (1, 32)
    assert "embeddings.word_embeddings.weight" in keys
    # The backbone part is a standard encoder checkpoint (no remote code).
    enc = AutoModel.from_pretrained(str(pruner_dir), trust_remote_code=False)
    loaded = PrunerModel.from_pretrained(pruner_dir, device="cpu")
    w = loaded.backbone.embeddings.word_embeddings.weight
    assert torch.equal(enc.embeddings.word_embeddings.weight, w)


def test_roundtrip_identical_outputs(pruner_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    model = PrunerModel.from_pretrained(pruner_dir, device="cpu")
    model.save_pretrained(tmp_path / "again", tokenizer=AutoTokenizer.from_pretrained(str(pruner_dir)))
    a = ProvencePruner(model, tokenizer=AutoTokenizer.from_pretrained(str(pruner_dir)), threshold=0.4)
    b = ProvencePruner(tmp_path / "again", threshold=0.4, device="cpu")
    ra, rb = a.process(QUERY, PASSAGES), b.process(QUERY, PASSAGES)
    assert [(p.index, p.spans, p.score) for p in ra.passages] == [(p.index, p.spans, p.score) for p in rb.passages]
    assert ra.dropped == rb.dropped


def test_not_a_pruner_directory(encoder_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a pruner model"):
        PrunerModel.from_pretrained(encoder_dir, device="cpu")
    with pytest.raises(ModelLoadError):
        PrunerModel.from_pretrained(tmp_path / "missing", device="cpu", local_files_only=True)
    with pytest.raises(ModelLoadError):
        PrunerModel.from_pretrained("nobody/no-such-pruner", device="cpu", local_files_only=True)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(path / "model.safetensors"))


def _manual_outputs(seq_model: Any, token_head: Any, ids: Any, mask: Any) -> tuple[Any, Any]:
    with torch.no_grad():
        out = seq_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return token_head(out.hidden_states[-1]), out.logits[:, 0]


def test_naver_provence_layout_deberta(tmp_path: Path) -> None:
    """deberta.* + pooler.dense + classifier (1 label) + token_classifier, DeBERTa-v2 config."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    tok = save_wordpiece_tokenizer(tmp_path)
    config = DebertaV2Config(vocab_size=vocab_size(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=37, max_position_embeddings=128, relative_attention=True,
                             pos_att_type=["p2c", "c2p"], position_buckets=32, type_vocab_size=0,
                             position_biased_input=False, num_labels=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        seq = DebertaV2ForSequenceClassification(config).eval()
        token_classifier = torch.nn.Linear(32, 2)
    state = dict(seq.state_dict())
    state.update({f"token_classifier.{k}": v for k, v in token_classifier.state_dict().items()})
    _save_state(tmp_path, state)
    raw = config.to_dict()
    raw.update(architectures=["Provence"], auto_map={"AutoModel": "modeling_provence.Provence"})
    (tmp_path / "config.json").write_text(json.dumps(raw))

    model = PrunerModel.from_pretrained(tmp_path, device="cpu")
    assert model.spec.ranking == "sequence-classifier" and model.rank_head is None
    enc = tok(["what is paris", "the capital city"], ["paris is the capital of france.", "the cat sat"],
              padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    want_tokens, want_rank = _manual_outputs(seq, token_classifier, enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(out.token_logits, want_tokens, atol=1e-5)
    assert torch.allclose(out.rank_logits, want_rank, atol=1e-5)
    # and it runs as a stage
    res = ProvencePruner(tmp_path, device="cpu", threshold=0.0).process(QUERY, PASSAGES)
    assert sorted(p.index for p in res.passages) == [0, 1, 2, 3]


@pytest.mark.parametrize("prefixed", [True, False])
def test_open_provence_layout(tmp_path: Path, prefixed: bool) -> None:
    """ranking_model.* (a 1-label sequence classifier) + pruning_head.classifier.*"""
    from transformers import BertConfig, BertForSequenceClassification

    tok = save_wordpiece_tokenizer(tmp_path)
    config = BertConfig(vocab_size=vocab_size(tok), num_labels=1, **TINY_BERT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        seq = BertForSequenceClassification(config).eval()
        head = torch.nn.Linear(32, 2)
    prefix = "ranking_model." if prefixed else ""
    state = {f"{prefix}{k}": v for k, v in seq.state_dict().items()}
    state.update({f"pruning_head.classifier.{k}": v for k, v in head.state_dict().items()})
    _save_state(tmp_path, state)
    raw = {"model_type": "open_provence", "base_model_config": config.to_dict(), "max_length": 96,
           "default_threadshold": 0.25, "num_labels": 1, "pruning_config": {"hidden_size": 32},
           "auto_map": {"AutoModel": "modeling_open_provence_standalone.OpenProvenceForSequenceClassification"}}
    (tmp_path / "config.json").write_text(json.dumps(raw))

    model = PrunerModel.from_pretrained(tmp_path, device="cpu")
    assert model.spec.threshold == pytest.approx(0.25) and model.spec.max_length == 96
    enc = tok(["what is paris"], ["paris is the capital of france."], return_tensors="pt")
    with torch.no_grad():
        out = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        want = seq(**enc, output_hidden_states=True)
    assert torch.allclose(out.rank_logits, want.logits[:, 0], atol=1e-5)
    assert torch.allclose(out.token_logits, head(want.hidden_states[-1]), atol=1e-5)
    pr = ProvencePruner(tmp_path, device="cpu")
    assert pr.threshold == pytest.approx(0.25) and pr.max_length == 96


# ----------------------------------------------------------------------------- stage


def test_no_query_and_bad_inputs(pruner: ProvencePruner, pruner_dir: Path) -> None:
    with pytest.raises(ValueError):
        pruner.process(None, PASSAGES)
    with pytest.raises(ValueError):
        pruner.process("   ", PASSAGES)
    with pytest.raises(TypeError):
        pruner.process(QUERY, [1, 2])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        pruner.process(QUERY, "a single string")
    assert pruner.process(QUERY, []).passages == ()
    with pytest.raises(ValueError):
        ProvencePruner(pruner_dir, threshold=float("nan"), device="cpu")
    with pytest.raises(ValueError):
        ProvencePruner(pruner_dir, top_n=0, device="cpu")
    with pytest.raises(ValueError):
        ProvencePruner(pruner.model)  # a model object needs its tokenizer


def test_extractive_identity_metadata(pruner: ProvencePruner) -> None:
    meta = [{"source": i} for i in range(len(PASSAGES))]
    items = [Passage.from_text(t, 10 + i, score=1.0, metadata=meta[i]) for i, t in enumerate(PASSAGES)]
    items.append(Passage.from_text(PASSAGES[0], 99, metadata={"dup": True}))  # duplicate text, own identity
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.45).process(QUERY, items)
    seen = {p.index for p in res.passages} | {d.index for d in res.dropped}
    assert seen == {p.index for p in items}
    by_index = {p.index: p for p in items}
    for p in res.passages:
        check_extractive(p)
        assert p.metadata is by_index[p.index].metadata
        assert p.original == by_index[p.index].original
        assert p.scores[-1][0] == "provence"
    for d in res.dropped:
        assert d.stage == "provence" and "threshold" in d.reason


def test_threshold_semantics(pruner: ProvencePruner) -> None:
    items = [Passage.from_text(t, i) for i, t in enumerate(PASSAGES)]
    means = sentence_means(pruner, QUERY, items)
    every = np.concatenate(means)
    assert every.min() < every.max()  # the random head spreads relevance
    t = float(np.median(every))
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=t, reorder=False).process(QUERY, items)
    out = {p.index: p for p in res.passages}
    for p, m in zip(items, means, strict=True):
        want = [u for u, v in zip(p.units("sentence"), m, strict=True) if v >= t]
        if want:
            assert out[p.index].spans == p.with_spans(want).spans
            assert out[p.index].text == p.with_spans(want).text
        else:
            assert p.index not in out
    # 0 keeps everything untouched; above 1 drops everything and says why.
    all_kept = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0).process(QUERY, items)
    assert sorted(p.index for p in all_kept.passages) == [0, 1, 2, 3]
    assert all(p.text == p.original for p in all_kept.passages) and not all_kept.dropped
    none = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=1.01).process(QUERY, items)
    assert none.passages == ()
    assert sorted(d.index for d in none.dropped) == [0, 1, 2, 3]
    assert all("threshold 1.01" in d.reason for d in none.dropped)


def test_passage_gate_drops_whole_passages_below_it(pruner: ProvencePruner, pruner_dir: Path,
                                                    tmp_path: Path) -> None:
    items = [Passage.from_text(t, i) for i, t in enumerate(PASSAGES)]
    _, _, ranks = pruner.score(QUERY, [p.text for p in items])
    probs = 1.0 / (1.0 + np.exp(-ranks))
    gate = float(np.median(probs))
    assert probs.min() < gate <= probs.max()  # the random rank head spreads the passages
    gated = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0, gate=gate).process(QUERY, items)
    assert sorted(p.index for p in gated.passages) == [i for i in range(4) if probs[i] >= gate]
    below = [d for d in gated.dropped if "passage gate" in d.reason]
    assert sorted(d.index for d in below) == [i for i in range(4) if probs[i] < gate]
    assert all(f"below the passage gate {gate:g}" in d.reason for d in below)
    # kept passages are untouched by the gate (threshold 0 keeps every sentence)
    assert all(p.text == p.original for p in gated.passages)
    # the model's own gate is read from ragprune_pruner.json; 0 turns it off; bad values are refused
    saved = tmp_path / "gated"
    import shutil

    shutil.copytree(pruner_dir, saved)
    spec = json.loads((saved / FORMAT_FILE).read_text())
    spec["gate"] = gate
    (saved / FORMAT_FILE).write_text(json.dumps(spec))
    from_file = ProvencePruner(saved, device="cpu", threshold=0.0)
    assert from_file.gate == pytest.approx(gate) and "gate=" in repr(from_file)
    assert [p.index for p in from_file.process(QUERY, items).passages] == [p.index for p in gated.passages]
    assert ProvencePruner(saved, device="cpu", gate=0).gate is None
    # ragprune bench's provence method applies the model's gate at every threshold, as the stage does
    from ragprune.bench.methods import ProvenceMethod

    method = ProvenceMethod(saved, device="cpu")
    method.load()
    kept = method.select(method.score(QUERY, items), items, 0.0)
    assert [j for j, k in enumerate(kept) if k is not None] == sorted(p.index for p in gated.passages)
    assert ProvencePruner(pruner_dir, device="cpu").gate is None  # older files have no gate
    with pytest.raises(ValueError, match="gate"):
        ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, gate=1.5)
    spec["gate"] = -0.1
    (saved / FORMAT_FILE).write_text(json.dumps(spec))
    with pytest.raises((ValueError, ModelLoadError), match="gate"):
        ProvencePruner(saved, device="cpu")


def test_int8_quantization_is_close_and_leaves_the_float_model_alone(pruner: ProvencePruner) -> None:
    before = {k: v.clone() for k, v in pruner.model.state_dict().items()}
    q = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, quantize="int8")
    assert "quantize='int8'" in repr(q) and q.quantize == "int8"
    linears = [m for m in q.model.modules() if type(m).__name__ == "Linear"]
    assert linears and all("quantized.dynamic" in type(m).__module__ for m in linears)  # every one in int8
    assert all(torch.equal(v, pruner.model.state_dict()[k]) for k, v in before.items())  # float model untouched
    assert any(type(m).__name__ == "Linear" for m in pruner.model.modules())
    texts = PASSAGES
    fp, _, fr = pruner.score(QUERY, texts)
    qp, _, qr = q.score(QUERY, texts)
    assert max(float(np.abs(a - b).max()) for a, b in zip(fp, qp, strict=True)) < 0.2
    assert np.abs(fr - qr).max() < 0.5
    out = q.process(QUERY, [Passage.from_text(t, i) for i, t in enumerate(texts)])
    for p in out.passages:
        check_extractive(p)
    with pytest.raises(ValueError, match="quantize"):
        ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, quantize="int4")


def test_int8_quantization_shows_users_no_torch_deprecation_notice(pruner: ProvencePruner) -> None:
    # torch announces the end of torch.ao.quantization on every call; a user asking for quantize="int8"
    # should not see torch's migration notice (the project tracks that API itself)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        q = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, quantize="int8")
    assert q.quantize == "int8"
    assert not [w for w in seen if "quantiz" in str(w.message)], [str(w.message)[:80] for w in seen]


def test_ranking_matches_one_at_a_time(pruner: ProvencePruner) -> None:
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0, batch_size=3).process(QUERY,
                                                                                                      PASSAGES)
    single = {}
    for i, t in enumerate(PASSAGES):
        _, _, r = pruner.score(QUERY, [t])
        single[i] = float(r[0])
    got = [p.index for p in res.passages]
    assert got == sorted(single, key=lambda i: (-single[i], i))
    for p in res.passages:
        assert p.score == pytest.approx(single[p.index], abs=1e-5)
    kept_order = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0, reorder=False)
    assert [p.index for p in kept_order.apply(QUERY, PASSAGES)] == [0, 1, 2, 3]


def test_top_n_and_blank_passages(pruner: ProvencePruner) -> None:
    items = [*PASSAGES, "", "   \n "]
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0, top_n=2).process(QUERY, items)
    scored = [p for p in res.passages if p.score is not None]
    assert len(scored) == 2
    assert [p.index for p in res.passages[-2:]] == [4, 5]  # blanks pass through, last, unscored
    assert [p.text for p in res.passages[-2:]] == ["", "   \n "]
    assert sorted(d.index for d in res.dropped) == sorted(set(range(4)) - {p.index for p in scored})
    assert all("top_n=2" in d.reason for d in res.dropped)
    dropped_scores = [d.score for d in res.dropped]
    assert min(p.score for p in scored) >= max(dropped_scores)  # type: ignore[type-var]
    only_blank = pruner.process(QUERY, ["", " "])
    assert [p.text for p in only_blank.passages] == ["", " "] and not only_blank.dropped


def test_always_keep_first(pruner: ProvencePruner) -> None:
    items = [Passage.from_text(t, i) for i, t in enumerate(PASSAGES)]
    means = sentence_means(pruner, QUERY, items)
    # A threshold that keeps some later sentence but not the first of some passage.
    candidates = [float(m[1:].max()) for m in means if len(m) > 1 and m[0] < m[1:].max()]
    assert candidates
    t = min(candidates)
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=t, always_keep_first=True,
                         reorder=False).process(QUERY, items)
    plain = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=t, reorder=False).process(QUERY, items)
    assert {p.index for p in res.passages} == {p.index for p in plain.passages}
    for p in res.passages:
        first = items[p.index].units("sentence")[0]
        first_end = first[0] + len(items[p.index].original[first[0] : first[1]].rstrip())
        assert (p.spans or ())[0][0] == first[0] and (p.spans or ())[0][1] >= first_end
        check_extractive(p)
    assert any(p.spans != q.spans for p, q in zip(res.passages, plain.passages, strict=True))


def test_budget_respected(pruner: ProvencePruner) -> None:
    counter = WordCounter()
    pr = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0)
    for cap in (0, 5, 12, 40):
        res = Pipeline([pr], budget=Budget(max_tokens=cap), counter=counter).run(QUERY, PASSAGES)
        assert sum(counter.count(p.text) for p in res.passages) <= cap
        assert {p.index for p in res.passages} | {d.index for d in res.dropped} == {0, 1, 2, 3}
        for p in res.passages:
            check_extractive(p)


def test_a_stage_budget_is_deprecated_but_still_applied(pruner: ProvencePruner) -> None:
    with pytest.warns(DeprecationWarning, match="budgets live in the Pipeline"):
        pr = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0, budget=Budget(max_tokens=5))
    res = pr.process(QUERY, PASSAGES)
    assert sum(WordCounter().count(p.text) for p in res.passages) <= 5


def test_long_passages_use_windows(pruner: ProvencePruner) -> None:
    long_text = " ".join(PASSAGES * 6)
    small = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, max_length=24, stride=4, threshold=0.3)
    n_tokens = len(pruner.tokenizer(long_text, add_special_tokens=False)["input_ids"])
    assert n_tokens > 3 * 24
    probs, _, ranks = small.score(QUERY, [long_text, PASSAGES[1]])
    assert len(probs[0]) == n_tokens and np.isfinite(probs[0]).all() and np.isfinite(ranks).all()
    assert ((probs[0] >= 0) & (probs[0] <= 1)).all()
    res = small.process(QUERY, [long_text])
    for p in res.passages:
        check_extractive(p)
    # Windows overlap: each window's own probabilities average into the token's value.
    huge = "The cat sat on the mat. " * 1_000  # 24,000 characters, ~50 windows
    big = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0, max_batch_tokens=4096)
    out = big.process(QUERY, [huge])
    assert out.passages[0].text == huge


@pytest.mark.parametrize("sentence_windows", [False, True])
def test_window_average_equals_manual(pruner: ProvencePruner, sentence_windows: bool) -> None:
    from ragprune import sentence_spans

    text = PASSAGES[0] + " " + PASSAGES[1]
    pr = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, max_length=20, stride=5)
    pr.sentence_windows = sentence_windows
    probs, _, ranks = pr.score(QUERY, [text])
    q = pruner.tokenizer(QUERY, add_special_tokens=False)["input_ids"]
    enc = pruner.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    p_ids = np.asarray(enc["input_ids"])
    q = np.asarray(q[: (20 - 3) // 2])
    room = 20 - 3 - len(q)
    sums, counts, best = np.zeros(len(p_ids)), np.zeros(len(p_ids)), -np.inf
    step = room - min(5, room // 2)
    if sentence_windows:  # each window starts at the last sentence start keeping >= 5 tokens shared
        firsts = [a for a, _ in sentence_spans(text)]
        anchors = sorted({i for i, (a, _) in enumerate(enc["offset_mapping"]) if a in firsts} - {0})
        starts = [0]
        while starts[-1] + room < len(p_ids):
            fits = [a for a in anchors if starts[-1] < a <= starts[-1] + step]
            starts.append(fits[-1] if fits else starts[-1] + step)
        assert any(s in anchors for s in starts[1:])  # the text has sentence starts to use
    else:
        starts = list(range(0, len(p_ids) - room, step)) + [len(p_ids) - room]
    for s in starts:
        piece_probs, rank = pr._forward([(q, p_ids[s : s + room])])[0]
        sums[s : s + room] += piece_probs
        counts[s : s + room] += 1
        best = max(best, rank)
    assert counts.min() >= 1 and counts.max() >= 2
    assert np.allclose(probs[0], sums / counts, atol=1e-6)
    assert ranks[0] == pytest.approx(best, abs=1e-6)


def test_determinism_and_threads(pruner: ProvencePruner) -> None:
    first = pruner.process(QUERY, PASSAGES)
    results: list[Any] = []

    def work() -> None:
        results.append(pruner.process(QUERY, PASSAGES))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in [pruner.process(QUERY, PASSAGES), *results]:
        assert [(p.index, p.spans) for p in r.passages] == [(p.index, p.spans) for p in first.passages]
        assert np.allclose([p.score for p in r.passages], [p.score for p in first.passages], atol=1e-6)


def test_cjk_emoji_control_characters(pruner: ProvencePruner) -> None:
    texts = ["北京是中国的首都。北京很大。", "Paris 🇫🇷 is the capital\u200f of France.\x07 ok.", "مرحبا. Paris!"]
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0).process(QUERY, texts)
    assert sorted(p.index for p in res.passages) == [0, 1, 2]
    assert {p.text for p in res.passages} == set(texts)


def test_compressed_input_stays_inside_kept_spans(pruner: ProvencePruner) -> None:
    p = Passage.from_text(PASSAGES[0] + " " + PASSAGES[1], 0)
    units = p.units("sentence")
    compressed = p.with_spans([units[0], units[2], units[4]])
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.0).process(QUERY, [compressed])
    assert res.passages[0].spans == compressed.spans
    res = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=0.4).process(QUERY, [compressed])
    for q in res.passages:
        check_extractive(q)
        for a, b in q.spans or ():
            assert any(ca <= a and b <= cb for ca, cb in compressed.spans or ())


def test_piece_table_and_sentence_relevance() -> None:
    original = "Alpha one. Beta two. Gamma three."
    p = Passage.from_text(original, 0)
    units = p.units("sentence")
    cut = p.with_spans([(0, 5), units[2]])  # "Alpha" + gap + "Gamma three."
    assert cut.text == "Alpha Gamma three."
    offsets_map = cut.offset_map()
    orig, text = offsets_map.original_starts, offsets_map.text_starts
    assert list(orig) == [0, units[2][0]] and list(text) == [0, 6]
    cut_units = cut.units("sentence")
    # tokens (text coordinates): "Alpha" -> 0.9, "Gamma" -> 0.2, "three" -> 0.4, "." -> 0.6
    offsets = np.array([[0, 5], [6, 11], [12, 17], [17, 18]])
    means = sentence_relevance(cut, offsets, np.array([0.9, 0.2, 0.4, 0.6]), cut_units)
    assert np.allclose(means, [0.9, 0.4])
    assert sentence_relevance(cut, np.zeros((0, 2), dtype=np.int64), np.zeros(0), cut_units).tolist() == [0, 0]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.text(alphabet=st.sampled_from(list("the cat sat. Paris? 北京。 \n!")), max_size=60),
                   min_size=1, max_size=4),
    threshold=st.floats(min_value=0.0, max_value=1.0),
)
def test_property_extractive_and_accounted(pruner: ProvencePruner, texts: list[str], threshold: float) -> None:
    pr = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, threshold=threshold, max_length=32)
    res = pr.process(QUERY, texts)
    assert sorted([p.index for p in res.passages] + [d.index for d in res.dropped]) == list(range(len(texts)))
    for p in res.passages:
        check_extractive(p)
        assert p.original == texts[p.index]


def test_repr_shows_the_settings(pruner: ProvencePruner) -> None:
    text = repr(pruner)
    assert text.startswith("ProvencePruner(") and f"threshold={pruner.threshold:g}" in text and "object at" not in text


# ----------------------------------------------------------------------------- batching

BATCH_WORDS = "the cat sat on mat paris is capital of france . berlin river ! who was first ? 北京".split()


def random_texts(rng: random.Random, lengths: list[int]) -> list[str]:
    return [" ".join(rng.choice(BATCH_WORDS) for _ in range(n)) for n in lengths]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=90), min_size=1, max_size=7),
    seed=st.integers(min_value=0, max_value=2**16),
    batch_size=st.integers(min_value=1, max_value=10),
    max_batch_tokens=st.none() | st.integers(min_value=1, max_value=300),
)
def test_outputs_do_not_depend_on_batching(pruner: ProvencePruner, lengths: list[int], seed: int, batch_size: int,
                                           max_batch_tokens: int | None) -> None:
    texts = random_texts(random.Random(seed), lengths)
    kw: dict[str, Any] = dict(tokenizer=pruner.tokenizer, max_length=32, stride=6)
    packed = ProvencePruner(pruner.model, batch_size=batch_size, max_batch_tokens=max_batch_tokens, **kw)
    legacy = ProvencePruner(pruner.model, batch_size=batch_size, max_batch_tokens=max_batch_tokens, **kw)
    legacy._legacy_batching = True
    single = ProvencePruner(pruner.model, batch_size=1, **kw)  # one window at a time, no padding
    want_probs, want_offsets, want_ranks = single.score(QUERY, texts)
    assert single.padding_stats().padded == 0
    for pr in (packed, legacy):
        probs, offsets, ranks = pr.score(QUERY, texts)
        assert np.allclose(ranks, want_ranks, rtol=0, atol=1e-5)
        for got, want, o, wo in zip(probs, want_probs, offsets, want_offsets, strict=True):
            assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-6)
            assert np.array_equal(o, wo)
    assert packed.padding_stats().padding_share <= 0.1
    assert packed.padding_stats().items == single.padding_stats().items == legacy.padding_stats().items


def test_padding_share_below_a_tenth_on_mixed_lengths(pruner: ProvencePruner) -> None:
    from ragprune.runtime.batching import PaddingStats

    rng = random.Random(0)
    texts = random_texts(rng, [*(rng.randint(1, 50) for _ in range(14)), 150])  # one window each, and a long one
    packed = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, max_length=64)
    legacy = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, max_length=64)
    legacy._legacy_batching = True
    got = packed.process(QUERY, texts)
    want = legacy.process(QUERY, texts)
    assert [(p.index, p.spans) for p in got.passages] == [(p.index, p.spans) for p in want.passages]
    assert np.allclose([p.score for p in got.passages], [p.score for p in want.passages], rtol=0, atol=1e-5)
    stats, before = packed.padding_stats(reset=True), legacy.padding_stats()
    assert stats.items == before.items > len(texts) and stats.real == before.real
    assert before.padding_share > 0.1  # the windows of one call padded to the longest of each batch_size
    assert stats.padding_share < 0.1
    assert stats.fed == stats.real + stats.padded
    assert packed.padding_stats() == PaddingStats()  # reset


def test_token_cap_default_is_smaller_on_cpu(pruner: ProvencePruner) -> None:
    assert pruner.model.device.type == "cpu" and pruner.max_batch_tokens == 2048
    capped = ProvencePruner(pruner.model, tokenizer=pruner.tokenizer, max_batch_tokens=100, batch_size=16)
    assert capped.max_batch_tokens == 100
    batches = capped.batches([30] * 10 + [150])
    assert batches[0] == [10] and sorted(len(b) for b in batches) == [1, 1, 3, 3, 3]  # <= 100 tokens, or alone

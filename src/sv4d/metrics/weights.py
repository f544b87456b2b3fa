"""Reading the pretrained weight files of the metric networks (LPIPS, CLIP, I3D).

The weights cannot be downloaded here: the user passes a file, or a directory in which the
standard published file names are looked for. Files may be safetensors, ``torch.save``
pickles (read with ``weights_only=True``) or TorchScript archives (OpenAI's CLIP ``.pt``),
whose state dict is taken.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import Sv4dError

__all__ = ["find_weight_file", "read_state_dict", "load_checked"]


def find_weight_file(path: str | os.PathLike, names: Sequence[str], what: str) -> Path:
    """``path`` itself if it is a file, else the first of ``names`` (glob patterns allowed)
    found in the directory ``path``. Raises Sv4dError naming the files looked for."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        for name in names:
            hits = sorted(p.glob(name))
            if hits:
                return hits[0]
        raise Sv4dError(f"no {what} weights in {p}: looked for {', '.join(names)}")
    raise Sv4dError(f"{what} weights: {p} does not exist")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a weight file as a flat ``{key: tensor}`` dict on the CPU.

    A checkpoint that nests its weights under ``state_dict`` or ``model`` is unwrapped, and
    a ``module.`` prefix (DataParallel) is dropped.
    """
    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(p), device="cpu")
        elif _is_torchscript(p):
            sd = torch.jit.load(str(p), map_location="cpu").state_dict()
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Sv4dError:
        raise
    except Exception as e:  # corrupt, truncated or not a weight file at all
        raise Sv4dError(f"cannot read weights from {p}: {type(e).__name__}: {e}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, Mapping) and wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise Sv4dError(f"{p} does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_checked(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, source: str) -> nn.Module:
    """Load ``state`` into ``module`` after checking that every parameter and buffer is present
    with the right shape; keys the module does not have are ignored (a classifier head, a
    text tower). Raises Sv4dError with the first problems found."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    wrong = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} expected"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or wrong:
        lines = wrong[:3] + [f"missing {k}" for k in missing[:3]]
        more = len(wrong) + len(missing) - len(lines)
        raise Sv4dError(
            f"{source} is not a {what} weight file: " + "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")
        )
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()}, strict=True)
    return module

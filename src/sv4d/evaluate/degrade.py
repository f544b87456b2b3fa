"""Degraded copies of a multi-view set, to check that metrics rank damage as they should.

Every image is blurred with a Gaussian of ``blur_sigma`` pixels (on premultiplied RGBA, so the
alpha edge blurs with the colour) and/or shifted by ``shift_px`` pixels to the right (the
uncovered columns become transparent). Cameras and times are copied unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import Sv4dError
from ..io.multiview import RESERVED_KEYS, read_multiview, write_multiview
from ..models.clip import gaussian_blur2d

__all__ = ["degrade_images", "degrade_set"]


def degrade_images(rgba: np.ndarray, blur_sigma: float = 0.0, shift_px: int = 0) -> np.ndarray:
    """(N, H, W, 4) uint8 straight-alpha RGBA -> the same, blurred and shifted."""
    if blur_sigma < 0:
        raise Sv4dError(f"blur sigma must be >= 0, got {blur_sigma}")
    x = torch.from_numpy(rgba).permute(0, 3, 1, 2).double() / 255.0
    a = x[:, 3:]
    pre = torch.cat([x[:, :3] * a, a], 1)
    if blur_sigma > 0:
        pre = gaussian_blur2d(pre, blur_sigma, blur_sigma)
    if shift_px:
        pre = torch.roll(pre, shifts=shift_px, dims=3)
        if shift_px > 0:
            pre[..., :shift_px] = 0
        else:
            pre[..., shift_px:] = 0
    a = pre[:, 3:]
    rgb = torch.where(a > 1e-6, pre[:, :3] / a.clamp_min(1e-6), torch.zeros_like(pre[:, :3]))
    out = torch.cat([rgb.clamp(0, 1), a.clamp(0, 1)], 1)
    return (out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def degrade_set(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    blur_sigma: float = 0.0,
    shift_px: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a blurred and/or shifted copy of the set ``src`` to ``dst``."""
    s = read_multiview(src)
    rgba = np.stack([degrade_images(s.load_view(v, "rgba"), blur_sigma, shift_px) for v in range(s.num_views)])
    extra = {k: v for k, v in s.meta.items() if k not in (*RESERVED_KEYS, "conventions", "generator")}
    extra["degraded"] = {"source": str(src), "blur_sigma": blur_sigma, "shift_px": shift_px}
    return write_multiview(dst, s.rig, rgba=rgba, extra=extra, overwrite=overwrite)

"""What a 4D fit trains on: the chosen views and frames of a multi-view video set, at the
chosen resolution, with cameras and rays.

Downsampling uses an area filter on *premultiplied* colour and alpha, then composites on
white, so edge pixels keep the right mix of object and background (averaging straight
colours would drag background colour into the object's edges, and compositing first would
lose alpha). Times are mapped to [0, 1] over the whole set (first to last frame), so a
subset of frames keeps its place in time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import Sv4dError
from ..io.multiview import Intrinsics, MultiViewSet, read_multiview


@dataclass
class FitData:
    """V views x F frames of H x W images.

    rgb: (V, F, H, W, 3) float32 in [0, 1], over white; alpha: (V, F, H, W) float32.
    c2w: (V, 4, 4) float32 OpenGL camera-to-world; intrinsics: for H x W.
    times: (F,) float32 in [0, 1]; views, frames: indices into the set;
    azimuth_deg, elevation_deg: (V,) float64;
    weight: None (every pixel counts fully) or (V, F, H, W) float32 per-pixel loss weights.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    c2w: torch.Tensor
    intrinsics: Intrinsics
    times: torch.Tensor
    views: list[int]
    frames: list[int]
    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    source: str
    weight: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        v, f, h, w = self.alpha.shape
        return v, f, h, w


def downsample_rgba(rgba: np.ndarray, size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., H, W, 4) uint8 straight-alpha RGBA -> (rgb over white (..., h, w, 3), alpha (..., h, w)),
    float32, by area averaging of premultiplied colour and alpha. ``size`` = h (square) or (h, w)."""
    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.ndim < 3 or rgba.shape[-1] != 4:
        raise Sv4dError(f"downsample_rgba needs uint8 (..., H, W, 4), got {rgba.dtype} {rgba.shape}")
    h, w = (size, size) if isinstance(size, int) else size
    lead, (H, W) = rgba.shape[:-3], rgba.shape[-3:-1]
    if h > H or w > W or h < 1 or w < 1:
        raise Sv4dError(f"cannot downsample {W}x{H} images to {w}x{h} (only smaller sizes)")
    x = torch.from_numpy(rgba.reshape(-1, H, W, 4)).float().div_(255.0).permute(0, 3, 1, 2)
    a = x[:, 3:]
    pre = torch.cat([x[:, :3] * a, a], 1)
    if (h, w) != (H, W):
        if H % h == 0 and W % w == 0:
            pre = F.avg_pool2d(pre, (H // h, W // w))
        else:
            pre = F.interpolate(pre, size=(h, w), mode="area")
    alpha = pre[:, 3].clamp(0, 1)
    rgb = (pre[:, :3] + (1.0 - alpha[:, None])).clamp(0, 1)  # composite on white
    return (rgb.permute(0, 2, 3, 1).reshape(*lead, h, w, 3).contiguous(),
            alpha.reshape(*lead, h, w).contiguous())


def _indices(chosen: Sequence[int] | None, n: int, what: str) -> list[int]:
    if chosen is None:
        return list(range(n))
    out = [int(i) for i in chosen]
    if not out:
        raise Sv4dError(f"no {what}s chosen")
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise Sv4dError(f"{what} index(es) {bad} do not exist (the set has {n} {what}s: 0..{n - 1})")
    if len(set(out)) != len(out):
        raise Sv4dError(f"{what} indices repeat: {out}")
    return out


def load_fit_data(source: str | os.PathLike | MultiViewSet, views: Sequence[int] | None = None,
                  frames: Sequence[int] | None = None, resolution: int | None = None) -> FitData:
    """Read views x frames of a set (default all) at ``resolution`` (default the set's size)."""
    s = source if isinstance(source, MultiViewSet) else read_multiview(source)
    vs = _indices(views, s.num_views, "view")
    fs = _indices(frames, s.num_frames, "frame")
    intr = s.intrinsics
    if resolution is None:
        h, w = intr.height, intr.width
    else:
        if resolution < 8:
            raise Sv4dError(f"resolution must be at least 8 pixels, got {resolution}")
        h = int(resolution)
        w = max(1, round(intr.width * h / intr.height))
    rgba = np.stack([np.stack([s.load_image(v, f, "rgba") for f in fs]) for v in vs])
    rgb, alpha = downsample_rgba(rgba, (h, w))
    c2w = np.stack([np.asarray(s.views[v].c2w, dtype=np.float64) for v in vs])
    az, el = s.angles_deg()
    t = np.asarray(s.times, dtype=np.float64)
    span = t[-1] - t[0] if len(t) > 1 else 0.0
    times = (t[fs] - t[0]) / span if span > 0 else np.zeros(len(fs))
    return FitData(rgb=rgb, alpha=alpha, c2w=torch.from_numpy(c2w).float(), intrinsics=intr.scaled(w, h),
                   times=torch.from_numpy(times).float(), views=vs, frames=fs,
                   azimuth_deg=az[vs], elevation_deg=el[vs],
                   source=str(s.root))


def camera_rays(c2w: torch.Tensor, intr: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of OpenGL cameras.

    c2w: (V, 4, 4). Returns origins and unit directions, each (V, H, W, 3); pixel (u, v) has
    its centre at (u + 0.5, v + 0.5), v grows downwards, the camera looks along -Z.
    """
    c2w = c2w.float()
    v_, u_ = torch.meshgrid(torch.arange(intr.height, dtype=torch.float32) + 0.5,
                            torch.arange(intr.width, dtype=torch.float32) + 0.5, indexing="ij")
    d_cam = torch.stack([(u_ - intr.cx) / intr.fx, -(v_ - intr.cy) / intr.fy, -torch.ones_like(u_)], -1)
    d = torch.einsum("vij,hwj->vhwi", c2w[:, :3, :3], d_cam)
    d = d / d.norm(dim=-1, keepdim=True)
    o = c2w[:, None, None, :3, 3].expand_as(d)
    return o.contiguous(), d.contiguous()

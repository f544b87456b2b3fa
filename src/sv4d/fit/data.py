"""What a 4D fit trains on: the chosen views and frames of a multi-view video set, at the
chosen resolution, with cameras and rays.

Downsampling uses an area filter on *premultiplied* colour and alpha, then composites on
white, so edge pixels keep the right mix of object and background (averaging straight
colours would drag background colour into the object's edges, and compositing first would
lose alpha). Times are mapped to [0, 1] over the whole set (``Rig.time_span``), so a subset of
frames keeps its place in time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..cameras import Intrinsics, Rig, TimeSpan
from ..errors import Sv4dError
from ..io.multiview import MultiViewSet, read_multiview


@dataclass
class FitData:
    """V views x F frames of H x W images, and the rig they were taken with.

    rgb: (V, F, H, W, 3) float32 in [0, 1], over white; alpha: (V, F, H, W) float32.
    rig: the V fitted cameras (intrinsics for H x W) and the F fitted frames' times in seconds;
    time_span: the whole set's first-to-last-frame span, which maps seconds to the unit time the
    fields are indexed by (so a subset of frames keeps its place in time);
    views, frames: indices into the set; weight: None (every pixel counts fully) or
    (V, F, H, W) float32 per-pixel loss weights.
    Derived: c2w (V, 4, 4) float32 OpenGL camera-to-world; times (F,) float32 unit times.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    rig: Rig
    time_span: TimeSpan
    views: list[int]
    frames: list[int]
    source: str
    weight: torch.Tensor | None = None
    c2w: torch.Tensor = field(init=False, repr=False)
    times: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        v, f, h, w = self.alpha.shape
        if (self.rig.num_views, self.rig.num_frames) != (v, f) or (
            self.rig.intrinsics.height,
            self.rig.intrinsics.width,
        ) != (h, w):
            raise Sv4dError(
                f"images {tuple(self.alpha.shape)} do not match the rig's {self.rig.num_views} views x "
                f"{self.rig.num_frames} frames of {self.rig.intrinsics.width}x{self.rig.intrinsics.height}"
            )
        self.c2w = torch.from_numpy(self.rig.c2w).float()
        self.times = torch.from_numpy(self.time_span.to_unit(self.rig.times)).float()

    @property
    def intrinsics(self) -> Intrinsics:
        return self.rig.intrinsics

    @property
    def azimuth_deg(self) -> np.ndarray:
        return self.rig.azimuth_deg

    @property
    def elevation_deg(self) -> np.ndarray:
        return self.rig.elevation_deg

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
    return (rgb.permute(0, 2, 3, 1).reshape(*lead, h, w, 3).contiguous(), alpha.reshape(*lead, h, w).contiguous())


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


def load_fit_data(
    source: str | os.PathLike | MultiViewSet,
    views: Sequence[int] | None = None,
    frames: Sequence[int] | None = None,
    resolution: int | None = None,
) -> FitData:
    """Read views x frames of a set (default all) at ``resolution`` (image height; default the set's size)."""
    s = source if isinstance(source, MultiViewSet) else read_multiview(source)
    vs = _indices(views, s.num_views, "view")
    fs = _indices(frames, s.num_frames, "frame")
    if resolution is not None and resolution < 8:
        raise Sv4dError(f"resolution must be at least 8 pixels, got {resolution}")
    rig = s.rig.select(vs, fs).at_height(resolution)
    rgba = np.stack([np.stack([s.load_image(v, f, "rgba") for f in fs]) for v in vs])
    rgb, alpha = downsample_rgba(rgba, (rig.intrinsics.height, rig.intrinsics.width))
    return FitData(rgb=rgb, alpha=alpha, rig=rig, time_span=s.rig.time_span, views=vs, frames=fs, source=str(s.root))

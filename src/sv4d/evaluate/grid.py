"""Reading a predicted and a ground-truth multi-view video set as two matching image grids.

Both sets must have the same views (cameras) and frames (times); when they differ the error
lists the differences, and ``ignore_cameras`` compares them position by position anyway
(recording the differences as warnings). Images are composited over white (straight-alpha
RGBA -> RGB) and kept as uint8; alpha masks are kept when both sets have RGBA images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..cameras import rotation_angle_deg
from ..errors import Sv4dError
from ..io.multiview import MultiViewSet, composite_white, read_multiview

__all__ = ["EvalGrid", "camera_differences", "load_grids"]

#: tolerances for "the same camera": position (in scene units, relative to the camera
#: distance), rotation (degrees), focal length / principal point (relative), time (seconds)
POSITION_TOL, ANGLE_TOL_DEG, INTRINSICS_TOL, TIME_TOL_S = 1e-3, 0.1, 1e-3, 1e-4


@dataclass
class EvalGrid:
    """Matching images of the prediction and the ground truth, view-major.

    ``pred``/``gt``: (V, F, H, W, 3) uint8 over white; ``pred_alpha``/``gt_alpha``:
    (V, F, H, W) uint8 or None; ``views``/``frames``: positions in the ground-truth set.
    """

    pred: np.ndarray
    gt: np.ndarray
    pred_alpha: np.ndarray | None
    gt_alpha: np.ndarray | None
    views: list[int]
    frames: list[int]
    view_names: list[str]
    times: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.pred.shape[0], self.pred.shape[1]


def camera_differences(pred: MultiViewSet, gt: MultiViewSet, views: Sequence[int], frames: Sequence[int]) -> list[str]:
    """Human-readable differences between the two sets' cameras and times (empty if none)."""
    out = []
    if pred.num_views != gt.num_views or pred.num_frames != gt.num_frames:
        out.append(
            f"the prediction has {pred.num_views} views x {pred.num_frames} frames, "
            f"the ground truth {gt.num_views} x {gt.num_frames}"
        )
    scale = max(float(np.linalg.norm(gt.views[0].c2w[:3, 3])), 1e-6)
    bad = []
    for v in views:
        if v >= pred.num_views:
            continue
        a, b = pred.views[v].c2w, gt.views[v].c2w
        dpos = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
        drot = rotation_angle_deg(a, b)
        if dpos > POSITION_TOL * scale or drot > ANGLE_TOL_DEG:
            bad.append(f"view {v} ({dpos:.3g} apart, rotated {drot:.3g} deg)")
    if bad:
        out.append("cameras differ: " + ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else ""))
    pi, gi = pred.intrinsics, gt.intrinsics
    sx, sy = gi.width / pi.width, gi.height / pi.height
    rel = max(
        abs(pi.fx * sx - gi.fx) / gi.fx,
        abs(pi.fy * sy - gi.fy) / gi.fy,
        abs(pi.cx * sx - gi.cx) / gi.width,
        abs(pi.cy * sy - gi.cy) / gi.height,
    )
    if rel > INTRINSICS_TOL:
        out.append(f"intrinsics differ (fov {pi.fov_x_deg:.2f} vs {gi.fov_x_deg:.2f} deg)")
    common = [f for f in frames if f < pred.num_frames]
    if common:
        dt = np.abs(pred.times[common] - gt.times[common])
        if dt.max() > TIME_TOL_S:
            f = common[int(dt.argmax())]
            out.append(f"frame times differ (frame {f}: {pred.times[f]:.4f} s vs {gt.times[f]:.4f} s)")
    return out


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, h, w, C) uint8: box averaging when shrinking (exact for
    whole-number factors), antialiased bilinear when enlarging."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if size[0] <= x.shape[2] and size[1] <= x.shape[3]:
        x = F.interpolate(x, size=size, mode="area")
    else:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _load(
    s: MultiViewSet,
    views: Sequence[int],
    frames: Sequence[int],
    size: tuple[int, int] | None,
    desc: str,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Composited over white first, then resized (colour and alpha separately), so transparent
    pixels never bleed their colour."""
    rgb = []
    alpha = [] if s.has_rgba else None
    for v in tqdm(views, desc=desc, unit="view", disable=not progress):
        imgs = np.stack([s.load_image(v, f, "rgba") for f in frames])
        white, a = composite_white(imgs), imgs[..., 3:]
        if size is not None and imgs.shape[1:3] != size:
            white, a = _resize(white, size), _resize(a, size)
        rgb.append(white)
        if alpha is not None:
            alpha.append(a[..., 0])
    return np.stack(rgb), (None if alpha is None else np.stack(alpha))


def _positions(chosen: Sequence[int] | None, n: int, what: str) -> list[int]:
    if chosen is None:
        return list(range(n))
    chosen = list(chosen)
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise Sv4dError(f"{what} {bad[0]} does not exist: the sets have {n} {what}s (0..{n - 1})")
    if not chosen:
        raise Sv4dError(f"no {what}s chosen")
    return chosen


def load_grids(
    pred_path: str | os.PathLike,
    gt_path: str | os.PathLike,
    *,
    views: Sequence[int] | None = None,
    frames: Sequence[int] | None = None,
    ignore_cameras: bool = False,
    resize: bool = False,
    progress: bool = True,
) -> EvalGrid:
    """Read both sets (optionally only some views / frames, positions in the sets).

    ``resize``: bring the prediction to the ground truth's image size when they differ
    (otherwise that is an error). ``ignore_cameras``: compare sets whose cameras or times
    differ, position by position (the differences become warnings).
    """
    pred, gt = read_multiview(pred_path), read_multiview(gt_path)
    v_n, f_n = min(pred.num_views, gt.num_views), min(pred.num_frames, gt.num_frames)
    views = _positions(views, v_n, "view")
    frames = _positions(frames, f_n, "frame")
    diffs = camera_differences(pred, gt, views, frames)
    if diffs and not ignore_cameras:
        raise Sv4dError(
            f"{pred_path} and {gt_path} are not views of the same cameras and frames: "
            + "; ".join(diffs)
            + ". Pass --ignore-cameras to compare them position by position."
        )
    gsize = (gt.intrinsics.height, gt.intrinsics.width)
    psize = (pred.intrinsics.height, pred.intrinsics.width)
    if psize != gsize and not resize:
        raise Sv4dError(
            f"the prediction's images are {psize[1]}x{psize[0]}, the ground truth's "
            f"{gsize[1]}x{gsize[0]}; pass --resize to resize the prediction"
        )
    warnings = list(diffs)
    if psize != gsize:
        warnings.append(f"prediction resized from {psize[1]}x{psize[0]} to {gsize[1]}x{gsize[0]}")
    p_rgb, p_a = _load(pred, views, frames, gsize if psize != gsize else None, "read prediction", progress)
    g_rgb, g_a = _load(gt, views, frames, None, "read ground truth", progress)
    if p_a is None or g_a is None:
        p_a = g_a = None
    names = [gt.view_dirs[v] for v in views]
    return EvalGrid(p_rgb, g_rgb, p_a, g_a, views, frames, names, gt.times[frames], warnings)

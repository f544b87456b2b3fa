"""Where the object can be: the scene box and a per-frame visual hull carved from the masks.

The box is the cube every camera sees whole at the origin: cameras of a multi-view set look at
the origin, so half the smallest field of view at the camera distance bounds the object
(``bound = min_v d_v tan(fov_v / 2)``). The visual hull keeps a voxel at frame f when its
centre projects inside the (dilated) object mask of enough training views at that frame; both
fitters start from it: the NeRF marches rays only through hull voxels, the Gaussians are seeded
in them. With generated views, whose masks can disagree a little, ``misses`` lets a voxel fall
outside that many views' masks and still count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cameras import project, scene_bound
from ..errors import Sv4dError
from .data import FitData


def cell_centres(bound: float, resolution: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(R,) centres of the cells along one axis of [-bound, bound]."""
    return (torch.arange(resolution, dtype=torch.float32, device=device) + 0.5) / resolution * 2 * bound - bound


def grid_points(bound: float, resolution: int) -> torch.Tensor:
    """Centres of the resolution^3 cells of [-bound, bound]^3, (R, R, R, 3) indexed [ix, iy, iz]."""
    c = cell_centres(bound, resolution)
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1)


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation of (..., H, W) bool masks by a (2p+1)^2 square."""
    if pixels <= 0:
        return mask
    lead = mask.shape[:-2]
    m = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    m = F.max_pool2d(m, 2 * pixels + 1, stride=1, padding=pixels)
    return m.reshape(*lead, *mask.shape[-2:]) > 0.5


def visual_hull(
    data: FitData,
    resolution: int = 128,
    bound: float | None = None,
    dilate_px: int = 2,
    misses: int = 0,
    alpha_threshold: float = 0.0,
) -> tuple[torch.Tensor, float]:
    """Carve a (F, R, R, R) bool occupancy (indexed [frame, ix, iy, iz]) over [-bound, bound]^3.

    A cell is kept at a frame when its centre lands inside ``alpha > alpha_threshold``, dilated
    by ``dilate_px`` pixels, in all but at most ``misses`` of the views. Returns (hull, bound)."""
    v, f, h, w = data.shape
    if misses < 0 or misses >= v:
        raise Sv4dError(f"misses must be in 0..{v - 1} for {v} views, got {misses}")
    bound = scene_bound(data.c2w, data.intrinsics) if bound is None else float(bound)
    pts = grid_points(bound, resolution)
    uv, z = project(pts, data.c2w, data.intrinsics)  # (V, R, R, R, 2)
    ui, vi = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h) & (z > 0)
    pix = (vi.clamp(0, h - 1) * w + ui.clamp(0, w - 1)).reshape(v, -1)
    masks = dilate(data.alpha > alpha_threshold, dilate_px).reshape(v, f, h * w)
    hull = torch.empty(f, resolution**3, dtype=torch.bool)
    inside = inside.reshape(v, -1)
    for fi in range(f):
        hits = torch.stack([masks[vi_, fi][pix[vi_]] & inside[vi_] for vi_ in range(v)]).sum(0)
        hull[fi] = hits >= v - misses
    hull = hull.reshape(f, resolution, resolution, resolution)
    if not hull.any():
        raise Sv4dError(
            "the views' object masks do not overlap anywhere: the cameras and the images "
            "disagree, or the masks are empty (check cameras.json and the alpha channel)"
        )
    return hull, bound


def cell_size(bound: float, resolution: int) -> float:
    return 2 * bound / resolution

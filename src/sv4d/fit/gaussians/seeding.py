"""Where the 4D Gaussians start: near the surface of the visual hull of the training masks
(:func:`sv4d.fit.hull.visual_hull`, union over frames), uniformly in the scene box [-b, b]^3
(b = camera distance x tan(fov / 2)), or at given points; each with a size from its neighbours'
spacing, no rotation, the configured opacity and a grey colour with a little noise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import Sv4dError
from ..data import FitData
from ..hull import visual_hull
from .config import GaussianConfig
from .densify import nearest_spacing


def hull_points(
    data: FitData,
    count: int,
    generator: torch.Generator,
    resolution: int = 96,
    dilate_px: int = 1,
    misses: int = 0,
    shell: int = 3,
    bound: float | None = None,
) -> torch.Tensor:
    """``count`` points (count, 3) drawn uniformly in the cells of the masks' visual hull (union
    over frames) that lie within ``shell`` cells of its surface (0: anywhere in the hull)."""
    hull, bound = visual_hull(data, resolution, bound, dilate_px, misses)
    occ = hull.any(0)
    if shell > 0:
        outside = (~occ).float()[None, None]
        near_out = F.max_pool3d(outside, 2 * shell + 1, stride=1, padding=shell)[0, 0] > 0.5
        occ = occ & near_out
    cells = occ.reshape(-1).nonzero()[:, 0]
    pick = cells[torch.randint(len(cells), (count,), generator=generator)]
    ijk = torch.stack([pick // (resolution * resolution), (pick // resolution) % resolution, pick % resolution], -1)
    u = torch.rand(count, 3, generator=generator)
    return ((ijk.float() + u) / resolution * 2.0 - 1.0) * bound


def seed_gaussians(
    data: FitData,
    config: GaussianConfig,
    bound: float,
    generator: torch.Generator,
    init_points: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The starting canonical parameters (CPU, N Gaussians): means (N, 3), log_scales (N, 3),
    quats (N, 4) wxyz identity, opacity_logits (N,), color_logits (N, 3). ``init_points`` (M, 3):
    seed there instead of ``config.init``. Random draws come from ``generator``."""
    cfg = config
    if init_points is not None:
        pts = torch.as_tensor(init_points).detach().float().cpu()
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0 or not torch.isfinite(pts).all():
            raise Sv4dError(f"init_points must be a finite (M, 3) tensor with M >= 1, got {tuple(pts.shape)}")
    elif cfg.init == "hull":
        pts = hull_points(
            data,
            cfg.init_count,
            generator,
            cfg.hull_resolution,
            cfg.hull_dilate,
            cfg.hull_misses,
            cfg.hull_shell,
            bound,
        )
    else:
        pts = (torch.rand(cfg.init_count, 3, generator=generator) * 2 - 1) * bound
    spacing = nearest_spacing(pts).clamp(1e-3 * bound, 0.05 * bound)
    n = len(pts)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    return {
        "means": pts,
        "log_scales": spacing.log()[:, None].repeat(1, 3),
        "quats": quats,
        "opacity_logits": torch.full((n,), math.log(cfg.init_opacity / (1 - cfg.init_opacity))),
        "color_logits": 0.1 * torch.randn(n, 3, generator=generator),
    }

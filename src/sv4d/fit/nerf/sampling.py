"""The NeRF's ray sampler: where along each ray the field is asked.

Every ray is cut by a box (by default the one around every occupied cell) and sampled at a fixed
step from where it enters, at the middle of each step or at one random offset per ray (training
jitter). Only samples before the exit that fall in an occupied cell of the ray's own occupancy
grid are kept. Occupancy grids are (G, R^3) bool tensors of flattened cells over the cube
[-bound, bound]^3, indexed [ix, iy, iz] (x slowest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def ray_box(
    o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor | float, hi: torch.Tensor | float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances (N,) of rays o, d (N, 3) through the box [lo, hi] (a float ``lo``
    alone: the cube [-lo, lo]^3); far <= near means a miss."""
    if hi is None:
        lo, hi = -lo, lo
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def occupied_box(occupancy: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The world box (lo (3,), hi (3,)) around every occupied cell of (G, R^3) grids."""
    res = round(occupancy.shape[-1] ** (1 / 3))
    cube = occupancy.reshape(-1, res, res, res).any(0)
    if not bool(cube.any()):
        z = torch.zeros(3, device=occupancy.device)
        return z, z
    ext = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = cube.any(dim=other).nonzero()[:, 0]
        ext.append((int(idx[0]), int(idx[-1]) + 1))
    cell = 2 * bound / res
    lo = torch.tensor([-bound + a * cell for a, _ in ext], device=occupancy.device)
    hi = torch.tensor([-bound + b * cell for _, b in ext], device=occupancy.device)
    return lo, hi


def cell_index(x: torch.Tensor, bound: float, res: int) -> torch.Tensor:
    """Flat index (...,) of the occupancy cell of points x (..., 3)."""
    i = ((x + bound) / (2 * bound) * res).long().clamp(0, res - 1)
    return (i[..., 0] * res + i[..., 1]) * res + i[..., 2]


@dataclass
class RaySamples:
    """Fixed-step samples of the M rays (of N asked) that meet the sampling box.

    rays (M,) long: which of the N rays; z (M, S) distance of each sample along its ray;
    points (M, S, 3) world positions; mask (M, S) bool: the sample is before the ray's exit and in
    an occupied cell (the renderer trims it further where a ray has become opaque)."""

    rays: torch.Tensor
    z: torch.Tensor
    points: torch.Tensor
    mask: torch.Tensor


def sample_rays(
    occupancy: torch.Tensor,
    bound: float,
    o: torch.Tensor,
    d: torch.Tensor,
    grid_index: torch.Tensor,
    step: float,
    jitter: torch.Generator | None = None,
    box: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> RaySamples:
    """Sample rays o, d (N, 3) (unit directions) every ``step`` from where they enter ``box``
    (lo (3,), hi (3,); default: the box around every occupied cell). occupancy (G, R^3) bool;
    grid_index (N,) long: the grid each ray is tested against. jitter: one uniform offset per ray
    (N draws from this CPU generator, drawn for all N rays) instead of the step's middle."""
    n_all, dev = len(o), o.device
    res = round(occupancy.shape[1] ** (1 / 3))
    offs_all = (
        torch.rand(n_all, 1, generator=jitter).to(dev)
        if jitter is not None
        else torch.full((n_all, 1), 0.5, device=dev)
    )
    lo, hi = occupied_box(occupancy, bound) if box is None else box
    near, far = ray_box(o, d, lo, hi)
    rays = (far > near).nonzero()[:, 0]  # only rays that meet the box are sampled
    o, d, grid_index, near, far = o[rays], d[rays], grid_index[rays], near[rays], far[rays]
    s = max(1, int(math.ceil(float((hi - lo).norm()) / step)) + 1)
    z = near[:, None] + (torch.arange(s, dtype=o.dtype, device=dev) + offs_all[rays]) * step  # (M, S)
    valid = z < far[:, None]
    pts = o[:, None] + d[:, None] * z[..., None]
    cells = cell_index(pts, bound, res) + grid_index[:, None] * res**3
    return RaySamples(rays, z, pts, valid & occupancy.reshape(-1)[cells])

"""The NeRF's volume renderer: samples from :mod:`.sampling` through the field, composited on white.

Optical depth sums: with tau_i = sigma_i * step, T_i = exp(-sum_{j<i} tau_j), the weight of a
sample is w_i = T_i (1 - exp(-tau_i)); rgb = sum_i w_i c_i + (1 - alpha) (white), alpha =
sum_i w_i, depth = sum_i w_i z_i (0 where nothing is hit). Rays are marched a segment of samples
at a time and stop once their transmittance falls below a threshold; with gradients on, that
march is a density-only pass that finds where each ray stops, and only the samples before it
are rendered again with gradients.
"""

from __future__ import annotations

import torch

from ...errors import Sv4dError
from ..field import KPlanesField
from .sampling import RaySamples, sample_rays


def _check(
    occupancy: torch.Tensor, o: torch.Tensor, d: torch.Tensor, t: torch.Tensor, grid_index: torch.Tensor
) -> None:
    n = len(o)
    want = {"o": (o, (n, 3)), "d": (d, (n, 3)), "t": (t, (n,)), "grid_index": (grid_index, (n,))}
    for name, (x, shape) in want.items():
        if tuple(x.shape) != shape:
            raise Sv4dError(f"render_rays: {name} must have shape {shape} (N = len(o)), got {tuple(x.shape)}")
    if occupancy.ndim != 2 or round(occupancy.shape[1] ** (1 / 3)) ** 3 != occupancy.shape[1]:
        raise Sv4dError(f"render_rays: occupancy must be (G, R^3) cells, got {tuple(occupancy.shape)}")


def render_rays(
    field: KPlanesField,
    occupancy: torch.Tensor,
    o: torch.Tensor,
    d: torch.Tensor,
    t: torch.Tensor,
    grid_index: torch.Tensor,
    step: float,
    jitter: torch.Generator | None = None,
    stop_transmittance: float = 1e-3,
    segment: int = 24,
    box: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Volume-render N rays on white.

    occupancy: (G, R^3) bool (flattened cells); grid_index: (N,) long, which grid each ray uses;
    o, d: (N, 3) origins and unit directions; t: (N,) times in [0, 1]; step: sample spacing;
    jitter: a CPU generator for random sample offsets (training), None for mid-step samples.
    Only rays that meet ``box`` (lo, hi), by default the box around every occupied cell, are
    sampled, from where they enter it. Rays are marched ``segment`` samples at a time and stop
    once their transmittance falls below ``stop_transmittance``.
    Returns rgb (N, 3), alpha (N,), depth (N,) (0 where nothing is hit); differentiable with
    respect to the field's parameters when gradients are enabled."""
    _check(occupancy, o, d, t, grid_index)
    n_all = len(o)
    samples = sample_rays(occupancy, field.bound, o, d, grid_index, step, jitter, box)
    t = t[samples.rays]
    grad = torch.is_grad_enabled()
    rgb, trans, depth = _march(field, samples, t, step, stop_transmittance, segment, with_color=not grad)
    if not grad:
        return _scatter(n_all, samples.rays, rgb + trans[:, None], 1 - trans, depth)
    return _scatter(n_all, samples.rays, *_composite(field, samples, t, step))


@torch.no_grad()
def _march(
    field: KPlanesField,
    samples: RaySamples,
    t: torch.Tensor,
    step: float,
    stop_transmittance: float,
    segment: int,
    with_color: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """March the M sampled rays ``segment`` samples at a time, without gradients. Trims
    ``samples.mask`` in place to the samples before each ray's stop. Returns the composited
    colour (M, 3) and depth (M,) (zeros unless ``with_color``) and the final transmittance (M,)."""
    mask, z = samples.mask, samples.z
    n, s = mask.shape
    dev = z.device
    trans = torch.ones(n, device=dev)
    rgb = torch.zeros(n, 3, device=dev)
    depth = torch.zeros(n, device=dev)
    for s0 in range(0, s, segment):
        m = mask[:, s0 : s0 + segment]
        m &= (trans > stop_transmittance)[:, None]  # also trims ``mask`` for the gradient pass
        r, k = m.nonzero(as_tuple=True)
        if len(r) == 0:
            if not bool((trans > stop_transmittance).any()):
                mask[:, s0 + segment :] = False
                break
            continue
        sig, col = field(samples.points[r, s0 + k], t[r], with_color=with_color)
        tau = torch.zeros(n, m.shape[1], device=dev).index_put((r, k), sig * step)
        if with_color:
            tr = trans[:, None] * torch.exp(-(torch.cumsum(tau, 1) - tau))
            w = tr * (1 - torch.exp(-tau))
            rgb.index_add_(0, r, w[r, k][:, None] * col)
            depth += (w * z[:, s0 : s0 + m.shape[1]]).sum(1)
        trans = trans * torch.exp(-tau.sum(1))
    return rgb, trans, depth


def _composite(
    field: KPlanesField, samples: RaySamples, t: torch.Tensor, step: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render the kept samples of the M rays with gradients: rgb (M, 3) on white, alpha (M,), depth (M,)."""
    mask, z = samples.mask, samples.z
    n, s = mask.shape
    dev = z.device
    ray_id, sample_id = mask.nonzero(as_tuple=True)
    if len(ray_id) == 0:
        zero = torch.zeros(n, device=dev) + 0 * field.sigma_net[0].bias.sum()
        return torch.ones(n, 3, device=dev) + zero[:, None], zero, zero
    sigma, color = field(samples.points[ray_id, sample_id], t[ray_id])
    tau = torch.zeros(n, s, device=dev).index_put((ray_id, sample_id), sigma * step)
    tr = torch.exp(-(torch.cumsum(tau, 1) - tau))
    w = tr * (1 - torch.exp(-tau))
    rgb = torch.zeros(n, 3, device=dev).index_add(0, ray_id, w[ray_id, sample_id][:, None] * color)
    alpha = w.sum(1)
    return rgb + (1 - alpha[:, None]), alpha, (w * z).sum(1)


def _scatter(
    n: int, rays: torch.Tensor, rgb: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Results of the M marched rays (``rays`` (M,) ids) into all n rays (the others: white, empty)."""
    dev = rgb.device
    return {
        "rgb": torch.ones(n, 3, device=dev, dtype=rgb.dtype).index_put((rays,), rgb),
        "alpha": torch.zeros(n, device=dev, dtype=alpha.dtype).index_put((rays,), alpha),
        "depth": torch.zeros(n, device=dev, dtype=depth.dtype).index_put((rays,), depth),
    }

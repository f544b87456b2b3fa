"""The surface of a set of Gaussians: their summed density on a grid (for marching cubes) and their
colour near a point.

The density at p is sum_g opacity_g * exp(-1/2 (p - mu_g)^T Sigma_g^-1 (p - mu_g)), each Gaussian
splatted onto the grid cells within three standard deviations of its centre (at most
``max_radius`` cells away: the rare larger ones are cut there). An opaque surface of Gaussians
reaches about its opacity; the default level 0.5 is its middle.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import Sv4dError
from .rasterize import quat_to_rotmat

__all__ = ["density_grid", "colors_near", "SURFACE_LEVEL"]

SURFACE_LEVEL = 0.5


def _inverse_covariances(quats: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    r = quat_to_rotmat(quats.double())
    inv_s2 = torch.exp(-2 * log_scales.double())
    return (r * inv_s2[:, None, :]) @ r.transpose(1, 2)  # R S^-2 R^T


def density_grid(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacities: torch.Tensor,
    bound: float,
    resolution: int,
    max_radius: int = 4,
    chunk: int = 4096,
) -> np.ndarray:
    """(R, R, R) float32 density, indexed [ix, iy, iz], at the cell corners of [-bound, bound]^3
    (sample i at -bound + i * 2 * bound / (R - 1), as :func:`sv4d.fit.mesh.marching_cubes_mesh` takes)."""
    res = int(resolution)
    if res < 2:
        raise Sv4dError(f"the grid needs at least 2 samples per axis, got {res}")
    means = means.detach().double().cpu()
    if len(means) == 0:
        raise Sv4dError("there are no Gaussians to mesh")
    inv_cov = _inverse_covariances(quats.detach().cpu(), log_scales.detach().cpu())
    sigma = torch.exp(log_scales.detach().double().cpu()).amax(1)
    opac = opacities.detach().double().cpu()
    h = 2 * bound / (res - 1)
    radius = torch.ceil(3 * sigma / h).clamp(1, max_radius).long()
    grid = torch.zeros(res**3, dtype=torch.float64)
    for r in radius.unique().tolist():
        idx = torch.nonzero(radius == r).squeeze(1)
        ax = torch.arange(-r, r + 1)
        off = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)  # (S, 3)
        for s in range(0, len(idx), chunk):
            g = idx[s : s + chunk]
            base = torch.round((means[g] + bound) / h).long()  # nearest grid corner
            cells = base[:, None, :] + off[None]  # (G, S, 3)
            d = cells.double() * h - bound - means[g][:, None, :]
            m = torch.einsum("gsi,gij,gsj->gs", d, inv_cov[g], d)
            val = opac[g][:, None] * torch.exp(-0.5 * m)
            inside = ((cells >= 0) & (cells < res)).all(-1) & (m < 9.0)
            flat = (cells[..., 0] * res + cells[..., 1]) * res + cells[..., 2]
            grid.index_add_(0, flat[inside], val[inside])
    return grid.reshape(res, res, res).float().numpy()


def colors_near(
    points: torch.Tensor,
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    k: int = 8,
) -> torch.Tensor:
    """(P, 3) colours at ``points``: the ``k`` nearest Gaussians' colours weighted by their opacity
    and density there (the nearest one's colour where they all vanish)."""
    from scipy.spatial import cKDTree

    mu = means.detach().double().cpu()
    k = min(int(k), len(mu))
    p = points.detach().double().cpu()
    _, nn = cKDTree(mu.numpy()).query(p.numpy(), k=k)
    nn = torch.from_numpy(np.asarray(nn).reshape(len(p), k))
    inv_cov = _inverse_covariances(quats.detach().cpu(), log_scales.detach().cpu())
    d = p[:, None, :] - mu[nn]
    m = torch.einsum("pki,pkij,pkj->pk", d, inv_cov[nn], d)
    w = opacities.detach().double().cpu()[nn] * torch.exp(-0.5 * m)
    w[:, 0] += 1e-12  # all weights vanish: the nearest Gaussian's colour
    c = colors.detach().double().cpu()[nn]
    return ((w[..., None] * c).sum(1) / w.sum(1, keepdim=True)).float()

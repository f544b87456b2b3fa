"""Classifier-free guidance over the N = T*V rows of a window (spec section 4.4).

Rows are frame-major (n = t*V + v). Guidance is ``D_u + s * (D_c - D_u)`` with a scale
per row; the batch fed to the network is ``cat[uncond, cond]``.
"""

from __future__ import annotations

import math

import torch

from ..errors import Sv4dError


def linear_scales(num_frames: int, num_views: int, min_scale: float, max_scale: float) -> torch.Tensor:
    """LinearPredictionGuider: ``s_n = linspace(min, max, N)[n]``; returns (N,)."""
    return torch.linspace(min_scale, max_scale, num_frames * num_views)


def _tri(u: float) -> float:
    return 2.0 * abs(u - math.floor(u + 0.5))


def spatiotemporal_scales(num_frames: int, num_views: int, min_scale: float, max_scale: float) -> torch.Tensor:
    """SpatiotemporalPredictionGuider:
    ``s[t, v] = min + (max - min) (0.5 t/(T-1) + 0.5 tri(v/(V-1)))``, ``tri(u) = 2|u - floor(u + 1/2)|``.
    Returns (N,) frame-major.
    """
    T, V = num_frames, num_views
    s = torch.empty(T, V)
    for t in range(T):
        for v in range(V):
            ft = t / (T - 1) if T > 1 else 0.0
            fv = _tri(v / (V - 1)) if V > 1 else 0.0
            s[t, v] = min_scale + (max_scale - min_scale) * (0.5 * ft + 0.5 * fv)
    return s.reshape(-1)


GUIDERS = ("linear", "spatiotemporal", "constant", "none")


def guidance_scales(
    kind: str, num_frames: int, num_views: int, min_scale: float, max_scale: float
) -> torch.Tensor | None:
    """Per-row scales (N,), or None for no guidance (a single conditional pass)."""
    if kind == "linear":
        return linear_scales(num_frames, num_views, min_scale, max_scale)
    if kind == "spatiotemporal":
        return spatiotemporal_scales(num_frames, num_views, min_scale, max_scale)
    if kind == "constant":
        return torch.full((num_frames * num_views,), float(max_scale))
    if kind == "none":
        return None
    raise Sv4dError(f"unknown guider {kind!r}; choose {', '.join(GUIDERS[:-1])} or {GUIDERS[-1]}")


GUIDED_KEYS = ("vector", "crossattn", "concat", "cond_view", "cond_motion")


def cfg_inputs(
    x: torch.Tensor, sigma: torch.Tensor, c: dict[str, torch.Tensor], uc: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Double the batch: uncond first, then cond, for x, sigma and every guided key."""
    cond = {k: torch.cat([uc[k], c[k]], 0) if k in GUIDED_KEYS else c[k] for k in c}
    return torch.cat([x, x]), torch.cat([sigma, sigma]), cond


def combine(denoised: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """denoised: (2*B, ...) = [uncond; cond], B a multiple of N; scales: (N,). Returns (B, ...)."""
    d_u, d_c = denoised.chunk(2)
    n = scales.shape[0]
    s = scales.to(device=denoised.device, dtype=denoised.dtype).repeat(d_u.shape[0] // n)
    s = s.reshape((-1,) + (1,) * (d_u.ndim - 1))
    return d_u + s * (d_c - d_u)

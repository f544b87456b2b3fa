"""Sigma schedules (spec section 4.2)."""

from __future__ import annotations

import torch


def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0) -> torch.Tensor:
    """Karras/EDM sigmas, descending, with a trailing zero: (num_steps + 1,) float32.

    ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``.
    Computed in float32 as the reference does (so sigma_0 is 700.0001, not 700).
    """
    if num_steps < 1:
        raise ValueError("num_steps must be >= 1")
    ramp = torch.linspace(0, 1, num_steps)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])

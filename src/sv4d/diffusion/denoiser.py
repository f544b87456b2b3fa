"""Denoiser preconditioning: v-scaling with EDM c_noise (spec section 4.1).

``D(x, sigma) = F(cat[x * c_in, concat], c_noise, cond) * c_out + x * c_skip`` with
``c_skip = 1/(s^2+1)``, ``c_out = -s/sqrt(s^2+1)``, ``c_in = 1/sqrt(s^2+1)``,
``c_noise = 0.25 ln s``. The concat channels are not scaled.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def v_scaling(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sigma: (B,) -> (c_skip, c_out, c_in, c_noise), each (B,)."""
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def denoise(
    network: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigma: torch.Tensor,
    cond: dict[str, torch.Tensor],
) -> torch.Tensor:
    """One denoiser call.

    network: the UNet, called as ``network(x_in, c_noise, context=, y=, cond_view=)``.
    x: (B, 4, h, w) noisy latents; sigma: (B,);
    cond: ``concat`` (B, 4, h, w), ``crossattn`` (b, T, D), ``vector`` (B, E), ``cond_view`` (b*V, 4, h, w).
    Returns the denoised latents (B, 4, h, w) in x's dtype.
    """
    c_skip, c_out, c_in, c_noise = (append_dims(c, x.ndim) for c in v_scaling(sigma))
    x_in = torch.cat([x * c_in, cond["concat"].to(x.dtype)], dim=1)
    out = network(
        x_in,
        c_noise.reshape(-1),
        context=cond["crossattn"],
        y=cond["vector"],
        cond_view=cond["cond_view"],
    )
    return out.to(x.dtype) * c_out + x * c_skip

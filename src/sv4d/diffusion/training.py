"""The training objective: EDM with the model's own preconditioning.

One training sample is a window of ``T`` frames x ``V`` views of one clip; a batch holds
``b`` of them with rows ordered (b, t, v), as at inference. Per window:

* ``ln sigma ~ N(p_mean, p_std^2)`` (log-normal; one sigma for all N = T*V rows),
* ``x_noisy = x0 + sigma * eps`` with ``x0`` the VAE latents scaled by 0.18215,
* ``D = denoise(unet, x_noisy, sigma, cond)`` (v-scaling, ``c_noise = 0.25 ln sigma``),
* ``loss = w(sigma) * mean((D - x0)^2)`` with the EDM weighting for ``sigma_data = 1``:
  ``w = (sigma^2 + 1) / sigma^2``.

Two of the paper's recipe switches act on the conditioning (``drop_conditions``):
reference-view masking zeroes a window's reference-view latents with probability
``ref_mask_prob`` (what inference does for the first window, so no reference views are
needed there), and condition dropout replaces a window's conditioning by the
unconditional one with probability ``uncond_prob`` (what the guider's unconditional
branch zeroes), so that classifier-free guidance works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import Sv4dError
from .denoiser import denoise


@dataclass(frozen=True)
class ObjectiveConfig:
    """Defaults: SVD's high-resolution noise distribution (P_mean 1.0, P_std 1.6); the
    paper gives no masking or dropout rates, so these are our choices."""

    p_mean: float = 1.0
    p_std: float = 1.6
    sigma_data: float = 1.0
    ref_mask_prob: float = 0.5
    uncond_prob: float = 0.1

    def __post_init__(self) -> None:
        for name in ("ref_mask_prob", "uncond_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise Sv4dError(f"{name} must be in [0, 1], got {v}")
        if self.p_std <= 0 or self.sigma_data <= 0:
            raise Sv4dError("p_std and sigma_data must be positive")


def sample_sigmas(b: int, cfg: ObjectiveConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """(b,) float32 noise levels, ``exp(p_mean + p_std * N(0, 1))``, one per window."""
    z = torch.randn(b, generator=generator)
    return torch.exp(cfg.p_mean + cfg.p_std * z)


def loss_weight(sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """EDM weighting ``(sigma^2 + sigma_data^2) / (sigma * sigma_data)^2``."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def drop_conditions(
    c: dict[str, torch.Tensor],
    uc: dict[str, torch.Tensor],
    b: int,
    cfg: ObjectiveConfig,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Apply reference-view masking and condition dropout per window.

    c, uc: the conditioner's outputs for ``b`` windows (crossattn (b, T, D), vector and
    concat (b*N, ...), cond_view (b*V, ...), cond_motion (b*T, ...)).
    Returns (conditioning, masked (b,) bool, dropped (b,) bool). A dropped window takes
    every entry from ``uc``, a masked one has zero reference views.
    """
    masked = torch.rand(b, generator=generator) < cfg.ref_mask_prob
    dropped = torch.rand(b, generator=generator) < cfg.uncond_prob
    out = {}
    for k, v in c.items():
        if v.shape[0] % b:
            raise Sv4dError(f"conditioning {k!r} has {v.shape[0]} rows, not a multiple of {b} windows")
        rows = v.shape[0] // b
        d = dropped.to(v.device).repeat_interleave(rows).view(-1, *([1] * (v.ndim - 1)))
        x = torch.where(d, uc[k].to(v.dtype), v)
        if k == "cond_view":
            m = masked.to(v.device).repeat_interleave(rows).view(-1, *([1] * (v.ndim - 1)))
            x = torch.where(m, torch.zeros_like(x), x)
        out[k] = x
    return out, masked, dropped


def diffusion_loss(
    unet: torch.nn.Module,
    x0: torch.Tensor,
    cond: dict[str, torch.Tensor],
    sigma: torch.Tensor,
    noise: torch.Tensor,
    sigma_data: float = 1.0,
) -> torch.Tensor:
    """Per-window weighted denoising loss, (b,) float32.

    x0: (b*N, 4, h, w) clean latents (scaled); sigma: (b,) one noise level per window;
    noise: like x0, unit Gaussian; cond: the (possibly dropped/masked) conditioning.
    """
    b = sigma.shape[0]
    if x0.shape[0] % b:
        raise Sv4dError(f"{x0.shape[0]} latent rows do not split into {b} windows")
    n = x0.shape[0] // b
    s = sigma.to(x0.device, torch.float32).repeat_interleave(n)
    d = denoise(unet, x0 + noise * s.view(-1, 1, 1, 1), s, cond).float()
    err = ((d - x0.float()) ** 2).reshape(b, -1).mean(1)
    return loss_weight(sigma.to(err.device), sigma_data) * err

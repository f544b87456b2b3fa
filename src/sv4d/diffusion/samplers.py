"""Samplers: short functions of (denoiser, x, sigmas) (spec section 4.3)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, dict[str, torch.Tensor]], None]


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    callback: StepCallback | None = None,
    progress: bool = False,
    desc: str = "sampling",
) -> torch.Tensor:
    """Deterministic Euler EDM sampler (s_churn = 0).

    denoiser(x, sigma_batch) -> denoised, same shape as x. x is the initial latent, already
    scaled (``noise * sqrt(1 + sigmas[0]^2)``). Each step:
    ``x <- x + (sigma_{i+1} - sigma_i) (x - D(x, sigma_i)) / sigma_i``.
    """
    n = len(sigmas) - 1
    for i in tqdm(range(n), desc=desc, disable=not progress, leave=False):
        sigma = sigmas[i]
        s_in = x.new_ones([x.shape[0]], dtype=torch.float32) * sigma
        denoised = denoiser(x, s_in)
        d = (x - denoised) / sigma.to(x.dtype)
        x = x + (sigmas[i + 1] - sigma).to(x.dtype) * d
        if callback is not None:
            callback(i, {"denoised": denoised, "x": x, "sigma": sigma, "num_steps": n})
    return x

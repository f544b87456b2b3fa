"""The sampling loop of one window: guidance scales, the guided denoiser, and Euler sampling.

Plain functions of the model, its conditioning and the sigmas (the k-diffusion shape)::

    scales = guidance(model, T, V)                      # (T * V,) per-row guidance scales
    z = sample(model, c, uc, noise, scales=scales)      # (T * V, 4, h, w) latents

``model`` is an :class:`sv4d.models.sv4d.SV4DModel`; only its ``cfg.sampler`` defaults, its
``unet`` and its ``device`` are used. The preconditioning is :func:`.denoiser.denoise`, the
guidance maths :mod:`.guiders`, the step rule :func:`.samplers.sample_euler`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .denoiser import denoise
from .guiders import cfg_inputs, combine, guidance_scales
from .samplers import Denoiser, StepCallback, sample_euler
from .schedules import edm_sigmas

if TYPE_CHECKING:
    from ..models.sv4d import SV4DModel

Conditioning = dict[str, torch.Tensor]


def guidance(
    model: SV4DModel,
    num_frames: int,
    num_views: int,
    kind: str | None = None,
    min_scale: float | None = None,
    max_scale: float | None = None,
) -> torch.Tensor | None:
    """Per-row guidance scales (num_frames * num_views,), or None when the guider is off.

    ``kind`` (``linear``, ``spatiotemporal``, ...), ``min_scale`` and ``max_scale`` default to
    the model's ``cfg.sampler``.
    """
    s = model.cfg.sampler
    return guidance_scales(
        kind or s.guider,
        num_frames,
        num_views,
        s.min_scale if min_scale is None else min_scale,
        s.max_scale if max_scale is None else max_scale,
    )


def make_denoiser(
    model: SV4DModel,
    c: Conditioning,
    uc: Conditioning | None,
    scales: torch.Tensor | None,
    trace: Callable[[Conditioning], None] | None = None,
) -> Denoiser:
    """A function ``(x, sigma) -> guided denoised`` for one window.

    x: (N, 4, h, w); sigma: (N,). ``c`` / ``uc`` are the conditioner's outputs (moved to the
    model's device here). With ``scales`` (N,) and ``uc`` the network runs on the doubled batch
    [uncond; cond] and ``trace`` (if given) receives ``denoised_uncond``, ``denoised_cond`` and
    ``denoised_guided`` (each (N, 4, h, w)) per call; without, on the conditional branch only.
    """
    dev = model.device
    unet = model.unet

    def to_dev(d: Conditioning) -> Conditioning:
        return {k: v.to(dev) for k, v in d.items()}

    c = to_dev(c)
    if scales is None or uc is None:
        return lambda x, sigma: denoise(unet, x, sigma, c)
    uc = to_dev(uc)
    scales = scales.to(dev)  # once, not a blocking host-to-device copy at every sampler step

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x2, s2, cond = cfg_inputs(x, sigma, c, uc)
        d = denoise(unet, x2, s2, cond)
        out = combine(d, scales)
        if trace is not None:
            d_u, d_c = d.chunk(2)
            trace({"denoised_uncond": d_u, "denoised_cond": d_c, "denoised_guided": out})
        return out

    return fn


@torch.no_grad()
def sample(
    model: SV4DModel,
    c: Conditioning,
    uc: Conditioning | None,
    noise: torch.Tensor,
    *,
    num_steps: int | None = None,
    scales: torch.Tensor | None = None,
    sigmas: torch.Tensor | None = None,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample one window's latents (N, 4, h, w) (diffusion scale, float32) from unit noise (N, 4, h, w).

    ``scales`` are the per-row guidance scales (``guidance(model, T, V)``); None means no
    guidance. ``sigmas`` (num_steps + 1,) defaults to the EDM schedule of ``num_steps`` steps
    (default ``model.cfg.sampler.num_steps``). ``callback(i, {"denoised", "x", "sigma", "num_steps"})`` runs
    after every step.
    """
    s = model.cfg.sampler
    if sigmas is None:
        sigmas = edm_sigmas(num_steps or s.num_steps, s.sigma_min, s.sigma_max, s.rho)
    dev = model.device
    sigmas = sigmas.to(dev)
    x = noise.to(dev, torch.float32) * torch.sqrt(1.0 + sigmas[0] ** 2)
    den = make_denoiser(model, c, uc, scales)
    return sample_euler(den, x, sigmas, callback=callback, progress=progress)

"""The whole model (reference ``DiffusionEngine``): UNet, conditioner, first-stage decoder.

State-dict prefixes: ``model.diffusion_model.``, ``conditioner.embedders.{0..5}.``,
``first_stage_model.decoder.``. This module composes networks and the diffusion maths;
it knows nothing about files or the CLI.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import ModelConfig
from ..diffusion.denoiser import denoise
from ..diffusion.guiders import cfg_inputs, combine, guidance_scales
from ..diffusion.samplers import sample_euler
from ..diffusion.schedules import edm_sigmas
from .conditioner import Conditioner
from .unet import SV4DUNet
from .vae import FirstStage


class DiffusionWrapper(nn.Module):
    def __init__(self, unet: SV4DUNet) -> None:
        super().__init__()
        self.diffusion_model = unet


class SV4DModel(nn.Module):
    """SV4D 2.0: ``model.diffusion_model`` (UNet), ``conditioner``, ``first_stage_model``.

    ``include_unused`` builds the parameters the official checkpoint carries but inference
    never uses (the conditioning VAEs' decoders and post_quant_convs, CLIP text leftovers),
    so that ``state_dict()`` matches the official key manifest exactly.
    """

    def __init__(self, cfg: ModelConfig, include_unused: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = DiffusionWrapper(SV4DUNet(cfg.unet))
        self.conditioner = Conditioner(cfg, include_unused)
        self.first_stage_model = FirstStage(cfg.vae)

    @property
    def unet(self) -> SV4DUNet:
        return self.model.diffusion_model

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.out[2].weight.device

    # ------------------------------------------------------------------ sampling
    def guidance(self, num_frames: int, num_views: int, kind: str | None = None,
                 min_scale: float | None = None, max_scale: float | None = None) -> torch.Tensor | None:
        s = self.cfg.sampler
        return guidance_scales(
            kind or s.guider, num_frames, num_views,
            s.min_scale if min_scale is None else min_scale,
            s.max_scale if max_scale is None else max_scale,
        )

    def make_denoiser(
        self,
        c: dict[str, torch.Tensor],
        uc: dict[str, torch.Tensor] | None,
        scales: torch.Tensor | None,
        trace: Callable[[dict[str, torch.Tensor]], None] | None = None,
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A function ``(x, sigma) -> guided denoised`` for one window.

        x: (N, 4, h, w); sigma: (N,). With ``scales`` (N,) and ``uc`` the network runs on
        the doubled batch [uncond; cond]; without, on the conditional branch only.
        """
        dev = self.device

        def to_dev(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.to(dev) for k, v in d.items()}

        c = to_dev(c)
        if scales is None or uc is None:
            return lambda x, sigma: denoise(self.unet, x, sigma, c)
        uc = to_dev(uc)

        def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            x2, s2, cond = cfg_inputs(x, sigma, c, uc)
            d = denoise(self.unet, x2, s2, cond)
            out = combine(d, scales)
            if trace is not None:
                d_u, d_c = d.chunk(2)
                trace({"denoised_uncond": d_u, "denoised_cond": d_c, "denoised_guided": out})
            return out

        return fn

    @torch.no_grad()
    def sample(
        self,
        c: dict[str, torch.Tensor],
        uc: dict[str, torch.Tensor] | None,
        noise: torch.Tensor,
        *,
        num_steps: int | None = None,
        scales: torch.Tensor | None = None,
        sigmas: torch.Tensor | None = None,
        callback: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Sample one window's latents (N, 4, h, w) (diffusion scale, float32) from unit noise.

        ``scales`` are the per-row guidance scales (``self.guidance(T, V)``); None means no
        guidance. ``sigmas`` defaults to the EDM schedule of ``num_steps`` steps.
        """
        s = self.cfg.sampler
        if sigmas is None:
            sigmas = edm_sigmas(num_steps or s.num_steps, s.sigma_min, s.sigma_max, s.rho)
        sigmas = sigmas.to(self.device)
        x = noise.to(self.device, torch.float32) * torch.sqrt(1.0 + sigmas[0] ** 2)
        den = self.make_denoiser(c, uc, scales)
        return sample_euler(den, x, sigmas, callback=callback, progress=progress)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Diffusion latents (B, 4, h, w) -> images (B, 3, H, W) in about [-1, 1], float32."""
        return self.first_stage_model.decode(z / self.cfg.scale_factor, chunk).float()

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Images in [-1, 1] -> diffusion latents (scaled by ``scale_factor``), using the
        conditioning encoder (the first stage of the official model has no encoder)."""
        return self.conditioner.embedders[1].encoder.encode(images, chunk).float() * self.cfg.scale_factor

"""The conditioner (reference ``GeneralConditioner`` with six embedders, spec section 3).

| # | input | output |
|---|---|---|
| 0 | T input frames (CLIP image tower, or embeddings when ``clip`` is None) | crossattn (1, T, D) |
| 1 | N = T*V input frames, frame-major | concat (N, 4, h, w) and vector[:sigma_cond_dim] |
| 2 | polar angles (N,) rad | vector[sigma_cond_dim : +polar_dim] |
| 3 | azimuth angles (N,) rad | vector[... : +azimuth_dim] |
| 4 | V reference views at the window's first frame | cond_view (V, 4, h, w) |
| 5 | T input frames | cond_motion (T, 4, h, w) |

VAE latents here are the encoder's posterior mean, unscaled (scale factor 1.0). The
encoders see their pixel input plus ``cond_noise_sigma * randn`` (1e-5 in the reference),
drawn from the generator passed in. The unconditional branch zeroes crossattn, concat,
the sigma_cond part of vector, cond_view and cond_motion; polar/azimuth stay.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .clip import CLIPImageEmbedder
from .layers import timestep_embedding
from .vae import VAEEncoderModeOnly


class IdentityImageEmbedder(nn.Module):
    """Embedder 0 when image embeddings are given directly: (T, D) -> (T, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class VAEEmbedder(nn.Module):
    """Embedders 1, 4, 5: keys ``encoder.*`` (an ``AutoencoderKLModeOnly``)."""

    def __init__(self, model_cfg: ModelConfig, include_unused: bool = False) -> None:
        super().__init__()
        self.encoder = VAEEncoderModeOnly(model_cfg.vae, include_unused)

    def forward(self, images: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        return self.encoder.encode(images, chunk)


class AngleEmbedder(nn.Module):
    """Embedders 2, 3: sinusoidal embedding of an angle (no parameters)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(angles.reshape(-1), self.dim)


def _noisy(x: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    if sigma == 0:
        return x
    gdev = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=gdev, dtype=torch.float32)
    return x + sigma * noise.to(device=x.device, dtype=x.dtype)


class Conditioner(nn.Module):
    def __init__(self, cfg: ModelConfig, include_unused: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        image = CLIPImageEmbedder(cfg.clip, include_unused) if cfg.clip is not None else IdentityImageEmbedder()
        self.embedders = nn.ModuleList(
            [
                image,
                VAEEmbedder(cfg, include_unused),
                AngleEmbedder(cfg.polar_dim),
                AngleEmbedder(cfg.azimuth_dim),
                VAEEmbedder(cfg, include_unused),
                VAEEmbedder(cfg, include_unused),
            ]
        )

    def embed_images(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (T, 3, H, W) in [-1, 1], or (T, D) embeddings when ``clip`` is None.
        Returns (1, T, D)."""
        return self.embedders[0](frames)[None]

    def forward(
        self,
        cond_frames_without_noise: torch.Tensor,
        cond_frames: torch.Tensor,
        cond_view: torch.Tensor,
        cond_motion: torch.Tensor,
        polar_rad: torch.Tensor,
        azimuth_rad: torch.Tensor,
        *,
        cond_mv: bool = True,
        generator: torch.Generator | None = None,
        noise_sigma: float | None = None,
        encode_chunk: int | None = None,
        crossattn: torch.Tensor | None = None,
        frames_repeat: int = 1,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Build (c, uc) for one window.

        cond_frames_without_noise: (T, 3, H, W) images for the image encoder (or (T, D));
        cond_frames: (N, 3, H, W); cond_view: (V, 3, H, W); cond_motion: (T, 3, H, W);
        polar_rad, azimuth_rad: (N,). Images in [-1, 1]. ``cond_mv=False`` (first window)
        zeroes cond_view in both branches. ``crossattn`` may pass a precomputed (1, T, D).
        ``frames_repeat`` = V lets cond_frames hold each of the T frames once (T, 3, H, W):
        they are encoded once and their latents repeated V times, frame-major, instead of
        encoding V identical copies (the reference adds independent 1e-5 noise to each copy;
        here the copies share it, a difference far below any tolerance).
        Returns dicts with crossattn (1, T, D), vector (N, E), concat (N, 4, h, w),
        cond_view (V, 4, h, w), cond_motion (T, 4, h, w); everything float32.
        """
        sigma = self.cfg.cond_noise_sigma if noise_sigma is None else noise_sigma
        e = self.embedders
        if crossattn is None:
            crossattn = self.embed_images(cond_frames_without_noise)
        concat = e[1](_noisy(cond_frames, sigma, generator), encode_chunk)
        if frames_repeat > 1:
            concat = concat.float().repeat_interleave(frames_repeat, 0)
        view = e[4](_noisy(cond_view, sigma, generator), encode_chunk)
        motion = e[5](_noisy(cond_motion, sigma, generator), encode_chunk)
        return self.assemble(
            crossattn, concat, view, motion, polar_rad, azimuth_rad, cond_mv=cond_mv, noise_sigma=sigma
        )

    def assemble(
        self,
        crossattn: torch.Tensor,
        concat: torch.Tensor,
        cond_view: torch.Tensor,
        cond_motion: torch.Tensor,
        polar_rad: torch.Tensor,
        azimuth_rad: torch.Tensor,
        *,
        cond_mv: bool = True,
        noise_sigma: float | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(c, uc) from already encoded inputs: crossattn (1, T, D) image embeddings, concat
        (N, 4, h, w), cond_view (V, 4, h, w), cond_motion (T, 4, h, w) unscaled latents
        (what :meth:`forward` computes; training from cached latents calls this directly)."""
        sigma = self.cfg.cond_noise_sigma if noise_sigma is None else noise_sigma
        n = concat.shape[0]
        device = concat.device
        e = self.embedders
        crossattn, concat = crossattn.float(), concat.float()
        view, motion = cond_view.float(), cond_motion.float()
        sigma_cond = timestep_embedding(torch.full((n,), sigma, device=device), self.cfg.sigma_cond_dim)
        polar = e[2](polar_rad.to(device))
        azim = e[3](azimuth_rad.to(device))
        if not cond_mv:
            view = torch.zeros_like(view)
        c = {
            "crossattn": crossattn,
            "vector": torch.cat([sigma_cond, polar, azim], 1),
            "concat": concat,
            "cond_view": view,
            "cond_motion": motion,
        }
        uc = {
            "crossattn": torch.zeros_like(crossattn),
            "vector": torch.cat([torch.zeros_like(sigma_cond), polar, azim], 1),
            "concat": torch.zeros_like(concat),
            "cond_view": torch.zeros_like(view),
            "cond_motion": torch.zeros_like(motion),
        }
        return c, uc

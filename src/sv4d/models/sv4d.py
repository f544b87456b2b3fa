"""The whole SV4D 2.0 network (reference ``DiffusionEngine``): UNet, conditioner, first-stage decoder.

State-dict prefixes: ``model.diffusion_model.``, ``conditioner.embedders.{0..5}.``,
``first_stage_model.decoder.``. This module only composes networks: the sampling loop that
drives them lives in :mod:`sv4d.diffusion.sampling`, checkpoint files in :mod:`sv4d.checkpoint`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .conditioner import Conditioner
from .unet import SV4DUNet
from .vae import FirstStage


class DiffusionWrapper(nn.Module):
    """Holds the UNet under the reference key prefix ``model.diffusion_model.``."""

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

    @torch.no_grad()
    def decode(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Diffusion latents (B, 4, h, w) -> images (B, 3, H, W) in about [-1, 1], float32."""
        return self.first_stage_model.decode(z / self.cfg.scale_factor, chunk).float()

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> diffusion latents (B, 4, h, w) (scaled by ``scale_factor``),
        using the conditioning encoder (the first stage of the official model has no encoder)."""
        return self.conditioner.embedders[1].encoder.encode(images, chunk).float() * self.cfg.scale_factor

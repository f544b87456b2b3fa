"""Configurations: small frozen dataclasses with named presets.

A preset is data, not a subclass. ``ModelConfig`` describes the whole engine
(UNet, VAE, image encoder, conditioner widths, window shape and sampler
defaults); ``PRESETS`` holds the two official models. Any size goes through the
same types (tests and training use tiny ones).

View attention (``UNetConfig.view_attention``) has three values:

* ``"grouped"`` -- the reference's ``use_3d_attention=True`` token grouping
  (spec section 2.6.3): each attention sequence is V consecutive flattened
  (view, raster position) tokens of one frame. This is what the official
  ``sv4d2.safetensors`` was trained with, so it is the default of the ``sv4d2``
  preset.
* ``"per_pixel"`` -- the reference's ``use_3d_attention=False``: each sequence is
  the V views of one pixel of one frame (``sv4d2_8views`` and SV4D v1).
* ``"joint"`` -- true 3-D attention over all V x h x w tokens of a frame, which
  is what the paper describes. It has the same parameters, so it can be chosen
  for models we train ourselves; the official weights were not trained with it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import Sv4dError

VIEW_ATTENTION_MODES = ("grouped", "per_pixel", "joint")


@dataclass(frozen=True)
class UNetConfig:
    """The video UNet (``model.diffusion_model``)."""

    in_channels: int = 8
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 64
    context_dim: int = 1024
    adm_in_channels: int = 1280
    motion_context_dim: int = 4
    time_kernel_size: tuple[int, int, int] = (3, 1, 1)
    view_attention: str = "grouped"
    # False = progressive training's stage 1 (static 3-D data): every frame ("motion")
    # attention stage passes its input through unchanged. Stored with the checkpoint.
    motion_attention: bool = True
    max_period: int = 10000
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.view_attention not in VIEW_ATTENTION_MODES:
            raise Sv4dError(f"view_attention must be one of {VIEW_ATTENTION_MODES}, got {self.view_attention!r}")
        if self.adm_in_channels != 4 * self.model_channels:
            raise Sv4dError(
                "adm_in_channels must equal 4*model_channels: the camera MLP of every attention "
                f"layer is fed the UNet's global embedding (got {self.adm_in_channels} and "
                f"{self.model_channels})"
            )
        for m in self.channel_mult:
            if (m * self.model_channels) % 32:
                raise Sv4dError("every level's channel count must be a multiple of 32 (GroupNorm)")

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels


@dataclass(frozen=True)
class VAEConfig:
    """The KL autoencoder (``ddconfig``); attention only in the middle blocks."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    in_channels: int = 3
    out_ch: int = 3

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class CLIPVisionConfig:
    """The OpenCLIP ViT image tower, plus the sizes of the unused text leftovers
    that the official checkpoint still carries (``token_embedding`` ...)."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    layers: int = 32
    heads: int = 16
    mlp_ratio: float = 4.0
    output_dim: int = 1024
    # unused text leftovers (present in the official file; spec section 9)
    vocab_size: int = 49408
    context_length: int = 77
    text_width: int = 1024


@dataclass(frozen=True)
class SamplerConfig:
    """Sampler defaults as the official script builds them (spec section 4)."""

    num_steps: int = 50
    sigma_min: float = 0.002
    sigma_max: float = 700.0
    rho: float = 7.0
    guider: str = "linear"  # "linear" | "spatiotemporal" | "none"
    max_scale: float = 2.0
    min_scale: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    """The whole engine: networks, conditioner widths, window shape, sampling defaults.

    ``clip=None`` means the image-embedding input is already the embedding (the
    reference's ``IdentityEncoder``, used by the golden vectors and by trainers that
    cache embeddings); then the conditioner expects (T, context_dim) embeddings.
    """

    name: str = "sv4d2"
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    clip: CLIPVisionConfig | None = field(default_factory=CLIPVisionConfig)
    sigma_cond_dim: int = 256
    polar_dim: int = 512
    azimuth_dim: int = 512
    cond_noise_sigma: float = 1e-5
    scale_factor: float = 0.18215
    num_frames: int = 12  # T: frames per window
    num_views: int = 4  # V: novel views per window
    image_size: int = 576
    azimuths_deg: tuple[float, ...] = (0, 60, 120, 180, 240)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        total = self.sigma_cond_dim + self.polar_dim + self.azimuth_dim
        if total != self.unet.adm_in_channels:
            raise Sv4dError(
                f"sigma_cond_dim + polar_dim + azimuth_dim = {total} must equal "
                f"unet.adm_in_channels = {self.unet.adm_in_channels}"
            )
        if self.clip is not None and self.clip.output_dim != self.unet.context_dim:
            raise Sv4dError("clip.output_dim must equal unet.context_dim")
        if len(self.azimuths_deg) != self.num_views + 1:
            raise Sv4dError(f"azimuths_deg needs num_views + 1 = {self.num_views + 1} values (view 0 is the input)")

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae.downsample

    # ---- (de)serialisation, used for safetensors metadata -----------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        try:
            unet = UNetConfig(**_tuples(d.pop("unet")))
            vae = VAEConfig(**_tuples(d.pop("vae")))
            clip_d = d.pop("clip")
            clip = CLIPVisionConfig(**clip_d) if clip_d is not None else None
            sampler = SamplerConfig(**d.pop("sampler"))
            return cls(unet=unet, vae=vae, clip=clip, sampler=sampler, **_tuples(d))
        except (TypeError, KeyError) as e:
            raise Sv4dError(f"not a valid sv4d model config: {e}") from None

    @classmethod
    def from_json(cls, s: str) -> ModelConfig:
        try:
            return cls.from_dict(json.loads(s))
        except json.JSONDecodeError as e:
            raise Sv4dError(f"model config is not valid JSON: {e}") from None

    def replace(self, **kw: Any) -> ModelConfig:
        return dataclasses.replace(self, **kw)


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


SV4D2 = ModelConfig(name="sv4d2")

SV4D2_8VIEWS = ModelConfig(
    name="sv4d2_8views",
    unet=UNetConfig(view_attention="per_pixel"),
    num_frames=5,
    num_views=8,
    azimuths_deg=(0, 30, 75, 120, 165, 210, 255, 300, 330),
    sampler=SamplerConfig(guider="spatiotemporal", max_scale=2.5, min_scale=1.5),
)

PRESETS: dict[str, ModelConfig] = {"sv4d2": SV4D2, "sv4d2_8views": SV4D2_8VIEWS}


def tiny_config(
    name: str = "tiny",
    *,
    num_frames: int = 3,
    num_views: int = 4,
    view_attention: str = "grouped",
    image_size: int = 48,
    model_channels: int = 32,
    channel_mult: tuple[int, ...] = (1, 2),
    num_res_blocks: int = 1,
    context_dim: int = 32,
    with_clip: bool = False,
    vae_ch: int = 32,
    vae_downsample: int = 8,
) -> ModelConfig:
    """A small config of the same block types (like the golden vectors' tiny one).

    ``with_clip`` adds a tiny ViT image tower (28 px input, 2 x 2 patches) so that the
    pipeline can be run end to end on images; without it the conditioner takes
    image embeddings directly (as the golden vectors do). ``vae_downsample`` (a power of
    two) sets the VAE's levels: 8 = ch_mult (1, 1, 1, 2) like the official 8x VAE, 4 =
    (1, 1, 2), ...
    """
    levels = int(vae_downsample).bit_length() - 1
    if vae_downsample < 1 or 2**levels != vae_downsample:
        raise Sv4dError(f"vae_downsample must be a power of two, got {vae_downsample}")
    if image_size % vae_downsample:
        raise Sv4dError(f"image_size {image_size} is not a multiple of vae_downsample {vae_downsample}")
    clip = None
    if with_clip:
        clip = CLIPVisionConfig(
            image_size=28,
            patch_size=14,
            width=32,
            layers=1,
            heads=2,
            output_dim=context_dim,
            vocab_size=16,
            context_length=4,
            text_width=16,
        )
    azimuths = tuple(round(360.0 * i / (num_views + 1), 4) for i in range(num_views + 1))
    return ModelConfig(
        name=name,
        unet=UNetConfig(
            model_channels=model_channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            attention_resolutions=(2, 1),
            num_head_channels=8,
            context_dim=context_dim,
            adm_in_channels=4 * model_channels,
            view_attention=view_attention,
        ),
        vae=VAEConfig(ch=vae_ch, ch_mult=(1,) * levels + (2,), num_res_blocks=1),
        clip=clip,
        sigma_cond_dim=model_channels,
        polar_dim=(3 * model_channels) // 2,
        azimuth_dim=4 * model_channels - model_channels - (3 * model_channels) // 2,
        num_frames=num_frames,
        num_views=num_views,
        image_size=image_size,
        azimuths_deg=azimuths,
        sampler=SamplerConfig(num_steps=4),
    )


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise Sv4dError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None

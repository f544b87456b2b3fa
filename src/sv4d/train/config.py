"""The training configuration: one frozen dataclass, read from TOML or JSON, with
``key=value`` overrides from the command line (``objective.uncond_prob=0.2``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PRESETS, ModelConfig, tiny_config
from ..diffusion.training import ObjectiveConfig
from ..errors import Sv4dError


@dataclass(frozen=True)
class TrainConfig:
    """Every switch of the recipe, with its default.

    model: "tiny" (a small config of the same blocks, trainable on a CPU) or a preset name
    ("sv4d2", "sv4d2_8views"); init: a checkpoint to start from (official or sv4d-written;
    its config wins), None = from scratch. view_attention: override ("grouped",
    "per_pixel", "joint"). stage: 1 = static 3-D data with the frame ("motion") attention
    switched off (pass-through) and frozen; 2 = dynamic 4-D data with it on and trained.
    data: multi-view set folders; data_mode: "static" | "dynamic" | "mixed" (default:
    static in stage 1, dynamic in stage 2); views: the view indices training may use
    (default all; leave some out to evaluate on held-out views). Only the UNet is trained;
    the image encoder and the VAEs stay frozen, as in the paper.
    cache_latents: encode every image the data can show once with the frozen VAE encoders
    and image encoder, store the results in ``cache_dir`` (default OUT/cache; may be shared
    between runs, files are keyed by the encoder weights and the data) and train from them.
    vae_channels, vae_downsample: the tiny model's VAE (base width, 8 = the official 8x
    layout). kl_weight: only for ``sv4d train-autoencoder``, which trains a tiny model's VAE
    (reconstruction L1 + kl_weight * KL) before the UNet is trained from scratch.
    """

    model: str = "tiny"
    init: str | None = None
    num_frames: int = 3
    num_views: int = 3
    image_size: int = 64
    model_channels: int = 32
    vae_channels: int = 32
    vae_downsample: int = 8
    view_attention: str | None = None
    stage: int = 2
    data: tuple[str, ...] = ()
    data_mode: str | None = None
    views: tuple[int, ...] = ()
    input_view: int | str = 0
    frame_stride: int = 1
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    steps: int = 1000
    mixed_precision: str = "auto"  # "auto": bf16 on a GPU (fp32 runs there ~10x slower), none on the CPU
    gradient_checkpointing: bool | None = None  # None: on for the full-size presets, off for "tiny"
    ema_decay: float = 0.999
    save_every: int = 250
    sample_every: int = 250
    sample_steps: int = 10
    log_every: int = 10
    cache_latents: bool = True
    cache_dir: str | None = None
    kl_weight: float = 1e-6
    seed: int = 0
    out: str = "runs/train"

    def __post_init__(self) -> None:
        if self.model != "tiny" and self.model not in PRESETS:
            raise Sv4dError(f"model must be 'tiny' or one of {sorted(PRESETS)}, got {self.model!r}")
        if self.stage not in (1, 2):
            raise Sv4dError(f"stage must be 1 (static, motion attention off) or 2, got {self.stage}")
        if self.data_mode not in (None, "static", "dynamic", "mixed"):
            raise Sv4dError(f"data_mode must be static, dynamic or mixed, got {self.data_mode!r}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise Sv4dError(f"mixed_precision must be auto, no, fp16 or bf16, got {self.mixed_precision!r}")
        for name in ("batch_size", "grad_accum", "steps", "save_every", "sample_every", "log_every"):
            if getattr(self, name) < 1:
                raise Sv4dError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(not isinstance(v, int) or v < 0 for v in self.views) or len(set(self.views)) != len(self.views):
            raise Sv4dError(f"views must be distinct view indices, got {list(self.views)}")
        if self.kl_weight < 0:
            raise Sv4dError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise Sv4dError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def mode(self) -> str:
        return self.data_mode or ("static" if self.stage == 1 else "dynamic")

    def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
        """The model config: ``base`` (from an init checkpoint) or built from ``model``,
        with the stage's motion-attention switch and the view-attention override applied."""
        if base is None:
            if self.model == "tiny":
                base = tiny_config(
                    "tiny_train",
                    num_frames=self.num_frames,
                    num_views=self.num_views,
                    image_size=self.image_size,
                    model_channels=self.model_channels,
                    with_clip=True,
                    vae_ch=self.vae_channels,
                    vae_downsample=self.vae_downsample,
                )
            else:
                base = PRESETS[self.model]
        unet = dataclasses.replace(
            base.unet, motion_attention=self.stage == 2, view_attention=self.view_attention or base.unet.view_attention
        )
        return base.replace(unet=unet)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise Sv4dError(f"unknown training option(s): {', '.join(unknown)}")
        try:
            if "objective" in d and isinstance(d["objective"], dict):
                d["objective"] = ObjectiveConfig(**d["objective"])
            if "data" in d:
                d["data"] = tuple([d["data"]] if isinstance(d["data"], str) else d["data"])
            if "views" in d:
                d["views"] = tuple(d["views"])
            return cls(**d)
        except TypeError as e:
            raise Sv4dError(f"bad training config: {e}") from None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a TOML or JSON file (or start from defaults with ``path=None``) and apply
    ``key=value`` overrides; values are JSON (``steps=200``, ``data=["a","b"]``) or strings."""
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise Sv4dError(f"training config not found: {p}")
        try:
            if p.suffix == ".toml":
                import tomllib  # Python 3.11+

                d = tomllib.loads(p.read_text())
            else:
                d = json.loads(p.read_text())
        except (ValueError, ImportError) as e:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            raise Sv4dError(f"cannot parse {p}: {e}") from None
        base = p.parent
        if "data" in d:  # data folders are relative to the config file
            data = [d["data"]] if isinstance(d["data"], str) else d["data"]
            d["data"] = [str(base / x) if not Path(x).is_absolute() else x for x in data]
    for o in overrides:
        if "=" not in o:
            raise Sv4dError(f"override {o!r} is not key=value")
        key, value = o.split("=", 1)
        target = d
        parts = key.strip().split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise Sv4dError(f"override {o!r}: {part} is not a section")
        target[parts[-1]] = _parse_value(value)
    return TrainConfig.from_dict(d)

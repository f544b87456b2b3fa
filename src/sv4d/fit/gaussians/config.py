"""Settings of the 4D Gaussian fit (a small frozen dataclass, checked on construction) and the
constants of the Gaussian parameterisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import Sv4dError
from ..base import config_from_dict

SH_C0 = 0.28209479177387814  # degree-0 spherical harmonic: rgb = 0.5 + SH_C0 * sh_dc
INITS = ("hull", "box")
PER_GAUSSIAN = ("means", "log_scales", "quats", "opacity_logits", "color_logits")


@dataclass(frozen=True)
class GaussianConfig:
    """Settings of the 4D Gaussian fit (lengths relative to the scene box half-side b)."""

    init: str = "hull"  # "hull": near the masks' visual hull surface; "box": uniform
    init_count: int = 20000
    init_opacity: float = 0.1
    hull_resolution: int = 96
    hull_dilate: int = 1  # pixels
    hull_misses: int = 0
    hull_shell: int = 3  # seed within this many hull cells of its surface
    resolutions: tuple[int, ...] = (32, 64)  # deformation planes
    time_resolution: int = 0  # 0: one knot per fitted frame
    features: int = 16
    hidden: int = 64
    lr_means: float = 1.6e-3  # x b, decays to lr_means * lr_final
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_color: float = 1e-2
    lr_planes: float = 0.02
    lr_mlp: float = 3e-3
    lr_final: float = 0.01  # the position learning rate decays to this fraction
    lr_field_final: float = 0.1  # the deformation field's learning rates decay to this fraction
    schedule_steps: int = 3000  # run length assumed when train_step gets no progress
    alpha_weight: float = 1.0
    ssim_weight: float = 0.0  # share of D-SSIM in the colour loss (3DGS: 0.2)
    tv_weight: float = 1e-4
    time_smooth_weight: float = 1e-3
    time_l1_weight: float = 1e-4
    densify_from: int = 200  # steps
    densify_every: int = 100  # steps
    densify_until: float = 0.6  # fraction of the run
    grad_threshold: float = 2e-4  # mean screen gradient (NDC units) that densifies
    dense_size: float = 0.03  # x b: larger Gaussians split, smaller ones clone
    prune_opacity: float = 0.005
    prune_size: float = 0.25  # x b
    max_gaussians: int = 60000
    opacity_reset_every: int = 0  # steps; 0: never
    tile: int = 8  # rasteriser tile (pixels)

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise Sv4dError(f"unknown Gaussian init {self.init!r}; use one of {INITS}")
        if self.init_count < 1 or self.max_gaussians < 1:
            raise Sv4dError("init_count and max_gaussians must be positive")
        if not 0.0 < self.init_opacity < 1.0:
            raise Sv4dError(f"init_opacity must be in (0, 1), got {self.init_opacity}")
        if not self.resolutions or any(int(r) < 2 for r in self.resolutions):
            raise Sv4dError(f"resolutions must be integers >= 2, got {self.resolutions}")
        if self.densify_every < 1 or self.schedule_steps < 1:
            raise Sv4dError("densify_every and schedule_steps must be positive")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaussianConfig:
        return config_from_dict(cls, d, "Gaussian")

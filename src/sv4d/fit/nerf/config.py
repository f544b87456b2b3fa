"""Settings of the dynamic NeRF fit: a small frozen dataclass (lengths in occupancy cells or pixels
where noted, learning rates per Adam group)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import config_from_dict


@dataclass(frozen=True)
class NerfConfig:
    resolutions: tuple[int, ...] = (32, 64, 128)
    time_resolution: int = 0  # 0: one knot per fitted frame
    features: int = 16
    hidden: int = 64
    hull_resolution: int = 128
    hull_dilate: int = 2  # pixels
    hull_misses: int = 0  # views a hull cell may fall outside (generated views: 1)
    rays: int = 4096
    lr: float = 0.02
    lr_mlp: float = 0.005
    lr_final: float = 0.1  # cosine decay to this fraction
    warmup: int = 50
    alpha_weight: float = 1.0
    tv_weight: float = 1e-4
    time_smooth_weight: float = 1e-3
    time_l1_weight: float = 1e-4
    reg_every: int = 4  # steps between regulariser terms (weighted by this)
    occupancy_every: int = 200
    occupancy_start: int = 300
    occupancy_alpha: float = 0.005  # a cell stays while one step through it is this opaque
    render_chunk: int = 16384

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NerfConfig:
        return config_from_dict(cls, d, "NeRF")

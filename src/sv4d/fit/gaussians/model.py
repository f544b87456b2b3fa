"""A fitted set of 4D Gaussians: canonical 3D Gaussians moved by a space-time deformation field;
all that rendering, export and checkpoints need (no images).

The canonical set is the usual 3DGS one (positions, log scales, wxyz quaternions, opacity
logits) with a view-independent colour (sigmoid of a logit; exported as degree-0 SH). The
:class:`~.deformation.Deformation` gives each Gaussian, from its canonical position and the time,
offsets to its position, quaternion and log scale. While ``static`` the field is skipped (time has
no effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ...cameras import Intrinsics
from ...errors import Sv4dError
from .config import PER_GAUSSIAN, SH_C0, GaussianConfig
from .deformation import Deformation
from .rasterize import rasterize_gaussians


class GaussianModel:
    """Canonical parameters ``params`` {name: (N, ...)} for the names of ``PER_GAUSSIAN`` (means
    (N, 3), log_scales (N, 3), quats (N, 4) wxyz, opacity_logits (N,), color_logits (N, 3)) and the
    deformation field ``deform``; bound: half-side of the scene box."""

    def __init__(
        self, config: GaussianConfig, bound: float, params: dict[str, torch.Tensor], time_resolution: int, seed: int = 0
    ) -> None:
        missing = [k for k in PER_GAUSSIAN if k not in params]
        if missing:
            raise Sv4dError(f"Gaussian parameters lack {missing}")
        self.config, self.bound, self.time_resolution = config, float(bound), int(time_resolution)
        self.params = {k: nn.Parameter(params[k].detach().clone().float()) for k in PER_GAUSSIAN}
        self.deform = Deformation(
            self.bound, config.resolutions, self.time_resolution, config.features, config.hidden, seed
        )
        self.static = False
        self.backend = "auto"

    @property
    def count(self) -> int:
        return int(self.params["means"].shape[0])

    def to(self, device: str | torch.device) -> GaussianModel:
        self.params = {k: nn.Parameter(v.detach().to(device)) for k, v in self.params.items()}
        self.deform.to(device)
        return self

    def canonical(self) -> dict[str, torch.Tensor]:
        """The canonical Gaussians (differentiable): means (N, 3), quats (N, 4) unnormalised,
        log_scales (N, 3), opacities (N,), colors (N, 3)."""
        p = self.params
        return {
            "means": p["means"],
            "quats": p["quats"],
            "log_scales": p["log_scales"],
            "opacities": torch.sigmoid(p["opacity_logits"]),
            "colors": torch.sigmoid(p["color_logits"]),
        }

    def deformed(self, t: float) -> dict[str, torch.Tensor]:
        """Gaussians at time t (differentiable): :meth:`canonical` moved by the deformation field."""
        g = self.canonical()
        if not self.static:
            dx, dq, ds = self.deform(g["means"].detach(), t)
            g.update(means=g["means"] + dx, quats=g["quats"] + dq, log_scales=g["log_scales"] + ds)
        return g

    def rasterize(
        self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float, background: Sequence[float] = (1.0, 1.0, 1.0)
    ) -> dict[str, torch.Tensor]:
        """The Gaussians at time t through one OpenGL camera (4, 4), differentiably: see
        :func:`~.rasterize.rasterize_gaussians` for the outputs."""
        g = self.deformed(t)
        dev = g["means"].device
        return rasterize_gaussians(
            g["means"],
            g["quats"],
            torch.exp(g["log_scales"]),
            g["opacities"],
            g["colors"],
            c2w.to(dev).float(),
            intrinsics,
            background,
            backend=self.backend,
            tile=self.config.tile,
        )

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        """One OpenGL camera (4, 4) at time t -> rgb (H, W, 3) on white, alpha (H, W), depth (H, W)
        (blending-weighted distance from the camera, 0 where empty); CPU tensors."""
        out = self.rasterize(c2w, intrinsics, t)
        return {k: out[k].cpu() for k in ("rgb", "alpha", "depth")}

    @torch.no_grad()
    def gaussians_at(self, t: float) -> dict[str, torch.Tensor]:
        """The Gaussians at time t in the 3DGS PLY parameterisation: means (N, 3), quats (N, 4)
        wxyz normalised, log_scales (N, 3), opacity_logits (N,), sh_dc (N, 3) = (rgb - 0.5) / C0."""
        g = self.deformed(t)
        q = g["quats"] / g["quats"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return {
            "means": g["means"].cpu(),
            "quats": q.cpu(),
            "log_scales": g["log_scales"].cpu(),
            "opacity_logits": self.params["opacity_logits"].detach().cpu(),
            "sh_dc": ((g["colors"] - 0.5) / SH_C0).cpu(),
        }

    def state(self) -> dict[str, Any]:
        """Keys: config, bound, time_resolution, params, deform, static (CPU tensors)."""
        return {
            "config": asdict(self.config),
            "bound": self.bound,
            "time_resolution": self.time_resolution,
            "params": {k: v.detach().cpu().clone() for k, v in self.params.items()},
            "deform": {k: v.detach().cpu().clone() for k, v in self.deform.state_dict().items()},
            "static": self.static,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GaussianModel:
        """A model from :meth:`state` (on the CPU)."""
        model = cls(
            GaussianConfig.from_dict(state["config"]), state["bound"], state["params"], state["time_resolution"]
        )
        model.deform.load_state_dict(state["deform"])
        model.static = bool(state["static"])
        return model

"""A fitted dynamic NeRF: the K-Planes field, one occupancy grid per fitted frame and the frames'
times; all that rendering, export and checkpoints need (no images).

The occupancy starts as the visual hull of the training masks (per frame) and is tightened by
:meth:`DynamicNerf.update_occupancy` to the hull cells (dilated by one cell) whose density is
still visible. Between fitted frames the union of the two nearest frames' grids is used.
Checkpoints store the occupancy as packed bits (:func:`pack_bits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...cameras import Intrinsics, camera_rays
from ..field import KPlanesField
from ..hull import cell_centres, cell_size
from .config import NerfConfig
from .renderer import render_rays
from .sampling import cell_index, occupied_box


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """bool tensor (any shape, CPU) -> uint8 tensor (ceil(numel / 8),) of its bits (8x smaller in a checkpoint)."""
    return torch.from_numpy(np.packbits(mask.reshape(-1).numpy()))


def unpack_bits(bits: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`pack_bits`: uint8 bits (CPU) -> bool tensor of ``shape``."""
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits.numpy(), count=n).astype(bool)).reshape(shape)


class DynamicNerf:
    """The field, the per-frame occupancy (F, R^3) bool and the frames' times (F,) in [0, 1].

    hull: (F, R, R, R) or (F, R^3) bool starting occupancy, R = ``config.hull_resolution``;
    bound: half-side of the scene cube [-bound, bound]^3."""

    def __init__(
        self,
        config: NerfConfig,
        bound: float,
        hull: torch.Tensor,
        times: torch.Tensor,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.config, self.bound, self.hull = config, float(bound), hull.to(self.device)
        self.times = times.float().to(self.device)
        f = len(self.times)
        self.occupancy = self.hull.reshape(f, -1).clone()
        self.step_size = cell_size(self.bound, config.hull_resolution)
        self.field = KPlanesField(
            self.bound,
            config.resolutions,
            config.time_resolution or max(f, 2),
            config.features,
            config.hidden,
            seed=seed,
        ).to(self.device)

    @torch.no_grad()
    def update_occupancy(self, frames: Sequence[int]) -> None:
        """Keep the hull cells (dilated by one cell) whose density makes one step visible."""
        res = self.config.hull_resolution
        c = cell_centres(self.bound, res, self.device)
        for fi in frames:
            hull = self.hull[fi].reshape(-1)
            idx = hull.nonzero()[:, 0]
            ix, iy, iz = idx // (res * res), (idx // res) % res, idx % res
            pts = torch.stack([c[ix], c[iy], c[iz]], -1)
            t = self.times[fi].expand(len(pts))
            sigma = torch.cat(
                [
                    self.field(pts[i : i + 262144], t[i : i + 262144], with_color=False)[0]
                    for i in range(0, len(pts), 262144)
                ]
                or [torch.zeros(0, device=self.device)]
            )
            keep = torch.zeros(res**3, dtype=torch.bool, device=self.device)
            keep[idx] = (1 - torch.exp(-sigma * self.step_size)) > self.config.occupancy_alpha
            keep = F.max_pool3d(keep.reshape(1, 1, res, res, res).float(), 3, 1, 1).reshape(-1) > 0.5
            self.occupancy[fi] = keep & hull
        self._box = None

    def set_occupancy(self, occupancy: torch.Tensor) -> None:
        """Replace the (F, R^3) occupancy (a resume) and forget the cached box."""
        self.occupancy = occupancy.to(self.device)
        self._box = None

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The box (lo (3,), hi (3,)) around the occupied cells of every frame (cached until the occupancy changes)."""
        if getattr(self, "_box", None) is None:
            self._box = occupied_box(self.occupancy, self.bound)
        return self._box

    def occupancy_at(self, t: float) -> torch.Tensor:
        """(R^3,) occupancy at time t: the union of the two nearest fitted frames' grids
        (the first frame's alone while the field is static)."""
        times = self.times
        if self.field.static or len(times) == 1:
            return self.occupancy[0]
        j = int(torch.searchsorted(times.cpu(), torch.tensor(float(t))).clamp(1, len(times) - 1))
        return self.occupancy[j - 1] | self.occupancy[j]

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        """One OpenGL camera (4, 4) at time t -> rgb (H, W, 3) on white, alpha (H, W), depth (H, W); CPU tensors."""
        o, d = camera_rays(c2w.cpu().reshape(1, 4, 4), intrinsics)
        o, d = o.reshape(-1, 3).to(self.device), d.reshape(-1, 3).to(self.device)
        occ = self.occupancy_at(t)[None]
        box = occupied_box(occ, self.bound)  # once per image, not once per chunk of rays
        n, chunk = len(o), self.config.render_chunk
        tt = torch.full((n,), float(t), device=self.device)
        zero = torch.zeros(n, dtype=torch.long, device=self.device)
        parts = [
            render_rays(
                self.field,
                occ,
                o[i : i + chunk],
                d[i : i + chunk],
                tt[i : i + chunk],
                zero[i : i + chunk],
                self.step_size,
                box=box,
            )
            for i in range(0, n, chunk)
        ]
        h, w = intrinsics.height, intrinsics.width
        return {k: torch.cat([p[k] for p in parts]).reshape(h, w, *parts[0][k].shape[1:]).cpu() for k in parts[0]}

    @torch.no_grad()
    def density(self, points: torch.Tensor, t: float) -> torch.Tensor:
        """Density (P,) at world points (P, 3) and time t (0 outside the occupied cells); CPU."""
        points = points.to(self.device)
        occ = self.occupancy_at(t)
        keep = (points.abs() <= self.bound).all(-1)
        keep &= occ[cell_index(points, self.bound, self.config.hull_resolution)]
        out = torch.zeros(len(points), device=self.device)
        if keep.any():
            n = int(keep.sum())
            out[keep] = self.field(points[keep], torch.full((n,), float(t), device=self.device), with_color=False)[0]
        return out.cpu()

    @torch.no_grad()
    def color(self, points: torch.Tensor, t: float) -> torch.Tensor:
        """Colour (P, 3) in [0, 1] at world points (P, 3) and time t; CPU."""
        points = points.to(self.device)
        return self.field(points, torch.full((len(points),), float(t), device=self.device))[1].cpu()

    def state(self) -> dict[str, Any]:
        """Field weights, packed occupancy bits and times (the hull is the data's, rebuilt on resume).
        Keys: config, bound, times, occupancy, field, static."""
        return {
            "config": asdict(self.config),
            "bound": self.bound,
            "times": self.times.clone(),
            "occupancy": pack_bits(self.occupancy.cpu()),
            "field": self.field.state_dict(),
            "static": self.field.static,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | torch.device = "cpu") -> DynamicNerf:
        """A model from :meth:`state` (the fitted occupancy stands in for the hull)."""
        config = NerfConfig.from_dict(state["config"])
        occupancy = unpack_bits(state["occupancy"], (len(state["times"]), config.hull_resolution**3))
        model = cls(config, state["bound"], occupancy, state["times"], device=device)
        model.field.load_state_dict(state["field"])
        model.field.static = bool(state["static"])
        return model

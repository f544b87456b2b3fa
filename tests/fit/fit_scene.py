"""An analytic moving object for the fit tests: a sphere of radius 0.25 that slides along +X
over time, coloured by its surface normal, seen by orbit cameras at distance 2."""

from __future__ import annotations

import numpy as np
import torch

from sv4d.cameras import Intrinsics, Rig, TimeSpan, View, camera_rays
from sv4d.fit.data import FitData
from sv4d.io.multiview import write_multiview

RADIUS = 0.25
DISTANCE = 2.0


def centre(t: float) -> torch.Tensor:
    return torch.tensor([-0.15 + 0.3 * t, 0.0, 0.0])


def render_sphere(
    c2w: torch.Tensor, intr: Intrinsics, t: float, supersample: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """rgb over white (H, W, 3) and coverage alpha (H, W), supersampled."""
    big = intr.scaled(intr.width * supersample, intr.height * supersample)
    o, d = camera_rays(c2w[None], big)
    o, d = o[0], d[0]
    oc = o - centre(t)
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - RADIUS**2
    disc = b * b - c
    hit = disc > 0
    dist = -b - disc.clamp_min(0).sqrt()
    n = (oc + d * dist[..., None]) / RADIUS
    color = 0.15 + 0.7 * (n + 1) / 2
    rgb = torch.where(hit[..., None], color, torch.ones_like(color))
    a = hit.float()
    pool = torch.nn.functional.avg_pool2d
    rgb = pool(rgb.permute(2, 0, 1)[None], supersample)[0].permute(1, 2, 0)
    a = pool(a[None, None], supersample)[0, 0]
    return rgb.contiguous(), a.contiguous()


def scene(azimuths=(0, 60, 120, 180, 240, 300), elevations=None, frames: int = 3, size: int = 32) -> FitData:
    elevations = elevations or [0.0] * len(azimuths)
    intr = Intrinsics.from_fov(40.0, size)
    rig = Rig.orbit(list(zip(elevations, azimuths)), DISTANCE, intr, np.linspace(0, 1, frames) if frames > 1 else [0.0])
    c2w, times = torch.tensor(rig.c2w, dtype=torch.float32), torch.tensor(rig.times, dtype=torch.float32)
    rgb = torch.zeros(len(azimuths), frames, size, size, 3)
    alpha = torch.zeros(len(azimuths), frames, size, size)
    for v in range(len(azimuths)):
        for f in range(frames):
            rgb[v, f], alpha[v, f] = render_sphere(c2w[v], intr, float(times[f]))
    return FitData(
        rgb=rgb,
        alpha=alpha,
        rig=rig,
        time_span=TimeSpan(0.0, 1.0),
        views=list(range(len(azimuths))),
        frames=list(range(frames)),
        source="synthetic",
    )


def write_scene(path, data: FitData) -> None:
    """Write the scene as a multi-view set folder (straight-alpha RGBA)."""
    a = data.alpha[..., None]
    straight = torch.where(a > 0, (data.rgb - (1 - a)) / a.clamp_min(1e-6), torch.zeros_like(data.rgb)).clamp(0, 1)
    rgba = (torch.cat([straight, a], -1).numpy() * 255 + 0.5).astype(np.uint8)
    views = [View(data.c2w[i].double().numpy(), *data.rig.views[i].angles()) for i in range(len(data.views))]
    write_multiview(path, Rig(data.intrinsics, views, data.times.double().numpy() * 0.5, DISTANCE), rgba=rgba)


class SphereModel:
    """The analytic scene as a renderable (exact depth: distance along the ray), for tests
    that need a known surface."""

    def render(self, c2w: torch.Tensor, intr: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        o, d = camera_rays(c2w[None], intr)
        oc = o[0] - centre(t)
        b = (oc * d[0]).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - RADIUS**2)
        hit = disc > 0
        dist = torch.where(hit, -b - disc.clamp_min(0).sqrt(), torch.zeros_like(b))
        return {"rgb": torch.ones(*hit.shape, 3), "alpha": hit.float(), "depth": dist}

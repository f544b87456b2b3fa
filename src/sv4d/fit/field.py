"""The K-Planes space-time field: multi-scale feature planes and small decoders; the dynamic NeRF's
field (:mod:`sv4d.fit.nerf`) and the planes of the 4D Gaussians' deformation (:mod:`sv4d.fit.gaussians`).

At each scale s the feature of a point (x, y, z) at time t is the element-wise product of six
planes sampled bilinearly: three spatial planes xy, xz, yz and three space-time planes xt, yt,
zt. The scales' features are concatenated and decoded by two small MLPs: one gives the density
(through a clamped exponential) and a geometry feature, the other the colour from that feature
(no view dependence: with few views a view-dependent colour overfits them). Space-time planes
start at 1, so the field starts static; in the static stage they are skipped altogether.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SPACE_PAIRS = ((0, 1), (0, 2), (1, 2))


class KPlanesField(nn.Module):
    """Points in [-bound, bound]^3 and times in [0, 1] -> density (N,) and colour (N, 3)."""

    def __init__(
        self,
        bound: float,
        resolutions: Sequence[int],
        time_resolution: int,
        features: int = 16,
        hidden: int = 64,
        geo_features: int = 15,
        seed: int = 0,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.bound = float(bound)
        self.resolutions = tuple(int(r) for r in resolutions)
        self.time_resolution = int(time_resolution)
        self.space = nn.ParameterList(
            [nn.Parameter(torch.empty(3, features, r, r).uniform_(0.1, 0.5, generator=g)) for r in self.resolutions]
        )
        self.time = nn.ParameterList(
            [nn.Parameter(torch.ones(3, features, self.time_resolution, r)) for r in self.resolutions]
        )
        n_in = features * len(self.resolutions)
        self.sigma_net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, 1 + geo_features))
        self.color_net = nn.Sequential(nn.Linear(geo_features, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        with torch.no_grad():
            for layer in (*self.sigma_net, *self.color_net):
                if isinstance(layer, nn.Linear):
                    bound_w = 1.0 / layer.in_features**0.5
                    layer.weight.uniform_(-bound_w, bound_w, generator=g)
                    layer.bias.uniform_(-bound_w, bound_w, generator=g)
        self.static = False

    def plane_parameters(self) -> list[nn.Parameter]:
        return [*self.space, *self.time]

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [*self.sigma_net.parameters(), *self.color_net.parameters()]

    def features(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (N, 3) world points; t: (N,) times in [0, 1]. Returns (N, features * scales)."""
        p = (x / self.bound).clamp(-1, 1)
        space_grid = torch.stack([p[:, [a, b]] for a, b in SPACE_PAIRS])[:, :, None]  # (3, N, 1, 2)
        if not self.static:
            tt = (t * 2 - 1).clamp(-1, 1)
            time_grid = torch.stack([torch.stack([p[:, a], tt], -1) for a in range(3)])[:, :, None]
        out = []
        for s in range(len(self.resolutions)):
            a, b, c = F.grid_sample(self.space[s], space_grid, align_corners=True, padding_mode="border")[
                ..., 0
            ].unbind(0)  # 3 x (C, N)
            f = a * b * c
            if not self.static:
                a, b, c = F.grid_sample(self.time[s], time_grid, align_corners=True, padding_mode="border")[
                    ..., 0
                ].unbind(0)
                f = f * (a * b * c)
            out.append(f)
        return torch.cat(out, 0).t()

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, with_color: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.sigma_net(self.features(x, t))
        sigma = torch.exp(h[:, 0].clamp(max=12.0))
        if not with_color:
            return sigma, None
        return sigma, torch.sigmoid(self.color_net(h[:, 1:]))

    def regularisers(self) -> dict[str, torch.Tensor]:
        """Plane total variation (space), second differences along time, and distance of the
        space-time planes from 1 (motion only where the views ask for it)."""
        tv = sum(
            ((p[..., 1:, :] - p[..., :-1, :]) ** 2).mean() + ((p[..., 1:] - p[..., :-1]) ** 2).mean()
            for p in self.space
        )
        if self.static or self.time_resolution < 3:
            zero = self.space[0].new_zeros(())
            return {"tv": tv, "time_smooth": zero, "time_l1": zero}
        smooth = sum(((p[:, :, 2:] - 2 * p[:, :, 1:-1] + p[:, :, :-2]) ** 2).mean() for p in self.time)
        l1 = sum((1 - p).abs().mean() for p in self.time)
        return {"tv": tv, "time_smooth": smooth, "time_l1": l1}

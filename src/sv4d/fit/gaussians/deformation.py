"""The 4D Gaussians' deformation field: multi-scale space-time feature planes (the K-Planes field
of :mod:`sv4d.fit.field`, whose space-time planes start at 1) decoded by a small MLP whose last
layer starts at zero, so the field starts as the identity."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..field import KPlanesField


class Deformation(nn.Module):
    """(canonical positions (N, 3), time) -> offsets to position (N, 3), quaternion (N, 4) and
    log scale (N, 3); exactly zero until trained (last layer starts at zero)."""

    def __init__(
        self, bound: float, resolutions: Sequence[int], time_resolution: int, features: int, hidden: int, seed: int = 0
    ) -> None:
        super().__init__()
        self.planes = KPlanesField(bound, resolutions, time_resolution, features, hidden=8, geo_features=1, seed=seed)
        for p in self.planes.mlp_parameters():  # the field's own decoders are not used here
            p.requires_grad_(False)
        g = torch.Generator().manual_seed(seed + 1)
        n_in = features * len(self.planes.resolutions)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 10)
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    b = 1.0 / layer.in_features**0.5
                    layer.weight.uniform_(-b, b, generator=g)
                    layer.bias.uniform_(-b, b, generator=g)
            self.head.weight.zero_()
            self.head.bias.zero_()

    def plane_parameters(self) -> list[nn.Parameter]:
        return self.planes.plane_parameters()

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [*self.net.parameters(), *self.head.parameters()]

    def forward(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, 3) canonical positions, t a time in [0, 1] -> (dx (N, 3), dq (N, 4), ds (N, 3))."""
        feat = self.planes.features(x, torch.full((len(x),), float(t), device=x.device))
        d = self.head(self.net(feat))
        return d[:, :3], d[:, 3:7], d[:, 7:]

    def regularisers(self) -> dict[str, torch.Tensor]:
        """The planes' regularisers (see :meth:`KPlanesField.regularisers`)."""
        return self.planes.regularisers()

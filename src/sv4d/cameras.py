"""Camera angles as the model is conditioned on them (spec section 5.2)."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .errors import Sv4dError


def relative_angles(
    azimuths_deg: Sequence[float],
    elevations_deg: float | Sequence[float],
    num_frames: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Polar and azimuth conditioning (radians, float64) for one window.

    azimuths_deg: V + 1 values, view 0 being the input view; elevations_deg: one value or
    V + 1 values. Returns (polar, azimuth), each (T*V,) frame-major (row t*V + v) for the V
    novel views: ``polar = (polar_v - polar_0 + pi/2) mod 2pi`` with ``polar = 90deg - elev``,
    ``azimuth = (az_v - az_0) mod 2pi``.
    """
    n = len(azimuths_deg)
    if n < 2:
        raise Sv4dError("need at least two azimuths (the input view and one novel view)")
    if isinstance(elevations_deg, (int, float)):
        elevs = [float(elevations_deg)] * n
    else:
        elevs = [float(e) for e in elevations_deg]
        if len(elevs) != n:
            raise Sv4dError(f"got {len(elevs)} elevations for {n} views; give one value or one per view")
    two_pi = 2 * math.pi
    polars = [math.radians(90.0 - e) for e in elevs]
    # Relative to the last view first, then to view 0, exactly as the official script
    # does: the first step cancels mathematically but keeps the float64 results bit-equal.
    az_last = azimuths_deg[-1]
    azims = [math.radians((a - az_last) % 360.0) for a in azimuths_deg]
    pol = [(polars[v] - polars[0] + math.pi / 2) % two_pi for v in range(1, n)]
    azi = [(azims[v] - azims[0]) % two_pi for v in range(1, n)]
    polar = torch.tensor(pol * num_frames, dtype=torch.float64)
    azimuth = torch.tensor(azi * num_frames, dtype=torch.float64)
    return polar, azimuth

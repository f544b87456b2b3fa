"""Sets of views and camera paths on the orbit (conventions in :mod:`sv4d.cameras.orbit`).

* :func:`static_orbit`: ``n`` regular azimuths at one elevation;
* :func:`dynamic_orbit`: regular azimuths with the elevation varying smoothly with azimuth,
  ``elevation + amplitude * sin(azimuth + phase)`` (one period per turn), as SV4D renders its
  dynamic-orbit training views;
* :func:`parse_views`: an explicit list ``"el:az,el:az,..."``;
* :func:`orbit_path`: a camera path for orbit videos, with view and time changing together;
* :func:`fit_distance`: the smallest orbit radius at which given points stay inside every view.

Every list of views is a list of :class:`~sv4d.cameras.orbit.ViewAngles` (elevation, azimuth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import Sv4dError
from .orbit import ViewAngles, check_elevation, orbit_c2w

__all__ = ["static_orbit", "dynamic_orbit", "parse_views", "orbit_path", "fit_distance"]


def static_orbit(n: int, elevation: float = 0.0, start_azimuth: float = 0.0) -> list[ViewAngles]:
    """``n`` views at azimuths ``start + 360 k / n``, all at ``elevation``."""
    if n < 1:
        raise Sv4dError(f"an orbit needs at least one view, got {n}")
    check_elevation(elevation)
    return [ViewAngles(float(elevation), float((start_azimuth + 360.0 * k / n) % 360.0)) for k in range(n)]


def dynamic_orbit(
    n: int, elevation: float = 10.0, amplitude: float = 20.0, phase: float = 0.0, start_azimuth: float = 0.0
) -> list[ViewAngles]:
    """``n`` regular azimuths; elevation ``elevation + amplitude * sin(azimuth + phase)``."""
    out = []
    for _, az in static_orbit(n, 0.0, start_azimuth):
        e = elevation + amplitude * math.sin(math.radians(az + phase))
        out.append(ViewAngles(check_elevation(e), az))
    return out


def parse_views(text: str) -> list[ViewAngles]:
    """``"0:0,0:90,20:45"`` -> [(0, 0), (0, 90), (20, 45)] (elevation:azimuth, degrees)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            el, az = (float(x) for x in part.split(":"))
        except ValueError:
            raise Sv4dError(f"views must be elevation:azimuth pairs like 0:0,20:45; got {part!r}") from None
        if not math.isfinite(az):
            raise Sv4dError(f"azimuth must be a finite number of degrees, got {part!r}")
        out.append(ViewAngles(check_elevation(el), az % 360.0))
    if not out:
        raise Sv4dError("no views given")
    return out


def orbit_path(
    frames: int,
    elevation_deg: float,
    distance: float,
    start_azimuth_deg: float = 0.0,
    turns: float = 1.0,
    time_loops: float = 1.0,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """An orbit with continuous view and time change: ``frames`` cameras going ``turns`` times
    round at fixed elevation while time runs ``time_loops`` times through [0, 1] (back and
    forth, so the motion does not jump). Returns c2w (n, 4, 4) float32, azimuths (n,) degrees
    and times (n,) in [0, 1]."""
    if frames < 1:
        raise Sv4dError(f"an orbit needs at least one frame, got {frames}")
    if not distance > 0:
        raise Sv4dError(f"the camera distance must be positive, got {distance}")
    check_elevation(elevation_deg)
    u = np.arange(frames) / frames
    az = start_azimuth_deg + 360.0 * turns * u
    phase = (u * time_loops) % 1.0
    times = 1.0 - np.abs(1.0 - 2.0 * phase)  # 0 -> 1 -> 0
    c2w = torch.from_numpy(np.stack([orbit_c2w(elevation_deg, a, distance) for a in az])).float()
    return c2w, az, times


def fit_distance(
    points: np.ndarray, views: Sequence[ViewAngles], fov_deg: float, margin: float = 0.05, min_distance: float = 0.0
) -> float:
    """The smallest distance (>= ``min_distance``) at which all ``points`` (N, 3), in the world
    frame around the origin, project inside a square image of horizontal/vertical field of view
    ``fov_deg`` from every view, leaving ``margin`` of the half-width free on each side."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    limit = math.tan(math.radians(fov_deg) / 2) * (1.0 - margin)
    best = float(min_distance)
    for el, az in views:
        r = orbit_c2w(el, az, 1.0)[:3, :3]
        cam = pts @ r  # coordinates along right, up, back
        lateral = np.abs(cam[:, :2]).max(1)
        # a point at back-coordinate z is seen at depth d - z: need lateral <= limit (d - z)
        need = float((lateral / limit + cam[:, 2]).max())
        best = max(best, need, float(cam[:, 2].max()) + 1e-3)
    return best

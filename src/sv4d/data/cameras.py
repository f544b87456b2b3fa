"""Cameras and frame times for rendering an animated asset into a multi-view video set.

Views are (elevation, azimuth) pairs in degrees on an orbit around the origin, in the
conventions of ``io.multiview`` (azimuth about +Y, 0 on +Z, 90 on +X; elevation above XZ):

* :func:`static_orbit`: ``n`` regular azimuths at one elevation;
* :func:`dynamic_orbit`: regular azimuths with the elevation varying smoothly with azimuth,
  ``elevation + amplitude * sin(azimuth + phase)`` (one period per turn), as SV4D renders its
  dynamic-orbit training views;
* :func:`parse_views`: an explicit list ``"el:az,el:az,..."``.

Frame times (:func:`clip_times`): ``n`` times spread over the clip with the end excluded, so a
looping clip does not repeat its first frame (``t_i = start + i * duration / n``), or an
adaptive step (:func:`adaptive_times`, SV4D v1's rule): from each chosen frame the step grows
in units of ``duration / max_frames`` until the posed geometry has moved by at least
``min_motion`` (mean vertex displacement, in units of the clip's size).

:func:`fit_distance` finds the smallest camera distance at which every point of the posed clip
projects inside every view with a margin.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..errors import Sv4dError
from ..io.multiview import orbit_c2w

__all__ = ["static_orbit", "dynamic_orbit", "parse_views", "clip_times", "adaptive_times", "fit_distance"]

Angles = list[tuple[float, float]]  # (elevation_deg, azimuth_deg)


def static_orbit(n: int, elevation: float = 0.0, start_azimuth: float = 0.0) -> Angles:
    """``n`` views at azimuths ``start + 360 k / n``, all at ``elevation``."""
    if n < 1:
        raise Sv4dError(f"an orbit needs at least one view, got {n}")
    _check_elevation(elevation)
    return [(float(elevation), float((start_azimuth + 360.0 * k / n) % 360.0)) for k in range(n)]


def dynamic_orbit(n: int, elevation: float = 10.0, amplitude: float = 20.0, phase: float = 0.0,
                  start_azimuth: float = 0.0) -> Angles:
    """``n`` regular azimuths; elevation ``elevation + amplitude * sin(azimuth + phase)``."""
    out = []
    for el, az in static_orbit(n, 0.0, start_azimuth):
        e = elevation + amplitude * math.sin(math.radians(az + phase))
        _check_elevation(e)
        out.append((float(e), az))
    return out


def _check_elevation(e: float) -> None:
    if not -89.0 <= e <= 89.0:
        raise Sv4dError(f"elevation {e:g} deg is outside [-89, 89]")


def parse_views(text: str) -> Angles:
    """``"0:0,0:90,20:45"`` -> [(0, 0), (0, 90), (20, 45)] (elevation:azimuth, degrees)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            el, az = (float(x) for x in part.split(":"))
        except ValueError:
            raise Sv4dError(f"views must be elevation:azimuth pairs like 0:0,20:45; got {part!r}") from None
        _check_elevation(el)
        out.append((el, az % 360.0))
    if not out:
        raise Sv4dError("no views given")
    return out


def clip_times(start: float, end: float, n: int) -> np.ndarray:
    """``n`` times ``start + i (end - start) / n`` (the end excluded: clips loop)."""
    if n < 1:
        raise Sv4dError(f"frames must be at least 1, got {n}")
    return start + np.arange(n) * ((end - start) / n)


def adaptive_times(pose: Callable[[float], np.ndarray], start: float, end: float, min_motion: float,
                   max_frames: int = 64, size: float | None = None) -> np.ndarray:
    """Frame times chosen so consecutive frames differ enough.

    ``pose(t)`` gives the posed vertices (N, 3). The candidate times are the ``max_frames``
    steps of :func:`clip_times`; from each chosen frame the next one is the first candidate whose
    mean vertex displacement from it reaches ``min_motion * size`` (``size``: the longest side of
    the first frame's bounding box unless given). Always includes the first candidate; a clip that
    never moves enough gives one frame.
    """
    if min_motion <= 0:
        raise Sv4dError(f"the adaptive step's motion threshold must be positive, got {min_motion}")
    cand = clip_times(start, end, max_frames)
    verts = [np.asarray(pose(float(t)), np.float64) for t in cand]
    if size is None:
        size = float((verts[0].max(0) - verts[0].min(0)).max()) or 1.0
    chosen = [0]
    for i in range(1, len(cand)):
        if np.linalg.norm(verts[i] - verts[chosen[-1]], axis=1).mean() >= min_motion * size:
            chosen.append(i)
    return cand[chosen]


def fit_distance(points: np.ndarray, views: Sequence[tuple[float, float]], fov_deg: float,
                 margin: float = 0.05, min_distance: float = 0.0) -> float:
    """The smallest distance (>= ``min_distance``) at which all ``points`` (N, 3), in the world
    frame around the origin, project inside a square image of horizontal/vertical field of view
    ``fov_deg`` from every view, leaving ``margin`` of the half-width free on each side."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    limit = math.tan(math.radians(fov_deg) / 2) * (1.0 - margin)
    best = float(min_distance)
    for el, az in views:
        r = orbit_c2w(az, el, 1.0)[:3, :3]
        cam = pts @ r  # coordinates along right, up, back
        lateral = np.abs(cam[:, :2]).max(1)
        # a point at back-coordinate z is seen at depth d - z: need lateral <= limit (d - z)
        need = float((lateral / limit + cam[:, 2]).max())
        best = max(best, need, float(cam[:, 2].max()) + 1e-3)
    return best

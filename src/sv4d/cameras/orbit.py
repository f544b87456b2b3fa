"""Cameras on an orbit around the origin: the world frame, angle conventions and poses.

World frame right-handed, +Y up (the glTF frame). A view is given by its **(elevation,
azimuth)** in degrees — always in that order, as :class:`ViewAngles`:

* azimuth: about +Y, 0 = camera on the +Z axis, 90 = camera on +X;
* elevation: above the XZ plane, strictly between -90 and 90 (:func:`check_elevation`);
* camera centre ``d * (cos el sin az, sin el, cos el cos az)``.

Poses are 4x4 float64 camera-to-world matrices for an OpenGL / Blender camera (looks along -Z,
+Y up, +X right); ``c2w_opencv = c2w @ diag(1, -1, -1, 1)`` (+Z forward, +Y down).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import Sv4dError
from .intrinsics import SV4D_FOV_DEG

ELEVATION_LIMIT_DEG = 90.0
"""Elevations must lie strictly inside (-90, 90): at the poles the azimuth of a pose is lost."""

OBJECT_HALF_EXTENT = 0.5
"""Objects are normalised to fit the cube [-0.5, 0.5]^3 at the origin (SV3D / SV4D renders)."""

CONVENTIONS = {
    "world": "glTF frame, right-handed, +Y up; object centred at origin",
    "azimuth": "degrees about +Y, 0 = camera on +Z axis, 90 = camera on +X axis",
    "elevation": "degrees above the XZ plane",
    "c2w": "camera-to-world 4x4, OpenGL/Blender camera (looks along -Z, +Y up, +X right)",
    "c2w_opencv": "same pose, OpenCV camera (+Z forward, +Y down) = c2w @ diag(1,-1,-1,1)",
}

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


class ViewAngles(NamedTuple):
    """Where a camera on an orbit sits, in degrees: elevation first, then azimuth."""

    elevation_deg: float
    azimuth_deg: float


def check_elevation(elevation_deg: float) -> float:
    """``elevation_deg`` as a float if it is finite and strictly between -90 and 90, else Sv4dError."""
    e = float(elevation_deg)
    if not -ELEVATION_LIMIT_DEG < e < ELEVATION_LIMIT_DEG:
        raise Sv4dError(
            f"elevations must be strictly between -{ELEVATION_LIMIT_DEG:g} and "
            f"{ELEVATION_LIMIT_DEG:g} degrees, got {e:g}"
        )
    return e


def orbit_c2w(elevation_deg: float, azimuth_deg: float, distance: float) -> np.ndarray:
    """(4, 4) float64 OpenGL camera-to-world for a camera on an orbit looking at the origin.

    The right axis is ``(cos az, 0, -sin az)`` for every elevation, so the pose stays well
    defined and continuous in azimuth even close to the poles.
    """
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    back = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    right = np.array([math.cos(az), 0.0, -math.sin(az)])
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, distance * back
    return c2w


def orbit_angles(c2w: np.ndarray) -> ViewAngles:
    """(elevation, azimuth) in degrees of a camera centre ``p = c2w[:3, 3]``, the inverse of
    :func:`orbit_c2w`: ``elevation = asin(y / |p|)``, ``azimuth = atan2(x, z)``."""
    x, y, z = (float(v) for v in np.asarray(c2w, dtype=np.float64)[:3, 3])
    r = math.sqrt(x * x + y * y + z * z)
    if r == 0.0:
        raise Sv4dError("a camera at the origin has no orbit angles")
    return ViewAngles(math.degrees(math.asin(max(-1.0, min(1.0, y / r)))), math.degrees(math.atan2(x, z)))


def opencv_from_opengl(c2w: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world (+Z forward, +Y down) from an OpenGL one: ``c2w @ diag(1,-1,-1,1)``.

    The map is its own inverse, so it also converts OpenCV back to OpenGL. (..., 4, 4) -> same.
    """
    return np.asarray(c2w, dtype=np.float64) @ GL_TO_CV


def framing_distance(frame_ratio: float, fov_deg: float = SV4D_FOV_DEG) -> float:
    """Orbit radius at which an object of half-extent 0.5 at the origin fills ``frame_ratio`` of
    the half-image: ``0.5 / (frame_ratio * tan(fov / 2))`` (1.829 for 0.9 at 33.8 degrees)."""
    if not 0.0 < frame_ratio <= 1.0:
        raise Sv4dError(f"frame_ratio must be in (0, 1], got {frame_ratio}")
    return OBJECT_HALF_EXTENT / (frame_ratio * math.tan(math.radians(fov_deg) / 2))


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation taking pose ``a``'s axes to pose ``b``'s ((4, 4) or (3, 3))."""
    r = np.asarray(a, dtype=np.float64)[:3, :3].T @ np.asarray(b, dtype=np.float64)[:3, :3]
    return math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(r)) - 1.0) / 2.0))))

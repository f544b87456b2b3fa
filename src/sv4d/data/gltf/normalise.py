"""Normalising a posed clip into the multi-view convention:
``v_norm = scale * (R_y(yaw) @ v_world - center)``, with the bounding box over all the clip's
frames centred at the origin and its longest side equal to ``cube`` (world units of the glTF in,
unit-cube units out; yaw in degrees).
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import Sv4dError
from .animation import Clip
from .asset import GltfAsset

__all__ = ["yaw_matrix", "normalise_clip", "normalisation", "apply_normalisation"]


def yaw_matrix(yaw_deg: float) -> np.ndarray:
    """(3, 3) rotation by ``yaw_deg`` degrees about +Y (right-handed: +Z turns towards +X)."""
    a = math.radians(yaw_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def normalise_clip(vertices: np.ndarray, yaw_deg: float = 90.0, cube: float = 1.0) -> dict:
    """``v_norm = scale * (R_y(yaw) @ v_world - center)`` for a posed clip ``vertices`` (F, N, 3):
    the bounding box of the yawed vertices over all frames centred at the origin, its longest
    side equal to ``cube``."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3) @ yaw_matrix(yaw_deg).T
    if not len(v):
        raise Sv4dError("nothing to normalise (the default scene has no vertices)")
    lo, hi = v.min(0), v.max(0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise Sv4dError("the posed asset has no extent (all vertices coincide)")
    center = (lo + hi) / 2
    scale = cube / extent
    return {
        "formula": "v_norm = scale * (R_yaw @ v_gltf_world - center)",
        "yaw_deg": float(yaw_deg),
        "center": [float(x) for x in center],
        "scale": scale,
        "cube_size": float(cube),
        "bbox_min": [float(x) for x in scale * (lo - center)],
        "bbox_max": [float(x) for x in scale * (hi - center)],
    }


def normalisation(asset: GltfAsset, clip: Clip | None, times, yaw_deg: float = 90.0, cube: float = 1.0) -> dict:
    """:func:`normalise_clip` of the asset posed at ``times``."""
    times = np.atleast_1d(np.asarray(times, np.float64))
    return normalise_clip(np.stack([asset.posed_geometry(float(t), clip)[0] for t in times]), yaw_deg, cube)


def apply_normalisation(points: np.ndarray, norm: dict) -> np.ndarray:
    """Points (..., 3) in the glTF world frame into the normalised frame of ``norm``."""
    p = np.asarray(points, np.float64)
    return norm["scale"] * (p @ yaw_matrix(norm["yaw_deg"]).T - np.asarray(norm["center"], np.float64))

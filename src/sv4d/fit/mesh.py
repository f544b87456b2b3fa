"""Meshes of fitted fields: marching cubes of a density grid (:func:`marching_cubes_mesh`) and
:func:`mesh_from_field`, which samples a density (and colour) function on a grid chunk by chunk.

World units are those of the fit (the scene lives in ``[-bound, bound]^3``); the meshes are
:class:`sv4d.io.mesh.Mesh` records (outward-wound, sRGB colours in [0, 1]), written by
:mod:`sv4d.io.mesh`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import Sv4dError
from ..io.arrays import as_numpy
from ..io.mesh import Mesh

__all__ = ["marching_cubes_mesh", "mesh_from_field", "fill_interior", "eval_points", "point_colors"]


def _bounds3(bounds: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise Sv4dError(f"bounds must be (lo, hi), got {bounds!r}") from None
    lo = np.broadcast_to(np.asarray(as_numpy(lo, "bounds"), np.float64), (3,)).copy()
    hi = np.broadcast_to(np.asarray(as_numpy(hi, "bounds"), np.float64), (3,)).copy()
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or not (hi > lo).all():
        raise Sv4dError(f"bounds need finite lo < hi on every axis, got lo={lo.tolist()} hi={hi.tolist()}")
    return lo, hi


def marching_cubes_mesh(density: np.ndarray, bounds: Any, threshold: float) -> Mesh:
    """Extract the surface ``density == threshold`` as an outward-wound mesh (colors None).

    density: (Rx, Ry, Rz) array indexed [ix, iy, iz] (Rx, Ry, Rz >= 2; normally R, R, R),
        high inside the object; sample i along an axis sits at the cell corner
        ``lo + i * (hi - lo) / (R - 1)``.
    bounds: (lo, hi), each a float (same on every axis) or a (3,) array, world units.
    threshold: iso level in density units.

    Returns vertices in world coordinates. Where the object touches the grid's edge the
    surface is left open there. Raises :class:`Sv4dError` if the array is not 3-D, has
    NaN, or the level set is empty.
    """
    from skimage import measure

    d = as_numpy(density, "density")
    if d.ndim != 3:
        raise Sv4dError(f"density must be a 3-D (R, R, R) grid, got shape {d.shape}")
    if min(d.shape) < 2:
        raise Sv4dError(f"density grid needs at least 2 samples per axis, got {d.shape}")
    d = np.ascontiguousarray(d, dtype=np.float32)
    if not np.isfinite(d).all():
        raise Sv4dError("density grid contains NaN or infinity")
    lo, hi = _bounds3(bounds)
    threshold = float(threshold)
    dmin, dmax = float(d.min()), float(d.max())
    if not dmax > threshold:
        raise Sv4dError(
            f"empty mesh: no density reaches the threshold {threshold:g} (max {dmax:g}); lower the threshold"
        )
    if not dmin < threshold:
        raise Sv4dError(
            f"empty mesh: the density is above the threshold {threshold:g} everywhere (min {dmin:g}), "
            "so there is no surface inside the grid; raise the threshold or enlarge the bounds"
        )
    spacing = (hi - lo) / (np.asarray(d.shape, np.float64) - 1)
    verts, faces, _, _ = measure.marching_cubes(
        d, level=threshold, spacing=tuple(float(s) for s in spacing), allow_degenerate=False
    )
    if len(faces) == 0:
        raise Sv4dError(f"empty mesh at threshold {threshold:g}; lower the threshold")
    # skimage's triangles for a high-inside field ('descent') wind clockwise seen from outside
    faces = faces[:, ::-1]
    return Mesh((verts + lo).astype(np.float32), faces.astype(np.int32), None)


def fill_interior(density: np.ndarray, threshold: float) -> np.ndarray:
    """``density`` with every cavity (a region below ``threshold`` that no path through the
    low-density cells links to the grid's border) raised above it: the solid the surface encloses,
    so marching cubes gives its outer surface and no inner shells."""
    from scipy import ndimage

    outside = density <= threshold
    label, _ = ndimage.label(outside)  # 6-connected pieces of the low-density region
    border = np.unique(
        np.concatenate([label[[0, -1]].ravel(), label[:, [0, -1]].ravel(), label[:, :, [0, -1]].ravel()])
    )
    cavity = outside & ~np.isin(label, border)
    if not cavity.any():
        return density
    out = density.copy()
    out[cavity] = max(2.0 * threshold, threshold + 1.0)
    return out


class _Grid:
    """Points of an (R, R, R) [ix, iy, iz] cell-corner grid over [-bound, bound]^3, by flat index
    ``(ix * R + iy) * R + iz``, generated a range at a time (world units, float32)."""

    def __init__(self, res: int, bound: float, device: torch.device) -> None:
        self.res, self.device = res, device
        self.axis = torch.linspace(-bound, bound, res, dtype=torch.float64).to(torch.float32)
        iy, iz = torch.meshgrid(self.axis, self.axis, indexing="ij")
        self.plane = torch.stack([iy.reshape(-1), iz.reshape(-1)], dim=1)  # (R*R, 2) y, z

    def points(self, start: int, stop: int) -> torch.Tensor:
        """(stop - start, 3) float32 points for flat indices start..stop-1."""
        flat = torch.arange(start, stop, dtype=torch.int64)
        rr = self.res * self.res
        ix = flat // rr
        pts = torch.empty(stop - start, 3, dtype=torch.float32)
        pts[:, 0] = self.axis[ix]
        pts[:, 1:] = self.plane[flat - ix * rr]
        return pts.to(self.device)


def _call_chunked(
    fn: Callable[[torch.Tensor], torch.Tensor],
    pts_of: Callable[[int, int], torch.Tensor],
    total: int,
    chunk: int,
    width: int,
    name: str,
) -> np.ndarray:
    """Evaluate ``fn`` on ``total`` points fetched ``chunk`` at a time -> (total, width) float32."""
    out = np.empty((total, width), np.float32)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        pts = pts_of(start, stop)
        val = fn(pts)
        if not isinstance(val, torch.Tensor):
            val = torch.as_tensor(val)
        p = stop - start
        if width == 1 and tuple(val.shape) in ((p,), (p, 1)):
            pass
        elif width > 1 and tuple(val.shape) == (p, width):
            pass
        else:
            want = f"({p},)" if width == 1 else f"({p}, {width})"
            raise Sv4dError(f"{name} returned shape {tuple(val.shape)} for {p} points, expected {want}")
        out[start:stop] = val.detach().to("cpu", torch.float32).reshape(p, width).numpy()
    return out


def eval_points(
    fn: Callable[[torch.Tensor], torch.Tensor],
    points: np.ndarray,
    width: int,
    name: str,
    chunk: int = 65536,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """``fn`` on the (P, 3) world points ``points``, ``chunk`` at a time on ``device`` (default CPU),
    under ``torch.no_grad`` -> (P, width) float32 (``name`` is how errors call ``fn``)."""
    pts = torch.from_numpy(np.ascontiguousarray(points, np.float32))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    with torch.no_grad():
        return _call_chunked(fn, lambda a, b: pts[a:b].to(dev), len(pts), int(chunk), width, name)


def point_colors(
    color_fn: Callable[[torch.Tensor], torch.Tensor],
    points: np.ndarray,
    chunk: int = 65536,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """(P, 3) sRGB colours in [0, 1] (clipped) of ``color_fn`` at ``points``; raises
    :class:`Sv4dError` where it returns NaN or infinity."""
    cols = eval_points(color_fn, points, 3, "color_fn", chunk, device)
    if not np.isfinite(cols).all():
        raise Sv4dError("color_fn returned NaN or infinity")
    return np.clip(cols, 0.0, 1.0)


def mesh_from_field(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    color_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    bound: float,
    resolution: int,
    threshold: float,
    chunk: int = 65536,
    device: torch.device | str | None = None,
    solid: bool = False,
) -> Mesh:
    """Mesh a density field by sampling it on a grid and running marching cubes.

    density_fn: points (P, 3) float32 torch (world units) -> (P,) (or (P, 1)) densities.
    color_fn: vertices (N, 3) float32 torch -> (N, 3) sRGB colours in [0, 1] (clipped), or None.
    bound: the grid covers [-bound, bound]^3 with ``resolution`` samples per axis at the
        cell corners (so the spacing is 2 * bound / (resolution - 1)).
    threshold: iso level in density units.
    chunk: points per call of ``density_fn`` / ``color_fn``.
    device: where the query points are created (default CPU); results come back to CPU.
    solid: fill the cavities inside the surface first (:func:`fill_interior`).

    Both functions run under ``torch.no_grad``. Grid points are generated chunk by chunk, so
    memory beyond the (R^3,) float32 density grid stays at O(chunk).
    """
    resolution = int(resolution)
    chunk = int(chunk)
    if resolution < 2:
        raise Sv4dError(f"mesh resolution must be at least 2, got {resolution}")
    if chunk < 1:
        raise Sv4dError(f"chunk must be positive, got {chunk}")
    if not (np.isfinite(bound) and bound > 0):
        raise Sv4dError(f"bound must be a positive number, got {bound}")
    bound = float(bound)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    total = resolution**3

    grid = _Grid(resolution, bound, dev).points
    with torch.no_grad():
        dens = _call_chunked(density_fn, grid, total, chunk, 1, "density_fn")
        dens = dens.reshape(resolution, resolution, resolution)
        if solid:
            dens = fill_interior(dens, threshold)
        mesh = marching_cubes_mesh(dens, (-bound, bound), threshold)
    if color_fn is not None:
        mesh.colors = point_colors(color_fn, mesh.vertices, chunk, dev)
    return mesh

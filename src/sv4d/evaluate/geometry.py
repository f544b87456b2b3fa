"""Chamfer distance between a fitted model's per-frame meshes and the ground-truth geometry.

The ground truth is a set's ``geometry.npz`` (``vertices`` (F, N, 3), ``faces`` (M, 3), the posed
mesh of every frame in the set's world frame). The prediction is the folder written by
``sv4d export --mesh``: the tracked mesh's ``tracked_mesh.npz`` (per-frame vertices, faces and the
set frame numbers), or per-frame files ``mesh_frame_XXX.obj`` or ``.glb`` (``--flipbook``; XXX =
the frame's position in the set that was fitted, which must be the evaluated ground-truth set),
read by :func:`sv4d.io.mesh.read_mesh`.

Both surfaces are sampled with ``samples`` points each, uniformly by area (a fixed seed), and
for every frame the report gives

* ``accuracy``: mean distance from a predicted point to the nearest ground-truth point,
* ``completeness``: mean distance from a ground-truth point to the nearest predicted point,
* ``chamfer_l1`` = (accuracy + completeness) / 2 and ``chamfer_l2`` = the sum of the two
  mean *squared* distances,

in world units (the fox_walk conventions normalise the clip into the unit cube).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..errors import Sv4dError
from ..io.mesh import read_mesh

__all__ = ["sample_surface", "chamfer", "load_geometry", "chamfer_per_frame"]


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) points uniformly distributed over the triangles' area."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]  # (M, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not area.sum() > 0:
        raise Sv4dError("the mesh has no surface area")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(tri), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def chamfer(pred_points: np.ndarray, gt_points: np.ndarray) -> dict[str, float]:
    """Accuracy, completeness, Chamfer-L1 and Chamfer-L2 between two point sets."""
    d_pg = cKDTree(gt_points).query(pred_points)[0]
    d_gp = cKDTree(pred_points).query(gt_points)[0]
    return {
        "accuracy": float(d_pg.mean()),
        "completeness": float(d_gp.mean()),
        "chamfer_l1": float((d_pg.mean() + d_gp.mean()) / 2),
        "chamfer_l2": float((d_pg**2).mean() + (d_gp**2).mean()),
    }


def load_geometry(set_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
    """The ground truth's (vertices (F, N, 3), faces (M, 3)), or None without geometry.npz."""
    p = Path(set_path) / "geometry.npz"
    if not p.is_file():
        return None
    try:
        with np.load(p) as g:
            verts, faces = np.asarray(g["vertices"], np.float64), np.asarray(g["faces"], np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise Sv4dError(f"cannot read {p}: {e}") from None
    if verts.ndim != 3 or verts.shape[-1] != 3 or faces.ndim != 2 or faces.shape[-1] != 3:
        raise Sv4dError(f"{p}: vertices must be (F, N, 3) and faces (M, 3)")
    return verts, faces


def chamfer_per_frame(
    mesh_dir: str | os.PathLike,
    gt_vertices: np.ndarray,
    gt_faces: np.ndarray,
    frames: Sequence[int],
    samples: int = 20000,
) -> list[dict]:
    """Chamfer figures for each ground-truth frame position in ``frames``."""
    d = Path(mesh_dir)
    if not d.is_dir():
        raise Sv4dError(f"mesh folder {d} does not exist (write it with sv4d export --mesh)")
    tracked = _tracked(d / "tracked_mesh.npz")
    out = []
    for f in frames:
        if f >= len(gt_vertices):
            raise Sv4dError(f"geometry.npz has {len(gt_vertices)} frames, frame {f} was asked for")
        hits = [d / f"mesh_frame_{f:03d}.{ext}" for ext in ("obj", "glb")]
        path = next((h for h in hits if h.is_file()), None)
        if path is not None:
            pv, pf = read_mesh(path)
            name = path.name
        elif tracked is not None and f in tracked[2]:
            pv, pf, name = tracked[0][tracked[2].index(f)], tracked[1], f"tracked_mesh.npz[{f}]"
        else:
            raise Sv4dError(
                f"{d} has no mesh for frame {f} (tracked_mesh.npz, mesh_frame_{f:03d}.obj or .glb); "
                "export every evaluated frame with sv4d export --mesh"
            )
        res = chamfer(
            sample_surface(pv, pf, samples, seed=f), sample_surface(gt_vertices[f], gt_faces, samples, seed=10_000 + f)
        )
        out.append({"frame": f, "mesh": name, **res})
    return out


def _tracked(path: Path) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """(vertices (F, N, 3), faces (M, 3), set frame numbers) of a tracked_mesh.npz, or None."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            v, f, frames = np.asarray(z["vertices"], np.float64), np.asarray(z["faces"], np.int64), z["frames"]
    except (OSError, KeyError, ValueError) as e:
        raise Sv4dError(f"cannot read {path}: {e}") from None
    if v.ndim != 3 or v.shape[-1] != 3 or f.ndim != 2 or f.shape[-1] != 3 or len(frames) != len(v):
        raise Sv4dError(f"{path}: vertices must be (F, N, 3), faces (M, 3) and frames (F,)")
    if len(f) and (f.min() < 0 or f.max() >= v.shape[1]):
        raise Sv4dError(f"{path}: face indices out of range")
    return v, f, [int(x) for x in frames]

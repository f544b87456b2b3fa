"""Exporting fitted 4D results: meshes (marching cubes of a density field) as OBJ or GLB,
whole mesh sequences as one animated GLB, and 3D Gaussians as the usual 3DGS PLY.

Conventions
-----------
* World units are those of the fit (the scene lives in ``[-bound, bound]^3``).
* Mesh faces wind counter-clockwise seen from outside, so face normals point outward.
* Mesh colours are display (sRGB-encoded) values in [0, 1], as in OBJ and PLY files.
  glTF defines ``COLOR_0`` as *linear*, so :func:`write_glb` converts them; its material is
  white and unlit (``KHR_materials_unlit``, with a matte non-metal fallback), since colours
  baked from a radiance field already contain their shading.
* Every file is written through :func:`sv4d.io.atomic.atomic_file`: a failed write leaves
  no partial file behind and keeps an existing file as it was.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import Sv4dError
from ..io.atomic import atomic_file

__all__ = [
    "Mesh",
    "marching_cubes_mesh",
    "mesh_from_field",
    "write_obj",
    "write_glb",
    "write_gaussian_ply",
    "read_gaussian_ply",
]


def _numpy(x: Any, name: str) -> np.ndarray:
    """A numpy copy-or-view of an array-like or a (possibly GPU, possibly grad) torch tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu").numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise Sv4dError(f"{name}: cannot be read as an array ({e})") from e


# ---------------------------------------------------------------------------------------------
# Mesh


@dataclass
class Mesh:
    """A triangle mesh.

    vertices: (N, 3) float32 world positions.
    faces: (M, 3) int32 vertex indices, counter-clockwise seen from outside (outward normals).
    colors: (N, 3) float32 sRGB in [0, 1], or None.

    The constructor converts array-likes / torch tensors to these dtypes and checks shapes,
    index range and finiteness (raising :class:`Sv4dError`).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None

    def __post_init__(self) -> None:
        v = _numpy(self.vertices, "mesh vertices")
        f = _numpy(self.faces, "mesh faces")
        if v.ndim != 2 or v.shape[1] != 3:
            raise Sv4dError(f"mesh vertices must be (N, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise Sv4dError(f"mesh faces must be (M, 3), got {f.shape}")
        if f.size and not np.issubdtype(f.dtype, np.integer):
            raise Sv4dError(f"mesh faces must be integer indices, got {f.dtype}")
        v = np.ascontiguousarray(v, dtype=np.float32)
        if not np.isfinite(v).all():
            raise Sv4dError("mesh vertices contain NaN or infinity")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise Sv4dError(f"mesh faces index vertices outside 0..{len(v) - 1} (got {f.min()}..{f.max()})")
        f = np.ascontiguousarray(f, dtype=np.int32)
        c = self.colors
        if c is not None:
            c = _numpy(c, "mesh colors")
            if c.shape != v.shape:
                raise Sv4dError(f"mesh colors must be (N, 3) = {v.shape} like the vertices, got {c.shape}")
            c = np.ascontiguousarray(c, dtype=np.float32)
            if not np.isfinite(c).all():
                raise Sv4dError("mesh colors contain NaN or infinity")
        self.vertices, self.faces, self.colors = v, f, c

    @property
    def volume(self) -> float:
        """Signed enclosed volume (world units^3): positive for a closed outward-wound mesh."""
        t = self.vertices[self.faces].astype(np.float64)  # (M, 3 corners, 3)
        return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)

    def vertex_normals(self) -> np.ndarray:
        """(N, 3) float32 unit normals: area-weighted average of the adjacent face normals
        (outward for an outward-wound mesh; (0, 0, 1) for a vertex in no face)."""
        t = self.vertices[self.faces].astype(np.float64)
        fn = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])  # length = 2 * area
        n = np.zeros((len(self.vertices), 3), np.float64)
        for k in range(3):
            np.add.at(n, self.faces[:, k], fn)
        length = np.linalg.norm(n, axis=1, keepdims=True)
        out = np.where(length > 0, n / np.maximum(length, 1e-300), np.array([0.0, 0.0, 1.0]))
        return out.astype(np.float32)


def _colors01(c: np.ndarray) -> np.ndarray:
    return np.clip(c, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Marching cubes


def _bounds3(bounds: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise Sv4dError(f"bounds must be (lo, hi), got {bounds!r}") from None
    lo = np.broadcast_to(np.asarray(_numpy(lo, "bounds"), np.float64), (3,)).copy()
    hi = np.broadcast_to(np.asarray(_numpy(hi, "bounds"), np.float64), (3,)).copy()
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

    d = _numpy(density, "density")
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


def _call_chunked(fn: Callable[[torch.Tensor], torch.Tensor], pts_of: Callable[[int, int], torch.Tensor],
                  total: int, chunk: int, width: int, name: str) -> np.ndarray:
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


def mesh_from_field(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    color_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    bound: float,
    resolution: int,
    threshold: float,
    chunk: int = 65536,
    device: torch.device | str | None = None,
) -> Mesh:
    """Mesh a density field by sampling it on a grid and running marching cubes.

    density_fn: points (P, 3) float32 torch (world units) -> (P,) (or (P, 1)) densities.
    color_fn: vertices (N, 3) float32 torch -> (N, 3) sRGB colours in [0, 1] (clipped), or None.
    bound: the grid covers [-bound, bound]^3 with ``resolution`` samples per axis at the
        cell corners (so the spacing is 2 * bound / (resolution - 1)).
    threshold: iso level in density units.
    chunk: points per call of ``density_fn`` / ``color_fn``.
    device: where the query points are created (default CPU); results come back to CPU.

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
        mesh = marching_cubes_mesh(dens.reshape(resolution, resolution, resolution), (-bound, bound), threshold)
        if color_fn is not None:
            verts = torch.from_numpy(mesh.vertices)

            def vpts(start: int, stop: int) -> torch.Tensor:
                return verts[start:stop].to(dev)

            cols = _call_chunked(color_fn, vpts, len(verts), chunk, 3, "color_fn")
            if not np.isfinite(cols).all():
                raise Sv4dError("color_fn returned NaN or infinity")
            mesh.colors = _colors01(cols)
    return mesh


# ---------------------------------------------------------------------------------------------
# OBJ


def _write_rows(f, fmt: str, rows: np.ndarray) -> None:
    """Write ``rows`` (K, C) with the printf row format ``fmt`` (ends with a newline)."""
    block = 65536
    for s in range(0, len(rows), block):
        part = rows[s : s + block]
        f.write("".join(fmt % tuple(r) for r in part.tolist()))


def write_obj(path: str | os.PathLike, mesh: Mesh) -> None:
    """Write a Wavefront OBJ: ``v x y z [r g b]`` lines (colours in [0, 1], the extension
    trimesh/MeshLab/Blender read) and 1-based ``f a b c`` triangles."""
    if not isinstance(mesh, Mesh):
        raise Sv4dError(f"write_obj needs a Mesh, got {type(mesh).__name__}")
    with atomic_file(path) as tmp, open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.write(f"# sv4d mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces\n")
        if mesh.colors is not None:
            rows = np.concatenate([mesh.vertices.astype(np.float64), _colors01(mesh.colors).astype(np.float64)], 1)
            _write_rows(f, "v %.8g %.8g %.8g %.6g %.6g %.6g\n", rows)
        else:
            _write_rows(f, "v %.8g %.8g %.8g\n", mesh.vertices.astype(np.float64))
        _write_rows(f, "f %d %d %d\n", mesh.faces.astype(np.int64) + 1)


# ---------------------------------------------------------------------------------------------
# GLB

_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A  # "JSON"
_CHUNK_BIN = 0x004E4942  # "BIN\0"
_FLOAT, _UNSIGNED_INT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = _colors01(c.astype(np.float64))
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


class _GltfBuilder:
    """Collects binary blobs (4-byte aligned) with their bufferViews and accessors."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, component: int, kind: str, target: int | None = None,
            minmax: bool = False) -> int:
        raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = (-self.size) % 4
        if pad:
            self.blobs.append(b"\x00" * pad)
            self.size += pad
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.size, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.blobs.append(raw)
        self.size += len(raw)
        self.views.append(view)
        acc: dict[str, Any] = {
            "bufferView": len(self.views) - 1,
            "componentType": component,
            "count": int(data.shape[0]),
            "type": kind,
        }
        if minmax:
            d = data.reshape(data.shape[0], -1)
            acc["min"] = [float(x) for x in d.min(0)]
            acc["max"] = [float(x) for x in d.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def binary(self) -> bytes:
        blob = b"".join(self.blobs)
        return blob + b"\x00" * ((-len(blob)) % 4)


def _glb_bytes(gltf: dict, bin_chunk: bytes) -> bytes:
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + (8 + len(bin_chunk) if bin_chunk else 0)
    out = [struct.pack("<III", _GLB_MAGIC, 2, total), struct.pack("<II", len(js), _CHUNK_JSON), js]
    if bin_chunk:
        out += [struct.pack("<II", len(bin_chunk), _CHUNK_BIN), bin_chunk]
    return b"".join(out)


def _check_times(times: Any, n: int) -> np.ndarray:
    """Frame start times (n,) plus an end time -> (n + 1,) float32 seconds."""
    t = _numpy(times, "times").astype(np.float64).reshape(-1)
    if len(t) not in (n, n + 1):
        raise Sv4dError(
            f"times must give one start time per mesh ({n}), optionally plus an end time ({n + 1}); got {len(t)}"
        )
    if not np.isfinite(t).all() or t[0] < 0:
        raise Sv4dError(f"times must be finite seconds >= 0, got {t.tolist()}")
    if len(t) > 1 and not (np.diff(t) > 0).all():
        raise Sv4dError(f"times must be strictly increasing, got {t.tolist()}")
    if len(t) == n and n >= 2:  # hold the last frame as long as the one before it
        t = np.append(t, t[-1] + (t[-1] - t[-2]))
    t32 = t.astype(np.float32)
    if not (np.diff(t32) > 0).all():
        raise Sv4dError(f"times are too close together to stay increasing in float32: {t.tolist()}")
    return t32


def write_glb(path: str | os.PathLike, meshes: Sequence[Mesh], times: Sequence[float] | None = None) -> None:
    """Write meshes as a binary glTF 2.0 (.glb) file.

    One mesh: a scene with a single node. Several meshes: a flip-book — one node per frame
    under a root node, and one animation whose STEP scale channels show node k (scale 1)
    during [times[k], times[k+1]) and hide it (scale 0) otherwise. Outside the animation
    only the first frame shows.

    times: seconds, strictly increasing, >= 0 — one start time per mesh, optionally plus the
        end time of the last frame (by default it lasts as long as the one before it).
        Required for several meshes; with one mesh it is only checked.

    Each primitive has POSITION (with min/max), NORMAL (smooth, area weighted), COLOR_0
    (float VEC3, linear — converted from the meshes' sRGB colours) when the mesh has colours,
    and UNSIGNED_INT indices.
    """
    meshes = list(meshes)
    if not meshes:
        raise Sv4dError("write_glb needs at least one mesh")
    for i, m in enumerate(meshes):
        if not isinstance(m, Mesh):
            raise Sv4dError(f"write_glb: item {i} is a {type(m).__name__}, not a Mesh")
        if len(m.vertices) == 0 or len(m.faces) == 0:
            raise Sv4dError(f"write_glb: mesh {i} is empty (glTF cannot store an empty primitive)")
    animated = len(meshes) > 1
    if animated and times is None:
        raise Sv4dError(f"write_glb got {len(meshes)} meshes but no times; pass one time (seconds) per mesh")
    key_times = _check_times(times, len(meshes)) if times is not None else None

    b = _GltfBuilder()
    gltf_meshes = []
    for i, m in enumerate(meshes):
        attrs = {
            "POSITION": b.add(m.vertices, _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True),
            "NORMAL": b.add(m.vertex_normals(), _FLOAT, "VEC3", _ARRAY_BUFFER),
        }
        if m.colors is not None:
            attrs["COLOR_0"] = b.add(_srgb_to_linear(m.colors), _FLOAT, "VEC3", _ARRAY_BUFFER)
        idx = b.add(m.faces.astype(np.uint32).reshape(-1), _UNSIGNED_INT, "SCALAR", _ELEMENT_ARRAY_BUFFER)
        gltf_meshes.append(
            {"name": f"frame_{i:04d}" if animated else "mesh",
             "primitives": [{"attributes": attrs, "indices": idx, "material": 0, "mode": 4}]}
        )

    unlit = all(m.colors is not None for m in meshes)
    material: dict[str, Any] = {
        "name": "vertex_color" if unlit else "white",
        "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                 "roughnessFactor": 1.0},
        "doubleSided": False,
    }
    gltf: dict[str, Any] = {"asset": {"version": "2.0", "generator": "sv4d"}, "scene": 0}
    if unlit:
        material["extensions"] = {"KHR_materials_unlit": {}}
        gltf["extensionsUsed"] = ["KHR_materials_unlit"]

    if not animated:
        nodes = [{"name": "mesh", "mesh": 0}]
        gltf["scenes"] = [{"nodes": [0]}]
    else:
        n = len(meshes)
        nodes = [{"name": "sequence", "children": list(range(1, n + 1))}]
        for k in range(n):
            nodes.append({"name": f"frame_{k:04d}", "mesh": k, "scale": [1.0, 1.0, 1.0] if k == 0 else [0.0] * 3})
        assert key_times is not None
        t_acc = b.add(key_times, _FLOAT, "SCALAR", minmax=True)
        samplers, channels = [], []
        for k in range(n):
            vis = np.zeros((n + 1, 3), np.float32)
            vis[k] = 1.0
            if k == n - 1:
                vis[n] = 1.0  # the end key keeps the last frame showing
            samplers.append({"input": t_acc, "output": b.add(vis, _FLOAT, "VEC3"), "interpolation": "STEP"})
            channels.append({"sampler": k, "target": {"node": k + 1, "path": "scale"}})
        gltf["scenes"] = [{"nodes": [0]}]
        gltf["animations"] = [{"name": "sequence", "samplers": samplers, "channels": channels}]

    bin_chunk = b.binary()
    gltf.update(
        nodes=nodes,
        meshes=gltf_meshes,
        materials=[material],
        accessors=b.accessors,
        bufferViews=b.views,
        buffers=[{"byteLength": len(bin_chunk)}],
    )
    data = _glb_bytes(gltf, bin_chunk)
    with atomic_file(path) as tmp:
        _write_bytes(tmp, data)


def _write_bytes(path: Path, *parts: bytes) -> None:
    with open(path, "wb") as f:
        for p in parts:
            f.write(p)


# ---------------------------------------------------------------------------------------------
# Gaussian PLY (3D Gaussian Splatting layout)

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def _gaussian_property_names(k: int) -> list[str]:
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def write_gaussian_ply(
    path: str | os.PathLike,
    means: Any,
    quats: Any,
    log_scales: Any,
    opacity_logits: Any,
    sh_dc: Any,
    sh_rest: Any | None = None,
) -> None:
    """Write 3D Gaussians as a binary little-endian PLY in the 3D Gaussian Splatting layout.

    means: (N, 3) world positions. quats: (N, 4) rotations w, x, y, z (stored as given,
    viewers normalise). log_scales: (N, 3) natural-log standard deviations (world units).
    opacity_logits: (N,) pre-sigmoid opacities. sh_dc: (N, 3) degree-0 SH coefficients.
    sh_rest: (N, K, 3) higher-order SH coefficients, K = (degree + 1)^2 - 1 (0, 3, 8, 15),
    or None for none. numpy arrays or torch tensors (any device).

    Properties, all float32, in this order: ``x y z nx ny nz f_dc_0..2 f_rest_0..f_rest_{3K-1}
    opacity scale_0..2 rot_0..3``; normals are zero and ``f_rest`` is channel-major
    (``f_rest_{c*K + k} = sh_rest[:, k, c]``), as the reference 3DGS code writes it.
    """
    m = _numpy(means, "means")
    if m.ndim != 2 or m.shape[1] != 3:
        raise Sv4dError(f"means must be (N, 3), got {m.shape}")
    n = m.shape[0]

    def check(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = _numpy(x, name)
        if a.shape != shape:
            raise Sv4dError(f"{name} must be {shape} for N={n} Gaussians, got {a.shape}")
        return a.astype(np.float32, copy=False)

    q = check(quats, "quats", (n, 4))
    s = check(log_scales, "log_scales", (n, 3))
    o = check(opacity_logits, "opacity_logits", (n,))
    dc = check(sh_dc, "sh_dc", (n, 3))
    if sh_rest is None:
        rest = np.zeros((n, 0, 3), np.float32)
    else:
        rest = _numpy(sh_rest, "sh_rest")
        if rest.ndim != 3 or rest.shape[0] != n or rest.shape[2] != 3:
            raise Sv4dError(f"sh_rest must be (N={n}, K, 3), got {rest.shape}")
        rest = rest.astype(np.float32, copy=False)
    k = rest.shape[1]
    if int(round(np.sqrt(k + 1))) ** 2 != k + 1:
        raise Sv4dError(f"sh_rest has K={k} coefficients; K must be (degree + 1)^2 - 1 (0, 3, 8 or 15)")
    cols = [m.astype(np.float32, copy=False), np.zeros((n, 3), np.float32), dc,
            rest.transpose(0, 2, 1).reshape(n, 3 * k), o[:, None], s, q]
    table = np.concatenate(cols, axis=1).astype("<f4", copy=False)
    if not np.isfinite(table).all():
        raise Sv4dError("Gaussian parameters contain NaN or infinity")
    names = _gaussian_property_names(k)
    assert table.shape[1] == len(names)
    header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {n}\n"
    header += "".join(f"property float {p}\n" for p in names) + "end_header\n"
    with atomic_file(path) as tmp:
        _write_bytes(tmp, header.encode("ascii"), np.ascontiguousarray(table).tobytes())


def read_gaussian_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a 3DGS-layout Gaussian PLY (binary little-endian; properties in any order/type).

    Returns float32 arrays keyed like :func:`write_gaussian_ply`'s arguments: ``means`` (N, 3),
    ``quats`` (N, 4) wxyz, ``log_scales`` (N, 3), ``opacity_logits`` (N,), ``sh_dc`` (N, 3),
    ``sh_rest`` (N, K, 3) (K = 0 when the file has no ``f_rest_*``).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise Sv4dError(f"cannot read Gaussian PLY {path}: {e}") from e
    bad = f"{path} is not a Gaussian PLY"
    if not raw.startswith(b"ply\n") and not raw.startswith(b"ply\r\n"):
        raise Sv4dError(f"{bad} (no 'ply' magic line)")
    end = raw.find(b"end_header")
    if end < 0:
        raise Sv4dError(f"{bad} (no end_header)")
    nl = raw.find(b"\n", end)
    if nl < 0:
        raise Sv4dError(f"{bad} (truncated header)")
    try:
        lines = raw[:end].decode("ascii").splitlines()[1:]
    except UnicodeDecodeError:
        raise Sv4dError(f"{bad} (header is not ASCII)") from None
    body = raw[nl + 1 :]

    fmt, elements = None, []  # elements: [name, count, [(prop, dtype)]]
    for line in lines:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            fmt = tok[1:]
        elif tok[0] == "element" and len(tok) == 3:
            try:
                elements.append([tok[1], int(tok[2]), []])
            except ValueError:
                raise Sv4dError(f"{bad} (bad element line {line!r})") from None
        elif tok[0] == "property" and elements:
            if tok[1] == "list":
                raise Sv4dError(f"{bad} (list property {tok[-1]!r} in element {elements[-1][0]!r})")
            if len(tok) != 3 or tok[1] not in _PLY_TYPES:
                raise Sv4dError(f"{bad} (bad property line {line!r})")
            elements[-1][2].append((tok[2], "<" + _PLY_TYPES[tok[1]]))
        else:
            raise Sv4dError(f"{bad} (unexpected header line {line!r})")
    if fmt != ["binary_little_endian", "1.0"]:
        raise Sv4dError(f"{bad} (format {' '.join(fmt or ['?'])}; only binary_little_endian 1.0 is read)")
    if not elements or elements[0][0] != "vertex":
        raise Sv4dError(f"{bad} (its first element is not 'vertex')")
    _, n, props = elements[0]
    names = [p for p, _ in props]
    if len(set(names)) != len(names):
        raise Sv4dError(f"{bad} (duplicate property names)")
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [p for p in need if p not in names]
    if missing:
        raise Sv4dError(f"{bad} (missing properties {', '.join(missing)})")
    n_rest = sum(1 for p in names if p.startswith("f_rest_"))
    if n_rest % 3 or any(f"f_rest_{i}" not in names for i in range(n_rest)):
        raise Sv4dError(f"{bad} (f_rest_* properties must be f_rest_0..f_rest_{{3K-1}}, found {n_rest})")
    dtype = np.dtype(props)
    if len(body) < n * dtype.itemsize:
        raise Sv4dError(f"{bad} (truncated: {len(body)} data bytes for {n} vertices of {dtype.itemsize} bytes)")
    v = np.frombuffer(body, dtype=dtype, count=n)

    def cols(*keys: str) -> np.ndarray:
        out = np.empty((n, len(keys)), np.float32)
        for j, c in enumerate(keys):
            out[:, j] = v[c]
        return out

    k = n_rest // 3
    rest = cols(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k).transpose(0, 2, 1)
    return {
        "means": cols("x", "y", "z"),
        "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"),
        "log_scales": cols("scale_0", "scale_1", "scale_2"),
        "opacity_logits": cols("opacity")[:, 0],
        "sh_dc": cols("f_dc_0", "f_dc_1", "f_dc_2"),
        "sh_rest": np.ascontiguousarray(rest),
    }

"""Triangle meshes on disk: the :class:`Mesh` record, OBJ writing and reading, GLB writing (one
mesh, or a whole sequence as one flip-book animation; one mesh of fixed topology moving through
morph targets is :mod:`sv4d.io.animated_glb`'s, on the helpers here) and :func:`read_mesh` (OBJ
or sv4d GLB).

Conventions
-----------
* World units are those of the producer (a fit's scene lives in ``[-bound, bound]^3``).
* Mesh faces wind counter-clockwise seen from outside, so face normals point outward.
* Mesh colours are display (sRGB-encoded) values in [0, 1], as in OBJ and PLY files.
  glTF defines ``COLOR_0`` as *linear*, so the GLB writers convert them (to 8-bit normalised
  values); the material is then unlit (``KHR_materials_unlit``, with a matte non-metal
  fallback), since colours baked from a radiance field already contain their shading. A
  texture is an sRGB image embedded as PNG; texture coordinates follow glTF (origin top-left).
* Every file is written through :func:`sv4d.io.atomic.atomic_file`: a failed write leaves
  no partial file behind and keeps an existing file as it was.
* The GLB container is :mod:`sv4d.io.glb`'s; reading needs no pygltflib.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import Sv4dError
from .arrays import as_numpy
from .atomic import atomic_file
from .glb import (
    ARRAY_BUFFER,
    CLAMP_TO_EDGE,
    ELEMENT_ARRAY_BUFFER,
    FLOAT,
    LINEAR,
    LINEAR_MIPMAP_LINEAR,
    UNSIGNED_BYTE,
    UNSIGNED_INT,
    UNSIGNED_SHORT,
    GlbBuilder,
    pack_glb,
    read_accessor,
    unpack_glb,
)

__all__ = ["Mesh", "write_obj", "write_glb", "read_mesh"]


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
        v = as_numpy(self.vertices, "mesh vertices")
        f = as_numpy(self.faces, "mesh faces")
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
            c = as_numpy(c, "mesh colors")
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


def _write_bytes(path: Path, *parts: bytes) -> None:
    with open(path, "wb") as f:
        for p in parts:
            f.write(p)


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


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, triangles (M, 3) int64) of an OBJ; polygons become fans,
    negative (relative) indices are resolved, texture/normal indices ignored."""
    verts, faces = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                verts.append([float(x) for x in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    return np.asarray(verts, np.float64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------
# GLB: the pieces both writers share


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = _colors01(c.astype(np.float64))
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _color_u8(c: np.ndarray) -> np.ndarray:
    """(N, 3) sRGB colours in [0, 1] -> (N, 4) uint8 COLOR_0 (read as normalised): the *linear*
    value quantised to 8 bits, alpha 255. VEC4 keeps every element 4-byte aligned."""
    out = np.full((len(c), 4), 255, np.uint8)
    out[:, :3] = np.rint(_srgb_to_linear(c).astype(np.float64) * 255.0)
    return out


def _check_times(times: Any, n: int, item: str = "mesh", hold_last: bool = True) -> np.ndarray:
    """Start times of ``n`` items, optionally plus an end time -> float32 seconds, (n,) or
    (n + 1,); ``hold_last`` adds the missing end time (the last item lasts as long as the one
    before it) when there are at least two items."""
    t = as_numpy(times, "times").astype(np.float64).reshape(-1)
    if len(t) not in (n, n + 1):
        raise Sv4dError(
            f"times must give one start time per {item} ({n}), optionally plus an end time ({n + 1}); got {len(t)}"
        )
    if not np.isfinite(t).all() or t[0] < 0:
        raise Sv4dError(f"times must be finite seconds >= 0, got {t.tolist()}")
    if len(t) > 1 and not (np.diff(t) > 0).all():
        raise Sv4dError(f"times must be strictly increasing, got {t.tolist()}")
    if hold_last and len(t) == n and n >= 2:
        t = np.append(t, t[-1] + (t[-1] - t[-2]))
    t32 = t.astype(np.float32)
    if not (np.diff(t32) > 0).all():
        raise Sv4dError(f"times are too close together to stay increasing in float32: {t.tolist()}")
    return t32


def _add_primitive(b: GlbBuilder, mesh: Mesh, uv: np.ndarray | None = None, short_indices: bool = False) -> dict:
    """Store ``mesh`` (and ``uv``, (N, 2) float32) in ``b``; the glTF primitive using material 0.

    POSITION (with min/max), NORMAL (smooth, area weighted), COLOR_0 (:func:`_color_u8`) when
    the mesh has colours, TEXCOORD_0 when ``uv`` is given; UNSIGNED_INT indices, or
    UNSIGNED_SHORT with ``short_indices`` when no index reaches 65535 (the restart value)."""
    attrs = {
        "POSITION": b.add(mesh.vertices, FLOAT, "VEC3", ARRAY_BUFFER, minmax=True),
        "NORMAL": b.add(mesh.vertex_normals(), FLOAT, "VEC3", ARRAY_BUFFER),
    }
    if mesh.colors is not None:
        attrs["COLOR_0"] = b.add(_color_u8(mesh.colors), UNSIGNED_BYTE, "VEC4", ARRAY_BUFFER, normalized=True)
    if uv is not None:
        attrs["TEXCOORD_0"] = b.add(uv, FLOAT, "VEC2", ARRAY_BUFFER)
    small = short_indices and len(mesh.vertices) <= 65535
    flat = mesh.faces.reshape(-1).astype(np.uint16 if small else np.uint32)
    idx = b.add(flat, UNSIGNED_SHORT if small else UNSIGNED_INT, "SCALAR", ELEMENT_ARRAY_BUFFER)
    return {"attributes": attrs, "indices": idx, "material": 0, "mode": 4}


#: how an embedded texture is encoded: "png" (lossless) or "jpeg" (quality 92, no chroma
#: subsampling: about a third of the bytes for a baked texture)
IMAGE_FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}


def _add_material(
    gltf: dict, b: GlbBuilder, unlit: bool, texture: np.ndarray | None = None, image_format: str = "png"
) -> None:
    """Give ``gltf`` its one material: white, matte and non-metal; unlit (KHR_materials_unlit,
    the lit values its fallback) when the surface carries baked colours; with ``texture``
    ((H, W, 3) uint8 sRGB) embedded as ``image_format`` as the base colour, read through TEXCOORD_0."""
    pbr: dict[str, Any] = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0}
    name = "texture" if texture is not None else "vertex_color" if unlit else "white"
    material: dict[str, Any] = {"name": name, "pbrMetallicRoughness": pbr, "doubleSided": False}
    if texture is not None:
        if image_format not in IMAGE_FORMATS:
            raise Sv4dError(f"unknown texture format {image_format!r}; use one of {sorted(IMAGE_FORMATS)}")
        encoded = io.BytesIO()
        if image_format == "png":
            Image.fromarray(texture).save(encoded, "PNG")  # (H, W, 3) uint8: RGB
        else:
            Image.fromarray(texture).save(encoded, "JPEG", quality=92, subsampling=0)
        view = b.add_view(encoded.getvalue())
        gltf["images"] = [{"name": "texture", "bufferView": view, "mimeType": IMAGE_FORMATS[image_format]}]
        gltf["samplers"] = [
            {"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE}
        ]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    if unlit:
        material["extensions"] = {"KHR_materials_unlit": {}}
        gltf["extensionsUsed"] = ["KHR_materials_unlit"]
    gltf["materials"] = [material]


def _save_glb(path: str | os.PathLike, gltf: dict, b: GlbBuilder) -> None:
    """Complete ``gltf`` (nodes, meshes, ...) with the asset, a scene of node 0 and ``b``'s
    accessors, views and buffer; write it atomically."""
    bin_chunk = b.binary()
    doc = {"asset": {"version": "2.0", "generator": "sv4d"}, "scene": 0, "scenes": [{"nodes": [0]}], **gltf}
    doc.update(accessors=b.accessors, bufferViews=b.views, buffers=[{"byteLength": len(bin_chunk)}])
    data = pack_glb(doc, bin_chunk)
    with atomic_file(path) as tmp:
        _write_bytes(tmp, data)


# ---------------------------------------------------------------------------------------------
# GLB: a mesh, or a flip-book of meshes


def write_glb(path: str | os.PathLike, meshes: Sequence[Mesh], times: Sequence[float] | None = None) -> None:
    """Write meshes as a binary glTF 2.0 (.glb) file.

    One mesh: a scene with a single node. Several meshes: a flip-book — one node per frame
    under a root node, and one animation whose STEP scale channels show node k (scale 1)
    during [times[k], times[k+1]) and hide it (scale 0) otherwise. Outside the animation
    only the first frame shows. (One mesh moving with fixed topology:
    :func:`sv4d.io.animated_glb.write_animated_glb`.)

    times: seconds, strictly increasing, >= 0 — one start time per mesh, optionally plus the
        end time of the last frame (by default it lasts as long as the one before it).
        Required for several meshes; with one mesh it is only checked.

    Each primitive has POSITION (with min/max), NORMAL (smooth, area weighted), COLOR_0 when
    the mesh has colours (normalised UNSIGNED_BYTE VEC4: the *linear* value of the sRGB colour
    quantised to 8 bits, alpha 255), and UNSIGNED_INT indices.
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

    b = GlbBuilder()
    gltf_meshes = [
        {"name": f"frame_{i:04d}" if animated else "mesh", "primitives": [_add_primitive(b, m)]}
        for i, m in enumerate(meshes)
    ]
    gltf: dict[str, Any] = {}
    _add_material(gltf, b, unlit=all(m.colors is not None for m in meshes))
    if not animated:
        nodes = [{"name": "mesh", "mesh": 0}]
    else:
        n = len(meshes)
        nodes = [{"name": "sequence", "children": list(range(1, n + 1))}]
        for k in range(n):
            nodes.append({"name": f"frame_{k:04d}", "mesh": k, "scale": [1.0, 1.0, 1.0] if k == 0 else [0.0] * 3})
        assert key_times is not None
        t_acc = b.add(key_times, FLOAT, "SCALAR", minmax=True)
        samplers, channels = [], []
        for k in range(n):
            vis = np.zeros((n + 1, 3), np.float32)
            vis[k] = 1.0
            if k == n - 1:
                vis[n] = 1.0  # the end key keeps the last frame showing
            samplers.append({"input": t_acc, "output": b.add(vis, FLOAT, "VEC3"), "interpolation": "STEP"})
            channels.append({"sampler": k, "target": {"node": k + 1, "path": "scale"}})
        gltf["animations"] = [{"name": "sequence", "samplers": samplers, "channels": channels}]
    gltf.update(nodes=nodes, meshes=gltf_meshes)
    _save_glb(path, gltf, b)


# ---------------------------------------------------------------------------------------------
# GLB: one mesh of fixed topology moving through morph targets


def _read_glb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, triangles (M, 3) int64) of the first mesh of a GLB whose nodes
    carry no transforms (what :func:`write_glb` writes for one mesh)."""
    glb = unpack_glb(path.read_bytes(), str(path))
    gltf = glb.doc
    if any("matrix" in n or "translation" in n or "rotation" in n for n in gltf.get("nodes", [])):
        raise Sv4dError(f"{path}: meshes placed by node transforms are not supported; export as OBJ")
    verts, faces = [], []
    for prim in gltf["meshes"][0]["primitives"]:
        if prim.get("mode", 4) != 4 or "indices" not in prim:
            raise Sv4dError(f"{path}: only indexed triangle meshes are supported")
        p = read_accessor(glb, prim["attributes"]["POSITION"]).astype(np.float64)
        if p.shape[1] != 3:
            raise Sv4dError(f"{path}: POSITION must be VEC3, got {p.shape[1]} components")
        f = read_accessor(glb, prim["indices"]).reshape(-1, 3).astype(np.int64)
        faces.append(f + sum(len(v) for v in verts))
        verts.append(p)
    return np.concatenate(verts), np.concatenate(faces)


def read_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, triangles (M, 3) int64) of an OBJ file or an sv4d GLB file."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".obj":
            v, f = _read_obj(p)
        elif p.suffix.lower() == ".glb":
            v, f = _read_glb(p)
        else:
            raise Sv4dError(f"{p}: meshes must be .obj or .glb files")
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise Sv4dError(f"cannot read mesh {p}: {type(e).__name__}: {e}") from None
    if len(f) == 0 or len(v) == 0:
        raise Sv4dError(f"{p} holds no triangles")
    if f.min() < 0 or f.max() >= len(v):
        raise Sv4dError(f"{p}: face indices out of range")
    return v, f

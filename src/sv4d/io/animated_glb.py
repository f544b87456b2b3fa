"""One mesh of fixed topology moving through time as a binary glTF file: a morph target per frame
and an animation of the morph weights (:func:`write_animated_glb`), read back at its keys by
:func:`read_animated_glb`. The conventions (colours, winding, atomic writes, the texture's origin)
are :mod:`sv4d.io.mesh`'s, whose primitive, material and colour helpers this module uses."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import Sv4dError
from .arrays import as_numpy
from .glb import ARRAY_BUFFER, FLOAT, Glb, GlbBuilder, read_accessor, unpack_glb
from .mesh import Mesh, _add_material, _add_primitive, _check_times, _save_glb

__all__ = ["write_animated_glb", "read_animated_glb"]


def _check_surface(n: int, uv: Any, texture: Any, colors: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(uv (n, 2) float32 or None, texture (H, W, 3) uint8 or None), checked."""
    if texture is not None and colors is not None:
        raise Sv4dError("pass a texture or vertex colours, not both")
    if uv is not None:
        uv = as_numpy(uv, "uv")
        if uv.shape != (n, 2) or not np.issubdtype(uv.dtype, np.number):
            raise Sv4dError(f"uv must be (N, 2) = ({n}, 2) numbers like the vertices, got {uv.shape} {uv.dtype}")
        uv = np.ascontiguousarray(uv, np.float32)
        if not np.isfinite(uv).all():
            raise Sv4dError("uv contain NaN or infinity (or values too large for float32)")
    if texture is not None:
        texture = as_numpy(texture, "texture")
        if texture.ndim != 3 or texture.shape[2] != 3 or 0 in texture.shape or texture.dtype != np.uint8:
            raise Sv4dError(f"texture must be an (H, W, 3) uint8 sRGB image, got {texture.shape} {texture.dtype}")
        if uv is None:
            raise Sv4dError("a texture needs uv (texture coordinates, one (u, v) per vertex)")
    return uv, texture


#: (vertices (F, N, 3), faces (M, 3), times (F,), uv (N, 2) or None, texture (H, W, 3) or None)
_Animated = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None", "np.ndarray | None"]


def write_animated_glb(
    path: str | os.PathLike,
    vertices: Any,
    faces: Any,
    times: Any,
    *,
    uv: Any = None,
    texture: Any = None,
    image_format: str = "png",
    colors: Any = None,
    name: str = "sv4d",
) -> None:
    """Write one mesh of fixed topology moving through F frames as a binary glTF 2.0 file whose
    morph-target animation Blender, three.js and other viewers play.

    vertices: (F, N, 3) float positions at each frame (world units).
    faces: (M, 3) int vertex indices, counter-clockwise seen from outside.
    times: the F frame times in seconds (strictly increasing, >= 0), optionally plus an end time
        until which the last frame holds.
    uv: (N, 2) texture coordinates in glTF's convention (origin at the image's top-left, v down).
    texture: (H, W, 3) uint8 sRGB image, embedded as PNG (needs ``uv``), or as JPEG with
        ``image_format="jpeg"``.
    colors: (N, 3) sRGB vertex colours in [0, 1] (clipped); not with ``texture``.
    name: the name of the node, mesh and animation.

    The primitive is frame 0 (POSITION with min/max, NORMAL, COLOR_0 as in :func:`write_glb`,
    TEXCOORD_0; UNSIGNED_SHORT indices below 65535 vertices) with one morph target per frame k
    (POSITION displacement vertices[k] - vertices[0]; no normals), named ``frame_000``... in the
    mesh's ``extras.targetNames``. The animation's LINEAR weights channel is one-hot k at
    times[k], so the shape moves smoothly from frame to frame. One frame: no targets, no
    animation. The material is unlit (with a matte fallback) with a texture or colours, else white.
    """
    v = as_numpy(vertices, "vertices")
    if v.ndim != 3 or v.shape[2] != 3 or 0 in v.shape or not np.issubdtype(v.dtype, np.number):
        raise Sv4dError(f"vertices must be (F frames, N vertices, 3) numbers, got shape {v.shape} {v.dtype}")
    v = v.astype(np.float64)
    if not np.isfinite(v.astype(np.float32)).all():
        raise Sv4dError("vertices contain NaN or infinity (or values too large for float32)")
    frames, n = v.shape[:2]
    mesh = Mesh(v[0], faces, colors)  # checks faces and colours
    if len(mesh.faces) == 0:
        raise Sv4dError("write_animated_glb needs at least one face (glTF cannot store an empty primitive)")
    if not isinstance(name, str):
        raise Sv4dError(f"name must be a string, got {type(name).__name__}")
    key_times = _check_times(times, frames, "frame", hold_last=False)
    uv, texture = _check_surface(n, uv, texture, colors)

    b = GlbBuilder()
    prim = _add_primitive(b, mesh, uv, short_indices=True)
    gltf_mesh: dict[str, Any] = {"name": name, "primitives": [prim]}
    gltf: dict[str, Any] = {"nodes": [{"name": name, "mesh": 0}], "meshes": [gltf_mesh]}
    _add_material(gltf, b, unlit=texture is not None or colors is not None, texture=texture, image_format=image_format)
    if frames > 1:
        prim["targets"] = [
            {"POSITION": b.add((v[k] - v[0]).astype(np.float32), FLOAT, "VEC3", ARRAY_BUFFER, minmax=True)}
            for k in range(frames)
        ]
        gltf_mesh["weights"] = [1.0] + [0.0] * (frames - 1)
        digits = max(3, len(str(frames - 1)))
        gltf_mesh["extras"] = {"targetNames": [f"frame_{k:0{digits}d}" for k in range(frames)]}
        weights = np.zeros((len(key_times), frames), np.float32)
        weights[np.arange(frames), np.arange(frames)] = 1.0
        weights[frames:, frames - 1] = 1.0  # an end key holds the last frame
        sampler = {
            "input": b.add(key_times, FLOAT, "SCALAR", minmax=True),
            "output": b.add(weights.reshape(-1), FLOAT, "SCALAR"),
            "interpolation": "LINEAR",
        }
        channel = {"sampler": 0, "target": {"node": 0, "path": "weights"}}
        gltf["animations"] = [{"name": name, "samplers": [sampler], "channels": [channel]}]
    _save_glb(path, gltf, b)


def read_animated_glb(path: str | os.PathLike) -> _Animated:
    """Read a morph-target animation (what :func:`write_animated_glb` writes) back at its keys.

    Returns (vertices (F, N, 3) float64 — the base positions plus the targets weighted as at
    each key —, faces (M, 3) int64, times (F,) float64 seconds, uv (N, 2) float64 or None,
    texture (H, W, 3) uint8 or None). The first channel animating "weights" is read; a last
    key repeating the one before (the hold of an end time) is dropped. Raises
    :class:`Sv4dError` for a file without a morph-target animation, or one that is damaged.
    """
    p = Path(path)
    try:
        glb = unpack_glb(p.read_bytes(), str(p))
        return _read_animated(glb)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise Sv4dError(f"cannot read the animated mesh {p}: {type(e).__name__}: {e}") from None


def _read_animated(glb: Glb) -> _Animated:
    doc = glb.doc
    channels = [(a, c) for a in doc.get("animations", []) for c in a.get("channels", [])]
    found = [(a, c) for a, c in channels if c.get("target", {}).get("path") == "weights"]
    if not found:
        raise Sv4dError(f"{glb.name} holds no morph-target animation (write one with write_animated_glb)")
    anim, channel = found[0]
    node = doc["nodes"][channel["target"]["node"]]
    if any(k in node for k in ("matrix", "translation", "rotation", "scale")):
        raise Sv4dError(f"{glb.name}: the animated mesh is placed by a node transform, which is not supported")
    prim = doc["meshes"][node["mesh"]]["primitives"][0]
    if prim.get("mode", 4) != 4 or "indices" not in prim or not prim.get("targets"):
        raise Sv4dError(f"{glb.name}: the animated mesh must be indexed triangles with morph targets")
    base = read_accessor(glb, prim["attributes"]["POSITION"]).astype(np.float64)
    moves = np.stack([read_accessor(glb, t["POSITION"]).astype(np.float64) for t in prim["targets"]])
    sampler = anim["samplers"][channel["sampler"]]
    times = read_accessor(glb, sampler["input"]).astype(np.float64).reshape(-1)
    w = read_accessor(glb, sampler["output"], normalize=True).astype(np.float64).reshape(len(times), -1)
    if sampler.get("interpolation") == "CUBICSPLINE":  # (in-tangent, value, out-tangent) per key
        w = w.reshape(len(times), 3, -1)[:, 1]
    if w.shape[1] != len(moves) or moves.shape[1:] != base.shape or base.shape[1] != 3:
        raise Sv4dError(f"{glb.name}: the morph targets, their weights and the positions do not match")
    if len(times) >= 2 and np.array_equal(w[-1], w[-2]):
        times, w = times[:-1], w[:-1]
    vertices = base[None] + np.einsum("kt,tnc->knc", w, moves)
    faces = read_accessor(glb, prim["indices"]).reshape(-1, 3).astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= len(base)):
        raise Sv4dError(f"{glb.name}: face indices out of range")
    uv = prim["attributes"].get("TEXCOORD_0")
    uv = None if uv is None else read_accessor(glb, uv, normalize=True).astype(np.float64)
    texture = None
    if "material" in prim:
        ref = doc["materials"][prim["material"]].get("pbrMetallicRoughness", {}).get("baseColorTexture")
        if ref is not None:
            image = doc["images"][doc["textures"][ref["index"]]["source"]]
            view = doc["bufferViews"][image["bufferView"]]
            start = view.get("byteOffset", 0)
            raw = (glb.binary or b"")[start : start + view["byteLength"]]
            with Image.open(io.BytesIO(raw)) as im:
                texture = np.asarray(im.convert("RGB"), np.uint8)
    return vertices, faces, times, uv, texture

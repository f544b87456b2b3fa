"""Animated glTF 2.0 / GLB assets posed in NumPy.

pygltflib parses the file (JSON, GLB chunks); everything else is done here, following the
glTF 2.0 specification:

* buffers from the GLB binary chunk, base64 data URIs or files beside the ``.gltf``;
* accessors with ``byteStride``, sparse substitution, normalised integers and the column
  padding of small-component matrices, all decoded once at load;
* the default scene (``scene``, else scene 0) and its node hierarchy; a node's local matrix is
  its ``matrix`` when given, else ``T * R * S``;
* animation channels (translation / rotation / scale / weights) with ``LINEAR`` (quaternion
  slerp on the shortest path for rotations), ``STEP`` and ``CUBICSPLINE`` samplers; each channel
  is evaluated with its own key range (held before its first and after its last key);
* morph targets (positions and normals, weights from the animation, the node, the mesh or
  zeros), applied before skinning;
* linear-blend skinning ``sum_k w_k (jointWorld_k @ inverseBind_k) @ v`` (the skinned mesh
  node's own transform is ignored, as the specification says), normals with the
  inverse-transpose of the blended matrix;
* triangles from modes 4, 5 (strip) and 6 (fan); points and lines are skipped.

:func:`normalisation` / :func:`apply_normalisation` give the multi-view convention
``v_norm = scale * (R_y(yaw) @ v_world - center)`` with the bounding box over a clip's frames
centred at the origin and its longest side equal to ``cube``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from ..errors import Sv4dError

__all__ = ["Material", "PosedPrimitive", "Clip", "GltfAsset", "normalisation", "apply_normalisation"]

_COMPONENT = {5120: np.dtype("<i1"), 5121: np.dtype("<u1"), 5122: np.dtype("<i2"),
              5123: np.dtype("<u2"), 5125: np.dtype("<u4"), 5126: np.dtype("<f4")}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
# Divisors of normalised integers (spec 3.11: signed ones clamp at -1).
_NORM = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0, 5125: 4294967295.0}
_COMPRESSION = {"KHR_draco_mesh_compression": "Draco", "EXT_meshopt_compression": "meshopt",
                "KHR_meshopt_compression": "meshopt"}
# Required extensions that change nothing this evaluator computes.
_HARMLESS = {"KHR_mesh_quantization", "KHR_materials_unlit", "KHR_materials_emissive_strength"}
_REPEAT = 10497


@dataclass
class Material:
    base_color: np.ndarray            # (4,) float RGBA factor (linear)
    texture: np.ndarray | None        # (H, W, 4) uint8 RGBA base-colour image (sRGB)
    texcoord: int                     # which TEXCOORD_n the texture uses
    metallic: float
    roughness: float
    double_sided: bool
    alpha_mode: str                   # "OPAQUE" | "MASK" | "BLEND"
    sampler_wrap: tuple[int, int]     # wrapS, wrapT (glTF enums; default 10497 REPEAT)


@dataclass
class PosedPrimitive:
    positions: np.ndarray             # (N, 3) float64 world space
    normals: np.ndarray | None        # (N, 3) world space, unit length
    uv: np.ndarray | None             # (N, 2) of the material's texcoord set
    colors: np.ndarray | None         # (N, 4) float COLOR_0 in [0, 1]
    indices: np.ndarray               # (M, 3) int64 triangles
    material: Material
    node: int
    mesh: int


@dataclass
class Clip:
    index: int
    name: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class _Channel:
    node: int
    path: str                 # translation | rotation | scale | weights
    interpolation: str        # LINEAR | STEP | CUBICSPLINE
    times: np.ndarray         # (K,) float64
    values: np.ndarray        # (K, C) or, for CUBICSPLINE, (K, 3, C): in-tangent, value, out-tangent


@dataclass
class _Primitive:
    node: int
    mesh: int
    skin: int | None
    positions: np.ndarray               # (N, 3) float64
    normals: np.ndarray | None
    uv: np.ndarray | None
    colors: np.ndarray | None
    indices: np.ndarray                 # (M, 3) int64
    material: Material
    joints: np.ndarray | None           # (N, K) int64 indices into the skin's joints
    weights: np.ndarray | None          # (N, K) float64
    target_positions: np.ndarray | None  # (T, N, 3)
    target_normals: np.ndarray | None    # (T, N, 3)
    num_targets: int


# ---------------------------------------------------------------------------------------------
# Maths


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) stored (x, y, z, w)."""
    q = np.asarray(q, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-300)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions on the shortest path, normalised."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + s * (q1 - q0)
    else:
        theta = math.acos(min(d, 1.0))
        sin_t = math.sin(theta)
        q = (math.sin((1.0 - s) * theta) / sin_t) * q0 + (math.sin(s * theta) / sin_t) * q1
    return q / max(float(np.linalg.norm(q)), 1e-300)


def _trs_matrices(t: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(n, 4, 4) matrices T * R * S from (n, 3) translations, (n, 4) quaternions, (n, 3) scales."""
    m = np.zeros((len(t), 4, 4))
    m[:, :3, :3] = quat_to_matrix(r) * s[:, None, :]
    m[:, :3, 3] = t
    m[:, 3, 3] = 1.0
    return m


def _cofactor(m: np.ndarray) -> np.ndarray:
    """Inverse-transpose of (..., 3, 3) matrices up to a positive factor (for normals)."""
    a, b, c = m[..., :, 0], m[..., :, 1], m[..., :, 2]
    cof = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=-1)
    det = np.einsum("...i,...i->...", a, cof[..., :, 0])
    return cof * np.where(det < 0, -1.0, 1.0)[..., None, None]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def _sample(ch: _Channel, t: float) -> np.ndarray:
    """A channel's value at time t (held before its first and after its last key)."""
    times = ch.times
    cubic = ch.interpolation == "CUBICSPLINE"
    vals = ch.values[:, 1] if cubic else ch.values
    if len(times) == 1 or t <= times[0]:
        out = vals[0]
    elif t >= times[-1]:
        out = vals[-1]
    else:
        k = int(np.searchsorted(times, t, side="right")) - 1
        k = min(max(k, 0), len(times) - 2)
        t0, t1 = float(times[k]), float(times[k + 1])
        dt = t1 - t0
        s = (t - t0) / dt if dt > 0 else 0.0
        if ch.interpolation == "STEP":
            out = vals[k]
        elif cubic:
            s2, s3 = s * s, s * s * s
            v0, b0 = ch.values[k, 1], ch.values[k, 2]
            v1, a1 = ch.values[k + 1, 1], ch.values[k + 1, 0]
            out = ((2 * s3 - 3 * s2 + 1) * v0 + (s3 - 2 * s2 + s) * dt * b0
                   + (-2 * s3 + 3 * s2) * v1 + (s3 - s2) * dt * a1)
        elif ch.path == "rotation":
            out = slerp(vals[k], vals[k + 1], s)
        else:
            out = (1.0 - s) * vals[k] + s * vals[k + 1]
    out = np.array(out, np.float64)
    if ch.path == "rotation":
        out = out / max(float(np.linalg.norm(out)), 1e-300)
    return out


# ---------------------------------------------------------------------------------------------
# File access


def _read_gltf(path: Path):
    from pygltflib import GLTF2

    try:
        data = path.read_bytes()
    except OSError as e:
        raise Sv4dError(f"cannot read glTF asset {path}: {e}") from e
    if data[:4] == b"glTF":
        if len(data) < 20:
            raise Sv4dError(f"{path} is a truncated GLB file ({len(data)} bytes)")
        version, length = struct.unpack("<II", data[4:12])
        if version != 2:
            raise Sv4dError(f"{path} is a GLB file of version {version}; only glTF 2.0 is supported")
        if length > len(data):
            raise Sv4dError(f"{path} is a truncated GLB file: the header says {length} bytes, "
                            f"the file has {len(data)}")
        index = 12
        while index + 8 <= length:     # every chunk must lie inside the file
            chunk_len = struct.unpack("<I", data[index:index + 4])[0]
            if index + 8 + chunk_len > length:
                raise Sv4dError(f"{path} is a damaged GLB file (a chunk runs past the end)")
            index += 8 + chunk_len
        try:
            gltf = GLTF2.load_from_bytes(data)
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise Sv4dError(f"{path} is not a readable GLB file: {e}") from e
        if gltf is None:
            raise Sv4dError(f"{path} is a GLB file without a JSON chunk")
        blob = gltf.binary_blob()
        jlen = struct.unpack("<I", data[12:16])[0]
        try:
            obj = json.loads(data[20:20 + jlen].decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Sv4dError(f"{path} is a GLB file with a damaged JSON chunk") from e
    else:
        try:
            text = data.decode("utf-8-sig")
            obj = json.loads(text)
        except (UnicodeDecodeError, ValueError) as e:
            raise Sv4dError(f"{path} is not a glTF (JSON) or GLB file") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("asset"), dict):
            raise Sv4dError(f"{path} is JSON but not glTF (no 'asset' object)")
        try:
            gltf = GLTF2.gltf_from_json(text)
        except Exception as e:  # noqa: BLE001
            raise Sv4dError(f"{path} is not a valid glTF file: {e}") from e
        blob = None
    if not isinstance(obj, dict):
        raise Sv4dError(f"{path} is not a glTF file")
    version = str(getattr(gltf.asset, "version", "") or "")
    if not version.startswith("2"):
        raise Sv4dError(f"{path} is glTF version {version or '?'}; only glTF 2.0 is supported")
    return gltf, blob, obj


def _uri_bytes(uri: str, base: Path, what: str) -> bytes:
    if uri.startswith("data:"):
        head, _, payload = uri.partition(",")
        try:
            if head.endswith(";base64"):
                return base64.b64decode(payload)
            return unquote(payload).encode("latin-1")
        except (binascii.Error, ValueError) as e:
            raise Sv4dError(f"{what} has a bad data URI: {e}") from e
    file = base / unquote(uri)
    try:
        return file.read_bytes()
    except OSError as e:
        raise Sv4dError(f"{what} refers to {file}, which cannot be read: {e}") from e


class _Reader:
    """Decodes accessors (cached) from a parsed glTF."""

    def __init__(self, gltf, blob: bytes | None, base: Path, path: Path):
        self.g = gltf
        self.path = path
        self.buffers: list[bytes] = []
        for i, buf in enumerate(gltf.buffers):
            if buf.uri is None:
                if i != 0 or blob is None:
                    raise Sv4dError(f"{path}: buffer {i} has no data (no uri and no GLB binary chunk)")
                data = blob
            else:
                data = _uri_bytes(buf.uri, base, f"{path}: buffer {i}")
            if buf.byteLength is not None and len(data) < buf.byteLength:
                raise Sv4dError(f"{path}: buffer {i} is truncated ({len(data)} of {buf.byteLength} bytes)")
            self.buffers.append(data)
        self.cache: dict[int, np.ndarray] = {}

    def view_bytes(self, index: int) -> bytes:
        try:
            bv = self.g.bufferViews[index]
            data = self.buffers[bv.buffer]
        except (IndexError, TypeError) as e:
            raise Sv4dError(f"{self.path}: bad bufferView {index}") from e
        start = bv.byteOffset or 0
        if bv.byteLength is None or start + bv.byteLength > len(data):
            raise Sv4dError(f"{self.path}: bufferView {index} runs past the end of its buffer")
        return data[start:start + bv.byteLength]

    def _dense(self, view: int, offset: int, ctype: int, atype: str, count: int,
               stride: int | None) -> np.ndarray:
        dt = _COMPONENT[ctype]
        size = dt.itemsize
        if atype in ("MAT2", "MAT3", "MAT4"):
            rows = int(atype[3])
            col_bytes = -(-rows * size // 4) * 4       # columns start on 4-byte boundaries
            cols, elem = rows, rows * col_bytes
        else:
            rows, cols = _NCOMP[atype], 1
            col_bytes = elem = rows * size
        data = self.view_bytes(view)
        step = stride or elem
        need = offset + (count - 1) * step + elem if count else 0
        if need > len(data):
            raise Sv4dError(f"{self.path}: an accessor runs past the end of bufferView {view}")
        if count == 0:
            return np.zeros((0, rows * cols), dt)
        raw = np.frombuffer(data, np.uint8, count=need - offset, offset=offset)
        raw = np.lib.stride_tricks.as_strided(raw, shape=(count, elem), strides=(step, 1))
        raw = np.ascontiguousarray(raw).reshape(count, cols, col_bytes)[:, :, :rows * size]
        return np.ascontiguousarray(raw).view(dt).reshape(count, rows * cols)

    def accessor(self, index: int, normalise: bool = False) -> np.ndarray:
        """Accessor ``index`` as (count, components): float64 for floats and normalised integers
        (``normalized`` or ``normalise``), int64 otherwise. Cached."""
        key = index * 2 + bool(normalise)
        if key in self.cache:
            return self.cache[key]
        try:
            acc = self.g.accessors[index]
        except (IndexError, TypeError) as e:
            raise Sv4dError(f"{self.path}: accessor {index} does not exist") from e
        if acc.componentType not in _COMPONENT or acc.type not in _NCOMP:
            raise Sv4dError(f"{self.path}: accessor {index} has an unknown type "
                            f"({acc.componentType}, {acc.type})")
        count = int(acc.count or 0)
        ncomp = _NCOMP[acc.type]
        if acc.bufferView is not None:
            stride = self.g.bufferViews[acc.bufferView].byteStride
            arr = self._dense(acc.bufferView, acc.byteOffset or 0, acc.componentType, acc.type,
                              count, stride).copy()
        else:
            arr = np.zeros((count, ncomp), _COMPONENT[acc.componentType])
        sp = acc.sparse
        if sp is not None and sp.count:
            ind = sp.indices
            idx = self._dense(ind.bufferView, ind.byteOffset or 0, ind.componentType, "SCALAR",
                              sp.count, None)[:, 0].astype(np.int64)
            val = self._dense(sp.values.bufferView, sp.values.byteOffset or 0, acc.componentType,
                              acc.type, sp.count, None)
            if idx.size and (idx.min() < 0 or idx.max() >= count):
                raise Sv4dError(f"{self.path}: sparse accessor {index} has indices out of range")
            arr[idx] = val
        if acc.componentType == 5126:
            out = arr.astype(np.float64)
        elif acc.normalized or normalise:
            out = arr.astype(np.float64) / _NORM[acc.componentType]
            if acc.componentType in (5120, 5122):
                out = np.maximum(out, -1.0)
        else:
            out = arr.astype(np.int64)
        out.setflags(write=False)
        self.cache[key] = out
        return out


# ---------------------------------------------------------------------------------------------
# Primitive assembly


def _triangles(indices: np.ndarray, mode: int) -> np.ndarray | None:
    n = len(indices)
    if mode == 4:
        return indices[: n - n % 3].reshape(-1, 3)
    if mode == 5:
        if n < 3:
            return np.zeros((0, 3), np.int64)
        i = np.arange(n - 2)
        odd = i % 2
        return np.stack([indices[i], indices[i + 1 + odd], indices[i + 2 - odd]], axis=1)
    if mode == 6:
        if n < 3:
            return np.zeros((0, 3), np.int64)
        i = np.arange(n - 2)
        return np.stack([indices[i + 1], indices[i + 2], np.full(n - 2, indices[0])], axis=1)
    return None                      # points (0) and lines (1, 2, 3)


def _attrs(obj) -> dict[str, int]:
    if obj is None:
        return {}
    d = obj if isinstance(obj, dict) else vars(obj)
    return {k: v for k, v in d.items() if isinstance(v, int) and not isinstance(v, bool)}


# ---------------------------------------------------------------------------------------------
# The asset


class GltfAsset:
    """A glTF 2.0 / GLB asset whose default scene can be posed at any time of any clip."""

    path: Path
    clips: list[Clip]

    def __init__(self, path: Path, gltf, reader: _Reader, raw: dict):
        self.path = path
        # pygltflib drops node.weights; take them from the raw JSON
        raw_nodes = raw.get("nodes") if isinstance(raw.get("nodes"), list) else []
        self._raw_node_weights = {i: nd["weights"] for i, nd in enumerate(raw_nodes)
                                  if isinstance(nd, dict) and isinstance(nd.get("weights"), list)}
        self._g = gltf
        self._r = reader
        n = len(gltf.nodes)
        self._num_nodes = n
        # rest TRS / matrices
        self._t = np.zeros((n, 3))
        self._q = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
        self._s = np.ones((n, 3))
        self._matrix: dict[int, np.ndarray] = {}
        for i, nd in enumerate(gltf.nodes):
            if nd.matrix is not None and len(nd.matrix) == 16:
                self._matrix[i] = np.asarray(nd.matrix, np.float64).reshape(4, 4).T   # column-major
            if nd.translation is not None:
                self._t[i] = nd.translation
            if nd.rotation is not None:
                self._q[i] = nd.rotation
            if nd.scale is not None:
                self._s[i] = nd.scale
        self._order = self._hierarchy()
        scenes = gltf.scenes or []
        if scenes:
            si = gltf.scene if gltf.scene is not None else 0
            if not 0 <= si < len(scenes):
                raise Sv4dError(f"{path}: the default scene {si} does not exist")
            roots = list(scenes[si].nodes or [])
        else:
            roots = []
        self._scene_nodes = self._descendants(roots)
        self._images: dict[int, np.ndarray | None] = {}
        self._materials: dict[int | None, Material] = {}
        self._skins = self._load_skins()
        self._prims = self._load_primitives()
        self._node_mesh_weights = self._default_weights()
        self._channels, self.clips = self._load_animations()

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, path) -> "GltfAsset":
        path = Path(path)
        if not path.is_file():
            raise Sv4dError(f"glTF asset not found: {path}")
        gltf, blob, raw = _read_gltf(path)
        required = list(gltf.extensionsRequired or [])
        for ext in required:
            if ext in _COMPRESSION:
                raise Sv4dError(f"{path} requires {_COMPRESSION[ext]} mesh compression ({ext}), which "
                                "is not supported; decompress it first (for example "
                                "`gltf-transform copy` or `gltfpack -noq`)")
        bad = [e for e in required if e not in _HARMLESS and not e.startswith("KHR_materials_")]
        if bad:
            raise Sv4dError(f"{path} requires unsupported glTF extensions: {', '.join(bad)}")
        reader = _Reader(gltf, blob, path.parent, path)
        return cls(path, gltf, reader, raw)

    def _hierarchy(self) -> list[tuple[int, int]]:
        """(node, parent or -1) in an order with parents first; rejects cycles / two parents."""
        n = self._num_nodes
        parent = [-1] * n
        for i, nd in enumerate(self._g.nodes):
            for c in nd.children or []:
                if not 0 <= c < n:
                    raise Sv4dError(f"{self.path}: node {i} has a child {c} that does not exist")
                if parent[c] != -1 or c == i:
                    raise Sv4dError(f"{self.path}: node {c} has more than one parent")
                parent[c] = i
        order, seen = [], [False] * n
        stack = [i for i in range(n) if parent[i] == -1][::-1]
        while stack:
            i = stack.pop()
            seen[i] = True
            order.append((i, parent[i]))
            stack.extend(reversed(self._g.nodes[i].children or []))
        if not all(seen):
            raise Sv4dError(f"{self.path}: the node hierarchy has a cycle")
        return order

    def _descendants(self, roots: list[int]) -> list[int]:
        out, stack = [], list(reversed(roots))
        while stack:
            i = stack.pop()
            if not 0 <= i < self._num_nodes:
                raise Sv4dError(f"{self.path}: the scene refers to node {i}, which does not exist")
            out.append(i)
            stack.extend(reversed(self._g.nodes[i].children or []))
        return out

    def _image(self, index: int | None) -> np.ndarray | None:
        if index is None:
            return None
        if index in self._images:
            return self._images[index]
        from PIL import Image

        try:
            im = self._g.images[index]
        except (IndexError, TypeError) as e:
            raise Sv4dError(f"{self.path}: image {index} does not exist") from e
        if im.bufferView is not None:
            data = self._r.view_bytes(im.bufferView)
        elif im.uri:
            data = _uri_bytes(im.uri, self.path.parent, f"{self.path}: image {index}")
        else:
            raise Sv4dError(f"{self.path}: image {index} has neither a uri nor a bufferView")
        try:
            with Image.open(io.BytesIO(data)) as pil:
                arr = np.asarray(pil.convert("RGBA"), np.uint8).copy()
        except Exception as e:  # noqa: BLE001 - PIL raises many types
            raise Sv4dError(f"{self.path}: image {index} cannot be decoded: {e}") from e
        self._images[index] = arr
        return arr

    def _material(self, index: int | None) -> Material:
        if index in self._materials:
            return self._materials[index]
        if index is None:
            mat = Material(np.ones(4), None, 0, 1.0, 1.0, False, "OPAQUE", (_REPEAT, _REPEAT))
        else:
            try:
                m = self._g.materials[index]
            except (IndexError, TypeError) as e:
                raise Sv4dError(f"{self.path}: material {index} does not exist") from e
            pbr = m.pbrMetallicRoughness
            color = np.ones(4)
            metallic = roughness = 1.0
            texture, texcoord, wrap = None, 0, (_REPEAT, _REPEAT)
            if pbr is not None:
                if pbr.baseColorFactor is not None:
                    color = np.asarray(pbr.baseColorFactor, np.float64)
                if pbr.metallicFactor is not None:
                    metallic = float(pbr.metallicFactor)
                if pbr.roughnessFactor is not None:
                    roughness = float(pbr.roughnessFactor)
                info = pbr.baseColorTexture
                if info is not None and info.index is not None:
                    try:
                        tex = self._g.textures[info.index]
                    except (IndexError, TypeError) as e:
                        raise Sv4dError(f"{self.path}: texture {info.index} does not exist") from e
                    texture = self._image(tex.source)
                    texcoord = int(info.texCoord or 0)
                    if tex.sampler is not None:
                        smp = self._g.samplers[tex.sampler]
                        wrap = (int(smp.wrapS or _REPEAT), int(smp.wrapT or _REPEAT))
            mat = Material(color, texture, texcoord, metallic, roughness, bool(m.doubleSided),
                           str(m.alphaMode or "OPAQUE"), wrap)
        self._materials[index] = mat
        return mat

    def _load_skins(self) -> list[tuple[np.ndarray, np.ndarray]]:
        skins = []
        for si, sk in enumerate(self._g.skins or []):
            joints = np.asarray(sk.joints or [], np.int64)
            if joints.size and (joints.min() < 0 or joints.max() >= self._num_nodes):
                raise Sv4dError(f"{self.path}: skin {si} refers to nodes that do not exist")
            if sk.inverseBindMatrices is not None:
                ibm = self._r.accessor(sk.inverseBindMatrices)
                if len(ibm) < len(joints) or ibm.shape[1] != 16:
                    raise Sv4dError(f"{self.path}: skin {si} has too few inverse bind matrices")
                ibm = ibm[: len(joints)].reshape(-1, 4, 4).transpose(0, 2, 1)    # column-major
            else:
                ibm = np.tile(np.eye(4), (len(joints), 1, 1))
            skins.append((joints, np.ascontiguousarray(ibm)))
        return skins

    def _load_primitives(self) -> list[_Primitive]:
        prims = []
        for ni in self._scene_nodes:
            nd = self._g.nodes[ni]
            if nd.mesh is None:
                continue
            try:
                mesh = self._g.meshes[nd.mesh]
            except (IndexError, TypeError) as e:
                raise Sv4dError(f"{self.path}: node {ni} refers to mesh {nd.mesh}, which does not exist") from e
            if nd.skin is not None and not 0 <= nd.skin < len(self._skins):
                raise Sv4dError(f"{self.path}: node {ni} refers to skin {nd.skin}, which does not exist")
            for p in mesh.primitives:
                prim = self._primitive(ni, nd.mesh, nd.skin, p)
                if prim is not None:
                    prims.append(prim)
        return prims

    def _primitive(self, ni: int, mi: int, skin: int | None, p) -> _Primitive | None:
        if p.extensions and any(e in _COMPRESSION for e in p.extensions):
            raise Sv4dError(f"{self.path}: mesh {mi} uses mesh compression, which is not supported")
        mode = 4 if p.mode is None else int(p.mode)
        if mode not in (4, 5, 6):
            return None
        a = _attrs(p.attributes)
        if "POSITION" not in a:
            return None
        rd = self._r
        pos = rd.accessor(a["POSITION"])[:, :3]
        n = len(pos)

        def vertex_attr(name, normalise=False, width=None):
            if name not in a:
                return None
            arr = rd.accessor(a[name], normalise)
            if len(arr) != n:
                raise Sv4dError(f"{self.path}: mesh {mi} attribute {name} has {len(arr)} values for {n} vertices")
            return arr if width is None else arr[:, :width]

        normals = vertex_attr("NORMAL", width=3)
        material = self._material(p.material)
        uv = vertex_attr(f"TEXCOORD_{material.texcoord}", True, 2)
        colors = vertex_attr("COLOR_0", True)
        if colors is not None and colors.shape[1] == 3:
            colors = np.concatenate([colors, np.ones((n, 1))], axis=1)
        if p.indices is not None:
            idx = rd.accessor(p.indices)[:, 0].astype(np.int64)
        else:
            idx = np.arange(n, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise Sv4dError(f"{self.path}: mesh {mi} has vertex indices out of range")
        tris = np.ascontiguousarray(_triangles(idx, mode), np.int64)
        joints = weights = None
        if skin is not None and "JOINTS_0" in a and "WEIGHTS_0" in a:
            js, ws, k = [], [], 0
            while f"JOINTS_{k}" in a and f"WEIGHTS_{k}" in a:
                js.append(vertex_attr(f"JOINTS_{k}"))
                ws.append(vertex_attr(f"WEIGHTS_{k}", True))
                k += 1
            joints = np.concatenate(js, axis=1).astype(np.int64)
            weights = np.concatenate(ws, axis=1)
            nj = len(self._skins[skin][0])
            bad = (joints < 0) | (joints >= nj)
            if np.any(bad & (weights != 0)):
                raise Sv4dError(f"{self.path}: mesh {mi} has joint indices outside skin {skin}")
            joints = np.where(bad, 0, joints)
        targets = list(p.targets or [])
        tpos = tnor = None
        if targets:
            tpos = np.zeros((len(targets), n, 3))
            tnor = np.zeros((len(targets), n, 3)) if normals is not None else None
            for ti, tg in enumerate(targets):
                ta = _attrs(tg)
                if "POSITION" in ta:
                    d = rd.accessor(ta["POSITION"])
                    if len(d) != n:
                        raise Sv4dError(f"{self.path}: mesh {mi} morph target {ti} has the wrong vertex count")
                    tpos[ti] = d[:, :3]
                if tnor is not None and "NORMAL" in ta:
                    d = rd.accessor(ta["NORMAL"])
                    if len(d) == n:
                        tnor[ti] = d[:, :3]
        return _Primitive(ni, mi, skin if joints is not None else None, pos, normals, uv, colors, tris,
                          material, joints, weights, tpos, tnor, len(targets))

    def _default_weights(self) -> dict[int, np.ndarray]:
        """Rest morph weights per mesh node: node.weights, else mesh.weights, else zeros."""
        out = {}
        for ni in self._scene_nodes:
            nd = self._g.nodes[ni]
            if nd.mesh is None:
                continue
            mesh = self._g.meshes[nd.mesh]
            ntg = max((len(p.targets or []) for p in mesh.primitives), default=0)
            w = np.zeros(ntg)
            src = self._raw_node_weights.get(ni) or mesh.weights or None
            if src:
                m = min(ntg, len(src))
                w[:m] = np.asarray(src[:m], np.float64)
            out[ni] = w
        return out

    def _load_animations(self) -> tuple[list[list[_Channel]], list[Clip]]:
        channels, clips = [], []
        rd = self._r
        for ai, anim in enumerate(self._g.animations or []):
            chans, lo, hi = [], math.inf, -math.inf
            for smp in anim.samplers or []:
                inp = rd.accessor(smp.input)[:, 0]
                if inp.size:
                    lo, hi = min(lo, float(inp.min())), max(hi, float(inp.max()))
            for ci, ch in enumerate(anim.channels or []):
                tgt = ch.target
                if tgt is None or tgt.node is None or tgt.path not in ("translation", "rotation", "scale", "weights"):
                    continue                         # e.g. KHR_animation_pointer targets
                if not 0 <= tgt.node < self._num_nodes:
                    raise Sv4dError(f"{self.path}: animation {ai} targets node {tgt.node}, which does not exist")
                try:
                    smp = anim.samplers[ch.sampler]
                except (IndexError, TypeError) as e:
                    raise Sv4dError(f"{self.path}: animation {ai} channel {ci} has no sampler") from e
                interp = smp.interpolation or "LINEAR"
                if interp not in ("LINEAR", "STEP", "CUBICSPLINE"):
                    raise Sv4dError(f"{self.path}: animation {ai} uses unknown interpolation {interp!r}")
                times = rd.accessor(smp.input)[:, 0].astype(np.float64)
                if times.size == 0:
                    continue
                if np.any(np.diff(times) < 0):
                    raise Sv4dError(f"{self.path}: animation {ai} has key times that decrease")
                out = rd.accessor(smp.output, True)
                k = len(times)
                per_key = 3 if interp == "CUBICSPLINE" else 1
                if tgt.path == "weights":
                    if out.size % (k * per_key):
                        raise Sv4dError(f"{self.path}: animation {ai} weights output does not match its keys")
                    vals = out.reshape(k, per_key, -1)
                else:
                    width = 4 if tgt.path == "rotation" else 3
                    if out.shape != (k * per_key, width):
                        raise Sv4dError(f"{self.path}: animation {ai} channel {ci} output has shape "
                                        f"{out.shape}, expected {(k * per_key, width)}")
                    vals = out.reshape(k, per_key, width)
                vals = vals if per_key == 3 else vals[:, 0]
                chans.append(_Channel(int(tgt.node), tgt.path, interp, times, np.ascontiguousarray(vals)))
            if not math.isfinite(lo):
                lo = hi = 0.0
            name = anim.name if anim.name else f"animation_{ai}"
            channels.append(chans)
            clips.append(Clip(ai, name, lo, hi))
        return channels, clips

    # -- clips ---------------------------------------------------------------------------------

    def clip(self, which: str | int | None) -> Clip | None:
        """A clip by name or index; ``None``: the first clip, or ``None`` without animations."""
        if which is None:
            return self.clips[0] if self.clips else None
        names = ", ".join(f"{c.index}: {c.name!r}" for c in self.clips) or "none"
        if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
            if 0 <= which < len(self.clips):
                return self.clips[int(which)]
            raise Sv4dError(f"{self.path.name} has no animation {which}; its clips: {names}")
        for c in self.clips:
            if c.name == which:
                return c
        if isinstance(which, str) and which.strip().isdigit() and int(which) < len(self.clips):
            return self.clips[int(which)]
        raise Sv4dError(f"{self.path.name} has no animation {which!r}; its clips: {names}")

    def keyframe_times(self, clip: Clip) -> np.ndarray:
        """Sorted unique key times of all the clip's channels."""
        chans = self._channels[clip.index]
        if not chans:
            return np.array([clip.start])
        return np.unique(np.concatenate([c.times for c in chans]))

    # -- posing ----------------------------------------------------------------------------------

    def _state(self, t: float, clip: Clip | None):
        """Local TRS arrays and morph weights per node at time t (rest pose for clip None)."""
        tr, rot, sc = self._t.copy(), self._q.copy(), self._s.copy()
        weights = {k: v.copy() for k, v in self._node_mesh_weights.items()}
        animated: set[int] = set()
        if clip is not None:
            if not 0 <= clip.index < len(self._channels):
                raise Sv4dError(f"{self.path.name} has no animation {clip.index}")
            t = min(max(float(t), clip.start), clip.end)
            for ch in self._channels[clip.index]:
                v = _sample(ch, t)
                if ch.path == "translation":
                    tr[ch.node] = v
                elif ch.path == "rotation":
                    rot[ch.node] = v
                elif ch.path == "scale":
                    sc[ch.node] = v
                else:
                    w = weights.setdefault(ch.node, np.zeros(len(v)))
                    m = min(len(w), len(v))
                    w[:m] = v[:m]
                    continue
                animated.add(ch.node)
        return tr, rot, sc, weights, animated

    def _world(self, tr, rot, sc, animated) -> np.ndarray:
        local = _trs_matrices(tr, rot, sc)
        for i, m in self._matrix.items():
            if i not in animated:       # an animated node is never given as a matrix (spec)
                local[i] = m
        world = np.empty_like(local)
        for i, p in self._order:
            world[i] = local[i] if p < 0 else world[p] @ local[i]
        return world

    def local_trs(self, t: float, clip: Clip | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-node local translation (n, 3), rotation quaternion (n, 4, xyzw) and scale (n, 3)."""
        tr, rot, sc, _, _ = self._state(t, clip)
        return tr, rot, sc

    def node_matrices(self, t: float, clip: Clip | None) -> np.ndarray:
        """(num_nodes, 4, 4) world matrices at time t."""
        tr, rot, sc, _, animated = self._state(t, clip)
        return self._world(tr, rot, sc, animated)

    def pose(self, t: float, clip: Clip | None) -> list[PosedPrimitive]:
        """All primitives of the default scene posed at time t of the clip (None: rest pose)."""
        tr, rot, sc, weights, animated = self._state(t, clip)
        world = self._world(tr, rot, sc, animated)
        joint_mats = {}
        out = []
        for pr in self._prims:
            pos = pr.positions
            nor = pr.normals
            if pr.num_targets:
                w = weights.get(pr.node, np.zeros(0))
                wt = np.zeros(pr.num_targets)
                m = min(len(w), pr.num_targets)
                wt[:m] = w[:m]
                nz = np.nonzero(wt)[0]
                if nz.size:
                    pos = pos + np.tensordot(wt[nz], pr.target_positions[nz], axes=1)
                    if nor is not None and pr.target_normals is not None:
                        nor = nor + np.tensordot(wt[nz], pr.target_normals[nz], axes=1)
            if pr.skin is not None:
                if pr.skin not in joint_mats:
                    joints, ibm = self._skins[pr.skin]
                    joint_mats[pr.skin] = world[joints] @ ibm
                mats = np.einsum("nk,nkij->nij", pr.weights, joint_mats[pr.skin][pr.joints])
                lin = mats[:, :3, :3]
                pos = np.einsum("nij,nj->ni", lin, pos) + mats[:, :3, 3]
                if nor is not None:
                    nor = np.einsum("nij,nj->ni", _cofactor(lin), nor)
            else:
                m = world[pr.node]
                pos = pos @ m[:3, :3].T + m[:3, 3]
                if nor is not None:
                    nor = nor @ _cofactor(m[:3, :3]).T
            out.append(PosedPrimitive(
                positions=np.ascontiguousarray(pos, np.float64),
                normals=None if nor is None else _unit(nor),
                uv=None if pr.uv is None else pr.uv.copy(),
                colors=None if pr.colors is None else pr.colors.copy(),
                indices=pr.indices.copy(), material=pr.material, node=pr.node, mesh=pr.mesh))
        return out

    def posed_geometry(self, t: float, clip: Clip | None) -> tuple[np.ndarray, np.ndarray]:
        """All primitives' positions concatenated (N, 3) and their triangles re-indexed (M, 3)."""
        return merge_primitives(self.pose(t, clip))


def merge_primitives(prims: list[PosedPrimitive]) -> tuple[np.ndarray, np.ndarray]:
    """Posed primitives' positions concatenated (N, 3) and their triangles re-indexed (M, 3)."""
    if not prims:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    offsets = np.cumsum([0] + [len(p.positions) for p in prims[:-1]])
    verts = np.concatenate([p.positions for p in prims])
    faces = np.concatenate([p.indices + o for p, o in zip(prims, offsets)]).astype(np.int64)
    return verts, faces


# ---------------------------------------------------------------------------------------------
# Normalisation into the unit cube


def yaw_matrix(yaw_deg: float) -> np.ndarray:
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
    return {"formula": "v_norm = scale * (R_yaw @ v_gltf_world - center)", "yaw_deg": float(yaw_deg),
            "center": [float(x) for x in center], "scale": scale, "cube_size": float(cube),
            "bbox_min": [float(x) for x in scale * (lo - center)],
            "bbox_max": [float(x) for x in scale * (hi - center)]}


def normalisation(asset: GltfAsset, clip: Clip | None, times, yaw_deg: float = 90.0,
                  cube: float = 1.0) -> dict:
    """:func:`normalise_clip` of the asset posed at ``times``."""
    times = np.atleast_1d(np.asarray(times, np.float64))
    return normalise_clip(np.stack([asset.posed_geometry(float(t), clip)[0] for t in times]), yaw_deg, cube)


def apply_normalisation(points: np.ndarray, norm: dict) -> np.ndarray:
    """Points (..., 3) in the glTF world frame into the normalised frame of ``norm``."""
    p = np.asarray(points, np.float64)
    return norm["scale"] * (p @ yaw_matrix(norm["yaw_deg"]).T - np.asarray(norm["center"], np.float64))

"""Reading glTF 2.0 files: ``.gltf`` (JSON) and ``.glb`` (the container through
:mod:`sv4d.io.glb`), buffers from the GLB binary chunk, base64 data URIs or files beside the
``.gltf``, accessors (byteStride, sparse substitution, normalised integers and the column padding
of small-component matrices, decoded once and cached), triangles from modes 4, 5 (strip) and
6 (fan), and the errors for required extensions that are not supported (mesh compression).

pygltflib turns the JSON into objects; everything else is done here.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from ...errors import Sv4dError
from ...io.glb import COMPONENT_DTYPES, TYPE_WIDTHS, decode_elements, unpack_glb

__all__ = ["open_gltf", "read_gltf", "uri_bytes", "AccessorReader", "triangles", "attributes", "COMPRESSION"]

# Divisors of normalised integers (spec 3.11: signed ones clamp at -1).
_NORM = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0, 5125: 4294967295.0}
# Mesh-compression extensions (not supported) -> the name users know them by.
COMPRESSION = {
    "KHR_draco_mesh_compression": "Draco",
    "EXT_meshopt_compression": "meshopt",
    "KHR_meshopt_compression": "meshopt",
}
# Required extensions that change nothing this reader computes.
_HARMLESS = {"KHR_mesh_quantization", "KHR_materials_unlit", "KHR_materials_emissive_strength"}


def read_gltf(path: Path):
    """(pygltflib GLTF2, the GLB binary chunk or None, the raw JSON dict) of a .gltf or .glb file.

    Raises :class:`Sv4dError` for an unreadable, truncated or damaged file and for glTF other
    than 2.0.
    """
    from pygltflib import GLTF2

    try:
        data = path.read_bytes()
    except OSError as e:
        raise Sv4dError(f"cannot read glTF asset {path}: {e}") from e
    if data[:4] == b"glTF":
        glb = unpack_glb(data, str(path))
        try:
            gltf = GLTF2.gltf_from_json(glb.text)
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise Sv4dError(f"{path} is not a readable GLB file: {e}") from e
        blob, obj = glb.binary, glb.doc
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
    version = str(getattr(gltf.asset, "version", "") or "")
    if not version.startswith("2"):
        raise Sv4dError(f"{path} is glTF version {version or '?'}; only glTF 2.0 is supported")
    return gltf, blob, obj


def open_gltf(path: Path):
    """(pygltflib GLTF2, its :class:`AccessorReader`, the raw JSON dict) of the asset at ``path``,
    after checking that it exists and requires no extension this reader cannot honour (mesh
    compression gets a message that says how to decompress)."""
    if not path.is_file():
        raise Sv4dError(f"glTF asset not found: {path}")
    gltf, blob, raw = read_gltf(path)
    required = list(gltf.extensionsRequired or [])
    for ext in required:
        if ext in COMPRESSION:
            raise Sv4dError(
                f"{path} requires {COMPRESSION[ext]} mesh compression ({ext}), which "
                "is not supported; decompress it first (for example "
                "`gltf-transform copy` or `gltfpack -noq`)"
            )
    bad = [e for e in required if e not in _HARMLESS and not e.startswith("KHR_materials_")]
    if bad:
        raise Sv4dError(f"{path} requires unsupported glTF extensions: {', '.join(bad)}")
    return gltf, AccessorReader(gltf, blob, path.parent, path), raw


def uri_bytes(uri: str, base: Path, what: str) -> bytes:
    """The bytes a buffer/image ``uri`` refers to: a data URI (base64 or percent-encoded) or a
    file relative to ``base``; ``what`` starts the error message."""
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


class AccessorReader:
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
                data = uri_bytes(buf.uri, base, f"{path}: buffer {i}")
            if buf.byteLength is not None and len(data) < buf.byteLength:
                raise Sv4dError(f"{path}: buffer {i} is truncated ({len(data)} of {buf.byteLength} bytes)")
            self.buffers.append(data)
        self.cache: dict[int, np.ndarray] = {}

    def view_bytes(self, index: int) -> bytes:
        """The bytes of bufferView ``index``."""
        try:
            bv = self.g.bufferViews[index]
            data = self.buffers[bv.buffer]
        except (IndexError, TypeError) as e:
            raise Sv4dError(f"{self.path}: bad bufferView {index}") from e
        start = bv.byteOffset or 0
        if bv.byteLength is None or start + bv.byteLength > len(data):
            raise Sv4dError(f"{self.path}: bufferView {index} runs past the end of its buffer")
        return data[start : start + bv.byteLength]

    def _dense(self, view: int, offset: int, ctype: int, atype: str, count: int, stride: int | None) -> np.ndarray:
        try:
            return decode_elements(self.view_bytes(view), offset, ctype, atype, count, stride)
        except ValueError:
            raise Sv4dError(f"{self.path}: an accessor runs past the end of bufferView {view}") from None

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
        if acc.componentType not in COMPONENT_DTYPES or acc.type not in TYPE_WIDTHS:
            raise Sv4dError(f"{self.path}: accessor {index} has an unknown type ({acc.componentType}, {acc.type})")
        count = int(acc.count or 0)
        ncomp = TYPE_WIDTHS[acc.type]
        if acc.bufferView is not None:
            stride = self.g.bufferViews[acc.bufferView].byteStride
            arr = self._dense(acc.bufferView, acc.byteOffset or 0, acc.componentType, acc.type, count, stride).copy()
        else:
            arr = np.zeros((count, ncomp), COMPONENT_DTYPES[acc.componentType])
        sp = acc.sparse
        if sp is not None and sp.count:
            ind = sp.indices
            idx = self._dense(ind.bufferView, ind.byteOffset or 0, ind.componentType, "SCALAR", sp.count, None)[
                :, 0
            ].astype(np.int64)
            val = self._dense(
                sp.values.bufferView, sp.values.byteOffset or 0, acc.componentType, acc.type, sp.count, None
            )
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


def triangles(indices: np.ndarray, mode: int) -> np.ndarray | None:
    """(M, 3) triangles of a primitive's vertex ``indices`` (n,) drawn in ``mode`` (4 triangles,
    5 strip, 6 fan); None for points (0) and lines (1, 2, 3)."""
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
    return None  # points (0) and lines (1, 2, 3)


def attributes(obj) -> dict[str, int]:
    """A primitive's (or morph target's) attribute name -> accessor index (pygltflib object or dict)."""
    if obj is None:
        return {}
    d = obj if isinstance(obj, dict) else vars(obj)
    return {k: v for k, v in d.items() if isinstance(v, int) and not isinstance(v, bool)}

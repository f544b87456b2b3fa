"""The binary glTF 2.0 (GLB) codec, once for the whole project.

* :func:`pack_glb` / :func:`unpack_glb`: the container — a 12-byte header (magic ``glTF``,
  version 2, total length), a JSON chunk padded with spaces to 4 bytes, an optional BIN chunk
  padded with zeros to 4 bytes (all little-endian);
* :class:`GlbBuilder`: lays numpy arrays out, 4-byte aligned, as the BIN chunk with one
  bufferView and one accessor each (raw bytes, such as an embedded PNG, with a bufferView only);
* :func:`decode_elements`: the elements of one accessor from a bufferView's bytes (byteStride,
  and the 4-byte column padding of small-component matrices), shared with the full glTF reader
  :mod:`sv4d.data.gltf.reader`;
* :func:`read_accessor`: one dense accessor of a parsed GLB's BIN chunk.

The accessor tables (:data:`COMPONENT_DTYPES`, :data:`TYPE_WIDTHS`) and the enums writers need
live here too. Nothing here imports pygltflib.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import Sv4dError

__all__ = [
    "Glb",
    "GlbBuilder",
    "pack_glb",
    "unpack_glb",
    "decode_elements",
    "read_accessor",
    "COMPONENT_DTYPES",
    "TYPE_WIDTHS",
]

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A  # "JSON"
CHUNK_BIN = 0x004E4942  # "BIN\0"

# accessor componentType enums and their little-endian numpy dtypes
BYTE, UNSIGNED_BYTE, SHORT, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
COMPONENT_DTYPES = {
    BYTE: np.dtype("<i1"),
    UNSIGNED_BYTE: np.dtype("<u1"),
    SHORT: np.dtype("<i2"),
    UNSIGNED_SHORT: np.dtype("<u2"),
    UNSIGNED_INT: np.dtype("<u4"),
    FLOAT: np.dtype("<f4"),
}
# accessor type -> components per element
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
# bufferView targets
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
# texture sampler filters and wrap mode
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071


# ---------------------------------------------------------------------------------------------
# The container


@dataclass(frozen=True)
class Glb:
    """A parsed GLB file.

    doc: the glTF JSON document. text: the JSON chunk as text (a UTF-8 BOM dropped).
    binary: the BIN chunk (its declared length, without the chunk header), or None.
    name: how error messages name the file (normally its path).
    """

    doc: dict
    text: str
    binary: bytes | None
    name: str = "GLB"


def pack_glb(gltf: dict, bin_chunk: bytes) -> bytes:
    """The bytes of a GLB file holding the glTF JSON document ``gltf`` and ``bin_chunk``.

    The JSON is written compactly and padded with spaces to 4 bytes; ``bin_chunk`` must already
    be 4-byte padded (:meth:`GlbBuilder.binary` is). An empty ``bin_chunk`` writes no BIN chunk.
    """
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + (8 + len(bin_chunk) if bin_chunk else 0)
    out = [struct.pack("<III", GLB_MAGIC, 2, total), struct.pack("<II", len(js), CHUNK_JSON), js]
    if bin_chunk:
        out += [struct.pack("<II", len(bin_chunk), CHUNK_BIN), bin_chunk]
    return b"".join(out)


def unpack_glb(data: bytes, name: str = "GLB") -> Glb:
    """Parse the bytes of a GLB file; ``name`` (normally the path) starts every error message.

    The first chunk must be JSON (a glTF object); the first BIN chunk after it, if any, is the
    binary buffer; chunks of other types are skipped, as the specification asks. Every chunk
    must lie inside the length the header gives. Raises :class:`Sv4dError` for a file that is
    not GLB ("not a binary glTF (.glb) file"), truncated, of another version or damaged.
    """
    if len(data) < 4 or data[:4] != b"glTF":
        raise Sv4dError(f"{name} is not a binary glTF (.glb) file")
    if len(data) < 20:
        raise Sv4dError(f"{name} is a truncated GLB file ({len(data)} bytes)")
    version, length = struct.unpack("<II", data[4:12])
    if version != 2:
        raise Sv4dError(f"{name} is a GLB file of version {version}; only glTF 2.0 is supported")
    if length > len(data):
        raise Sv4dError(f"{name} is a truncated GLB file: the header says {length} bytes, the file has {len(data)}")
    chunks: list[tuple[int, bytes]] = []
    index = 12
    while index < length:  # every chunk must lie inside the file
        if index + 8 > length:
            raise Sv4dError(f"{name} is a damaged GLB file (a chunk runs past the end)")
        chunk_len, chunk_type = struct.unpack("<II", data[index : index + 8])
        if index + 8 + chunk_len > length:
            raise Sv4dError(f"{name} is a damaged GLB file (a chunk runs past the end)")
        chunks.append((chunk_type, data[index + 8 : index + 8 + chunk_len]))
        index += 8 + chunk_len
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise Sv4dError(f"{name} is a GLB file without a JSON chunk")
    try:
        text = chunks[0][1].decode("utf-8-sig")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise Sv4dError(f"{name} is a GLB file with a damaged JSON chunk") from e
    if not isinstance(doc, dict):
        raise Sv4dError(f"{name} is not a glTF file")
    binary = next((c for t, c in chunks[1:] if t == CHUNK_BIN), None)
    return Glb(doc, text, binary, name)


# ---------------------------------------------------------------------------------------------
# Writing arrays


class GlbBuilder:
    """Collects binary blobs (4-byte aligned) with their bufferViews and accessors.

    ``add`` returns the new accessor's index; ``views``/``accessors`` are the glTF lists, and
    :meth:`binary` the BIN chunk (all on buffer 0).
    """

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add_view(self, raw: bytes, target: int | None = None) -> int:
        """Append ``raw`` (4-byte aligned) as one bufferView (with ``target`` when given); returns
        the view's index. An embedded image is stored this way, without an accessor."""
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
        return len(self.views) - 1

    def add(
        self,
        data: np.ndarray,
        component: int,
        kind: str,
        target: int | None = None,
        minmax: bool = False,
        normalized: bool = False,
    ) -> int:
        """Append ``data`` (count, ...) — already of the dtype ``component`` names — as one
        bufferView (with ``target`` when given) and one accessor of type ``kind`` ("VEC3", ...);
        ``minmax`` records the per-component min and max, ``normalized`` marks integers that
        stand for [0, 1] (unsigned) or [-1, 1] (signed)."""
        raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        acc: dict[str, Any] = {
            "bufferView": self.add_view(raw, target),
            "componentType": component,
            "count": int(data.shape[0]),
            "type": kind,
        }
        if normalized:
            acc["normalized"] = True
        if minmax:
            d = data.reshape(data.shape[0], -1)
            acc["min"] = [float(x) for x in d.min(0)]
            acc["max"] = [float(x) for x in d.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def binary(self) -> bytes:
        """The BIN chunk: every blob, zero-padded to a multiple of 4 bytes."""
        blob = b"".join(self.blobs)
        return blob + b"\x00" * ((-len(blob)) % 4)


# ---------------------------------------------------------------------------------------------
# Reading arrays


def decode_elements(data: bytes, offset: int, component: int, kind: str, count: int, stride: int | None) -> np.ndarray:
    """The ``count`` elements of an accessor as a (count, TYPE_WIDTHS[kind]) array of the
    component's dtype (a copy, matrices column-major as stored).

    data: the bufferView's bytes; offset: the accessor's byteOffset in them; stride: the view's
    byteStride (None: tightly packed). Matrix columns start on 4-byte boundaries (MAT2/MAT3 of
    1- and 2-byte components carry padding, which is dropped). Raises ValueError when the
    elements run past the end of ``data``, KeyError for an unknown component or type.
    """
    dt = COMPONENT_DTYPES[component]
    size = dt.itemsize
    if kind in ("MAT2", "MAT3", "MAT4"):
        rows = int(kind[3])
        col_bytes = -(-rows * size // 4) * 4  # columns start on 4-byte boundaries
        cols, elem = rows, rows * col_bytes
    else:
        rows, cols = TYPE_WIDTHS[kind], 1
        col_bytes = elem = rows * size
    step = stride or elem
    need = offset + (count - 1) * step + elem if count else 0
    if need > len(data):
        raise ValueError(f"{count} elements from byte {offset} need {need} bytes, the bufferView has {len(data)}")
    if count == 0:
        return np.zeros((0, rows * cols), dt)
    raw = np.frombuffer(data, np.uint8, count=need - offset, offset=offset)
    raw = np.lib.stride_tricks.as_strided(raw, shape=(count, elem), strides=(step, 1))
    raw = np.ascontiguousarray(raw).reshape(count, cols, col_bytes)[:, :, : rows * size]
    return np.ascontiguousarray(raw).view(dt).reshape(count, rows * cols)


def read_accessor(glb: Glb, index: int, normalize: bool = False) -> np.ndarray:
    """Accessor ``index`` of a parsed GLB as (count, width) in its component dtype (a copy).
    ``normalize``: integers the accessor marks ``normalized`` come back as float32 in [0, 1]
    (unsigned) or [-1, 1] (signed), as the specification defines them. Only accessors with a
    bufferView into the BIN chunk (buffer 0) are read; sparse accessors and external buffers
    raise :class:`Sv4dError`, as does anything missing."""
    where = f"{glb.name}: accessor {index}"
    try:
        acc = glb.doc["accessors"][index]
        view_index = acc.get("bufferView")
        view = glb.doc["bufferViews"][view_index] if view_index is not None else None
        component, kind, count = acc["componentType"], acc["type"], int(acc["count"])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise Sv4dError(f"{where} (or its bufferView) is missing or malformed: {type(e).__name__}: {e}") from None
    if component not in COMPONENT_DTYPES or kind not in TYPE_WIDTHS:
        raise Sv4dError(f"{where} has an unknown type ({component}, {kind})")
    if "sparse" in acc or view is None:
        raise Sv4dError(f"{where} is sparse or has no bufferView, which this reader does not support")
    if view.get("buffer", 0) != 0 or glb.binary is None:
        raise Sv4dError(f"{where} is not stored in the GLB's binary chunk")
    start = int(view.get("byteOffset", 0))
    end = start + int(view.get("byteLength", 0))
    if end > len(glb.binary):
        raise Sv4dError(f"{glb.name}: bufferView {view_index} runs past the end of the binary chunk")
    try:
        out = decode_elements(
            glb.binary[start:end], int(acc.get("byteOffset", 0)), component, kind, count, view.get("byteStride")
        )
    except ValueError as e:
        raise Sv4dError(f"{where} runs past the end of bufferView {view_index} ({e})") from None
    if normalize and acc.get("normalized") and component != FLOAT:
        out = np.maximum(out.astype(np.float32) / np.iinfo(out.dtype).max, np.float32(-1.0))
    return out

"""Gaussian PLY files: 3D Gaussians in the layout of the reference 3D Gaussian Splatting code
(binary little-endian; ``x y z nx ny nz f_dc_0..2 f_rest_* opacity scale_0..2 rot_0..3``), written
atomically (:func:`sv4d.io.atomic.atomic_file`) and read back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Sv4dError
from .arrays import as_numpy
from .atomic import atomic_file

__all__ = ["write_gaussian_ply", "read_gaussian_ply", "gaussian_property_names"]

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


def gaussian_property_names(k: int) -> list[str]:
    """The float32 vertex properties, in file order, of Gaussians with K higher-order SH
    coefficients per channel (``f_rest_*`` channel-major: 3K of them)."""
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _write_bytes(path: Path, *parts: bytes) -> None:
    with open(path, "wb") as f:
        for p in parts:
            f.write(p)


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
    m = as_numpy(means, "means")
    if m.ndim != 2 or m.shape[1] != 3:
        raise Sv4dError(f"means must be (N, 3), got {m.shape}")
    n = m.shape[0]

    def check(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = as_numpy(x, name)
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
        rest = as_numpy(sh_rest, "sh_rest")
        if rest.ndim != 3 or rest.shape[0] != n or rest.shape[2] != 3:
            raise Sv4dError(f"sh_rest must be (N={n}, K, 3), got {rest.shape}")
        rest = rest.astype(np.float32, copy=False)
    k = rest.shape[1]
    if int(round(np.sqrt(k + 1))) ** 2 != k + 1:
        raise Sv4dError(f"sh_rest has K={k} coefficients; K must be (degree + 1)^2 - 1 (0, 3, 8 or 15)")
    cols = [
        m.astype(np.float32, copy=False),
        np.zeros((n, 3), np.float32),
        dc,
        rest.transpose(0, 2, 1).reshape(n, 3 * k),
        o[:, None],
        s,
        q,
    ]
    table = np.concatenate(cols, axis=1).astype("<f4", copy=False)
    if not np.isfinite(table).all():
        raise Sv4dError("Gaussian parameters contain NaN or infinity")
    names = gaussian_property_names(k)
    assert table.shape[1] == len(names)
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
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
    need = [
        "x",
        "y",
        "z",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]
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

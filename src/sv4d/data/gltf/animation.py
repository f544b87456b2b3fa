"""Animation maths of glTF 2.0: quaternions (x, y, z, w) to matrices, slerp on the shortest
path, ``T * R * S`` node matrices, and sampling an animation channel (translation / rotation /
scale / weights) at a time with ``LINEAR``, ``STEP`` or ``CUBICSPLINE`` interpolation; the
:class:`Clip` (one animation) and :class:`Channel` records, read from a parsed glTF by
:func:`load_animations`. Times are in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import Sv4dError
from .reader import AccessorReader

__all__ = ["Clip", "Channel", "quat_to_matrix", "slerp", "trs_matrices", "sample", "load_animations"]


@dataclass
class Clip:
    """One animation of an asset: its index and name, and the span [start, end] (seconds) of its keys."""

    index: int
    name: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Channel:
    """One animation channel: a node's property and its sampler's keys."""

    node: int
    path: str  # translation | rotation | scale | weights
    interpolation: str  # LINEAR | STEP | CUBICSPLINE
    times: np.ndarray  # (K,) float64
    values: np.ndarray  # (K, C) or, for CUBICSPLINE, (K, 3, C): in-tangent, value, out-tangent


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


def trs_matrices(t: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(n, 4, 4) matrices T * R * S from (n, 3) translations, (n, 4) quaternions, (n, 3) scales."""
    m = np.zeros((len(t), 4, 4))
    m[:, :3, :3] = quat_to_matrix(r) * s[:, None, :]
    m[:, :3, 3] = t
    m[:, 3, 3] = 1.0
    return m


def sample(ch: Channel, t: float) -> np.ndarray:
    """A channel's value (C,) at time t (seconds; held before its first and after its last key);
    rotations come back as unit quaternions."""
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
            out = (
                (2 * s3 - 3 * s2 + 1) * v0 + (s3 - 2 * s2 + s) * dt * b0 + (-2 * s3 + 3 * s2) * v1 + (s3 - s2) * dt * a1
            )
        elif ch.path == "rotation":
            out = slerp(vals[k], vals[k + 1], s)
        else:
            out = (1.0 - s) * vals[k] + s * vals[k + 1]
    out = np.array(out, np.float64)
    if ch.path == "rotation":
        out = out / max(float(np.linalg.norm(out)), 1e-300)
    return out


def load_animations(gltf, reader: AccessorReader, num_nodes: int, path: Path) -> tuple[list[list[Channel]], list[Clip]]:
    """Every animation of a parsed glTF: its channels (per clip) and its :class:`Clip`, whose span
    covers all its samplers' key times (0 to 0 without keys). Channels that target no node or a
    path other than translation / rotation / scale / weights (e.g. KHR_animation_pointer) are
    skipped; ``path`` names the file in error messages."""
    channels, clips = [], []
    rd = reader
    for ai, anim in enumerate(gltf.animations or []):
        chans, lo, hi = [], math.inf, -math.inf
        for smp in anim.samplers or []:
            inp = rd.accessor(smp.input)[:, 0]
            if inp.size:
                lo, hi = min(lo, float(inp.min())), max(hi, float(inp.max()))
        for ci, ch in enumerate(anim.channels or []):
            tgt = ch.target
            if tgt is None or tgt.node is None or tgt.path not in ("translation", "rotation", "scale", "weights"):
                continue  # e.g. KHR_animation_pointer targets
            if not 0 <= tgt.node < num_nodes:
                raise Sv4dError(f"{path}: animation {ai} targets node {tgt.node}, which does not exist")
            try:
                smp = anim.samplers[ch.sampler]
            except (IndexError, TypeError) as e:
                raise Sv4dError(f"{path}: animation {ai} channel {ci} has no sampler") from e
            interp = smp.interpolation or "LINEAR"
            if interp not in ("LINEAR", "STEP", "CUBICSPLINE"):
                raise Sv4dError(f"{path}: animation {ai} uses unknown interpolation {interp!r}")
            times = rd.accessor(smp.input)[:, 0].astype(np.float64)
            if times.size == 0:
                continue
            if np.any(np.diff(times) < 0):
                raise Sv4dError(f"{path}: animation {ai} has key times that decrease")
            out = rd.accessor(smp.output, True)
            k = len(times)
            per_key = 3 if interp == "CUBICSPLINE" else 1
            if tgt.path == "weights":
                if out.size % (k * per_key):
                    raise Sv4dError(f"{path}: animation {ai} weights output does not match its keys")
                vals = out.reshape(k, per_key, -1)
            else:
                width = 4 if tgt.path == "rotation" else 3
                if out.shape != (k * per_key, width):
                    raise Sv4dError(
                        f"{path}: animation {ai} channel {ci} output has shape "
                        f"{out.shape}, expected {(k * per_key, width)}"
                    )
                vals = out.reshape(k, per_key, width)
            vals = vals if per_key == 3 else vals[:, 0]
            chans.append(Channel(int(tgt.node), tgt.path, interp, times, np.ascontiguousarray(vals)))
        if not math.isfinite(lo):
            lo = hi = 0.0
        name = anim.name if anim.name else f"animation_{ai}"
        channels.append(chans)
        clips.append(Clip(ai, name, lo, hi))
    return channels, clips

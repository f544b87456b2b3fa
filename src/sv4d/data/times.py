"""Frame times for rendering an animated asset into a multi-view video set.

:func:`clip_times`: ``n`` times spread over the clip with the end excluded, so a looping clip does
not repeat its first frame (``t_i = start + i * duration / n``). :func:`adaptive_times` (SV4D v1's
rule): from each chosen frame the step grows in units of ``duration / max_frames`` until the posed
geometry has moved by at least ``min_motion`` (mean vertex displacement, in units of the clip's
size). The cameras of a render come from :mod:`sv4d.cameras`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import Sv4dError

__all__ = ["clip_times", "adaptive_times"]


def clip_times(start: float, end: float, n: int) -> np.ndarray:
    """``n`` times ``start + i (end - start) / n`` (the end excluded: clips loop)."""
    if n < 1:
        raise Sv4dError(f"frames must be at least 1, got {n}")
    return start + np.arange(n) * ((end - start) / n)


def adaptive_times(
    pose: Callable[[float], np.ndarray],
    start: float,
    end: float,
    min_motion: float,
    max_frames: int = 64,
    size: float | None = None,
) -> np.ndarray:
    """Frame times chosen so consecutive frames differ enough.

    ``pose(t)`` gives the posed vertices (N, 3). The candidate times are the ``max_frames``
    steps of :func:`clip_times`; from each chosen frame the next one is the first candidate whose
    mean vertex displacement from it reaches ``min_motion * size`` (``size``: the longest side of
    the first frame's bounding box unless given). Always includes the first candidate; a clip that
    never moves enough gives one frame.
    """
    if min_motion <= 0:
        raise Sv4dError(f"the adaptive step's motion threshold must be positive, got {min_motion}")
    cand = clip_times(start, end, max_frames)
    verts = [np.asarray(pose(float(t)), np.float64) for t in cand]
    if size is None:
        size = float((verts[0].max(0) - verts[0].min(0)).max()) or 1.0
    chosen = [0]
    for i in range(1, len(cand)):
        if np.linalg.norm(verts[i] - verts[chosen[-1]], axis=1).mean() >= min_motion * size:
            chosen.append(i)
    return cand[chosen]

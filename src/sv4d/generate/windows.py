"""The window schedule: which frames each sampling pass generates (spec section 5.3).

The model makes ``T`` frames x ``V`` views per pass. A clip of ``n`` frames is covered
by windows of ``T`` consecutive frames. The first window is generated without reference
views; every later window is conditioned on the views already generated at its first
frame, so consecutive windows must overlap by at least one frame.

We place ``k = ceil((n - 1) / (T - 1))`` windows with starts spread evenly from 0 to
``n - T`` (rounded). Where the official script's settings apply (21 frames) this gives
exactly its schedule: sv4d2 (T = 12) -> starts 0, 9 (frames 0-11 then 9-20);
sv4d2_8views (T = 5) -> starts 0, 4, 8, 12, 16 (overlapping by one frame). A clip shorter
than one window is padded by repeating its last frame and trimmed afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import Sv4dError


@dataclass(frozen=True)
class Window:
    """One sampling pass: frames ``start .. start + length - 1`` of the (padded) clip."""

    index: int
    start: int
    length: int

    @property
    def frames(self) -> range:
        return range(self.start, self.start + self.length)

    @property
    def conditioned(self) -> bool:
        """Whether the pass sees reference views (the official ``cond_mv``): all but the first."""
        return self.index > 0


def window_starts(num_frames: int, window: int) -> list[int]:
    """Start frames of the windows covering ``num_frames`` frames (``num_frames >= window``)."""
    if window < 1:
        raise Sv4dError(f"window length must be >= 1, got {window}")
    if num_frames < window:
        raise Sv4dError(f"{num_frames} frames is shorter than one window of {window}; pad first")
    if num_frames == window:
        return [0]
    if window == 1:
        return list(range(num_frames))
    k = math.ceil((num_frames - 1) / (window - 1))
    last = num_frames - window
    return sorted({round(i * last / (k - 1)) for i in range(k)})


def plan_windows(num_frames: int, window: int) -> tuple[list[Window], int]:
    """Windows for a clip of ``num_frames`` frames and the padded length they cover.

    Returns (windows, padded_frames); ``padded_frames = max(num_frames, window)``.
    """
    if num_frames < 1:
        raise Sv4dError("the clip has no frames")
    padded = max(num_frames, window)
    starts = window_starts(padded, window)
    return [Window(i, s, window) for i, s in enumerate(starts)], padded


def describe(windows: list[Window]) -> str:
    """ "0-11, 9-20" style summary."""
    return ", ".join(f"{w.start}-{w.start + w.length - 1}" for w in windows)

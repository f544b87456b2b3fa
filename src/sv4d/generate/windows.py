"""The window schedule: which frames each sampling pass generates (spec section 5.3).

The model makes ``T`` frames x ``V`` views per pass. A clip of ``n`` frames is covered
by windows of ``T`` consecutive frames. A window starting at frame 0 is generated without
reference views; every other window is conditioned on the views already generated at its
first frame (the official ``cond_mv``), so each window must start on a generated frame.

Two schedules (``SCHEDULES``):

* ``even`` (the default): ``k = ceil((n - 1) / (T - 1))`` windows with starts spread evenly
  from 0 to ``n - T`` (rounded), each window once, in order. Where the official script's
  settings apply (21 frames) this is exactly its schedule: sv4d2 (T = 12) -> starts 0, 9
  (frames 0-11 then 9-20); sv4d2_8views (T = 5) -> starts 0, 4, 8, 12, 16.
* ``official``: the rule of the current official sampling script, for any length. Starts
  ``t0`` run over ``range(0, n, T - 1)`` for the 4-view model (sv4d2) and over
  ``range(0, n - T + 1, T - 1)`` for the 8-view one; a window with ``t0 + T > n`` is pulled
  back to ``t0 = n - T``. Windows run in that order, each overwriting the frames it
  generates. The list is reproduced exactly, repeats included: for sv4d2 the last start
  is always pulled back, so when ``n = 1 (mod T - 1)`` the last window repeats the one
  before it (n = 23, T = 12: starts 0, 11, 11; the second pass at 11 is conditioned on the
  first one's views of frame 11) and when ``n = T`` window 0 runs twice, unconditioned
  both times. The 8-view rule never pulls back and so leaves frames
  ``n - (n - T) % (T - 1)`` .. ``n - 1`` uncovered unless ``(n - T) % (T - 1) == 0``
  (n = 22, T = 5: frame 21); the official script fails there, we raise ``Sv4dError``.

A clip shorter than one window is padded by repeating its last frame (to ``T`` frames)
and trimmed afterwards; the schedule is planned on the padded length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import Sv4dError

SCHEDULES = ("even", "official")


@dataclass(frozen=True)
class Window:
    """One sampling pass, the ``index``-th to run: frames ``start .. start + length - 1`` of the
    (padded) clip."""

    index: int
    start: int
    length: int

    @property
    def frames(self) -> range:
        return range(self.start, self.start + self.length)

    @property
    def conditioned(self) -> bool:
        """Whether the pass sees reference views (the official ``cond_mv = t0 != 0``)."""
        return self.start != 0


def window_starts(num_frames: int, window: int) -> list[int]:
    """Start frames of the ``even`` windows covering ``num_frames`` frames (``num_frames >= window``)."""
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


def official_variant(views: int) -> str:
    """Which official rule a model of ``views`` novel views follows: ``"sv4d2"`` for 4 views,
    ``"sv4d2_8views"`` otherwise (the official scripts know only these two models)."""
    return "sv4d2" if views == 4 else "sv4d2_8views"


def official_starts(num_frames: int, window: int, views: int) -> list[int]:
    """Start frames of the official schedule in run order, repeats included (``num_frames >= window``).

    Raises ``Sv4dError`` naming the uncovered frames where the 8-view rule leaves a gap.
    """
    if window < 2:
        raise Sv4dError(f"the official window schedule needs windows of >= 2 frames, got {window}")
    if num_frames < window:
        raise Sv4dError(f"{num_frames} frames is shorter than one window of {window}; pad first")
    n, T = num_frames, window
    stop = n if official_variant(views) == "sv4d2" else n - T + 1
    starts = [min(t0, n - T) for t0 in range(0, stop, T - 1)]
    end = max(starts) + T  # every window starts on a generated frame, so frames 0 .. end - 1 are covered
    if end < n:
        gap = f"frame {end}" if end == n - 1 else f"frames {end}-{n - 1}"
        lower = n - (n - T) % (T - 1)
        raise Sv4dError(
            f"the official window schedule for {views} views (the sv4d2_8views rule: windows of {T} frames "
            f"at {', '.join(map(str, starts))}) leaves {gap} of {n} ungenerated; use the even schedule "
            f"(--windows even) or a frame count n with (n - {T}) % {T - 1} == 0, e.g. {lower} or {lower + T - 1}"
        )
    return starts


def plan_windows(
    num_frames: int, window: int, schedule: str = "even", *, views: int | None = None
) -> tuple[list[Window], int]:
    """Windows for a clip of ``num_frames`` frames, in run order, and the padded length they cover.

    schedule: ``"even"`` or ``"official"`` (see the module docstring); ``views``, the model's
    number of novel views V, picks the official rule (4 -> sv4d2's, else the 8-view one) and
    is required for ``"official"``. Returns (windows, padded_frames);
    ``padded_frames = max(num_frames, window)``.
    """
    if schedule not in SCHEDULES:
        raise Sv4dError(f"unknown window schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if num_frames < 1:
        raise Sv4dError("the clip has no frames")
    padded = max(num_frames, window)
    if schedule == "even":
        starts = window_starts(padded, window)
    elif views is None:
        raise Sv4dError("the official window schedule depends on the model: give its number of views")
    else:
        starts = official_starts(padded, window, views)
    return [Window(i, s, window) for i, s in enumerate(starts)], padded


def describe(windows: list[Window]) -> str:
    """ "0-11, 9-20" style summary in run order; a window that runs again is marked "(again)"."""
    seen: set[int] = set()
    parts = []
    for w in windows:
        parts.append(f"{w.start}-{w.start + w.length - 1}" + (" (again)" if w.start in seen else ""))
        seen.add(w.start)
    return ", ".join(parts)

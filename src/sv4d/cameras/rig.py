"""The rig of a multi-view video set: its cameras, their intrinsics and the frame times.

Every producer of a set (generate, render-asset, render ``--like``, degraded copies) builds a
:class:`Rig` and writes it with :func:`sv4d.io.multiview.write_multiview`; every reader gets
one back (``MultiViewSet.rig``). The fitter keeps the rig of the views and frames it fitted.

Time: frame times are seconds. The 4D fields are indexed by a *unit time* in [0, 1] that runs
from the first to the last frame of the whole set (:class:`TimeSpan`), so a subset of frames
keeps its place in time; this mapping is defined here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import Sv4dError
from .intrinsics import Intrinsics
from .orbit import ViewAngles, check_elevation, opencv_from_opengl, orbit_angles, orbit_c2w


def pose_matrix(value, what: str) -> np.ndarray:
    """``value`` as a (4, 4) float64 array (a copy), or an Sv4dError saying ``what`` must be a finite 4x4 matrix."""
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != (4, 4) or not np.isfinite(m).all():
        raise Sv4dError(f"{what} must be a finite 4x4 matrix")
    return m


@dataclass(frozen=True)
class View:
    """One camera: ``c2w`` (4, 4) float64 OpenGL camera-to-world; its orbit angles in degrees
    when the producer knew them (else they are computed from the camera centre)."""

    c2w: np.ndarray = field(repr=False)
    elevation_deg: float | None = None
    azimuth_deg: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "c2w", pose_matrix(self.c2w, "a view's c2w"))
        for name in ("elevation_deg", "azimuth_deg"):
            v = getattr(self, name)
            if v is not None:
                v = float(v)
                if not np.isfinite(v):
                    raise Sv4dError(f"a view's {name} must be finite, got {v}")
                object.__setattr__(self, name, v)

    @classmethod
    def on_orbit(cls, elevation_deg: float, azimuth_deg: float, distance: float) -> View:
        """A camera at (elevation, azimuth) on an orbit of radius ``distance``, looking at the origin."""
        e = check_elevation(elevation_deg)
        return cls(orbit_c2w(e, float(azimuth_deg), distance), e, float(azimuth_deg))

    @property
    def c2w_opencv(self) -> np.ndarray:
        """(4, 4) float64 OpenCV camera-to-world."""
        return opencv_from_opengl(self.c2w)

    @property
    def distance(self) -> float:
        """Distance of the camera centre from the origin."""
        return float(np.linalg.norm(self.c2w[:3, 3]))

    def angles(self) -> ViewAngles:
        """(elevation, azimuth) in degrees: as stored, else from the camera centre."""
        if self.elevation_deg is not None and self.azimuth_deg is not None:
            return ViewAngles(self.elevation_deg, self.azimuth_deg)
        e, a = orbit_angles(self.c2w)
        return ViewAngles(
            e if self.elevation_deg is None else self.elevation_deg, a if self.azimuth_deg is None else self.azimuth_deg
        )


@dataclass(frozen=True)
class TimeSpan:
    """Maps frame times in seconds to unit time: ``u = (t - origin) / span`` (all 0 when span is 0)."""

    origin: float
    span: float

    @classmethod
    def of(cls, times_s: Sequence[float] | np.ndarray) -> TimeSpan:
        """From the first to the last of ``times_s``."""
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        if t.size == 0:
            raise Sv4dError("a time span needs at least one frame time")
        return cls(float(t[0]), float(t[-1] - t[0]))

    def to_unit(self, times_s, clip: bool = False) -> np.ndarray:
        """(n,) float64 unit times of ``times_s`` (clipped to [0, 1] with ``clip``)."""
        t = np.asarray(times_s, dtype=np.float64)
        u = (t - self.origin) / self.span if self.span > 0 else np.zeros_like(t)
        return np.clip(u, 0.0, 1.0) if clip else u


@dataclass(frozen=True)
class Rig:
    """V cameras sharing one intrinsics, and n frame times in seconds.

    views: V :class:`View`; times: (n,) float64 seconds, finite and non-decreasing;
    camera_distance: the orbit radius when the producer used one (else None).
    """

    intrinsics: Intrinsics
    views: tuple[View, ...]
    times: np.ndarray = field(repr=False)
    camera_distance: float | None = None

    def __post_init__(self) -> None:
        views = tuple(self.views)
        if not views or not all(isinstance(v, View) for v in views):
            raise Sv4dError("a rig needs at least one View, and only Views")
        t = np.array(self.times, dtype=np.float64).reshape(-1)
        if t.size == 0 or not np.isfinite(t).all():
            raise Sv4dError("a rig needs at least one finite frame time")
        if (np.diff(t) < 0).any():
            raise Sv4dError("frame times must be non-decreasing")
        t.setflags(write=False)
        d = self.camera_distance
        if d is not None and not (np.isfinite(float(d)) and float(d) > 0):
            raise Sv4dError(f"camera_distance must be a positive number, got {d}")
        object.__setattr__(self, "views", views)
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "camera_distance", None if d is None else float(d))

    @classmethod
    def orbit(
        cls, views: Sequence[ViewAngles], distance: float, intrinsics: Intrinsics, times: Sequence[float] | np.ndarray
    ) -> Rig:
        """Cameras at ``views`` (elevation, azimuth) on one orbit of radius ``distance``."""
        return cls(intrinsics, tuple(View.on_orbit(e, a, distance) for e, a in views), times, float(distance))

    @property
    def num_views(self) -> int:
        return len(self.views)

    @property
    def num_frames(self) -> int:
        return len(self.times)

    @property
    def c2w(self) -> np.ndarray:
        """(V, 4, 4) float64 OpenGL camera-to-world matrices."""
        return np.stack([v.c2w for v in self.views])

    @property
    def elevation_deg(self) -> np.ndarray:
        """(V,) float64 elevations in degrees (from the camera centres where not stored)."""
        return np.array([v.angles().elevation_deg for v in self.views])

    @property
    def azimuth_deg(self) -> np.ndarray:
        """(V,) float64 azimuths in degrees (from the camera centres where not stored)."""
        return np.array([v.angles().azimuth_deg for v in self.views])

    @property
    def time_span(self) -> TimeSpan:
        """First to last frame time: the map from seconds to unit time."""
        return TimeSpan.of(self.times)

    def unit_times(self, frames: Sequence[int] | None = None) -> np.ndarray:
        """(n,) or (len(frames),) float64 unit times in [0, 1] over the whole set."""
        u = self.time_span.to_unit(self.times)
        return u if frames is None else u[list(frames)]

    def select(self, views: Sequence[int] | None = None, frames: Sequence[int] | None = None) -> Rig:
        """The rig of a subset of views and frames (indices into this rig)."""
        vs = self.views if views is None else tuple(self.views[i] for i in views)
        ts = self.times if frames is None else self.times[list(frames)]
        return replace(self, views=vs, times=ts)

    def at_height(self, height: int | None) -> Rig:
        """The same cameras for images resized to ``height`` rows (aspect kept)."""
        return replace(self, intrinsics=self.intrinsics.at_height(height))

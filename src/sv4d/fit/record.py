"""The fit checkpoint's record: what was fitted, from where, and with which options.

A :class:`FitRecord` travels inside ``checkpoint.pt`` as a plain dict (``torch.load`` with
``weights_only=True`` reads only plain values); :meth:`FitRecord.to_dict` writes the same keys
the checkpoints of earlier releases hold, and :meth:`FitRecord.from_dict` reads both. Readers
(`sv4d render`, `sv4d export`, resuming) use the typed fields, never string keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cameras import Intrinsics, Rig, TimeSpan, View
from ..errors import Sv4dError

#: options that must be the same to resume a fit
RESUME_FIELDS = (
    "source",
    "views",
    "frames",
    "resolution",
    "method",
    "seed",
    "settings",
    "visibility",
    "reference_views",
)


@dataclass(frozen=True)
class FitRecord:
    """One fit.

    rig: the fitted cameras (intrinsics at the fit resolution) and the fitted frames' times in
    seconds, ``camera_distance`` the mean distance of the fitted cameras; time_span: the source
    set's first-to-last-frame span (the fit's unit time); views, frames: indices into the set;
    settings: the method's settings as given (``--set``, plus defaults sv4d filled in);
    generated: the set came from ``sv4d generate``.
    """

    source: str
    method: str
    rig: Rig
    time_span: TimeSpan
    views: list[int]
    frames: list[int]
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    visibility: str = "auto"
    reference_views: list[int] = field(default_factory=lambda: [0])
    generated: bool = False

    @property
    def resolution(self) -> list[int]:
        """[height, width] of the fitted images."""
        return [self.rig.intrinsics.height, self.rig.intrinsics.width]

    @property
    def camera_distance(self) -> float:
        return float(self.rig.camera_distance)

    def unit_times(self) -> list[float]:
        """The fitted frames' times in [0, 1], as the fit saw them."""
        return [float(u) for u in self.time_span.to_unit(self.rig.times)]

    def intrinsics(self, height: int | None = None) -> Intrinsics:
        """The fitted cameras' intrinsics, for images ``height`` rows high (default: as fitted)."""
        return self.rig.intrinsics.at_height(height)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, in the layout of the checkpoint's ``meta``."""
        rig = self.rig
        return {
            "source": self.source,
            "views": list(self.views),
            "frames": list(self.frames),
            "resolution": self.resolution,
            "method": self.method,
            "seed": self.seed,
            "settings": dict(self.settings),
            "visibility": self.visibility,
            "reference_views": list(self.reference_views),
            "generated": self.generated,
            "times_s": [float(t) for t in rig.times],
            "camera_distance": self.camera_distance,
            "time_origin": self.time_span.origin,
            "time_span": self.time_span.span,
            "intrinsics": rig.intrinsics.to_dict(),
            "c2w": rig.c2w.astype(np.float32).tolist(),
            "azimuth_deg": rig.azimuth_deg.tolist(),
            "elevation_deg": rig.elevation_deg.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | os.PathLike = "checkpoint") -> FitRecord:
        """Read :meth:`to_dict`'s layout; a missing or malformed field is an Sv4dError naming it."""
        try:
            c2w = np.asarray(d["c2w"], dtype=np.float64)
            az, el = d.get("azimuth_deg"), d.get("elevation_deg")
            views = tuple(
                View(m, None if el is None else float(el[i]), None if az is None else float(az[i]))
                for i, m in enumerate(c2w)
            )
            rig = Rig(Intrinsics.from_dict(d["intrinsics"]), views, d["times_s"], float(d["camera_distance"]))
            return cls(
                source=str(d["source"]),
                method=str(d["method"]),
                rig=rig,
                time_span=TimeSpan(float(d["time_origin"]), float(d["time_span"])),
                views=[int(v) for v in d["views"]],
                frames=[int(f) for f in d["frames"]],
                seed=int(d.get("seed", 0)),
                settings=dict(d.get("settings") or {}),
                visibility=str(d.get("visibility", "auto")),
                reference_views=[int(v) for v in d.get("reference_views", [0])],
                generated=bool(d.get("generated", False)),
            )
        except (KeyError, TypeError, ValueError, IndexError, Sv4dError) as e:
            raise Sv4dError(
                f"{where}: the fit record is incomplete or malformed ({type(e).__name__}: {e}); "
                "was it written by sv4d fit?"
            ) from None

    def mismatch(self, other: FitRecord) -> str | None:
        """The first resume option (:data:`RESUME_FIELDS`) on which ``other`` differs, as a message."""
        mine, theirs = self.to_dict(), other.to_dict()
        for key in RESUME_FIELDS:
            a, b = mine.get(key), theirs.get(key)
            if key == "source":
                a, b = os.path.realpath(str(a)), os.path.realpath(str(b))
            if a != b:
                return f"{key}={mine.get(key)!r}, not {theirs.get(key)!r}"
        return None

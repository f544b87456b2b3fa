"""Pinhole intrinsics and the SV3D / SV4D field of view.

Intrinsics are in pixels for ``width`` x ``height`` images, pixel (u, v) centred at
(u + 0.5, v + 0.5), v growing downwards (:data:`PIXEL_CONVENTION`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import Sv4dError

SV4D_FOV_DEG = 33.8
"""Field of view (degrees, square images) of the SV3D / SV4D training renders; every generated
view, every asset render by default, and the shipped ground-truth sets use it."""

PIXEL_CONVENTION = "pixel (u,v) centre at (u+0.5, v+0.5); v grows downwards"


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for ``width`` x ``height`` images (pixel centres at +0.5)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 calibration matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fov_x_deg(self) -> float:
        """Horizontal field of view in degrees, ``2 atan(width / (2 fx))`` (centred principal point)."""
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx)))

    @property
    def fov_y_deg(self) -> float:
        """Vertical field of view in degrees, ``2 atan(height / (2 fy))``."""
        return math.degrees(2.0 * math.atan(self.height / (2.0 * self.fy)))

    @classmethod
    def from_fov(cls, fov_deg: float, width: int, height: int | None = None) -> Intrinsics:
        """Square pixels from the horizontal field of view (degrees); principal point at the centre."""
        height = width if height is None else height
        if not 0.0 < fov_deg < 180.0 or width <= 0 or height <= 0:
            raise Sv4dError(f"invalid camera: fov {fov_deg} deg, size {width}x{height}")
        f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(int(width), int(height), f, f, width / 2.0, height / 2.0)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera for images resized to ``width`` x ``height`` (whole image, no crop)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(int(width), int(height), self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    def at_height(self, height: int | None) -> Intrinsics:
        """The same camera for images resized to ``height`` rows, the width keeping the aspect ratio
        (rounded, at least 1); ``None`` keeps the size."""
        if height is None:
            return self
        return self.scaled(max(1, round(self.width * height / self.height)), int(height))

    def to_dict(self) -> dict[str, float | int]:
        """``{"width", "height", "fx", "fy", "cx", "cy"}`` (the fit checkpoint's layout)."""
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}

    @classmethod
    def from_dict(cls, d: dict) -> Intrinsics:
        """The inverse of :meth:`to_dict`."""
        try:
            return cls(
                int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"])
            )
        except (KeyError, TypeError, ValueError) as e:
            raise Sv4dError(f"intrinsics need width, height, fx, fy, cx, cy ({type(e).__name__}: {e})") from None

"""The cameras of a generated multi-view set (documented in the README).

SV3D / SV4D training renders look at an object normalised to the unit cube from an orbit
with a 33.8 degree field of view. We place the generated views on such an orbit:

* world frame: +Y up, azimuth about +Y with 0 on +Z (the input view), elevation above the
  XZ plane (``shared/data/multiview/README.md`` conventions);
* the object is taken to fit the cube [-0.5, 0.5]^3 centred at the origin, and the
  preprocessing makes its farthest point from the image centre sit at ``frame_ratio`` of
  the half-image, so the camera distance is ``0.5 / (frame_ratio * tan(fov / 2))``
  (1.829 for the default 0.9);
* view v is at (azimuth_v, elevation_v) with the same distance and intrinsics.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..errors import Sv4dError

FOV_DEG = 33.8
OBJECT_HALF_EXTENT = 0.5


def camera_distance(frame_ratio: float, fov_deg: float = FOV_DEG) -> float:
    """Orbit radius at which a half-extent of 0.5 at the origin fills ``frame_ratio`` of the half-image."""
    return OBJECT_HALF_EXTENT / (frame_ratio * math.tan(math.radians(fov_deg) / 2))


def view_angles(
    num_views: int,
    default_azimuths: Sequence[float],
    azimuths: Sequence[float] | None = None,
    elevations: float | Sequence[float] = 0.0,
    input_elevation: float | None = None,
) -> tuple[list[float], list[float]]:
    """Azimuths and elevations (degrees) of all V + 1 views, view 0 being the input.

    azimuths: V values for the novel views, relative to the input view (default: the
    model's). elevations: one value for every view (the official meaning) or V values
    for the novel views, the input then being at ``input_elevation`` (default 0).
    """
    if azimuths is None:
        az = [float(a) for a in default_azimuths[1:]]
    else:
        az = [float(a) for a in azimuths]
        if len(az) != num_views:
            raise Sv4dError(
                f"got {len(az)} azimuths, but this model generates {num_views} views per pass: "
                f"give exactly {num_views} values (degrees relative to the input view)"
            )
    if isinstance(elevations, (int, float)):
        els = [float(elevations)] * num_views
        el0 = float(elevations) if input_elevation is None else float(input_elevation)
    else:
        els = [float(e) for e in elevations]
        if len(els) == 1:
            return view_angles(num_views, default_azimuths, az, els[0], input_elevation)
        if len(els) != num_views:
            raise Sv4dError(
                f"got {len(els)} elevations for {num_views} novel views: give one value (all "
                f"views) or {num_views} values"
            )
        el0 = 0.0 if input_elevation is None else float(input_elevation)
    for e in [el0, *els]:
        if not -90.0 < e < 90.0:
            raise Sv4dError(f"elevations must be strictly between -90 and 90 degrees, got {e}")
    return [0.0, *az], [el0, *els]

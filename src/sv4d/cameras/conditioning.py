"""Camera angles as the model sees them: the views of one generation and their conditioning.

* :func:`model_views`: the V + 1 views of a generation (view 0 = the input), from the model's
  default azimuths or the user's, at one elevation or one per view;
* :func:`relative_angles`: the polar / azimuth conditioning of one window (spec section 5.2),
  bit-equal to the official script's float64 arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import Sv4dError
from .orbit import ViewAngles, check_elevation


def model_views(
    num_views: int,
    default_azimuths: Sequence[float],
    azimuths: Sequence[float] | None = None,
    elevations: float | Sequence[float] = 0.0,
    input_elevation: float | None = None,
) -> list[ViewAngles]:
    """(elevation, azimuth) in degrees of all V + 1 views, view 0 being the input (azimuth 0).

    default_azimuths: the model's V + 1 azimuths (input first); azimuths: V values for the novel
    views, relative to the input view (default: the model's). elevations: one value for every
    view (the official meaning) or V values for the novel views, the input then being at
    ``input_elevation`` (default 0).
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
    if any(not math.isfinite(a) for a in az):
        raise Sv4dError(f"azimuths must be finite numbers of degrees, got {az}")
    if isinstance(elevations, (int, float)):
        els = [float(elevations)] * num_views
        el0 = float(elevations) if input_elevation is None else float(input_elevation)
    else:
        els = [float(e) for e in elevations]
        if len(els) == 1:
            return model_views(num_views, default_azimuths, az, els[0], input_elevation)
        if len(els) != num_views:
            raise Sv4dError(
                f"got {len(els)} elevations for {num_views} novel views: give one value (all "
                f"views) or {num_views} values"
            )
        el0 = 0.0 if input_elevation is None else float(input_elevation)
    return [ViewAngles(check_elevation(e), a) for e, a in zip([el0, *els], [0.0, *az])]


def relative_angles(
    *,
    elevations_deg: float | Sequence[float],
    azimuths_deg: Sequence[float],
    num_frames: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Polar and azimuth conditioning (radians, float64) for one window.

    azimuths_deg: V + 1 values, view 0 being the input view; elevations_deg: one value or
    V + 1 values. Returns (polar, azimuth), each (T*V,) frame-major (row t*V + v) for the V
    novel views: ``polar = (polar_v - polar_0 + pi/2) mod 2pi`` with ``polar = 90deg - elev``,
    ``azimuth = (az_v - az_0) mod 2pi``. (Keyword-only: the two angle lists cannot be swapped.)
    """
    n = len(azimuths_deg)
    if n < 2:
        raise Sv4dError("need at least two azimuths (the input view and one novel view)")
    if isinstance(elevations_deg, (int, float)):
        elevs = [float(elevations_deg)] * n
    else:
        elevs = [float(e) for e in elevations_deg]
        if len(elevs) != n:
            raise Sv4dError(f"got {len(elevs)} elevations for {n} views; give one value or one per view")
    two_pi = 2 * math.pi
    polars = [math.radians(90.0 - e) for e in elevs]
    # Relative to the last view first, then to view 0, exactly as the official script
    # does: the first step cancels mathematically but keeps the float64 results bit-equal.
    az_last = azimuths_deg[-1]
    azims = [math.radians((a - az_last) % 360.0) for a in azimuths_deg]
    pol = [(polars[v] - polars[0] + math.pi / 2) % two_pi for v in range(1, n)]
    azi = [(azims[v] - azims[0]) % two_pi for v in range(1, n)]
    polar = torch.tensor(pol * num_frames, dtype=torch.float64)
    azimuth = torch.tensor(azi * num_frames, dtype=torch.float64)
    return polar, azimuth

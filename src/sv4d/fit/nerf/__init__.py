"""The dynamic NeRF method: a K-Planes field (:mod:`sv4d.fit.field`) marched only through occupied
cells, composited on white.

``config`` (:class:`NerfConfig`), ``sampling`` (ray/box, occupancy cells, fixed-step samples),
``renderer`` (:func:`render_rays`: volume rendering), ``model`` (:class:`DynamicNerf`: the field
and per-frame occupancy; render, density, colour, checkpoints) and ``fitter``
(:class:`NerfFitter`: optimiser, schedule, ray batches).
"""

from .config import NerfConfig
from .fitter import NerfFitter
from .model import DynamicNerf
from .renderer import render_rays

__all__ = ["DynamicNerf", "NerfConfig", "NerfFitter", "render_rays"]

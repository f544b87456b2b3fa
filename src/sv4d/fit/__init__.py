"""4D fitting: from a multi-view video set to a dynamic NeRF (``nerf``) or 4D Gaussians
(``gaussians``), with the SV4D 2.0 schedule; rendering and export (meshes by marching cubes in
:mod:`sv4d.fit.mesh`, written as OBJ/GLB by :mod:`sv4d.io.mesh`; Gaussians as PLY by :mod:`sv4d.io.ply`).
Entry points: :func:`sv4d.fit.run.fit_set`, :func:`sv4d.fit.run.load_fitted`; calling the package,
``sv4d.fit(SET, OUT, **options)``, runs :func:`fit`."""

from __future__ import annotations

import sys
import types
from typing import Any


def fit(source, out, *, resume: bool = False, overwrite: bool = False, progress: bool = True, **options: Any):
    """``sv4d.fit(SET, OUT, method="nerf", steps=3000, views=[0, 2, 4], ...)``: fit a multi-view video
    set into the folder OUT, as ``sv4d fit`` does; ``options`` are :class:`~sv4d.fit.run.FitOptions`
    fields. Returns the summary written to OUT/fit.json."""
    from dataclasses import fields

    from ..errors import Sv4dError
    from .run import FitOptions, fit_set

    known = {f.name for f in fields(FitOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise Sv4dError(f"unknown fit option(s) {unknown}; use {sorted(known)}")
    return fit_set(source, out, FitOptions(**options), resume=resume, overwrite=overwrite, progress=progress)


class _CallableModule(types.ModuleType):
    """``sv4d.fit`` is this package and, called, the function :func:`fit`."""

    def __call__(self, *args: Any, **kwargs: Any):
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

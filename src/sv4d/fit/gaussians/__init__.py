"""The 4D Gaussians method: canonical 3D Gaussians moved by a space-time deformation field.

``config`` (:class:`GaussianConfig` and the parameterisation's constants), ``deformation`` (the
field), ``rasterize`` (the differentiable tile rasteriser, gsplat on CUDA), ``model``
(:class:`GaussianModel`: parameters, render, export view, checkpoints), ``seeding`` (starting
Gaussians), ``densify`` (the 3DGS densification strategy) and ``fitter`` (:class:`GaussianFitter`).
"""

from .config import INITS, PER_GAUSSIAN, SH_C0, GaussianConfig
from .fitter import GaussianFitter
from .model import GaussianModel

__all__ = ["INITS", "PER_GAUSSIAN", "SH_C0", "GaussianConfig", "GaussianFitter", "GaussianModel"]

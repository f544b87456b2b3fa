"""Evaluation of predicted multi-view video sets against ground truth (``sv4d evaluate``)."""

from .grid import EvalGrid, load_grids
from .run import EvalOptions, evaluate

__all__ = ["EvalGrid", "EvalOptions", "evaluate", "load_grids"]

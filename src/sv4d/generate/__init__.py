"""Generation: preprocessing, the window schedule and the multi-view video pipeline."""

from .pipeline import GenerationPipeline, GenerationResult
from .windows import Window, plan_windows

__all__ = ["GenerationPipeline", "GenerationResult", "Window", "plan_windows"]

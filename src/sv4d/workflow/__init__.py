"""Whole jobs made of the pipelines: ``sv4d run`` (a clip to a 4D asset and a page to look at it)."""

from __future__ import annotations

from .run import STAGES, ModelCache, RunOptions, run_clip, summary_table

__all__ = ["ModelCache", "RunOptions", "run_clip", "summary_table", "STAGES"]

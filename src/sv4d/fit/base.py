"""What every 4D representation offers the optimisation loop, the renderer and the exporter.

A :class:`Fitter` owns its parameters and optimisers and draws its own training batches (rays
for the NeRF, whole images for the Gaussians) from a :class:`~sv4d.fit.data.FitData`. The
shared loop (:mod:`sv4d.fit.optimize`) decides the stage and which frames may be drawn at each
step (the SV4D 2.0 schedule: a static stage on one frame, then a dynamic stage with progressive
frame sampling) and saves checkpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, TypeVar

import torch

from ..cameras import Intrinsics
from ..errors import Sv4dError

STAGES = ("static", "dynamic")

C = TypeVar("C")


def config_from_dict(cls: type[C], d: dict[str, Any], what: str) -> C:
    """A method's frozen config from plain values (JSON, ``--set``, a checkpoint): unknown keys
    are an error naming the known ones; lists become tuples (``resolutions`` of ints)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise Sv4dError(f"unknown {what} setting(s) {unknown}; known: {sorted(names)}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    if "resolutions" in d:
        d["resolutions"] = tuple(int(r) for r in d["resolutions"])
    return cls(**d)


def check_stage(stage: str) -> str:
    """``stage`` if it is one of :data:`STAGES`, else an error naming them."""
    if stage not in STAGES:
        raise Sv4dError(f"unknown stage {stage!r}; use one of {STAGES}")
    return stage


@torch.no_grad()
def step_psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of one training batch in [0, 1] (any matching shapes), from its mean squared
    error floored at 1e-10: the figure every fitter's ``train_step`` reports."""
    return float(-10 * torch.log10(((pred - target) ** 2).mean().clamp_min(1e-10)))


class Fitter(ABC):
    """One representation being fitted.

    ``frames`` arguments are positions into ``data.frames`` (0..F-1), not set frame numbers;
    ``t`` is a time in [0, 1] (``data.times``). Camera matrices are OpenGL camera-to-world.
    """

    method: str = ""
    model: Any  # what is being fitted: renders with model.render(c2w, intrinsics, t) (no images needed)

    @abstractmethod
    def set_stage(self, stage: str) -> None:
        """'static': only the canonical (time-independent) part learns and time has no effect;
        'dynamic': everything learns (check the name with :func:`check_stage`)."""

    @abstractmethod
    def train_step(self, step: int, frames: Sequence[int], progress: float) -> dict[str, float]:
        """One optimiser step on a batch drawn from ``frames``; returns the loss terms (floats).

        ``progress`` in [0, 1] is how far the whole run is (by steps, or by wall-clock time when
        the run has a time budget): learning-rate decay and densification follow it, not ``step``.

        Losses: RGB (over white) and alpha against ``data.alpha``, each pixel multiplied by
        ``data.weight`` (V, F, H, W) when that is not None, plus the method's regularisers."""

    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        """Render one view without gradients: ``rgb`` (H, W, 3) over white in [0, 1],
        ``alpha`` (H, W) opacity, ``depth`` (H, W) expected distance along the ray (0 where empty);
        the model's own render."""
        return self.model.render(c2w, intrinsics, t)

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to resume: parameters, optimiser states, RNG-free counters, config."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

"""The SV4D 2.0 optimisation schedule, the loop that runs it, and fit checkpoints.

Schedule (paper change 5): a **static stage** first fits the canonical shape and appearance on
the reference frame alone with the time-dependent parts switched off; the **dynamic stage**
then trains everything with **progressive frame sampling**: it starts from every k-th frame
(k = ``frame_strides[0]``) and refines the stride step by step until all frames take part.
The loop's progress is counted in steps, or in wall-clock time when a time budget is given;
learning-rate decay follows that progress. Checkpoints hold the fitter state, the step, the
time spent and the data description, so an interrupted fit resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import Sv4dError
from ..io.atomic import atomic_file
from .base import Fitter

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Schedule:
    steps: int = 3000
    minutes: float = 0.0  # > 0: a wall-clock budget instead of a step count
    static_fraction: float = 0.1  # share of the run spent in the static stage
    frame_strides: tuple[int, ...] = (4, 2, 1)
    progressive_fraction: float = 0.4  # share of the dynamic stage before every frame is in
    reference_frame: int = 0  # position in the fitted frames of the static stage's frame

    def __post_init__(self) -> None:
        if self.steps < 1 and self.minutes <= 0:
            raise Sv4dError("give a positive number of steps or minutes")
        if not 0 <= self.static_fraction < 1:
            raise Sv4dError(f"static_fraction must be in [0, 1), got {self.static_fraction}")
        if not 0 <= self.progressive_fraction <= 1:
            raise Sv4dError(f"progressive_fraction must be in [0, 1], got {self.progressive_fraction}")
        if not self.frame_strides or any(int(s) < 1 for s in self.frame_strides):
            raise Sv4dError(f"frame_strides must be positive integers, got {self.frame_strides}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schedule:
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        if "frame_strides" in d:
            d["frame_strides"] = tuple(int(s) for s in d["frame_strides"])
        return cls(**d)

    def stage(self, progress: float) -> str:
        return "static" if progress < self.static_fraction else "dynamic"

    def frames(self, progress: float, n_frames: int) -> list[int]:
        """Positions of the frames a step at ``progress`` may draw from."""
        if not 0 <= self.reference_frame < n_frames:
            raise Sv4dError(f"reference frame {self.reference_frame} is not among the {n_frames} fitted frames")
        if self.stage(progress) == "static":
            return [self.reference_frame]
        q = (progress - self.static_fraction) / (1 - self.static_fraction)
        levels = len(self.frame_strides)
        level = (
            levels - 1
            if self.progressive_fraction == 0
            else min(int(q / self.progressive_fraction * levels), levels - 1)
        )
        stride = int(self.frame_strides[level])
        chosen = set(range(self.reference_frame % stride, n_frames, stride)) | {self.reference_frame}
        return sorted(chosen)


@dataclass
class Hook:
    """Something to do once, before the first step whose progress reaches ``at``."""

    at: float
    name: str
    run: Callable[[], None]


def save_checkpoint(
    path: str | os.PathLike,
    fitter: Fitter,
    step: int,
    elapsed: float,
    schedule: Schedule,
    meta: dict[str, Any],
    fired: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a resumable checkpoint (torch.save of tensors and plain values), atomically."""
    blob = {
        "version": CHECKPOINT_VERSION,
        "method": fitter.method,
        "step": int(step),
        "elapsed": float(elapsed),
        "schedule": asdict(schedule),
        "meta": meta,
        "state": fitter.state(),
        "fired": list(fired),
        "extra": extra or {},
    }
    with atomic_file(path) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise Sv4dError(f"{path}: no such checkpoint (a fit writes OUT/checkpoint.pt)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise Sv4dError(f"{path}: not a readable sv4d fit checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or blob.get("version") != CHECKPOINT_VERSION or "state" not in blob:
        raise Sv4dError(f"{path}: not an sv4d fit checkpoint (version {CHECKPOINT_VERSION})")
    return blob


@dataclass
class RunResult:
    step: int
    elapsed: float
    history: list[dict[str, float]]
    fired: list[str]


def optimize(
    fitter: Fitter,
    schedule: Schedule,
    n_frames: int,
    *,
    start_step: int = 0,
    start_elapsed: float = 0.0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    meta: dict[str, Any] | None = None,
    progress_bar: bool = True,
    log_every: int = 50,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    hooks: Sequence[Hook] = (),
    fired: Sequence[str] = (),
    extra: Callable[[], dict[str, Any]] | None = None,
) -> RunResult:
    """Run the schedule from ``start_step`` to the end; returns the final step, the optimisation
    time spent (seconds, across resumes) and the logged losses.

    ``hooks`` run once when progress first reaches their ``at`` (``fired`` names those that
    already ran before a resume); ``extra()`` adds tensors to each checkpoint. A checkpoint is
    written every ``checkpoint_every`` steps and at the end (and on Ctrl-C)."""
    step, spent = start_step, start_elapsed
    done = list(fired)
    budget = schedule.minutes * 60.0
    history: list[dict[str, float]] = []

    def progress_now() -> float:
        return spent / budget if budget > 0 else step / schedule.steps

    def save() -> None:
        if checkpoint is not None:
            save_checkpoint(
                checkpoint, fitter, step, spent, schedule, meta or {}, done, extra() if extra is not None else None
            )

    total = round(budget) if budget > 0 else schedule.steps
    bar = tqdm(
        total=total,
        initial=min(total, round(spent) if budget > 0 else step),
        disable=not progress_bar,
        unit="s" if budget > 0 else "step",
        desc=f"fit {fitter.method}",
        dynamic_ncols=True,
    )
    running: dict[str, float] = {}
    try:
        while progress_now() < 1.0:
            p = progress_now()
            for hook in hooks:
                if hook.name not in done and p >= hook.at:
                    hook.run()
                    done.append(hook.name)
            stage = schedule.stage(p)
            if stage != getattr(fitter, "stage", None):
                fitter.set_stage(stage)
            t0 = time.perf_counter()
            losses = fitter.train_step(step, schedule.frames(p, n_frames), p)
            dt = time.perf_counter() - t0
            spent += dt
            step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
            if step % log_every == 0:
                avg = {k: v / log_every for k, v in running.items()}
                avg.update(step=step, elapsed=spent, stage=0.0 if stage == "static" else 1.0)
                history.append(avg)
                running = {}
                bar.set_postfix(loss=f"{avg['loss']:.4f}", psnr=f"{avg.get('psnr', 0):.1f}", stage=stage)
                if on_log is not None:
                    on_log(step, avg)
            bar.update(dt if budget > 0 else 1)
            if checkpoint is not None and step % checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        raise
    bar.close()
    save()
    return RunResult(step, spent, history, done)

"""`sv4d fit` as a function: a multi-view video set in, a fitted 4D representation out.

OUT/ holds ``checkpoint.pt`` (rewritten as the fit goes, so an interrupted fit resumes),
``orbit.mp4`` (an orbit with continuous view and time change), ``train_views.mp4`` (each
training view: ground truth above, the fit below, through time) and ``fit.json`` (settings,
steps, time spent, training-view figures). Every file appears only when complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cameras import orbit_path
from ..devices import resolve_device
from ..errors import Sv4dError
from ..io.atomic import atomic_file
from ..io.multiview import read_multiview
from ..io.video import write_video
from .base import Fitter
from .data import FitData, load_fit_data
from .optimize import Hook, Schedule, load_checkpoint, optimize
from .record import FitRecord
from .render import Renderable, fit_metrics, render_grid, render_video
from .visibility import visibility_weights

METHODS = ("nerf", "gaussians")
VISIBILITY = ("auto", "on", "off")
CHECKPOINT = "checkpoint.pt"


@dataclass
class FitOptions:
    method: str = "nerf"
    views: Sequence[int] | None = None
    frames: Sequence[int] | None = None
    resolution: int | None = 128
    steps: int = 3000
    minutes: float = 0.0
    seed: int = 0
    device: str = "auto"  # resolved by sv4d.devices.resolve_device
    settings: dict[str, Any] = field(default_factory=dict)  # method settings (NerfConfig / GaussianConfig)
    schedule: dict[str, Any] = field(default_factory=dict)  # Schedule fields other than steps/minutes
    visibility: str = "auto"
    reference_views: Sequence[int] = (0,)  # set view indices that are real images
    visibility_floor: float = 0.2
    orbit_frames: int = 72
    orbit_elevation: float = 10.0
    fps: float = 24.0
    videos: bool = True


def _method_classes(method: str):
    if method == "nerf":
        from .nerf import NerfConfig, NerfFitter

        return NerfConfig, NerfFitter
    if method == "gaussians":
        from .gaussians import GaussianConfig, GaussianFitter

        return GaussianConfig, GaussianFitter
    raise Sv4dError(f"unknown method {method!r}; use one of {METHODS}")


def make_fitter(
    method: str,
    data: FitData,
    settings: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Fitter:
    config_cls, fitter_cls = _method_classes(method)
    return fitter_cls(data, config_cls.from_dict(settings or {}), device=device, seed=seed)


def load_fitted(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Renderable, FitRecord]:
    """A fit checkpoint -> (the fitted representation on ``device``, ready to render, and the fit's record)."""
    blob = load_checkpoint(path)
    record = FitRecord.from_dict(blob["meta"], path)
    method = blob["method"]
    device = resolve_device(device)
    if method == "nerf":
        from .nerf import DynamicNerf

        return DynamicNerf.from_state(blob["state"]["model"], device=device), record
    if method == "gaussians":
        from .gaussians import GaussianModel

        return GaussianModel.from_state(blob["state"]["model"]).to(device), record
    raise Sv4dError(f"{path}: unknown fit method {method!r}")


def fit_set(
    source: str | os.PathLike,
    out: str | os.PathLike,
    opts: FitOptions,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit ``source`` into ``out`` (see the module docstring); returns the summary in fit.json."""
    if opts.method not in METHODS:
        raise Sv4dError(f"unknown method {opts.method!r}; use one of {METHODS}")
    if opts.visibility not in VISIBILITY:
        raise Sv4dError(f"unknown visibility mode {opts.visibility!r}; use one of {VISIBILITY}")
    device = resolve_device(opts.device)
    out = Path(out)
    ckpt = out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise Sv4dError(f"{out} exists and is not a folder")
    if ckpt.exists() and not (resume or overwrite):
        raise Sv4dError(f"{out} already holds a fit: pass --resume to continue it or --overwrite to start again")
    s = read_multiview(source)
    generated = s.meta.get("generator") == "sv4d generate"
    data = load_fit_data(s, opts.views, opts.frames, opts.resolution)
    refs = [data.views.index(r) for r in opts.reference_views if r in data.views]
    use_vis = opts.visibility == "on" or (opts.visibility == "auto" and generated)
    if use_vis and not refs:
        raise Sv4dError(
            f"visibility weighting needs a reference (real) view among the fitted views "
            f"{data.views}; got reference views {list(opts.reference_views)}"
        )
    settings = dict(opts.settings)
    if generated and opts.method == "nerf":
        settings.setdefault("hull_misses", 1)  # generated masks can disagree a little
    distance = float(data.c2w[:, :3, 3].norm(dim=-1).mean())
    record = FitRecord(
        source=data.source,
        method=opts.method,
        rig=replace(data.rig, camera_distance=distance),
        time_span=data.time_span,
        views=list(data.views),
        frames=list(data.frames),
        seed=opts.seed,
        settings=settings,
        visibility=opts.visibility,
        reference_views=list(opts.reference_views),
        generated=generated,
    )
    schedule = Schedule(steps=opts.steps, minutes=opts.minutes, **opts.schedule)
    fitter = make_fitter(opts.method, data, settings, opts.seed, device)
    start_step, start_elapsed, fired = 0, 0.0, []
    if ckpt.exists() and resume:
        blob = load_checkpoint(ckpt)
        differs = FitRecord.from_dict(blob["meta"], ckpt).mismatch(record)
        if differs:
            raise Sv4dError(
                f"{ckpt} was fitted with {differs}: resume with the same options, or pass --overwrite to start again"
            )
        fitter.load_state(blob["state"])
        start_step, start_elapsed, fired = blob["step"], blob["elapsed"], list(blob.get("fired", []))
        if blob.get("extra", {}).get("weight") is not None:
            data.weight = blob["extra"]["weight"]
        schedule = Schedule.from_dict({**blob["schedule"], "steps": opts.steps, "minutes": opts.minutes})
    out.mkdir(parents=True, exist_ok=True)

    hooks = []
    model = fitter.model
    if use_vis:

        def refresh(per_frame: bool) -> None:
            data.weight = visibility_weights(
                model, data, refs, None if per_frame else [schedule.reference_frame], opts.visibility_floor
            )

        progressive_end = schedule.static_fraction + (1 - schedule.static_fraction) * schedule.progressive_fraction
        hooks = [
            Hook(schedule.static_fraction, "visibility_static", lambda: refresh(False)),
            Hook(progressive_end, "visibility_dynamic", lambda: refresh(True)),
        ]
    wall = time.perf_counter()
    result = optimize(
        fitter,
        schedule,
        data.shape[1],
        start_step=start_step,
        start_elapsed=start_elapsed,
        checkpoint=ckpt,
        meta=record.to_dict(),
        progress_bar=progress,
        hooks=hooks,
        fired=fired,
        extra=lambda: {"weight": data.weight},
    )
    wall = time.perf_counter() - wall
    t0 = time.perf_counter()
    rgb, alpha = render_grid(model, data.c2w, data.intrinsics, data.times.tolist(), progress=progress)
    render_s = (time.perf_counter() - t0) / max(1, rgb.shape[0] * rgb.shape[1])
    summary = {
        "method": opts.method,
        "source": data.source,
        "views": data.views,
        "frames": data.frames,
        "resolution": record.resolution,
        "steps": result.step,
        "optimisation_seconds": round(result.elapsed, 1),
        "wall_seconds_this_run": round(wall, 1),
        "device": str(device),
        "render_seconds_per_frame": round(render_s, 4),
        "visibility_weighting": use_vis,
        "settings": settings,
        "schedule": asdict(schedule),
        "training_views": {k: round(v, 4) for k, v in fit_metrics(rgb, alpha, data.rgb, data.alpha).items()},
        "final_losses": result.history[-1] if result.history else {},
    }
    if opts.videos:
        grid = torch.cat([torch.cat(list(data.rgb), 2), torch.cat(list(rgb), 2)], 1)  # (F, 2H, V*W, 3)
        write_video(out / "train_views.mp4", (grid.numpy() * 255 + 0.5).astype(np.uint8), min(opts.fps, 10.0))
        c2w, _, times = orbit_path(opts.orbit_frames, opts.orbit_elevation, distance)
        render_video(model, out / "orbit.mp4", c2w, data.intrinsics, times, opts.fps, progress)
    with atomic_file(out / "fit.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary

"""What `sv4d render` and `sv4d export` make from a fit checkpoint: orbit videos, multi-view
sets at another set's cameras, per-frame meshes and Gaussian PLY files."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import Sv4dError
from ..io.multiview import read_multiview, write_multiview
from .export import Mesh, mesh_from_field, write_gaussian_ply, write_glb, write_obj
from .render import orbit_path, render_grid, render_video
from .run import load_fitted, meta_intrinsics


def render_orbit(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *, frames: int = 72,
                 elevation: float = 10.0, turns: float = 1.0, time_loops: float = 1.0, time: float | None = None,
                 azimuth: float | None = None, resolution: int | None = None, fps: float = 24.0,
                 distance: float | None = None, progress: bool = True) -> Path:
    """An orbit video (see :func:`orbit_path`); ``time`` fixes the time, ``azimuth`` the view."""
    model, blob = load_fitted(checkpoint)
    meta = blob["meta"]
    if time is not None and not 0.0 <= time <= 1.0:
        raise Sv4dError(f"--time must be in [0, 1] (0 = first fitted frame, 1 = last), got {time}")
    intr = meta_intrinsics(meta, resolution)
    dist = distance or float(meta["camera_distance"])
    c2w, _, times = orbit_path(frames, elevation, dist, start_azimuth_deg=azimuth or 0.0,
                               turns=0.0 if azimuth is not None else turns, time_loops=time_loops)
    if time is not None:
        times = np.full_like(times, time)
    out = Path(out) if out else Path(checkpoint).with_name("orbit_render.mp4")
    if out.suffix.lower() != ".mp4":
        raise Sv4dError(f"{out}: the orbit is written as an .mp4 video")
    return render_video(model, out, c2w, intr, times, fps, progress)


def render_like(checkpoint: str | os.PathLike, like: str | os.PathLike, out: str | os.PathLike | None = None, *,
                resolution: int | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """Render the cameras of set ``like`` at its frame times (mapped into the fit's time range)
    and write them as a multi-view set (straight-alpha RGBA from the rendered colour and opacity)."""
    model, blob = load_fitted(checkpoint)
    meta = blob["meta"]
    s = read_multiview(like)
    out = Path(out) if out else Path(checkpoint).with_name(f"render_{Path(like).resolve().name}")
    if out.exists() and not overwrite:
        raise Sv4dError(f"{out} already exists; pass --overwrite to replace it")
    h = resolution or s.intrinsics.height
    intr = s.intrinsics.scaled(max(1, round(s.intrinsics.width * h / s.intrinsics.height)), h)
    span = float(meta["time_span"]) or 1.0
    t = np.clip((np.asarray(s.times, dtype=np.float64) - float(meta["time_origin"])) / span, 0.0, 1.0)
    c2w = torch.from_numpy(np.stack([np.asarray(v.c2w, dtype=np.float64) for v in s.views])).float()
    rgb, alpha = render_grid(model, c2w, intr, t.tolist(), progress=progress)
    a = alpha[..., None]
    straight = torch.where(a > 1e-4, (rgb - (1 - a)) / a.clamp_min(1e-4), torch.ones_like(rgb)).clamp(0, 1)
    rgba = (torch.cat([straight, a], -1).numpy() * 255 + 0.5).astype(np.uint8)
    extra = {"generator": "sv4d render", "checkpoint": str(Path(checkpoint).resolve()), "fit_method": blob["method"]}
    write_multiview(out, intrinsics=intr, views=s.views, times=np.asarray(s.times), rgba=rgba,
                    camera_distance=s.camera_distance, extra=extra, overwrite=overwrite, progress=progress)
    return out


def fit_times(meta: dict) -> list[float]:
    """The fitted frames' times in [0, 1], as the fit saw them."""
    span = float(meta["time_span"]) or 1.0
    return [(float(t) - float(meta["time_origin"])) / span for t in meta["times_s"]]


def _frame_positions(frames: Sequence[int] | None, n: int) -> list[int]:
    if frames is None:
        return list(range(n))
    bad = [f for f in frames if not 0 <= f < n]
    if bad:
        raise Sv4dError(f"frame position(s) {bad} do not exist: the fit has {n} frames (0..{n - 1})")
    return list(frames)


def export_mesh(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *,
                frames: Sequence[int] | None = None, fmt: str = "glb", resolution: int = 192,
                threshold: float | None = None, progress: bool = True) -> list[Path]:
    """Per-frame meshes of a NeRF fit (marching cubes on the density, vertex colours from the
    field) as OBJ or GLB; with GLB also ``sequence.glb`` holding every frame at its time."""
    if fmt not in ("glb", "obj"):
        raise Sv4dError(f"unknown mesh format {fmt!r}; use glb or obj")
    model, blob = load_fitted(checkpoint)
    if blob["method"] != "nerf":
        raise Sv4dError(f"{checkpoint} is a {blob['method']} fit: meshes come from NeRF fits "
                        "(export Gaussians with --ply)")
    meta = blob["meta"]
    level = threshold if threshold is not None else math.log(2.0) / model.step_size
    out = Path(out) if out else Path(checkpoint).parent / "mesh"
    positions = _frame_positions(frames, len(meta["frames"]))
    meshes: list[Mesh] = []
    paths = []
    for fi in tqdm(positions, desc="export", unit="frame", disable=not progress):
        t = fit_times(meta)[fi]
        mesh = mesh_from_field(lambda p: model.density(p, t), lambda p: model.color(p, t), model.bound,
                               resolution, level)
        meshes.append(mesh)
        path = out / f"mesh_frame_{meta['frames'][fi]:03d}.{fmt}"
        (write_glb(path, [mesh]) if fmt == "glb" else write_obj(path, mesh))
        paths.append(path)
    if fmt == "glb" and len(meshes) > 1:
        seconds = [float(meta["times_s"][fi]) - float(meta["times_s"][positions[0]]) for fi in positions]
        write_glb(out / "sequence.glb", meshes, seconds)
        paths.append(out / "sequence.glb")
    return paths


def export_ply(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *,
               frames: Sequence[int] | None = None, progress: bool = True) -> list[Path]:
    """The Gaussians at each fitted frame as 3DGS PLY files."""
    model, blob = load_fitted(checkpoint)
    if blob["method"] != "gaussians":
        raise Sv4dError(f"{checkpoint} is a {blob['method']} fit: PLY files come from Gaussian fits "
                        "(export a NeRF with --mesh)")
    meta = blob["meta"]
    out = Path(out) if out else Path(checkpoint).parent / "ply"
    paths = []
    for fi in tqdm(_frame_positions(frames, len(meta["frames"])), desc="export", unit="frame", disable=not progress):
        g = model.gaussians_at(fit_times(meta)[fi])
        path = out / f"gaussians_frame_{meta['frames'][fi]:03d}.ply"
        write_gaussian_ply(path, g["means"], g["quats"], g["log_scales"], g["opacity_logits"], g["sh_dc"])
        paths.append(path)
    return paths

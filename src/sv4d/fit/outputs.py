"""What `sv4d render` and `sv4d export` make from a fit checkpoint: orbit videos, multi-view
sets at another set's cameras, per-frame meshes and Gaussian PLY files.

Every output appears only when complete (a temporary name renamed at the end); an existing one
is replaced only with ``overwrite``. ``frames`` are frame numbers of the fitted set (as in
``sv4d fit --frames``), among those the fit used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..cameras import orbit_path
from ..errors import Sv4dError
from ..io.atomic import atomic_folder
from ..io.mesh import Mesh, write_glb, write_obj
from ..io.multiview import read_multiview, write_multiview
from ..io.ply import write_gaussian_ply
from .animate import FitSurface, export_animated
from .mesh import point_colors
from .record import FitRecord
from .render import render_grid, render_video
from .run import load_fitted

#: spherical-harmonics degrees a PLY can carry (f_rest_* holds 3 * ((d + 1)^2 - 1) numbers)
SH_DEGREES = (0, 1, 2, 3)


def _check_free(out: Path, overwrite: bool) -> None:
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise Sv4dError(f"{out} already exists; pass --overwrite to replace it (or choose another --out)")


def render_orbit(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    frames: int = 72,
    elevation: float = 10.0,
    turns: float = 1.0,
    time_loops: float = 1.0,
    time: float | None = None,
    azimuth: float | None = None,
    resolution: int | None = None,
    fps: float = 24.0,
    distance: float | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """An orbit video of ``frames`` images (see :func:`sv4d.cameras.orbit_path`); ``time`` fixes the
    time, ``azimuth`` the view."""
    if time is not None and not 0.0 <= time <= 1.0:
        raise Sv4dError(f"--time must be in [0, 1] (0 = first fitted frame, 1 = last), got {time}")
    out = Path(out) if out else Path(checkpoint).with_name("orbit_render.mp4")
    if out.suffix.lower() != ".mp4":
        raise Sv4dError(f"{out}: the orbit is written as an .mp4 video")
    _check_free(out, overwrite)
    model, record = load_fitted(checkpoint, device)
    intr = record.intrinsics(resolution)
    dist = distance or record.camera_distance
    c2w, _, times = orbit_path(
        frames,
        elevation,
        dist,
        start_azimuth_deg=azimuth or 0.0,
        turns=0.0 if azimuth is not None else turns,
        time_loops=time_loops,
    )
    if time is not None:
        times = np.full_like(times, time)
    return render_video(model, out, c2w, intr, times, fps, progress)


def render_like(
    checkpoint: str | os.PathLike,
    like: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    frames: Sequence[int] | None = None,
    resolution: int | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Render the cameras of set ``like`` at its frame times (``frames``: a selection of them; mapped
    into the fit's time range) and write them as a multi-view set (straight-alpha RGBA from the
    rendered colour and opacity)."""
    out = Path(out) if out else Path(checkpoint).with_name(f"render_{Path(like).resolve().name}")
    _check_free(out, overwrite)
    s = read_multiview(like)
    if frames is not None:
        bad = [f for f in frames if not 0 <= f < s.num_frames]
        if bad:
            raise Sv4dError(f"frame(s) {bad} do not exist: {like} has {s.num_frames} frames (0..{s.num_frames - 1})")
    model, record = load_fitted(checkpoint, device)
    rig = s.rig.select(frames=frames).at_height(resolution)
    t = record.time_span.to_unit(rig.times, clip=True)
    rgb, alpha = render_grid(model, torch.from_numpy(rig.c2w).float(), rig.intrinsics, t.tolist(), progress=progress)
    a = alpha[..., None]
    straight = torch.where(a > 1e-4, (rgb - (1 - a)) / a.clamp_min(1e-4), torch.ones_like(rgb)).clamp(0, 1)
    rgba = (torch.cat([straight, a], -1).numpy() * 255 + 0.5).astype(np.uint8)
    extra = {"generator": "sv4d render", "checkpoint": str(Path(checkpoint).resolve()), "fit_method": record.method}
    if frames is not None:
        extra["frames_of_source"] = [int(f) for f in frames]
    write_multiview(out, rig, rgba=rgba, extra=extra, overwrite=overwrite, progress=progress)
    return out


def _frame_positions(frames: Sequence[int] | None, record: FitRecord) -> list[int]:
    """Positions among the fitted frames of the set frame numbers ``frames`` (default: all)."""
    if frames is None:
        return list(range(len(record.frames)))
    missing = [f for f in frames if f not in record.frames]
    if missing:
        raise Sv4dError(f"frame(s) {missing} were not fitted: the fit has the set's frames {record.frames}")
    return [record.frames.index(f) for f in frames]


def export_mesh(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    frames: Sequence[int] | None = None,
    fmt: str = "glb",
    grid: int = 192,
    threshold: float | None = None,
    flipbook: bool = False,
    faces: int = 20000,
    reference_frame: int | None = None,
    texture: int = 1024,
    texture_frames: str = "reference",
    texture_format: str = "jpeg",
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """The meshes of a fit, into the folder ``out`` (default: the checkpoint's folder/mesh).

    By default one tracked mesh (:mod:`sv4d.fit.animate`): ``animated.glb`` (a template of about
    ``faces`` triangles from the surface at ``reference_frame`` — default the first exported frame —
    with a morph target per frame, a ``texture``-texel square texture, or 8-bit vertex colours with
    ``texture=0``; JPEG, or ``texture_format="png"``), ``tracked_mesh.npz`` (the per-frame vertex
    positions) and ``report.json``;
    ``fmt="obj"`` adds one OBJ per frame of the same mesh.

    ``flipbook``: marching cubes at every frame instead (``grid``^3 samples of the density, vertex
    colours from the field), one file per frame as OBJ or GLB, with GLB also ``sequence.glb``
    holding every frame at its time (a flip-book animation)."""
    if fmt not in ("glb", "obj"):
        raise Sv4dError(f"unknown mesh format {fmt!r}; use glb or obj")
    if not flipbook and (faces < 100 or not (texture == 0 or 64 <= texture <= 8192)):
        raise Sv4dError(
            f"the face budget must be at least 100 and the texture 0 or 64..8192 texels, got {faces}, {texture}"
        )
    out = Path(out) if out else Path(checkpoint).parent / "mesh"
    _check_free(out, overwrite)
    model, record = load_fitted(checkpoint, device)
    positions = _frame_positions(frames, record)
    if not flipbook:
        return export_animated(
            model,
            record,
            out,
            positions,
            faces=faces,
            grid=grid,
            threshold=threshold,
            reference_frame=reference_frame,
            texture=texture,
            texture_frames=texture_frames,
            texture_format=texture_format,
            obj=fmt == "obj",
            progress=progress,
        )
    surface = FitSurface(model, record.method, grid, threshold)
    unit, seconds = record.unit_times(), record.rig.times
    meshes: list[Mesh] = []
    names = []
    with atomic_folder(out) as tmp:
        for fi in tqdm(positions, desc="export", unit="frame", disable=not progress):
            mesh = surface.surface(unit[fi])
            mesh.colors = point_colors(surface.color_fn(unit[fi]), mesh.vertices)
            meshes.append(mesh)
            name = f"mesh_frame_{record.frames[fi]:03d}.{fmt}"
            (write_glb(tmp / name, [mesh]) if fmt == "glb" else write_obj(tmp / name, mesh))
            names.append(name)
        if fmt == "glb" and len(meshes) > 1:
            write_glb(
                tmp / "sequence.glb", meshes, [float(seconds[fi]) - float(seconds[positions[0]]) for fi in positions]
            )
            names.append("sequence.glb")
    return [out / n for n in names]


def export_ply(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    frames: Sequence[int] | None = None,
    sh_degree: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """The Gaussians at each fitted frame as 3DGS PLY files, in the folder ``out`` (default: the
    checkpoint's folder/ply). Our fits have view-independent colour (SH degree 0); ``sh_degree``
    1 to 3 adds the ``f_rest_*`` fields of that degree, zero, for loaders that expect them (the
    reference 3DGS code and most viewers read degree 3)."""
    if sh_degree not in SH_DEGREES:
        raise Sv4dError(f"SH degree must be one of {SH_DEGREES}, got {sh_degree}")
    out = Path(out) if out else Path(checkpoint).parent / "ply"
    _check_free(out, overwrite)
    model, record = load_fitted(checkpoint, device)
    if record.method != "gaussians":
        raise Sv4dError(
            f"{checkpoint} is a {record.method} fit: PLY files come from Gaussian fits (export a NeRF with --mesh)"
        )
    unit = record.unit_times()
    names = []
    with atomic_folder(out) as tmp:
        for fi in tqdm(_frame_positions(frames, record), desc="export", unit="frame", disable=not progress):
            g = model.gaussians_at(unit[fi])
            name = f"gaussians_frame_{record.frames[fi]:03d}.ply"
            rest = torch.zeros(len(g["means"]), (sh_degree + 1) ** 2 - 1, 3) if sh_degree else None
            write_gaussian_ply(
                tmp / name, g["means"], g["quats"], g["log_scales"], g["opacity_logits"], g["sh_dc"], rest
            )
            names.append(name)
    return [out / n for n in names]


def export(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, **options) -> list[Path]:
    """What ``sv4d export`` writes by default for a fit: the animated mesh (:func:`export_mesh`) for
    a NeRF, PLY files (:func:`export_ply`) for 4D Gaussians; ``options`` go to that function."""
    from .optimize import load_checkpoint

    method = load_checkpoint(checkpoint)["method"]
    return (export_mesh if method == "nerf" else export_ply)(checkpoint, out, **options)

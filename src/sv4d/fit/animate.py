"""The animated mesh of a fit: one template mesh moving through every exported frame with the same
vertices and faces, textured (or vertex-coloured), written as one GLB with a morph target per frame.

* NeRF fits have no canonical space: the template is the field's surface at the reference frame
  (marching cubes with the cavities filled, floaters removed, decimated to the face budget, its
  triangles evened out on the surface by :func:`sv4d.fit.tracking.relax_mesh`) and is
  tracked frame to frame onto the field's surface at each frame (:func:`sv4d.fit.tracking.track_surfaces`).
* Gaussian fits have one: the template is the surface of the canonical Gaussians, and its vertices
  are moved by the fit's deformation field, as the Gaussians are.

Every frame is compared with the field's own surface at that frame (:class:`FrameReport`); what
tracking cannot follow is reported, and a fit whose surface the mesh cannot follow at all is
refused (export it as per-frame meshes, ``flipbook``, instead).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import Sv4dError
from ..io.animated_glb import write_animated_glb
from ..io.atomic import atomic_folder
from ..io.mesh import Mesh, write_obj
from .mesh import eval_points, fill_interior, marching_cubes_mesh, mesh_from_field, point_colors
from .tracking import (
    FrameReport,
    TrackingOptions,
    clean_mesh,
    decimate_mesh,
    mesh_quality,
    relax_mesh,
    surface_report,
    track_surfaces,
)

__all__ = [
    "AnimatedMesh",
    "FitSurface",
    "animate_fit",
    "write_animated",
    "export_animated",
    "REFUSE_P95",
    "REFUSE_UNCOVERED",
]

#: a frame whose tracked vertices lie farther than this (95th percentile, fraction of the diagonal)
#: from the field's surface, or that leaves more than REFUSE_UNCOVERED of that surface
#: unfollowed, makes the export refuse the fit
REFUSE_P95 = 0.05
REFUSE_UNCOVERED = 0.25


class TrackingRefused(Sv4dError):
    """One mesh cannot follow the fit's surface (the frames and figures are in the message); per-frame
    meshes (``flipbook``) can still be exported."""


class FitSurface:
    """A fitted model's surface at a time, its colour and (for Gaussians) its motion.

    level: the density level of the surface (NeRF: where one ray step through it is 29% opaque,
    1 - 2^-1/2 — the level whose silhouettes match the fit's rendered opacity > 0.5 best, measured
    on fox_walk: IoU 0.96-0.975 against 0.91-0.93 at 50%; Gaussians: half an opaque Gaussian's peak).
    """

    def __init__(self, model, method: str, grid: int, threshold: float | None = None) -> None:
        self.model, self.method, self.grid = model, method, int(grid)
        if method == "nerf":
            self.level = threshold if threshold is not None else 0.5 * math.log(2.0) / model.step_size
        elif method == "gaussians":
            from .gaussians.surface import SURFACE_LEVEL

            self.level = threshold if threshold is not None else SURFACE_LEVEL
        else:
            raise Sv4dError(f"cannot mesh a {method} fit")
        self.bound = float(model.bound)

    @property
    def canonical(self) -> bool:
        """The fit has a canonical space and a deformation field (Gaussians)."""
        return self.method == "gaussians"

    def _gaussian_mesh(self, g: dict[str, torch.Tensor]) -> Mesh:
        from .gaussians.surface import density_grid

        dens = density_grid(g["means"], g["quats"], g["log_scales"], g["opacities"], self.bound, self.grid)
        return marching_cubes_mesh(fill_interior(dens, self.level), (-self.bound, self.bound), self.level)

    @torch.no_grad()
    def surface(self, t: float | None) -> Mesh:
        """The surface at unit time ``t`` (Gaussians: None = the canonical Gaussians), cleaned."""
        if self.method == "nerf":
            m = self.model
            mesh = mesh_from_field(lambda p: m.density(p, t), None, self.bound, self.grid, self.level, solid=True)
        else:
            g = self.model.deformed(t) if t is not None else self.model.canonical()
            mesh = self._gaussian_mesh(g)
        return clean_mesh(mesh)

    def color_fn(self, t: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """Points (P, 3) -> sRGB (P, 3) at unit time t (Gaussians: None = in the canonical space)."""
        if self.method == "nerf":
            return lambda p: self.model.color(p, t)
        from .gaussians.surface import colors_near

        with torch.no_grad():
            g = self.model.canonical() if t is None else self.model.deformed(t)
        return lambda p: colors_near(p, g["means"], g["quats"], g["log_scales"], g["opacities"], g["colors"])

    @torch.no_grad()
    def moved(self, canonical: np.ndarray, t: float) -> np.ndarray:
        """Gaussians: canonical points (N, 3) carried by the deformation field to unit time t."""
        m = self.model
        if m.static:
            return canonical.copy()
        return canonical + eval_points(
            lambda p: m.deform(p, t)[0], canonical, 3, "deformation", device=m.params["means"].device
        )


@dataclass
class AnimatedMesh:
    """The tracked mesh: ``vertices`` (F, N, 3) float32 world positions of one mesh with ``faces``
    (M, 3) at the exported ``frames`` (set frame numbers) at ``times`` (seconds from the first);
    ``reference``: the position of the template's frame among them (Gaussians: None, canonical);
    ``reports``: one per frame; ``quality``: :func:`sv4d.fit.tracking.mesh_quality` figures;
    ``rest``: the template's own positions (the reference frame's, or the canonical ones), where
    colour is baked and UVs are made."""

    vertices: np.ndarray
    faces: np.ndarray
    times: np.ndarray
    frames: list[int]
    unit_times: list[float]
    reference: int | None
    reports: list[FrameReport]
    quality: dict
    template_faces_before: int
    rest: np.ndarray

    @property
    def diagonal(self) -> float:
        """The template's bounding-box diagonal."""
        return float(np.linalg.norm(np.ptp(self.rest, axis=0)))

    def problems(self) -> list[str]:
        """One line per frame whose surface the mesh does not follow (see REFUSE_*)."""
        out = []
        for f, r in zip(self.frames, self.reports):
            if r.distance_p95 > REFUSE_P95 * self.diagonal or max(r.uncovered, r.bridging) > REFUSE_UNCOVERED:
                out.append(
                    f"frame {f}: 95% of the vertices within {r.distance_p95 / self.diagonal:.1%} of the diagonal "
                    f"of the surface, {r.uncovered:.0%} of the surface not followed, {r.bridging:.0%} of the "
                    "triangles off it"
                )
        return out


def animate_fit(
    surface: FitSurface,
    frames: Sequence[int],
    unit_times: Sequence[float],
    seconds: Sequence[float],
    *,
    reference: int = 0,
    faces: int = 20000,
    options: TrackingOptions | None = None,
    progress: bool = True,
) -> AnimatedMesh:
    """Build and track the template (see the module's description). ``reference``: the position
    among ``frames`` of the template's frame (NeRF fits)."""
    nf = len(frames)
    if nf == 0:
        raise Sv4dError("no frames to export")
    ref = None if surface.canonical else reference
    if ref is not None and not 0 <= ref < nf:
        raise Sv4dError(f"the reference frame must be one of the exported frames {list(frames)}")
    bar = tqdm(total=nf + 1, desc="tracked mesh", unit="frame", disable=not progress)
    try:
        before = surface.surface(None if ref is None else unit_times[ref])
        template = relax_mesh(decimate_mesh(before, faces), before)
        bar.update(1)
        if ref is None:  # moved by the deformation field
            diag = float(np.linalg.norm(np.ptp(template.vertices, axis=0)))
            verts, reports = [], []
            for t in unit_times:
                v = surface.moved(template.vertices.astype(np.float64), t)
                verts.append(v)
                reports.append(surface_report(v, template.faces, surface.surface(t), diag))
                bar.update(1)
            vertices = np.stack(verts).astype(np.float32)
        else:  # tracked onto the surface of every frame
            vertices, reports = track_surfaces(template, surface.surface, unit_times, ref, options, progress=bar.update)
    finally:
        bar.close()
    t = np.asarray(seconds, np.float64)
    return AnimatedMesh(
        vertices=vertices,
        faces=template.faces,
        times=t - t[0],
        frames=[int(f) for f in frames],
        unit_times=[float(u) for u in unit_times],
        reference=ref,
        reports=reports,
        quality=mesh_quality(vertices, template.faces),
        template_faces_before=len(before.faces),
        rest=template.vertices,
    )


def write_animated(
    out: Path,
    anim: AnimatedMesh,
    surface: FitSurface,
    *,
    texture: int = 1024,
    texture_frames: str = "reference",
    texture_format: str = "jpeg",
    obj: bool = False,
    extra: dict | None = None,
) -> list[str]:
    """Write ``animated.glb``, ``tracked_mesh.npz`` and ``report.json`` (and with ``obj`` one OBJ per
    frame, same topology) into the existing folder ``out``; returns the file names.

    texture: the square texture's side in texels, or 0 for 8-bit vertex colours.
    texture_frames: "reference" bakes colour at the template's frame; "all" averages it over the
        exported frames.
    texture_format: "jpeg" (quality 92, no chroma subsampling; keeps a 21-frame, 20k-face GLB
        under 5 MB) or "png" (lossless)."""
    if texture_frames not in ("reference", "all"):
        raise Sv4dError(f"texture_frames must be 'reference' or 'all', got {texture_frames!r}")
    t0 = time.perf_counter()
    if surface.canonical:  # colour lives in the canonical space
        colour_frames = [(anim.rest, surface.color_fn(None))]
    elif texture_frames == "all":
        colour_frames = [(anim.vertices[k], surface.color_fn(u)) for k, u in enumerate(anim.unit_times)]
    else:
        colour_frames = [(anim.rest, surface.color_fn(anim.unit_times[anim.reference]))]
    names = ["animated.glb", "tracked_mesh.npz", "report.json"]
    arrays = {
        "vertices": anim.vertices,
        "faces": anim.faces.astype(np.int32),
        "times": anim.times.astype(np.float32),
        "frames": np.asarray(anim.frames, np.int32),
    }
    if texture:
        from .texture import bake_texture, uv_unwrap

        layout = uv_unwrap(anim.rest, anim.faces, resolution=texture)
        image = bake_texture(layout, [(v[layout.vmap], fn) for v, fn in colour_frames], size=texture)
        write_animated_glb(
            out / "animated.glb",
            anim.vertices[:, layout.vmap],
            layout.faces,
            anim.times,
            uv=layout.uv,
            texture=image,
            image_format=texture_format,
        )
        arrays.update(uv=layout.uv, uv_vertex=layout.vmap.astype(np.int32), uv_faces=layout.faces)
    else:
        cols = np.mean([point_colors(fn, v) for v, fn in colour_frames], axis=0)
        write_animated_glb(out / "animated.glb", anim.vertices, anim.faces, anim.times, colors=cols)
        arrays["colors"] = cols.astype(np.float32)
    np.savez_compressed(out / "tracked_mesh.npz", **arrays)
    if obj:
        for k, f in enumerate(anim.frames):
            write_obj(out / f"mesh_frame_{f:03d}.obj", Mesh(anim.vertices[k], anim.faces))
            names.append(f"mesh_frame_{f:03d}.obj")
    report = {
        "kind": "tracked mesh",
        "vertices": int(anim.vertices.shape[1]),
        "faces": int(len(anim.faces)),
        "template_frame": None if anim.reference is None else anim.frames[anim.reference],
        "template_faces_before_decimation": anim.template_faces_before,
        "texture": int(texture),
        "texture_frames": texture_frames,
        "texture_format": texture_format if texture else None,
        "quality": anim.quality,
        "frames": [
            {"frame": f, "time_s": float(t), **r.to_dict()} for f, t, r in zip(anim.frames, anim.times, anim.reports)
        ],
        "write_seconds": round(time.perf_counter() - t0, 2),
        **(extra or {}),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return names


def export_animated(
    model,
    record,
    out: str | os.PathLike,
    positions: Sequence[int],
    *,
    faces: int = 20000,
    grid: int = 192,
    threshold: float | None = None,
    reference_frame: int | None = None,
    texture: int = 1024,
    texture_frames: str = "reference",
    texture_format: str = "jpeg",
    obj: bool = False,
    options: TrackingOptions | None = None,
    progress: bool = True,
) -> list[Path]:
    """The tracked, textured animated mesh of a loaded fit (``positions``: the exported frames'
    positions among the fitted ones), written into the new folder ``out``."""
    t0 = time.perf_counter()
    surface = FitSurface(model, record.method, grid, threshold)
    frames = [record.frames[p] for p in positions]
    if reference_frame is None:
        reference = 0
    elif reference_frame in frames:
        reference = frames.index(reference_frame)
    else:
        raise Sv4dError(f"--reference-frame {reference_frame} is not among the exported frames {frames}")
    unit, seconds = record.unit_times(), record.rig.times
    anim = animate_fit(
        surface,
        frames,
        [unit[p] for p in positions],
        [float(seconds[p]) for p in positions],
        reference=reference,
        faces=faces,
        options=options,
        progress=progress,
    )
    problems = anim.problems()
    if problems:
        raise TrackingRefused(
            "cannot track this fit's surface with one mesh:\n  "
            + "\n  ".join(problems)
            + "\nexport per-frame meshes instead (--flipbook), or try another --reference-frame"
        )
    track_seconds = time.perf_counter() - t0
    with atomic_folder(out) as tmp:
        names = write_animated(
            tmp,
            anim,
            surface,
            texture=texture,
            texture_frames=texture_frames,
            texture_format=texture_format,
            obj=obj,
            extra={
                "method": record.method,
                "grid": grid,
                "level": surface.level,
                "track_seconds": round(track_seconds, 2),
            },
        )
    return [Path(out) / n for n in names]

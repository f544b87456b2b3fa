"""``sv4d render-asset``: an animated glTF/GLB asset -> a multi-view video set.

The clip is posed at every frame time (``data.gltf``), optionally rectified (each frame moved
so the most static part of the object stays put, ``data.curate.rectify_offsets``), normalised
once for the whole clip in the conventions of ``shared/data/multiview/README.md``
(``v_norm = scale * (R_y(yaw) v - center)``: the clip's bounding box centred at the origin
with its longest side 1), and rasterised from every camera (``data.render``). The set gets
``rgba/``, ``rgb_white/``, ``cameras.json`` (with the asset, clip, normalisation and render
settings), optionally ``depth/`` (uint16, camera z * 10000, 0 = background) and
``geometry.npz`` (the normalised posed vertices of every frame, faces, times).

Times in cameras.json are seconds from the clip's start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..cameras import SV4D_FOV_DEG, Rig, ViewAngles, fit_distance, orbit_c2w, static_orbit
from ..errors import Sv4dError
from ..io.atomic import atomic_folder
from ..io.multiview import FRAME_FILE, VIEW_DIR, read_multiview, write_multiview
from . import gltf
from .curate import drift, rectify_offsets, touches_border
from .gltf import apply_normalisation, yaw_matrix
from .render import AssetRenderer, RenderSettings
from .times import adaptive_times, clip_times

__all__ = ["AssetRenderOptions", "render_asset", "DEPTH_SCALE"]

DEPTH_SCALE = 10000.0


@dataclass
class AssetRenderOptions:
    clip: str | int | None = None  # name or index; None: the first clip
    num_frames: int = 21  # frames over the clip (end excluded)
    adaptive_motion: float | None = None  # adaptive time step instead: min mean vertex motion
    max_frames: int = 64  # candidates / cap for the adaptive step
    views: Sequence[ViewAngles] | None = None  # (elevation, azimuth); default: 8-view static orbit
    distance: float | None = 2.0  # None: the smallest distance that keeps the object inside
    size: int = 256
    fov_deg: float = SV4D_FOV_DEG
    ssaa: int = 2
    yaw_deg: float = 90.0
    depth: bool = False
    light_scale: float = 1.0  # < 1 darker, > 1 brighter (all lights and ambient)
    geometry: bool = True
    rectify: bool = False
    like: str | None = None  # take cameras, image size and frame times from a set
    frames: Sequence[int] | None = None  # keep only these of the frames chosen above (indices)
    overwrite: bool = False


def _apply(prims, norm: dict, offset: np.ndarray) -> list:
    """Posed primitives moved by ``offset`` and normalised (positions and normals)."""
    r = yaw_matrix(norm["yaw_deg"])
    out = []
    for p in prims:
        pos = apply_normalisation(p.positions + offset, norm)
        nrm = None if p.normals is None else p.normals @ r.T
        out.append(replace(p, positions=pos, normals=nrm))
    return out


def _like(path: str) -> tuple[list[ViewAngles], float, int, float, np.ndarray]:
    s = read_multiview(path)
    if s.intrinsics.width != s.intrinsics.height:
        raise Sv4dError(f"--like {path}: only square images are supported")
    dists = [v.distance for v in s.views]
    if max(dists) - min(dists) > 1e-6 * max(dists):
        raise Sv4dError(f"--like {path}: its cameras are at different distances; render-asset uses one orbit distance")
    angles = [v.angles() for v in s.views]
    for d, v, (e, a) in zip(s.view_dirs, s.views, angles):
        if not np.allclose(v.c2w, orbit_c2w(e, a, dists[0]), atol=1e-6):
            raise Sv4dError(f"--like {path}: view {d} does not look at the origin from an orbit")
    return angles, dists[0], s.intrinsics.width, s.intrinsics.fov_x_deg, s.times


def render_asset(
    asset_path: str | os.PathLike, out: str | os.PathLike, opts: AssetRenderOptions | None = None, progress: bool = True
) -> dict:
    """Render the asset into the set folder ``out``; returns cameras.json's content plus notices."""
    opts = opts or AssetRenderOptions()
    out = Path(out)
    if out.exists() and not opts.overwrite:
        raise Sv4dError(f"{out} already exists; pass --overwrite to replace it")
    t_start = time.perf_counter()
    asset = gltf.GltfAsset.load(asset_path)
    clip = asset.clip(opts.clip)
    notices: list[str] = []
    views = list(opts.views) if opts.views else static_orbit(8, 0.0)
    distance, size, fov = opts.distance, opts.size, opts.fov_deg
    if opts.like:
        views, distance, size, fov, like_times = _like(opts.like)
    if clip is None:
        notices.append(f"{Path(asset_path).name} has no animation: rendered static (one frame)")
        times = np.zeros(1)
    elif opts.like:
        times = clip.start + like_times
        if times[-1] > clip.end + 1e-6:
            notices.append(
                f"the set's frame times run past the clip's end ({clip.end - clip.start:.3f} s): the last pose is held"
            )
    elif opts.adaptive_motion is not None:
        times = adaptive_times(
            lambda t: asset.posed_geometry(t, clip)[0], clip.start, clip.end, opts.adaptive_motion, opts.max_frames
        )
    else:
        times = clip_times(clip.start, clip.end, opts.num_frames)
    if opts.frames is not None:
        bad = [f for f in opts.frames if not 0 <= f < len(times)]
        if bad or not len(opts.frames):
            raise Sv4dError(
                f"frame(s) {bad or list(opts.frames)} do not exist: the clip gives {len(times)} "
                f"frame(s) (0..{len(times) - 1}) with these options"
            )
        times = times[list(opts.frames)]

    t0 = time.perf_counter()
    posed = [asset.pose(float(t), clip) for t in tqdm(times, desc="pose", unit="frame", disable=not progress)]
    merged = [gltf.merge_primitives(prims) for prims in posed]
    verts, faces = np.stack([m[0] for m in merged]), merged[0][1]
    offsets = np.zeros((len(times), 3))
    rectified = None
    if opts.rectify and len(times) > 1:
        offsets = rectify_offsets(verts)
        before, bbox_after = drift(verts)
        rectified = {
            "method": "static part re-centred (data.curate.rectify_offsets)",
            "offsets_world": offsets.tolist(),
            "drift_before": before,
            "drift_after": drift(verts + offsets[:, None])[0],
            "bbox_centre_drift_after": bbox_after,
        }
    moved = verts + offsets[:, None]
    norm = gltf.normalise_clip(moved, opts.yaw_deg)
    geometry = apply_normalisation(moved, norm)
    if distance is None:
        # 5 % of the half-width free, and at least 3 pixels' worth for the anti-aliased edge
        distance = fit_distance(geometry.reshape(-1, 3), views, fov, margin=max(0.05, 6.0 / size))
        notices.append(f"camera distance {distance:.3f} keeps the object inside every view")
    t_pose = time.perf_counter() - t0

    settings = RenderSettings(size=size, fov_deg=fov, ssaa=opts.ssaa, depth=opts.depth, light_scale=opts.light_scale)
    rel_times = times - (clip.start if clip is not None else 0.0)
    rig = Rig.orbit(views, float(distance), settings.intrinsics, rel_times)
    cams = rig.views
    rgba = np.zeros((len(cams), len(times), size, size, 4), np.uint8)
    depth = np.zeros((len(cams), len(times), size, size), np.float32) if opts.depth else None
    t0 = time.perf_counter()
    with (
        AssetRenderer(settings) as renderer,
        tqdm(total=len(cams) * len(times), desc="render", unit="image", disable=not progress) as bar,
    ):
        for f, prims in enumerate(posed):
            renderer.set_geometry(_apply(prims, norm, offsets[f]))
            for v, cam in enumerate(cams):
                img, d = renderer.render(cam.c2w)
                rgba[v, f] = img
                if depth is not None:
                    depth[v, f] = d
                bar.update()
        render_desc = settings.describe()
    t_render = time.perf_counter() - t0
    touching = int(touches_border(rgba[..., 3]).sum())
    if touching:
        notices.append(f"{touching} image(s) have the object touching the border; use --distance auto")

    extra = {
        "generator": "sv4d render-asset",
        "asset": Path(asset_path).name,
        "asset_vertices": int(verts.shape[1]),
        "asset_triangles": int(len(faces)),
        "animation": None
        if clip is None
        else {"index": clip.index, "name": clip.name, "clip_start_s": clip.start, "clip_end_s": clip.end},
        "frame_rule": (
            "static"
            if clip is None
            else "like"
            if opts.like
            else f"adaptive (min motion {opts.adaptive_motion})"
            if opts.adaptive_motion is not None
            else "count over the clip, end excluded"
        )
        + ("" if opts.frames is None else f"; frames {list(opts.frames)} of those kept"),
        "normalization": norm,
        "rectified": rectified,
        "render": render_desc,
        "timing_s": {
            "posing": round(t_pose, 3),
            "rasterisation": round(t_render, 3),
            "images": int(rgba.shape[0] * rgba.shape[1]),
            "per_image_ms": round(1000 * t_render / max(1, rgba.shape[0] * rgba.shape[1]), 1),
        },
        "images_touching_border": int(touching),
        "files": {
            "rgba": "rgba/view_XX/frame_YYY.png (straight alpha)",
            "rgb_white": "rgb_white/view_XX/frame_YYY.png",
            **(
                {"depth": f"depth/view_XX/frame_YYY.png uint16 = z_camera * {DEPTH_SCALE}, 0 = background"}
                if opts.depth
                else {}
            ),
            **(
                {"geometry": "geometry.npz: vertices (F,V,3) float32 normalised, faces (M,3) int32, times (F,)"}
                if opts.geometry
                else {}
            ),
        },
    }
    with atomic_folder(out) as tmp:
        write_multiview(tmp, rig, rgba=rgba, extra=extra, atomic=False, overwrite=True)
        if depth is not None:
            for v in range(len(cams)):
                vdir = tmp / "depth" / VIEW_DIR.format(v)
                vdir.mkdir(parents=True)
                for f in range(len(times)):
                    z = np.clip(np.round(depth[v, f] * DEPTH_SCALE), 0, 65535).astype(np.uint16)
                    Image.fromarray(z).save(vdir / FRAME_FILE.format(f))
        if opts.geometry:
            np.savez_compressed(
                tmp / "geometry.npz",
                vertices=geometry.astype(np.float32),
                faces=faces.astype(np.int32),
                times=rel_times,
            )
    meta = read_multiview(out).meta
    meta["notices"] = notices
    meta["seconds"] = round(time.perf_counter() - t_start, 2)
    return meta

"""Tracked-mesh benchmark (issue 18): one textured mesh through time against per-frame marching cubes
and against the ground-truth posed geometry.

    python benchmarks/bench_mesh.py --fit OUT/checkpoint.pt --set SET      # a fit you have (SET has geometry.npz)
    python benchmarks/bench_mesh.py --asset ../shared/data/assets/Fox.glb --steps 600   # render, fit, then measure

With --asset the asset is rendered with `sv4d render-asset` (8 views at elevation 0 and 20, 21
frames, --size px, with geometry.npz) and fitted with a dynamic NeRF on the views 0, 2, 4, 6 for
--steps steps first. Then both exports are made from the same fit, `sv4d export --mesh` (tracked)
and `--mesh --flipbook` (marching cubes per frame, the same grid), and per frame:

* Chamfer distance (symmetric: mean of the two mean nearest-point distances of 20k area-uniform
  samples) to the ground-truth mesh, as a fraction of the ground truth's bounding-box diagonal,
  for both; target: tracked <= 1.1 x flip-book at every frame;
* silhouette IoU of the tracked mesh (rasterised with pyrender on EGL) against the fit's own
  opacity (> 0.5) at every set view: target >= 0.95; PSNR of the textured mesh's renders (unlit)
  against the fit's renders on white;
* mesh health from report.json: degenerate and folded triangles, edge-length distortion; the
  GLB's size (target <= 5 MB for 21 frames, 20k faces, textured) and the export times.

Writes OUT/results.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sv4d.data.render import AssetRenderer, RenderSettings  # noqa: E402
from sv4d.evaluate.geometry import chamfer, load_geometry, sample_surface  # noqa: E402
from sv4d.fit.outputs import export_mesh  # noqa: E402
from sv4d.fit.render import render_grid  # noqa: E402
from sv4d.fit.run import load_fitted  # noqa: E402
from sv4d.io.mesh import read_mesh  # noqa: E402
from sv4d.io.multiview import read_multiview  # noqa: E402


def _prepare(args) -> tuple[Path, Path]:
    """(checkpoint, set) — rendered and fitted first with --asset."""
    if args.fit:
        return Path(args.fit), Path(args.set)
    import sv4d
    from sv4d.cameras import ViewAngles
    from sv4d.data.render_asset import AssetRenderOptions, render_asset

    name = Path(args.asset).stem + (f"_{args.clip}" if args.clip else "")
    set_dir = args.out / f"{name}_set"
    if not (set_dir / "cameras.json").is_file():
        views = [ViewAngles(0.0, a) for a in (0, 45, 90, 135, 180, 225, 270, 315)]
        views += [ViewAngles(20.0, a) for a in (22.5, 112.5, 202.5, 292.5)]
        render_asset(
            args.asset, set_dir, AssetRenderOptions(clip=args.clip, views=views, size=args.size, num_frames=args.frames)
        )
    fit_dir = args.out / f"{name}_fit"
    if not (fit_dir / "checkpoint.pt").is_file():
        sv4d.fit(
            set_dir, fit_dir, method="nerf", steps=args.steps, views=[0, 2, 4, 6], resolution=args.size, overwrite=True
        )
    return fit_dir / "checkpoint.pt", set_dir


def _renderer(size: int) -> AssetRenderer:
    return AssetRenderer(RenderSettings(size=size, ssaa=2, ambient=1.0, lights=(), metallic=0.0, roughness=1.0))


_MATERIALS: dict = {}  # the renderer caches materials by id(): keep each one alive


def _prim(vertices, faces, uv, texture):
    key = None if texture is None else id(texture)
    if key not in _MATERIALS:
        alpha = None if texture is None else np.full(texture.shape[:2] + (1,), 255, np.uint8)
        material = SimpleNamespace(
            texture=None if texture is None else np.concatenate([texture, alpha], -1),
            base_color=(1.0, 1.0, 1.0, 1.0),
            sampler_wrap=(33071, 33071),
            metallic=0.0,
            roughness=1.0,
            double_sided=False,
            alpha_mode="OPAQUE",
        )
        _MATERIALS[key] = (texture, material)
    material = _MATERIALS[key][1]
    return SimpleNamespace(positions=vertices, indices=faces, normals=None, uv=uv, colors=None, material=material)


def _figure(renderer, path: Path, verts, faces, uv_vertex, uv_faces, uv, texture, frames) -> None:
    """Five frames of the tracked mesh from one camera: textured (top) and coloured by its normals
    (bottom: the geometry), with the benchmark's own renderer (Mesa's EGL dislikes a second one)."""
    from PIL import Image

    from sv4d.cameras import orbit_c2w
    from sv4d.io.mesh import Mesh

    picks = np.linspace(0, len(frames) - 1, 5).round().astype(int)
    c2w = orbit_c2w(15.0, 35.0, 1.9)
    rows: list[list[np.ndarray]] = [[], []]
    for k in picks:
        normals = Mesh(verts[k], faces).vertex_normals()
        shaded = SimpleNamespace(**vars(_prim(verts[k], faces, None, None)))
        shaded.colors = np.concatenate([0.5 + 0.5 * normals, np.ones((len(normals), 1))], 1).astype(np.float32)
        for row, prim in enumerate((_prim(verts[k][uv_vertex], uv_faces, uv, texture), shaded)):
            renderer.set_geometry([prim])
            rgba = renderer.render(c2w)[0].astype(np.float64) / 255
            rows[row].append(rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]))
    strips = []
    for r in rows:  # each row cropped to its content, 8 px of margin
        strip = np.concatenate(r, 1)
        ys = np.flatnonzero((strip < 0.98).any(-1).any(1))
        strips.append(strip[max(ys.min() - 8, 0) : ys.max() + 8])
    img = np.concatenate(strips, 0)
    Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(path)
    print(f"wrote {path}")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fit", help="checkpoint.pt of a NeRF fit")
    p.add_argument("--set", help="the fitted set, or another set of the same scene (cameras.json, geometry.npz)")
    p.add_argument("--asset", help="an animated glTF asset to render and fit first")
    p.add_argument("--clip", default=None, help="animation clip of --asset (default: its first)")
    p.add_argument("--steps", type=int, default=600, help="fit steps with --asset (default 600)")
    p.add_argument("--size", type=int, default=128, help="render size with --asset (default 128)")
    p.add_argument("--frames", type=int, default=21, help="frames with --asset (default 21)")
    p.add_argument("--faces", type=int, default=20000)
    p.add_argument("--grid", type=int, default=192)
    p.add_argument("--texture", type=int, default=1024)
    p.add_argument("--views", default=None, help="set views to render for IoU/PSNR, e.g. 0,1,2 (default all)")
    p.add_argument("--out", type=Path, default=Path("bench_mesh_out"))
    p.add_argument("--reuse", action="store_true", help="keep exports already in --out (measure only)")
    p.add_argument(
        "--figure", type=Path, default=None, help="instead of measuring, save a picture of five frames (PNG)"
    )
    args = p.parse_args()
    if not (args.fit and args.set) and not args.asset:
        p.error("give --fit and --set, or --asset")
    torch.set_num_threads(os.cpu_count() or 1)
    args.out.mkdir(parents=True, exist_ok=True)
    ck, set_dir = _prepare(args)
    gt = load_geometry(set_dir)
    if gt is None:
        p.error(f"{set_dir} has no geometry.npz")
    gt_v, gt_f = gt
    name = Path(ck).parent.name

    tracked, flip = args.out / f"{name}_tracked", args.out / f"{name}_flipbook"
    t_tracked = t_flip = None
    if not (args.reuse and (tracked / "report.json").is_file()):
        t0 = time.perf_counter()
        export_mesh(ck, tracked, grid=args.grid, faces=args.faces, texture=args.texture, overwrite=True)
        t_tracked = round(time.perf_counter() - t0, 1)
    if not (args.reuse and flip.is_dir()):
        t0 = time.perf_counter()
        export_mesh(ck, flip, grid=args.grid, flipbook=True, overwrite=True)
        t_flip = round(time.perf_counter() - t0, 1)

    report = json.loads((tracked / "report.json").read_text())
    z = np.load(tracked / "tracked_mesh.npz")
    verts, faces, frames = z["vertices"], z["faces"], z["frames"].tolist()
    uv, uv_vertex, uv_faces = z["uv"], z["uv_vertex"], z["uv_faces"]
    from sv4d.io.animated_glb import read_animated_glb

    texture = read_animated_glb(tracked / "animated.glb")[4]

    model, record = load_fitted(ck)
    s = read_multiview(set_dir)
    views = [int(v) for v in args.views.split(",")] if args.views else list(range(s.num_views))
    h = record.resolution[0]
    rig = s.rig.select(views=views).at_height(h)
    intr = rig.intrinsics
    if args.figure:  # one EGL renderer a process: Mesa fails to make a second one current
        _figure(_renderer(256), args.figure, verts, faces, uv_vertex, uv_faces, uv, texture, frames)
        return 0
    renderer = _renderer(h)

    rows = []
    for k, f in enumerate(frames):
        diag = float(np.linalg.norm(np.ptp(gt_v[f], axis=0)))
        gts = sample_surface(gt_v[f], gt_f, 20000, seed=10_000 + f)
        c_t = chamfer(sample_surface(verts[k], faces, 20000, seed=f), gts)["chamfer_l1"] / diag
        fv, ff = read_mesh(flip / f"mesh_frame_{f:03d}.glb")
        c_f = chamfer(sample_surface(fv, ff, 20000, seed=f), gts)["chamfer_l1"] / diag
        t_unit = record.unit_times()[record.frames.index(f)]
        rgb, alpha = render_grid(model, torch.from_numpy(rig.c2w).float(), intr, [t_unit], progress=False)
        ious, psnrs, flip_ious, over, under = [], [], [], 0, 0
        for vi in range(len(views)):
            fit_a = alpha[vi, 0].numpy() > 0.5
            renderer.set_geometry([_prim(fv, ff, None, None)])
            m = renderer.render(rig.c2w[vi])[0][..., 3] > 127
            flip_ious.append(float((m & fit_a).sum() / max((m | fit_a).sum(), 1)))
            renderer.set_geometry([_prim(verts[k][uv_vertex], uv_faces, uv, texture)])
            rgba, _ = renderer.render(rig.c2w[vi])
            a = rgba[..., 3] / 255.0
            mesh_rgb = rgba[..., :3] / 255.0 * a[..., None] + (1 - a[..., None])
            m = a > 0.5
            over += int((m & ~fit_a).sum())
            under += int((fit_a & ~m).sum())
            ious.append(float((m & fit_a).sum() / max((m | fit_a).sum(), 1)))
            psnrs.append(_psnr(mesh_rgb, rgb[vi, 0].numpy()))
        rows.append(
            {
                "frame": f,
                "chamfer_tracked": c_t,
                "chamfer_flipbook": c_f,
                "ratio": c_t / c_f,
                "iou_min": min(ious),
                "iou_mean": float(np.mean(ious)),
                "iou_min_flipbook": min(flip_ious),
                "iou_mean_flipbook": float(np.mean(flip_ious)),
                "mesh_only_pixels": over,
                "fit_only_pixels": under,
                "psnr_mean": float(np.mean(psnrs)),
            }
        )
        r = rows[-1]
        print(
            f"frame {f:3d}  chamfer tracked {c_t:.4f}  flip-book {c_f:.4f}  ratio {r['ratio']:.3f}  "
            f"IoU min {r['iou_min']:.3f} mean {r['iou_mean']:.3f} (flip-book {r['iou_min_flipbook']:.3f}, "
            f"{r['iou_mean_flipbook']:.3f}; px mesh-only {over}, fit-only {under})  PSNR {r['psnr_mean']:.2f}",
            flush=True,
        )
    renderer.close()
    size = (tracked / "animated.glb").stat().st_size
    q = report["quality"]["worst"]
    summary = {
        "checkpoint": str(ck),
        "set": str(set_dir),
        "frames": len(frames),
        "faces": int(len(faces)),
        "vertices": int(verts.shape[1]),
        "glb_bytes": size,
        "export_seconds_tracked": t_tracked,
        "export_seconds_flipbook": t_flip,
        "worst_ratio": max(r["ratio"] for r in rows),
        "worst_iou": min(r["iou_min"] for r in rows),
        "worst_iou_flipbook": min(r["iou_min_flipbook"] for r in rows),
        "mean_psnr": float(np.mean([r["psnr_mean"] for r in rows])),
        "worst_quality": q,
        "tracking_notes": [n for fr in report["frames"] for n in fr["notes"]],
        "targets_met": {
            "chamfer_within_10pct_of_flipbook": all(r["ratio"] <= 1.1 for r in rows),
            "silhouette_iou_0.95": all(r["iou_min"] >= 0.95 for r in rows),
            "glb_under_5MB": size <= 5 * 2**20,
        },
        "machine": f"{os.cpu_count()} CPU threads, torch {torch.__version__}",
        "rows": rows,
    }
    (args.out / f"{name}_results.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

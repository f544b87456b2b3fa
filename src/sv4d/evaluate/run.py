"""``sv4d evaluate``: score a predicted multi-view video set against the ground truth."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..errors import Sv4dError
from ..io.atomic import atomic_folder
from ..io.jsonable import jsonable
from ..metrics import fvd as fvd_mod
from .geometry import chamfer_per_frame, load_geometry
from .grid import EvalGrid, load_grids
from .report import ERROR_MAX, write_report
from .scores import PSNR_CAP_DB, network_scores, pixel_scores, summarise

__all__ = ["EvalOptions", "evaluate", "WEIGHTS_ENV"]

#: environment variable naming a default folder of metric weights
WEIGHTS_ENV = "SV4D_WEIGHTS"


@dataclass
class EvalOptions:
    """What ``evaluate`` computes (None = default / all)."""

    views: Sequence[int] | None = None
    frames: Sequence[int] | None = None
    weights: str | None = None  # folder searched for every network's weights
    lpips: str | None = None  # file or folder, overrides ``weights``
    clip: str | None = None
    i3d: str | None = None
    fvd: bool = True
    clip_length: int = 16
    clip_stride: int | None = None
    mesh: str | None = None  # folder written by sv4d export --mesh
    chamfer_samples: int = 20000
    ignore_cameras: bool = False
    resize: bool = False
    device: str = "auto"
    batch: int = 8
    thumb: int = 96
    overwrite: bool = False
    progress: bool = True


def _weight_source(explicit: str | None, folder: str | None, present: Callable[[Path], bool]) -> str | None:
    """The path to load a network from: the explicit option, else the weights folder if it holds
    that network's files, else None (the metric is skipped)."""
    if explicit:
        return explicit
    if folder and Path(folder).is_dir() and present(Path(folder)):
        return folder
    return None


def _has_any(folder: Path, names: Sequence[str]) -> bool:
    return any(any(folder.glob(n)) for n in names)


def _notice(notices: list[str], text: str, progress: bool) -> None:
    notices.append(text)
    if progress:
        print(f"note: {text}", file=sys.stderr)


def _network_metrics(
    grid: EvalGrid,
    opts: EvalOptions,
    dev: torch.device,
    folder: str | None,
    notices: list[str],
    timings: dict[str, float],
) -> tuple[dict[str, np.ndarray], dict]:
    from ..metrics import clip_score, lpips

    scores: dict[str, np.ndarray] = {}
    used: dict[str, str] = {}
    specs = (
        (
            "lpips",
            "LPIPS (VGG)",
            opts.lpips,
            lambda d: _has_any(d, lpips.LPIPS_LIN_FILES) and _has_any(d, lpips.VGG16_FILES),
            lpips.load_lpips,
            "--lpips FILE|DIR (LPIPS v0.1 vgg.pth + torchvision vgg16-397923af.pth)",
        ),
        (
            "clip_s",
            "CLIP-S (ViT-B/32)",
            opts.clip,
            lambda d: _has_any(d, clip_score.CLIP_FILES),
            clip_score.load_clip,
            "--clip FILE (OpenAI ViT-B-32.pt, open_clip or Hugging Face weights)",
        ),
    )
    for key, label, explicit, present, load, hint in specs:
        src = _weight_source(explicit, folder, present)
        if src is None:
            _notice(notices, f"{label} skipped: no weights (pass {hint}, or --weights DIR)", opts.progress)
            continue
        t = time.perf_counter()
        net = load(src, device=dev)
        scores[key] = network_scores(net, grid, desc=key, batch=opts.batch, device=dev, progress=opts.progress)
        used[key] = str(src)
        timings[key] = time.perf_counter() - t
    return scores, used


def _fvd(grid: EvalGrid, opts: EvalOptions, dev: torch.device, folder: str | None, notices: list[str]) -> dict | None:
    from ..metrics import i3d

    src = _weight_source(opts.i3d, folder, lambda d: _has_any(d, i3d.I3D_FILES))
    if src is None:
        _notice(
            notices,
            "FVD skipped: no I3D weights (pass --i3d FILE, the Kinetics-400 i3d_pretrained_400.pt, or --weights DIR)",
            opts.progress,
        )
        return None
    if opts.clip_length < i3d.MIN_FRAMES:
        raise Sv4dError(f"--clip-length {opts.clip_length} is too short for I3D (at least {i3d.MIN_FRAMES})")
    net = i3d.load_i3d(src, device=dev)
    v_n, f_n = grid.shape
    todo = sum(len(fvd_mod.variant_clips(v, v_n, f_n, opts.clip_length, opts.clip_stride)) for v in fvd_mod.VARIANTS)
    bar = tqdm(total=2 * todo, desc="FVD (I3D)", unit="clip", disable=not opts.progress)
    batch = max(1, opts.batch // 4)

    def features(clips: list[list[tuple[int, int]]], side: str) -> np.ndarray:
        images = grid.pred if side == "pred" else grid.gt
        feats = []
        with torch.inference_mode():
            for s in range(0, len(clips), batch):
                vids = np.stack([np.stack([images[v, f] for v, f in clip]) for clip in clips[s : s + batch]])
                x = torch.from_numpy(vids).to(dev).permute(0, 1, 4, 2, 3).float() / 255.0  # (B, T, 3, H, W)
                feats.append(net.features(i3d.preprocess_videos(x)).double().cpu().numpy())
                bar.update(len(vids))
        return np.concatenate(feats)

    try:
        variants = fvd_mod.fvd_variants(features, v_n, f_n, opts.clip_length, opts.clip_stride)
    finally:
        bar.close()
    return {
        "weights": str(src),
        "feature": "I3D Kinetics-400 logits (400-d)",
        "clip_length": opts.clip_length,
        "clip_stride": opts.clip_stride or opts.clip_length,
        "variants": variants,
    }


def _geometry(gt_path: str | os.PathLike, grid: EvalGrid, opts: EvalOptions, notices: list[str]) -> dict | None:
    geo = load_geometry(gt_path)
    if opts.mesh is None:
        if geo is not None:
            _notice(
                notices,
                "Chamfer distance skipped: the ground truth has geometry.npz; pass "
                "--mesh DIR (from sv4d export --mesh) to score a fitted model's meshes",
                opts.progress,
            )
        return None
    if geo is None:
        raise Sv4dError(f"--mesh was given but {gt_path} has no geometry.npz to compare with")
    rows = chamfer_per_frame(opts.mesh, geo[0], geo[1], grid.frames, opts.chamfer_samples)
    keys = ("accuracy", "completeness", "chamfer_l1", "chamfer_l2")
    return {
        "mesh_dir": str(opts.mesh),
        "samples": opts.chamfer_samples,
        "per_frame": rows,
        "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
    }


def evaluate(
    pred: str | os.PathLike, gt: str | os.PathLike, report: str | os.PathLike, opts: EvalOptions | None = None
) -> dict:
    """Score ``pred`` against ``gt`` and write the report folder; returns metrics.json's content."""
    opts = opts or EvalOptions()
    report = Path(report)
    if report.exists() and not opts.overwrite:
        raise Sv4dError(f"{report} already exists; pass --overwrite to replace it")
    for p in (pred, gt):
        if Path(p).resolve() == report.resolve():
            raise Sv4dError(f"the report folder {report} would replace the set {p}")
    if opts.clip_length < 1 or opts.batch < 1 or opts.chamfer_samples < 1 or opts.thumb < 8:
        raise Sv4dError("clip length, batch and Chamfer samples must be positive, thumbnails at least 8 px")
    dev = resolve_device(opts.device)
    folder = opts.weights or os.environ.get(WEIGHTS_ENV)
    if opts.weights and not Path(opts.weights).is_dir():
        raise Sv4dError(f"--weights {opts.weights} is not a folder")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    grid = load_grids(
        pred,
        gt,
        views=opts.views,
        frames=opts.frames,
        ignore_cameras=opts.ignore_cameras,
        resize=opts.resize,
        progress=opts.progress,
    )
    timings["read"] = time.perf_counter() - t0
    notices: list[str] = []
    t = time.perf_counter()
    scores, capped = pixel_scores(grid, opts.progress)
    timings["psnr_ssim"] = time.perf_counter() - t
    net_scores, net_weights = _network_metrics(grid, opts, dev, folder, notices, timings)
    scores.update(net_scores)
    if capped:
        notices.append(f"{capped} image(s) identical to the ground truth: PSNR capped at {PSNR_CAP_DB:g} dB")
    t = time.perf_counter()
    fvd = _fvd(grid, opts, dev, folder, notices) if opts.fvd else None
    timings["fvd"] = time.perf_counter() - t
    t = time.perf_counter()
    geometry = _geometry(gt, grid, opts, notices)
    timings["geometry"] = time.perf_counter() - t

    settings = {
        "background": "white (RGBA composited)",
        "device": str(dev),
        "psnr_cap_db": PSNR_CAP_DB,
        "averages": "means of per-image values",
        "ssim": "scikit-image, Gaussian window 11 sigma 1.5, K1 0.01, K2 0.03, population covariance",
        "iou_alpha_threshold": 128 if grid.pred_alpha is not None else None,
        "lpips": "VGG16, LPIPS v0.1 linear layers, inputs in [-1, 1] at native resolution",
        "clip_s": "cosine similarity of CLIP ViT-B/32 image embeddings (224 px, CLIP normalisation)",
        "fvd_orderings": "fvd_f: per view along time; fvd_v: per frame along views; fvd_diag: "
        "((start + f) mod V, f); fv4d: serpentine over views (even views forward in time, "
        "odd views backward)",
        "error_map_max": ERROR_MAX,
    }
    metrics = {
        "prediction": str(pred),
        "ground_truth": str(gt),
        "views": grid.views,
        "view_names": grid.view_names,
        "frames": grid.frames,
        "times_s": [float(x) for x in grid.times],
        "settings": settings,
        "options": {
            k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in asdict(opts).items() if k != "progress"
        },
        "weights": net_weights,
        "images": {k: {**summarise(s), "per_image": s.tolist()} for k, s in scores.items()},
        "psnr_capped_images": capped,
        "fvd": fvd,
        "geometry": geometry,
        "notices": notices,
        "warnings": grid.warnings,
    }
    with atomic_folder(report) as tmp:
        write_report(tmp, grid, scores, metrics, thumb=opts.thumb)
        timings["total"] = time.perf_counter() - t0
        metrics["seconds"] = {k: round(v, 3) for k, v in timings.items()}
        (tmp / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=1), encoding="utf-8")
    return metrics

"""The evaluation report: an HTML page with the prediction and the ground truth side by side.

Layout of the report folder::

    index.html           summary table, settings, notices, plots, one strip per view
    metrics.json         every number (written by the caller)
    plots/per_view.png   each image metric averaged per view
    plots/per_frame.png  each image metric averaged per frame
    plots/error_scale.png  the colour scale of the error maps
    grid/view_XX.png     per view: prediction row, ground-truth row, error-map row (frames left to
                         right), all cropped to one box around the object (content_box)

Error maps show the per-pixel mean absolute RGB error, 0 (black) to ``ERROR_MAX`` (white) on
matplotlib's ``inferno`` colour map, the same scale on every image.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..io.thumbnails import thumbnail, tile
from .grid import EvalGrid

__all__ = ["ERROR_MAX", "write_report"]

ERROR_MAX = 0.5
_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mse": "MSE", "iou": "mask IoU", "lpips": "LPIPS", "clip_s": "CLIP-S"}
_BETTER = {
    "psnr": "higher",
    "ssim": "higher",
    "mse": "lower",
    "iou": "higher",
    "lpips": "lower",
    "clip_s": "higher",
    "fvd": "lower",
    "chamfer": "lower",
}


def _error_maps(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    err = np.abs(pred.astype(np.float32) - gt.astype(np.float32)).mean(-1) / 255.0
    rgb = colormaps["inferno"](np.clip(err / ERROR_MAX, 0, 1))[..., :3]
    return (rgb * 255).round().astype(np.uint8)


def content_box(grid: EvalGrid, margin: float = 0.05) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the box holding every pixel that is not white in any predicted or
    ground-truth image, grown by ``margin`` of its size; the whole image if all are white."""
    ink = ((grid.pred < 250).any(-1) | (grid.gt < 250).any(-1)).any((0, 1))  # (H, W)
    h, w = ink.shape
    if not ink.any():
        return 0, h, 0, w
    ys, xs = np.nonzero(ink.any(1))[0], np.nonzero(ink.any(0))[0]
    my, mx = round(margin * (ys[-1] - ys[0] + 1)) + 1, round(margin * (xs[-1] - xs[0] + 1)) + 1
    return max(0, ys[0] - my), min(h, ys[-1] + 1 + my), max(0, xs[0] - mx), min(w, xs[-1] + 1 + mx)


def _view_strip(grid: EvalGrid, v: int, thumb: int, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = box
    pred, gt = grid.pred[v, :, y0:y1, x0:x1], grid.gt[v, :, y0:y1, x0:x1]
    return tile([[thumbnail(im, thumb) for im in row] for row in (pred, gt, _error_maps(pred, gt))])


def _plots(scores: dict[str, np.ndarray], grid: EvalGrid, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = list(scores)
    for axis, fname, labels, title in (
        (1, "per_view.png", grid.views, "view"),
        (0, "per_frame.png", grid.frames, "frame"),
    ):
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
        for ax, k in zip(axes[0], names):
            vals = scores[k].mean(axis=axis)
            if axis == 1:
                ax.bar(range(len(vals)), vals, color="tab:blue")
            else:
                ax.plot(range(len(vals)), vals, marker="o", ms=3)
            ax.set_xticks(range(len(vals)))
            ax.set_xticklabels([str(i) for i in labels], fontsize=6)
            ax.set_xlabel(title)
            ax.set_title(f"{_LABELS.get(k, k)} ({_BETTER.get(k, '')} is better)", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 1.0))
    ax.imshow(np.linspace(0, 1, 256)[None], aspect="auto", cmap="inferno", extent=(0, ERROR_MAX, 0, 1))
    ax.set_yticks([])
    ax.set_xlabel("mean absolute RGB error", fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "error_scale.png", dpi=110)
    plt.close(fig)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(str(x))


def write_report(out: Path, grid: EvalGrid, scores: dict[str, np.ndarray], metrics: dict, thumb: int = 96) -> None:
    """Write index.html, plots/ and grid/ into the folder ``out`` (``metrics`` is metrics.json's content)."""
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "grid").mkdir(exist_ok=True)
    _plots(scores, grid, out / "plots")
    box = content_box(grid)
    for i, name in enumerate(grid.view_names):
        Image.fromarray(_view_strip(grid, i, thumb, box)).save(out / "grid" / f"{name}.png", optimize=True)

    rows = []
    for k, s in metrics["images"].items():
        rows.append(f"<tr><td>{_LABELS.get(k, k)}</td><td>{_fmt(s['mean'])}</td><td>{_BETTER.get(k, '')}</td></tr>")
    for k, s in (metrics.get("fvd") or {}).get("variants", {}).items():
        rows.append(
            f"<tr><td>{k.upper().replace('_', '-')}</td><td>{_fmt(s['fvd'])}</td><td>lower "
            f"({s['clips']} clips)</td></tr>"
        )
    geo = metrics.get("geometry")
    if geo:
        for k in ("chamfer_l1", "chamfer_l2", "accuracy", "completeness"):
            rows.append(f"<tr><td>{k}</td><td>{_fmt(geo['mean'][k])}</td><td>lower</td></tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in metrics["notices"] + metrics["warnings"])
    settings = html.escape(", ".join(f"{k}={v}" for k, v in metrics["settings"].items()))
    strips = []
    for i, name in enumerate(grid.view_names):
        per = " &middot; ".join(f"{_LABELS.get(k, k)} {_fmt(float(scores[k][i].mean()))}" for k in scores)
        strips.append(
            f"<h3>{html.escape(name)} (view {grid.views[i]})</h3><p class='m'>{per}</p>"
            f"<img src='grid/{html.escape(name)}.png' alt='{html.escape(name)}'>"
        )
    frames = ", ".join(str(f) for f in grid.frames)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sv4d evaluation</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:100%}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} img{{max-width:100%}}
.m{{font-size:90%;color:#444;margin:0 0 4px}} h3{{margin:1.2em 0 2px}}</style></head><body>
<h1>sv4d evaluation</h1>
<p>Prediction <code>{html.escape(metrics["prediction"])}</code> against ground truth
<code>{html.escape(metrics["ground_truth"])}</code>: {len(grid.views)} views x {len(grid.frames)} frames
(frames {html.escape(frames)}), composited on white.</p>
<table><tr><th>metric</th><th>value</th><th>better</th></tr>{"".join(rows)}</table>
<p class="m">Settings: {settings}</p>
{"<ul>" + notes + "</ul>" if notes else ""}
<h2>Per view and per frame</h2>
<img src="plots/per_view.png" alt="metrics per view"><br><img src="plots/per_frame.png" alt="metrics per frame">
<h2>Images</h2>
<p>Each strip: prediction (top), ground truth (middle), error map (bottom); frames left to right;
every image cropped to the same box around the object (rows {box[0]}-{box[1]}, columns {box[2]}-{box[3]}).</p>
<img src="plots/error_scale.png" alt="error colour scale">
{"".join(strips)}
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")

"""Curating multi-view video sets of animated 3D assets, as SV4D 2.0 curates its training data.

Off-centre objects are rectified (:func:`static_track`, :func:`rectify_offsets`: the render
pipeline adds the offsets to each frame's vertices before normalisation, so an object's
locomotion or drift no longer carries it through the frame); clips with drift, inconsistent
scaling, minimal motion or dark lighting are filtered out (:func:`measure`, :class:`Thresholds`,
:func:`verdict`, :func:`curate`).

Measures of one set (:func:`measure`; units in ``UNITS``):

``drift``
    From ``geometry.npz`` (``vertices`` (F, N, 3), see ``shared/data/multiview/README.md``):
    the largest distance of the static track (:func:`static_track`) from its mean position over
    the clip, divided by the object's size, the longest side of the clip's bounding box (all
    vertices of all frames). ``drift_after``: the same figure for the whole object's per-frame
    bounding-box centre after adding :func:`rectify_offsets` (divided by the rectified clip's
    bounding box, the one the render pipeline would normalise), i.e. what rectification would
    leave. Both None when the set has no ``geometry.npz``. ``rectified``: cameras.json's
    ``"rectified"`` block, when present (the set was rendered rectified).
``scale_ratio``
    Per view, the projected size ``sqrt(sum(alpha / 255))`` (pixels) of every frame; its max
    over min across frames (an empty frame counts as 1 pixel of area; a view empty in every
    frame counts as 1); the median over views (``scale_ratio_per_view``: every view's).
``motion``
    Per view, keyframes = up to ``keyframes`` frames spread evenly over the clip (all when there
    are fewer); for every pair of keyframes, the mean absolute RGB difference of the images
    composited over white (values 0..1, averaged over channels) within the union of the two
    masks ``alpha > 0`` (0 when both are empty); the largest over pairs; the median over views
    (``motion_per_view``). A frozen clip gives exactly 0.
``luminance``
    Mean foreground luminance: Rec. 709 luma ``0.2126 R + 0.7152 G + 0.0722 B`` of the
    (straight, not composited) sRGB values in 0..1, weighted by alpha over every view and frame;
    None when no image has any foreground.
``touches_border``
    Fraction of images whose alpha is non-zero somewhere on the outermost pixel rows/columns.
``empty_images``
    Fraction of images with no foreground pixel at all.

Sets with only ``rgb_white/`` images have no alpha: it is estimated as 255 where any channel is
below 250 and 0 elsewhere (``measures["alpha"]`` says which).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import Sv4dError
from ..io.atomic import atomic_folder
from ..io.jsonable import jsonable
from ..io.multiview import MultiViewSet, composite_white, read_multiview
from ..io.thumbnails import thumbnail, tile

__all__ = ["UNITS", "Thresholds", "static_track", "rectify_offsets", "measure", "verdict", "curate"]

UNITS = {
    "drift": "object sizes (longest side of the clip's bounding box); static part's largest distance from its mean",
    "drift_after": "object sizes (longest side of the rectified clip's bounding box); "
    "bounding-box centre after rectify_offsets",
    "scale_ratio": "ratio >= 1 of the largest to the smallest projected size sqrt(alpha area) over frames, "
    "median over views",
    "motion": "mean absolute RGB difference over white (0..1) within the union of the masks, "
    "largest over keyframe pairs, median over views",
    "luminance": "Rec. 709 luma of sRGB values (0..1), alpha-weighted mean over all foreground",
    "touches_border": "fraction of images whose alpha touches the image border",
    "empty_images": "fraction of images without any foreground",
}
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_NEIGHBOURS = 8  # spread is averaged over this many nearest vertices (spatial coherence)
_ITERATIONS = 3  # re-selections relative to the chosen part's centroid
_WHITE_CUT = 250  # rgb_white-only sets: a pixel is foreground when a channel is below this


# ----------------------------------------------------------------------------------- geometry


def _vertices(vertices: Any, what: str = "vertices") -> np.ndarray:
    try:
        v = np.asarray(vertices, dtype=np.float64)
    except (TypeError, ValueError):
        raise Sv4dError(f"{what} must be a numeric (F, N, 3) array") from None
    if v.ndim != 3 or v.shape[2] != 3 or v.shape[0] < 1 or v.shape[1] < 1:
        raise Sv4dError(f"{what} must have shape (frames, vertices, 3), got {v.shape}")
    if not np.isfinite(v).all():
        raise Sv4dError(f"{what} holds NaN or infinite values")
    return v


def _spread(v: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) RMS over time of each vertex's distance from its mean position relative to the
    per-frame centroid of the ``reference`` vertices (a boolean mask)."""
    rel = v - v[:, reference].mean(axis=1, keepdims=True)
    return np.sqrt(((rel - rel.mean(axis=0)) ** 2).sum(-1).mean(0))


def static_track(vertices: Any, fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """The most static part of an animated object and its locomotion/drift track.

    vertices: (F, N, 3) positions per frame. Per vertex, the *spread* is the RMS over time of its
    distance from its mean position relative to a reference centroid (first the centroid of
    all vertices, per frame). To make the chosen part spatially coherent, each spread is
    replaced by the mean spread of its 8 nearest vertices in the clip's mean shape; the
    ``ceil(fraction * N)`` vertices with the smallest smoothed spread form the static part
    (ties, e.g. on a rigid body, go to the vertices nearest the reference centroid, which keeps
    the part compact). The selection is then repeated (up to 3 times, until it no longer
    changes) with the static part's own centroid as the reference, so a swinging limb that
    drags the all-vertex centroid about no longer makes the body look mobile.

    Returns ``(track, mask)``: (F, 3) float64 centroid of the static part per frame, (N,) bool.
    """
    v = _vertices(vertices)
    if not 0.0 < float(fraction) <= 1.0:
        raise Sv4dError(f"fraction must be in (0, 1], got {fraction}")
    n = v.shape[1]
    k = min(n, max(1, math.ceil(float(fraction) * n)))
    rest = v.mean(axis=0)  # (N, 3) mean shape over the clip
    size = float(np.ptp(v.reshape(-1, 3), axis=0).max()) or 1.0
    neighbours = None
    if n > 1:
        from scipy.spatial import cKDTree

        _, neighbours = cKDTree(rest).query(rest, k=min(_NEIGHBOURS, n))  # (N, K), self included
    reference = np.ones(n, bool)
    mask = reference
    for _ in range(_ITERATIONS):
        spread = _spread(v, reference)
        if neighbours is not None:
            spread = spread[neighbours].mean(axis=1)
        centre = rest[reference].mean(axis=0)
        near = np.linalg.norm(rest - centre, axis=1)
        order = np.lexsort((near, np.round(spread / (1e-6 * size))))  # spread first, then nearness
        mask = np.zeros(n, bool)
        mask[order[:k]] = True
        if (mask == reference).all():
            break
        reference = mask
    return v[:, mask].mean(axis=1), mask


def rectify_offsets(vertices: Any, fraction: float = 0.3) -> np.ndarray:
    """(F, 3) float64 translations that, added to each frame's vertices, keep the static part's
    centroid (:func:`static_track`) at its mean position over the clip: ``mean(track) - track``.

    The object's locomotion or drift no longer moves it through the frame; its limbs keep
    moving. Apply them before normalising the clip.
    """
    track, _ = static_track(vertices, fraction)
    return track.mean(axis=0) - track


def drift(v: np.ndarray, fraction: float = 0.3) -> tuple[float, float]:
    """(drift, drift_after) of vertices (F, N, 3), in object sizes: the static track's largest
    distance from its mean, and the bounding-box centre's after :func:`rectify_offsets`."""
    track, _ = static_track(v, fraction)
    size = float(np.ptp(v.reshape(-1, 3), axis=0).max())
    drift = float(np.linalg.norm(track - track.mean(0), axis=1).max()) / size if size > 0 else 0.0
    r = v + (track.mean(0) - track)[:, None]
    centre = (r.min(axis=1) + r.max(axis=1)) / 2.0  # (F, 3) bounding-box centres
    size_r = float(np.ptp(r.reshape(-1, 3), axis=0).max())
    after = float(np.linalg.norm(centre - centre.mean(0), axis=1).max()) / size_r if size_r > 0 else 0.0
    return drift, after


def _load_geometry(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "vertices" not in z.files:
                raise Sv4dError(f"{path} has no 'vertices' array")
            return _vertices(z["vertices"], f"{path}: vertices")
    except (OSError, ValueError, EOFError) as e:
        raise Sv4dError(f"cannot read {path}: {e}") from None


# ----------------------------------------------------------------------------------- images


def touches_border(alpha: np.ndarray) -> np.ndarray:
    """(..., H, W) masks -> (...) bool: the mask has a pixel in the first or last row or column."""
    return alpha[..., 0, :].any(-1) | alpha[..., -1, :].any(-1) | alpha[..., :, 0].any(-1) | alpha[..., :, -1].any(-1)


def _keyframes(n: int, count: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n - 1, min(n, max(1, count)))).astype(int))


def _view_rgba(ms: MultiViewSet, view: int) -> np.ndarray:
    """(F, H, W, 4) uint8 of one view; alpha estimated from rgb_white when there is no rgba/."""
    if ms.has_rgba:
        return ms.load_view(view, "rgba")
    rgb = ms.load_view(view, "rgb_white")
    alpha = np.where((rgb < _WHITE_CUT).any(-1), 255, 0).astype(np.uint8)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def _motion(rgba: np.ndarray, keys: np.ndarray) -> float:
    white = composite_white(rgba[keys]).astype(np.float32) / np.float32(255.0)  # (K, H, W, 3)
    fg = rgba[keys, ..., 3] > 0
    best = 0.0
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            union = fg[a] | fg[b]
            if union.any():
                d = np.abs(white[a] - white[b]).mean(-1)
                best = max(best, float(d[union].mean()))
    return best


def _measure(ms: MultiViewSet, fraction: float, keyframes: int, thumb: int | None) -> tuple[dict, np.ndarray | None]:
    n_v, n_f = ms.num_views, ms.num_frames
    keys = _keyframes(n_f, keyframes)
    ratios, motions = [], []
    luma_sum = alpha_sum = 0.0
    border = empty = 0
    thumb_views = set(_keyframes(n_v, 5).tolist()) if thumb else set()
    frames_row: list[np.ndarray] = []
    views_row: list[np.ndarray] = []
    for v in range(n_v):
        rgba = _view_rgba(ms, v)  # (F, H, W, 4)
        alpha = rgba[..., 3]
        a = alpha.astype(np.float32) / np.float32(255.0)
        size = np.sqrt(a.sum(axis=(1, 2), dtype=np.float64))  # (F,) pixels
        ratios.append(float(size.max() / max(size.min(), 1.0)) if size.max() > 0 else 1.0)
        motions.append(_motion(rgba, keys))
        y = rgba[..., :3].astype(np.float32) @ (_LUMA / np.float32(255.0))
        luma_sum += float((a * y).sum(dtype=np.float64))
        alpha_sum += float(a.sum(dtype=np.float64))
        border += int(touches_border(alpha).sum())
        empty += int((~alpha.reshape(n_f, -1).any(-1)).sum())
        if thumb and v == 0:
            frames_row = [thumbnail(composite_white(rgba[i]), thumb) for i in _keyframes(n_f, 5)]
        if thumb and v in thumb_views:
            views_row.append(thumbnail(composite_white(rgba[0]), thumb))
    geometry = ms.root / "geometry.npz"
    drift_value = after = None
    if geometry.is_file():
        drift_value, after = drift(_load_geometry(geometry), fraction)
    measures = {
        "drift": drift_value,
        "drift_after": after,
        "rectified": ms.meta.get("rectified"),
        "scale_ratio": float(np.median(ratios)),
        "scale_ratio_per_view": ratios,
        "motion": float(np.median(motions)),
        "motion_per_view": motions,
        "luminance": luma_sum / alpha_sum if alpha_sum > 0 else None,
        "touches_border": border / (n_v * n_f),
        "empty_images": empty / (n_v * n_f),
        "views": n_v,
        "frames": n_f,
        "image_size": [ms.intrinsics.width, ms.intrinsics.height],
        "motion_keyframes": keys.tolist(),
        "static_fraction": float(fraction),
        "alpha": "rgba" if ms.has_rgba else f"estimated from rgb_white (a channel < {_WHITE_CUT})",
    }
    strip = tile([frames_row, views_row]) if thumb else None
    return measures, strip


def measure(set_path: str | os.PathLike, *, fraction: float = 0.3, keyframes: int = 16) -> dict:
    """Curation measures of one multi-view set (module docstring; units in ``UNITS``).

    fraction: share of the vertices forming the static part (:func:`static_track`);
    keyframes: most frames per view compared pairwise for ``motion``.
    """
    if keyframes < 2:
        raise Sv4dError(f"keyframes must be at least 2, got {keyframes}")
    return _measure(read_multiview(set_path), fraction, keyframes, None)[0]


# ----------------------------------------------------------------------------------- verdict


@dataclass
class Thresholds:
    """Limits of :func:`verdict`; None switches a check off.

    max_drift: object sizes (measured ``drift``); max_scale_ratio: >= 1; min_motion: mean
    absolute RGB difference 0..1; min_luminance: luma 0..1; max_touches_border and
    max_empty_images: fractions of the images.
    """

    # fox_walk (a good clip, shared/data/multiview) measures drift 0.008, scale ratio 1.03
    # (1.04 at most per view), motion 0.27, luminance 0.53, touches border 0.
    max_drift: float | None = 0.1  # walking off by its own size gives >= 0.25
    max_scale_ratio: float | None = 1.5  # growing 2x gives 2.0
    min_motion: float | None = 0.02  # a frozen clip gives 0
    min_luminance: float | None = 0.15  # fox_walk's colours x 0.1 give about 0.05
    max_touches_border: float | None = 0.5
    max_empty_images: float | None = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise Sv4dError(f"threshold {f.name} must be a finite number >= 0 or None, got {value!r}")
            setattr(self, f.name, float(value))
        if self.max_scale_ratio is not None and self.max_scale_ratio < 1.0:
            raise Sv4dError(f"max_scale_ratio must be at least 1, got {self.max_scale_ratio}")


def _g(x: float) -> str:
    return "0" if abs(x) < 1e-9 else f"{x:.3g}"


def verdict(measures: dict, thresholds: Thresholds | None = None) -> tuple[bool, list[str]]:
    """(keep, reasons): every failed criterion gives one reason naming it, the measured value and
    the threshold. Measures that are None (no geometry, no foreground) are not checked, except
    that a set without any foreground fails the luminance check."""
    t = thresholds or Thresholds()
    m = measures
    reasons = []
    if t.max_drift is not None and m.get("drift") is not None and m["drift"] > t.max_drift:
        after = m.get("drift_after")
        note = "" if after is None else f" (rectification would leave {_g(after)})"
        reasons.append(
            f"drift: the static part strays {_g(m['drift'])} object sizes from its mean "
            f"position > {_g(t.max_drift)}{note}"
        )
    if t.max_scale_ratio is not None and m["scale_ratio"] > t.max_scale_ratio:
        reasons.append(
            f"inconsistent scaling: projected size max/min {_g(m['scale_ratio'])} > "
            f"{_g(t.max_scale_ratio)} (median over views)"
        )
    if t.min_motion is not None and m["motion"] < t.min_motion:
        reasons.append(f"minimal motion: largest keyframe difference {_g(m['motion'])} < {_g(t.min_motion)}")
    if t.min_luminance is not None:
        if m.get("luminance") is None:
            reasons.append(f"dark lighting: no foreground to measure (needs luminance >= {_g(t.min_luminance)})")
        elif m["luminance"] < t.min_luminance:
            reasons.append(f"dark lighting: mean foreground luminance {_g(m['luminance'])} < {_g(t.min_luminance)}")
    if t.max_touches_border is not None and m["touches_border"] > t.max_touches_border:
        reasons.append(
            f"touches border: fraction of images cut by the border {_g(m['touches_border'])} > "
            f"{_g(t.max_touches_border)}"
        )
    if t.max_empty_images is not None and m["empty_images"] > t.max_empty_images:
        reasons.append(
            f"empty images: fraction of images without foreground {_g(m['empty_images'])} > {_g(t.max_empty_images)}"
        )
    return not reasons, reasons


# ----------------------------------------------------------------------------------- report


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "set"


def _summary(m: dict) -> str:
    parts = []
    if m.get("drift") is not None:
        parts.append(f"drift {_g(m['drift'])} (after rectification {_g(m['drift_after'])})")
    else:
        parts.append("drift - (no geometry.npz)")
    parts.append(f"scale ratio {_g(m['scale_ratio'])}")
    parts.append(f"motion {_g(m['motion'])}")
    parts.append("luminance " + ("-" if m.get("luminance") is None else _g(m["luminance"])))
    parts.append(f"touches border {_g(m['touches_border'])}")
    if m.get("rectified") is not None:
        parts.append("rectified")
    return " · ".join(parts)


def _html(report: dict) -> str:
    e = html.escape
    t = report["thresholds"]
    c = report["counts"]
    out = [
        "<!doctype html>",
        "<html><head><meta charset='utf-8'><title>sv4d curation</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td{padding:6px;vertical-align:top;border-bottom:1px solid #ddd}.r{color:#a00}"
        ".p{color:#666;font-size:85%}img{image-rendering:pixelated}</style></head><body>",
        "<h1>Curation</h1>",
        f"<p>kept {c['kept']} of {c['paths']} paths ({c['sets']} multi-view sets; "
        f"paths that are not sets: {c['not_sets']})</p>",
        "<p>thresholds: " + e(", ".join(f"{k} = {'off' if v is None else v}" for k, v in t.items())) + "</p>",
    ]
    for title, keep in (("Kept", True), ("Dropped", False)):
        rows = [s for s in report["sets"] if s["keep"] is keep]
        out.append(f"<h2>{title} ({len(rows)})</h2>")
        if not rows:
            out.append("<p>none</p>")
            continue
        out.append("<table>")
        for s in rows:
            img = f"<img src='{e(s['thumbnail'])}' alt='{e(s['name'])}'>" if s["thumbnail"] else ""
            text = [f"<b>{e(s['name'])}</b>", f"<span class='p'>{e(s['path'])}</span>"]
            if s["measures"] is not None:
                text.append(e(_summary(s["measures"])))
            text += [f"<span class='r'>{e(r)}</span>" for r in s["reasons"]]
            out.append(f"<tr><td>{img}</td><td>{'<br>'.join(text)}</td></tr>")
        out.append("</table>")
    out.append("<p class='p'>Thumbnails: top row, frames of view 0; bottom row, views at frame 0.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _check_report(report: Path, paths: Sequence[Path], overwrite: bool) -> None:
    if report.is_symlink() or (report.exists() and not report.is_dir()):
        raise Sv4dError(f"the report folder {report} exists and is not a folder; choose another --report")
    if report.exists() and not overwrite:
        raise Sv4dError(f"the report folder {report} already exists; pass --overwrite to replace it")
    r = report.resolve()
    for p in paths:
        q = p.resolve()
        if q == r or r in q.parents:
            raise Sv4dError(f"the report folder {report} would replace the set {p}; choose another --report")


def curate(
    sets: Sequence[str | os.PathLike],
    report_dir: str | os.PathLike,
    thresholds: Thresholds | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
    fraction: float = 0.3,
    keyframes: int = 16,
    thumb: int = 64,
) -> dict:
    """Measure every set, judge it (:func:`verdict`) and write the report folder atomically.

    ``report_dir/curation.json``: per path (in the given order) ``path``, ``name``, ``keep``,
    ``reasons``, ``measures`` (None when it could not be measured) and ``thumbnail``; plus
    ``thresholds``, ``units`` and ``counts``. ``report_dir/index.html``: kept sets first, then
    dropped ones with their reasons, each with a strip (``thumbs/NNNN_<name>.png``, NNNN the
    position in ``sets``): frames of view 0 on top, views at frame 0 below. A path that is not a
    multi-view set is reported as dropped ("not a multi-view set: ..."); if none is a set,
    Sv4dError and nothing is written. Returns curation.json's content.
    """
    t = thresholds or Thresholds()
    paths = [Path(p) for p in sets]
    if not paths:
        raise Sv4dError("give at least one multi-view set to curate")
    if keyframes < 2 or thumb < 8:
        raise Sv4dError("keyframes must be at least 2 and thumbnails at least 8 px")
    if not 0.0 < float(fraction) <= 1.0:
        raise Sv4dError(f"fraction must be in (0, 1], got {fraction}")
    report = Path(report_dir)
    _check_report(report, paths, overwrite)
    entries = []
    with atomic_folder(report) as tmp:
        (tmp / "thumbs").mkdir()
        for i, p in enumerate(tqdm(paths, desc="curating", unit="set", disable=not progress)):
            entry: dict[str, Any] = {
                "path": str(p),
                "name": p.name or str(p),
                "keep": False,
                "reasons": [],
                "measures": None,
                "thumbnail": None,
                "is_set": False,
            }
            entries.append(entry)
            try:
                ms = read_multiview(p)
            except Sv4dError as err:
                entry["reasons"] = [f"not a multi-view set: {err}"]
                continue
            entry["is_set"] = True
            try:
                measures, strip = _measure(ms, fraction, keyframes, thumb)
            except Sv4dError as err:
                entry["reasons"] = [f"cannot measure: {err}"]
                continue
            entry["measures"] = measures
            entry["keep"], entry["reasons"] = verdict(measures, t)
            name = f"thumbs/{i:04d}_{_safe(entry['name'])}.png"
            Image.fromarray(strip).save(tmp / name)
            entry["thumbnail"] = name
        n_sets = sum(e["is_set"] for e in entries)
        if n_sets == 0:
            raise Sv4dError(f"none of the {len(paths)} path(s) is a multi-view set (first: {entries[0]['reasons'][0]})")
        kept = sum(e["keep"] for e in entries)
        result = {
            "counts": {
                "paths": len(paths),
                "sets": n_sets,
                "kept": kept,
                "dropped": len(paths) - kept,
                "not_sets": len(paths) - n_sets,
            },
            "thresholds": asdict(t),
            "units": dict(UNITS),
            "settings": {"static_fraction": float(fraction), "keyframes": int(keyframes), "thumb": int(thumb)},
            "sets": entries,
        }
        result = jsonable(result)
        (tmp / "curation.json").write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
        (tmp / "index.html").write_text(_html(result), encoding="utf-8")
    return result

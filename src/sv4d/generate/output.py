"""Writing a generation's output folder, atomically.

``OUT/`` holds the multi-view video set (``cameras.json``, ``rgba/``, ``rgb_white/``,
``transforms.json``; see ``io/multiview.py``) plus ``videos/view_XX.mp4`` (one per view,
view 0 being the preprocessed input the model saw), ``preview.png`` (views x frames),
``preview.mp4`` (all views side by side over time) and ``generation.json`` (every
setting and timing). Everything is written into a temporary sibling folder that is
renamed to ``OUT`` when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import Sv4dError
from ..io.atomic import atomic_folder
from ..io.multiview import VIEW_DIR, write_multiview
from ..io.video import write_video

if TYPE_CHECKING:
    from .pipeline import GenerationResult

PREVIEW_TILE = 128
PREVIEW_MAX_FRAMES = 24
VIDEO_TILE = 256
VIDEO_COLUMNS = 5


def check_output_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Fail early (before any work) when ``out`` exists and may not be replaced."""
    p = Path(out)
    if p.exists() and not overwrite:
        raise Sv4dError(f"output folder {p} already exists; pass --overwrite or choose another --out")
    if p.exists() and not p.is_dir():
        raise Sv4dError(f"output path {p} exists and is not a folder")
    return p


def _tiles(images: np.ndarray, tile: int) -> np.ndarray:
    """(k, S, S, 3) uint8 -> (k, tile, tile, 3), LANCZOS."""
    from PIL import Image

    if images.shape[1] == tile:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((tile, tile), Image.LANCZOS)) for im in images])


def preview_grid(images: np.ndarray, tile: int = PREVIEW_TILE, max_frames: int = PREVIEW_MAX_FRAMES) -> np.ndarray:
    """(V, n, S, S, 3) -> one image with a row per view and a column per (sampled) frame."""
    v, n = images.shape[:2]
    cols = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    t = min(tile, images.shape[2])
    rows = [np.concatenate(list(_tiles(images[i, cols], t)), 1) for i in range(v)]
    return np.concatenate(rows, 0)


def preview_frames(images: np.ndarray, tile: int = VIDEO_TILE, columns: int = VIDEO_COLUMNS) -> np.ndarray:
    """(V, n, S, S, 3) -> (n, rows * tile, cols * tile, 3): every view of a frame in a grid."""
    v, n = images.shape[:2]
    t = min(tile, images.shape[2])
    cols = min(columns, v)
    rows = -(-v // cols)
    out = np.full((n, rows * t, cols * t, 3), 255, np.uint8)
    for i in range(v):
        r, c = divmod(i, cols)
        out[:, r * t : (r + 1) * t, c * t : (c + 1) * t] = _tiles(images[i], t)
    return out


def write_generation(
    result: GenerationResult,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    videos: bool = True,
    preview: bool = True,
    progress: bool = True,
) -> Path:
    from PIL import Image

    out = check_output_dir(out, overwrite)
    with atomic_folder(out) as tmp:
        colors = result.images.copy()
        colors[0] = result.preprocessed.colors  # the input view's straight colours
        rgba = np.concatenate([colors, result.alpha[..., None]], -1)
        extra = {
            "generator": "sv4d generate",
            "normalization": {
                "assumption": "object fits [-0.5, 0.5]^3 at the origin; its farthest point from the "
                "input image's centre is at frame_ratio of the half-image",
                "frame_ratio": result.settings.get("frame_ratio"),
                "cube_size": 1.0,
            },
            "alpha": {
                "view_00": "from the input's alpha or foreground mask, cropped and resized like the image; "
                "rgba colours are straight (not composited); rgb_white is exactly what the model saw",
                "generated": "foreground = mean(RGB) <= 250 on the generated white background; rgba colours "
                "are the generated ones",
            },
        }
        write_multiview(
            tmp,
            result.rig,
            rgba=rgba,
            rgb_white=result.images,
            extra=extra,
            transforms=True,
            atomic=False,
            progress=progress,
        )
        fps = result.fps if result.fps and result.fps > 0 else 10.0
        if videos:
            (tmp / "videos").mkdir()
            for i in range(result.num_views):
                write_video(tmp / "videos" / f"{VIEW_DIR.format(i)}.mp4", result.images[i], fps)
        if preview:
            Image.fromarray(preview_grid(result.images)).save(tmp / "preview.png")
            write_video(tmp / "preview.mp4", preview_frames(result.images), fps)
        with open(tmp / "generation.json", "w") as f:
            json.dump(result.settings, f, indent=1)
    return out

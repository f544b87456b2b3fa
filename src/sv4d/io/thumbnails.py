"""Small pictures for HTML reports: thumbnails and a white-backed grid of them."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["thumbnail", "tile"]


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 -> the same with the longer side ``size`` (Lanczos; never enlarged)."""
    h, w = image.shape[:2]
    s = min(1.0, size / max(h, w))
    if s == 1.0:
        return image
    im = Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    return np.asarray(im)


def tile(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Images (h, w, 3) in rows -> one white-backed (H, W, 3) uint8 picture, ``gap`` px apart."""
    th = max(im.shape[0] for row in rows for im in row)
    tw = max(im.shape[1] for row in rows for im in row)
    cols = max(len(row) for row in rows)
    out = np.full((len(rows) * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            y, x = r * (th + gap), c * (tw + gap)
            out[y : y + im.shape[0], x : x + im.shape[1]] = im
    return out

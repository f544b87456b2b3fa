"""Input preprocessing: foreground, square crop, resize, white background (spec section 5.1).

The default reproduces the official ``preprocess_video``:

1. a foreground mask per frame: alpha > 0 for RGBA input, else mean(RGB) <= 250 (the
   clips are expected on a white background);
2. the union bounding box of the masks over all frames;
3. ``box_square`` = the largest distance (integer pixels) from the image centre
   ``(H // 2, W // 2)`` to an edge of that box; the square of side ``2 * box_square``
   centred on the image centre is cropped (clipped to the image) and pasted, centre on
   centre, into a transparent canvas of side ``int(2 * box_square / frame_ratio)``;
4. the canvas is resized to the model size with PIL's LANCZOS filter and composited on
   white as ``trunc(255 * (rgb * a + 1 - a))``.

Differences from the official script, all deliberate: it saves the result as a lossy
mp4 and reads it back (we keep the exact pixels); it reads GIFs as RGBA with an all-opaque
alpha, so the whole frame counts as foreground (our ``mask="auto"`` uses the white
threshold when an alpha channel is fully opaque; ``mask="alpha"`` gives the official
behaviour); and it requires square inputs for its index arithmetic (ours handles any
aspect ratio and equals it on square ones).

Other options: ``crop="per-frame"`` crops every frame around its own box (for objects
that travel across the frame); ``mask="grabcut"`` segments each frame with OpenCV's
GrabCut seeded from a box (no downloaded weights); ``mask="rembg"`` uses the ``rembg``
package when it and its model file are installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Sv4dError

MASK_MODES = ("auto", "alpha", "threshold", "grabcut", "rembg")
CROP_MODES = ("union", "per-frame")
WHITE_THRESHOLD = 250


@dataclass
class Preprocessed:
    """What the model sees.

    images: (n, S, S, 3) uint8 RGB on white; alpha: (n, S, S) uint8 foreground alpha;
    colors: (n, S, S, 3) uint8 straight (not composited) colours, for RGBA output;
    crops: per frame (row0, col0, box_square, canvas_side) in input pixels;
    mask: the mask mode used; has_alpha: whether the input carried a real alpha channel.
    """

    images: np.ndarray
    alpha: np.ndarray
    colors: np.ndarray
    crops: list[tuple[int, int, int, int]]
    mask: str
    crop: str
    frame_ratio: float
    notes: list[str] = field(default_factory=list)

    def to_tensor(self) -> object:
        """(n, 3, S, S) float32 in [-1, 1], as ``ToTensor() * 2 - 1``."""
        import torch

        x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float() / 255.0
        return x * 2.0 - 1.0


# ----------------------------------------------------------------------------- masks
def threshold_mask(rgb: np.ndarray, thresh: int = WHITE_THRESHOLD) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., H, W) bool: mean(RGB) <= thresh (not white)."""
    return rgb[..., :3].astype(np.float64).mean(-1) <= thresh


def _cv2():
    try:
        import cv2
    except ImportError:
        raise Sv4dError(
            "mask 'grabcut' needs OpenCV: pip install opencv-python-headless (or pip install 'sv4d[segment]')"
        ) from None
    return cv2


def grabcut_alpha(
    frame: np.ndarray, box: tuple[int, int, int, int] | None = None, iterations: int = 5, max_side: int = 320
) -> np.ndarray:
    """Foreground alpha (H, W) uint8 of one RGB frame by OpenCV GrabCut.

    box: (x0, y0, x1, y1) in pixels around the object; default: the frame inset by 5 %.
    The frame is downscaled to ``max_side`` for speed and the mask scaled back.
    """
    cv2 = _cv2()
    h, w = frame.shape[:2]
    s = min(1.0, max_side / max(h, w))
    small = (
        cv2.resize(frame[..., :3], (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        if s < 1
        else frame[..., :3].copy()
    )
    sh, sw = small.shape[:2]
    if box is None:
        mx, my = max(1, round(0.05 * sw)), max(1, round(0.05 * sh))
        rect = (mx, my, sw - 2 * mx, sh - 2 * my)
    else:
        x0, y0, x1, y1 = (v * s for v in box)
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(sw, int(np.ceil(x1))), min(sh, int(np.ceil(y1)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise Sv4dError(f"the GrabCut box {box} is empty or outside the {w}x{h} frame")
        rect = (x0, y0, x1 - x0, y1 - y0)
    mask = np.zeros((sh, sw), np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8) * 255
    if s < 1:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    return fg


def rembg_alpha(frame: np.ndarray, session: object = None) -> np.ndarray:
    """Foreground alpha (H, W) uint8 of one frame by ``rembg`` (as the official ``remove_bg``)."""
    from PIL import Image
    from rembg import remove  # checked by _rembg_session

    out = remove(Image.fromarray(frame[..., :3]).convert("RGBA"), alpha_matting=True, session=session)
    return np.asarray(out)[..., 3].copy()


def _check_rembg() -> None:
    try:
        import rembg  # noqa: F401
    except ImportError:
        raise Sv4dError("mask 'rembg' needs the rembg package: pip install rembg") from None
    home = Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).expanduser()
    model = home / "u2net.onnx"
    if not model.is_file():
        raise Sv4dError(
            f"mask 'rembg' needs its model file {model} (it cannot be downloaded here); "
            "copy u2net.onnx there or set U2NET_HOME, or use --mask grabcut"
        )


def _rembg_session() -> object:
    _check_rembg()
    import rembg

    return rembg.new_session("u2net")


def check_mask_available(mask: str) -> None:
    """Raise Sv4dError now if ``mask`` needs something that is not installed."""
    if mask not in MASK_MODES:
        raise Sv4dError(f"unknown mask mode {mask!r}; choose one of {', '.join(MASK_MODES)}")
    if mask == "grabcut":
        _cv2()
    if mask == "rembg":
        _check_rembg()


def foreground(
    frames: np.ndarray, mask: str = "auto", box: tuple[int, int, int, int] | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Per-frame foreground of (n, H, W, C) uint8 frames.

    Returns (bbox_mask (n, H, W) bool — what the crop box is computed from,
    alpha (n, H, W) uint8 or None — an alpha to composite with (RGBA input or a
    segmentation), the mask mode actually used).
    """
    if mask not in MASK_MODES:
        raise Sv4dError(f"unknown mask mode {mask!r}; choose one of {', '.join(MASK_MODES)}")
    has_alpha = frames.shape[-1] == 4
    if mask == "auto":
        mask = "alpha" if has_alpha and (frames[..., 3] < 255).any() else "threshold"
    if mask == "alpha":
        if not has_alpha:
            raise Sv4dError("mask 'alpha' needs an input with an alpha channel (RGBA frames)")
        a = frames[..., 3]
        return a > 0, a, mask
    if mask == "threshold":
        return threshold_mask(frames), None, mask  # an alpha channel, if any, is ignored
    from tqdm.auto import tqdm

    session = _rembg_session() if mask == "rembg" else None
    alphas = []
    for f in tqdm(frames, desc=f"segmenting ({mask})", unit="frame", disable=not progress):
        alphas.append(grabcut_alpha(f, box) if mask == "grabcut" else rembg_alpha(f, session))
    a = np.stack(alphas)
    return a > 0, a, mask


def _bbox(m: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row0, col0, row1, col1) exclusive ends of a bool mask's True pixels, or None."""
    rows = np.flatnonzero(m.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _union(boxes: list[tuple[int, int, int, int] | None]) -> tuple[int, int, int, int] | None:
    b = [x for x in boxes if x is not None]
    if not b:
        return None
    return min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b)


def crop_square(
    rgba: np.ndarray, box: tuple[int, int, int, int], frame_ratio: float, centre: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Square crop of (H, W, C) around ``centre`` (default: the image centre, official).

    ``box_square`` is the largest distance from the centre to an edge of ``box``
    (row0, col0, row1, col1); the square of side ``2 * box_square`` around the centre
    (clipped to the image) is pasted, centre on centre, into a zero canvas of side
    ``int(2 * box_square / frame_ratio)``. Returns the canvas (side, side, C) and
    (row0, col0, box_square, side) where row0/col0 is the square's top-left corner.
    """
    h, w = rgba.shape[:2]
    cy, cx = (h // 2, w // 2) if centre is None else centre
    r0, c0, r1, c1 = box
    bs = max(cy - r0, cx - c0, r1 - cy, c1 - cx, 1)
    side = max(1, int(2 * bs / frame_ratio))
    center = side // 2
    rr0, cc0 = max(0, cy - bs), max(0, cx - bs)
    rr1, cc1 = min(h, cy + bs), min(w, cx + bs)
    canvas = np.zeros((side, side, rgba.shape[2]), np.uint8)
    pr, pc = center - (cy - rr0), center - (cx - cc0)
    canvas[pr : pr + rr1 - rr0, pc : pc + cc1 - cc0] = rgba[rr0:rr1, cc0:cc1]
    return canvas, (cy - bs, cx - bs, bs, side)


def preprocess_frames(
    frames: np.ndarray,
    size: int,
    *,
    mask: str = "auto",
    crop: str = "union",
    frame_ratio: float = 0.9,
    box: tuple[int, int, int, int] | None = None,
    progress: bool = False,
) -> Preprocessed:
    """(n, H, W, 3|4) uint8 frames -> the model's (n, size, size, 3) input and an alpha."""
    from PIL import Image

    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.dtype != np.uint8:
        raise Sv4dError(f"frames must be (n, H, W, 3|4) uint8, got {frames.shape} {frames.dtype}")
    if crop not in CROP_MODES:
        raise Sv4dError(f"unknown crop mode {crop!r}; choose one of {', '.join(CROP_MODES)}")
    if not 0.05 <= frame_ratio <= 1.0:
        raise Sv4dError(f"frame ratio must be in [0.05, 1], got {frame_ratio}")
    n, h, w = frames.shape[:3]
    fg, alpha, used = foreground(frames, mask, box, progress)
    notes = []
    boxes = [_bbox(m) for m in fg]
    full = (0, 0, h, w)
    if all(b is None for b in boxes):
        notes.append("no foreground found in any frame; the whole frame was used")
    union = _union(boxes) or full
    # What is composited: RGB input gets alpha 255 (only the padding turns white) unless a
    # segmentation or a real alpha is used; the output alpha is the foreground estimate.
    comp_alpha = alpha if alpha is not None else np.full((n, h, w), 255, np.uint8)
    out_alpha = alpha if alpha is not None else fg.astype(np.uint8) * 255
    images, alphas, colors, crops = [], [], [], []
    for i in range(n):
        rgba = np.concatenate([frames[i, ..., :3], comp_alpha[i, ..., None], out_alpha[i, ..., None]], -1)
        if crop == "union":
            canvas, info = crop_square(rgba, union, frame_ratio)
        else:  # centred on the frame's own box, so a travelling object stays in the middle
            b = boxes[i] or union
            canvas, info = crop_square(rgba, b, frame_ratio, ((b[0] + b[2]) // 2, (b[1] + b[3]) // 2))
        res = np.asarray(Image.fromarray(canvas[..., :4], "RGBA").resize((size, size), Image.LANCZOS))
        a_out = np.asarray(Image.fromarray(canvas[..., 4], "L").resize((size, size), Image.LANCZOS))
        f = res.astype(np.float64) / 255.0
        rgb = f[..., :3] * f[..., 3:] + (1.0 - f[..., 3:])
        images.append((rgb * 255).astype(np.uint8))
        alphas.append(a_out)
        colors.append(res[..., :3])  # PIL resamples RGBA premultiplied and returns straight colour
        crops.append(info)
    return Preprocessed(np.stack(images), np.stack(alphas), np.stack(colors), crops, used, crop, frame_ratio, notes)

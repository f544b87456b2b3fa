"""FVD and the SV4D variants over a views x frames image grid.

The grid holds image ``(v, f)`` for view position ``v`` in ``0..V-1`` (the evaluated views in
the order given) and frame position ``f`` in ``0..F-1``. Each variant reads the grid as a set of
image sequences, cuts every sequence into clips of ``clip_length`` images, and compares the I3D
features of the predicted clips with those of the ground-truth clips read the same way:

* **FVD-F** (along time): one sequence per view, ``[(v, 0), (v, 1), ..., (v, F-1)]``.
* **FVD-V** (along views): one sequence per frame, ``[(0, f), (1, f), ..., (V-1, f)]``.
* **FVD-Diag**: one sequence per start view ``s``, ``[((s + f) mod V, f) for f in 0..F-1]``:
  time runs forward while the camera steps to the next view each frame (wrapping around the
  view list, which for orbit views is going round the object).
* **FV4D**: the whole grid as one sequence in bidirectional (serpentine) raster order over
  views: view 0 frames 0..F-1, view 1 frames F-1..0, view 2 frames 0..F-1, ...; so
  consecutive images always differ by one frame or by one view.

Clips (:func:`clip_starts`): a sequence of ``n >= L`` images gives clips of ``L`` images
starting at ``0, S, 2S, ...`` (stride ``S``, default ``L``, so they do not overlap), plus one
clip ending at the last image if the stride does not land there, so every image is used. A
sequence shorter than ``L`` gives one clip stretched to ``L`` images by repeating images
(nearest-neighbour resampling: position ``i`` takes image ``floor(i n / L)``).

The Frechet distance between Gaussians fitted to the two feature sets is
``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``, with sample covariances (N - 1)
and ``tr((S1 S2)^(1/2))`` computed as the sum of the square roots of the eigenvalues of the
symmetric PSD matrix ``S1^(1/2) S2 S1^(1/2)`` in float64 (so identical sets give 0 up to
rounding, and no complex parts appear). With few clips (fewer than the feature dimension)
the covariances are rank-deficient: the figure is still defined but is noisy and only
comparable between evaluations made with the same settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import Sv4dError

__all__ = [
    "VARIANTS",
    "frechet_distance",
    "grid_sequences",
    "clip_starts",
    "clip_indices",
    "variant_clips",
    "fvd_variants",
]

VARIANTS = ("fvd_f", "fvd_v", "fvd_diag", "fv4d")

Index = tuple[int, int]  # (view position, frame position)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh((m + m.T) / 2)
    return (q * np.sqrt(np.clip(w, 0.0, None))) @ q.T


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features ``x`` (N, D) and ``y`` (M, D)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise Sv4dError(f"Frechet distance needs (N, D) and (M, D) features, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise Sv4dError(f"Frechet distance needs at least 2 samples per side, got {len(x)} and {len(y)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise Sv4dError("Frechet distance: the features hold NaN or infinite values")
    mu1, mu2 = x.mean(0), y.mean(0)
    s1 = np.atleast_2d(np.cov(x, rowvar=False))
    s2 = np.atleast_2d(np.cov(y, rowvar=False))
    r = _sqrt_psd(s1)
    cross = np.linalg.eigvalsh(r @ s2 @ r)
    fd = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(np.clip(cross, 0.0, None)).sum())
    return max(fd, 0.0)


def grid_sequences(variant: str, num_views: int, num_frames: int) -> list[list[Index]]:
    """The (view, frame) sequences a variant reads from a V x F grid (see the module doc)."""
    v_n, f_n = num_views, num_frames
    if v_n < 1 or f_n < 1:
        raise Sv4dError(f"empty grid: {v_n} views x {f_n} frames")
    if variant == "fvd_f":
        return [[(v, f) for f in range(f_n)] for v in range(v_n)]
    if variant == "fvd_v":
        return [[(v, f) for v in range(v_n)] for f in range(f_n)]
    if variant == "fvd_diag":
        return [[((s + f) % v_n, f) for f in range(f_n)] for s in range(v_n)]
    if variant == "fv4d":
        seq: list[Index] = []
        for v in range(v_n):
            frames = range(f_n) if v % 2 == 0 else range(f_n - 1, -1, -1)
            seq.extend((v, f) for f in frames)
        return [seq]
    raise Sv4dError(f"unknown FVD variant {variant!r}; choose from {', '.join(VARIANTS)}")


def clip_starts(n: int, length: int, stride: int | None = None) -> list[int]:
    """Start positions of the clips cut from a sequence of ``n >= length`` images."""
    stride = length if stride is None else stride
    if length < 1 or stride < 1:
        raise Sv4dError(f"clip length and stride must be positive, got {length} and {stride}")
    if n < length:
        return [0]
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    return starts


def clip_indices(seq: Sequence[Index], length: int, stride: int | None = None) -> list[list[Index]]:
    """The clips (each ``length`` grid indices) cut from one sequence."""
    n = len(seq)
    if n == 0:
        raise Sv4dError("cannot cut clips from an empty sequence")
    if n < length:
        return [[seq[(i * n) // length] for i in range(length)]]
    return [list(seq[s : s + length]) for s in clip_starts(n, length, stride)]


def variant_clips(
    variant: str, num_views: int, num_frames: int, length: int, stride: int | None = None
) -> list[list[Index]]:
    """Every clip of a variant, in sequence order."""
    return [c for seq in grid_sequences(variant, num_views, num_frames) for c in clip_indices(seq, length, stride)]


def fvd_variants(
    features: Callable[[list[list[Index]], str], np.ndarray],
    num_views: int,
    num_frames: int,
    length: int,
    stride: int | None = None,
    variants: Sequence[str] = VARIANTS,
) -> dict[str, dict]:
    """Each variant's Frechet distance.

    ``features(clips, side)`` returns the (len(clips), D) features of the given clips of the
    prediction (``side == "pred"``) or the ground truth (``side == "gt"``). Returns
    ``{variant: {"fvd": float, "clips": n}}``; a variant with fewer than two clips is reported
    with ``fvd`` None and a reason.
    """
    out: dict[str, dict] = {}
    for variant in variants:
        clips = variant_clips(variant, num_views, num_frames, length, stride)
        if len(clips) < 2:
            out[variant] = {
                "fvd": None,
                "clips": len(clips),
                "reason": "needs at least 2 clips (a longer grid or a shorter --clip-length)",
            }
            continue
        fd = frechet_distance(features(clips, "pred"), features(clips, "gt"))
        out[variant] = {"fvd": fd, "clips": len(clips)}
    return out

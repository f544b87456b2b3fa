"""Training samples: windows of T frames x (1 + V) views read from multi-view video sets.

A sample conditions on the input view's T frames and asks for the V target views of the same
T frames. The target views at the window's first frame double as the *reference views* (at
inference, later windows are conditioned on the views already generated at their first
frame). Static (3-D) samples repeat one frame T times.

Layout: ``target`` rows are frame-major, row ``t*V + v`` = target view ``v`` at frame ``t``
(einops ``"(t v) c h w"``), as the UNet and :func:`sv4d.cameras.relative_angles` expect.
Item ``i`` of a dataset is a pure function of ``(seed, i)``, so a resumed run sees the same data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from ..cameras import relative_angles
from ..errors import Sv4dError
from ..io.multiview import MultiViewSet, read_multiview

MODES = ("dynamic", "static", "mixed")


@dataclass
class TrainingSample:
    """One window. S = image size, T = frames, V = target views.

    frames: (T, 3, S, S) float32 in [-1, 1], the input view's frames over white.
    target: (T*V, 3, S, S) float32 in [-1, 1], target views frame-major (row t*V + v).
    ref_views: (V, 3, S, S), the target views at the window's first frame (== target[:V]).
    polar, azimuth: (T*V,) float64 radians, ``relative_angles`` of [input, targets...].
    static: True when one frame is repeated T times (3-D data).
    source: ``"set_name:input_view:frames"`` (frames comma-separated), for debugging.
    """

    frames: torch.Tensor
    target: torch.Tensor
    ref_views: torch.Tensor
    polar: torch.Tensor
    azimuth: torch.Tensor
    static: bool
    source: str


@dataclass
class WindowSpec:
    """The images of one sample: set ``set_index``, the input view and the (orbit-ordered)
    target views at ``frames``; angles and flags as in :class:`TrainingSample`."""

    set_index: int
    input_view: int
    target_views: list[int]
    frames: list[int]
    polar: torch.Tensor
    azimuth: torch.Tensor
    static: bool
    source: str


def collate(samples: list[TrainingSample]) -> dict[str, torch.Tensor]:
    """Stack b samples (rows ordered (b, t, v) as at inference).

    Returns frames (b*T, 3, S, S), target (b*T*V, 3, S, S), ref_views (b*V, 3, S, S),
    polar and azimuth (b*T*V,) float64, static (b,) bool.
    """
    if not samples:
        raise Sv4dError("collate needs at least one sample")
    shapes = {(s.frames.shape, s.target.shape) for s in samples}
    if len(shapes) != 1:
        raise Sv4dError(f"cannot batch samples of different shapes: {sorted(map(str, shapes))}")
    out = {
        k: torch.cat([getattr(s, k) for s in samples]) for k in ("frames", "target", "ref_views", "polar", "azimuth")
    }
    out["static"] = torch.tensor([s.static for s in samples], dtype=torch.bool)
    return out


def images_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(arr)).float() / 255.0 * 2.0 - 1.0
    return rearrange(x, "n h w c -> n c h w").contiguous()


def _to_square(img: np.ndarray) -> np.ndarray:
    """Pad a non-square (H, W, 3) uint8 image with white to a centred square."""
    h, w = img.shape[:2]
    if h == w:
        return img
    d = abs(h - w)
    pad = ((d // 2, d - d // 2), (0, 0)) if h < w else ((0, 0), (d // 2, d - d // 2))
    return np.pad(img, pad + ((0, 0),), constant_values=255)


class MultiViewWindows(torch.utils.data.Dataset):
    """Windows of ``num_frames`` frames x (1 input + ``num_views`` target) views.

    sets: folders (or opened :class:`MultiViewSet`) of multi-view video sets.
    mode: "dynamic" (consecutive frames ``start + k*frame_stride``), "static" (one frame
    repeated T times) or "mixed" (with probability ``static_prob`` one random frame of the
    window's set repeated, else the dynamic window).
    A set shorter than the window span ``(T-1)*frame_stride + 1`` gives one window from
    frame 0, padded by repeating its last frame; a single-frame set is always static.
    views: the view indices samples may use (input and targets; default all), e.g. to hold
    some views out for evaluation.
    input_view: a view index, or "random". target_views: V explicit view indices (never the
    input view), or "random" (V distinct views other than the input). Targets are ordered
    by azimuth relative to the input view (an orbit), ties by elevation.
    samples_per_epoch: dataset length; default ``draws_per_window`` times the number of
    (set, window start) pairs (start frames for "static"), so that an epoch sees every
    window with that many different random view draws. Item i uses pair ``i % pairs`` and ``default_rng((seed, i))``.
    Images: ``rgb_white`` (composited from rgba when absent), padded with white to a square
    if needed and resized to ``image_size`` with Lanczos; with cache_images the resized uint8
    images are kept in memory after their first load (each DataLoader worker has its own).
    """

    def __init__(
        self,
        sets: Sequence[str | os.PathLike | MultiViewSet],
        *,
        num_frames: int,
        num_views: int,
        image_size: int,
        mode: str = "dynamic",
        static_prob: float = 0.5,
        input_view: int | str = 0,
        target_views: Sequence[int] | str = "random",
        frame_stride: int = 1,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        cache_images: bool = True,
        draws_per_window: int = 1,
        views: Sequence[int] | None = None,
    ) -> None:
        if isinstance(sets, (str, os.PathLike, MultiViewSet)):
            sets = [sets]
        if not sets:
            raise Sv4dError("MultiViewWindows needs at least one multi-view set")
        if mode not in MODES:
            raise Sv4dError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        for name, value in (
            ("num_frames", num_frames),
            ("num_views", num_views),
            ("image_size", image_size),
            ("frame_stride", frame_stride),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise Sv4dError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= static_prob <= 1.0:
            raise Sv4dError(f"static_prob must be in [0, 1], got {static_prob}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise Sv4dError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(input_view, str) and input_view != "random":
            raise Sv4dError(f"input_view must be a view index or 'random', got {input_view!r}")
        if isinstance(target_views, str):
            if target_views != "random":
                raise Sv4dError(f"target_views must be view indices or 'random', got {target_views!r}")
            targets = None
        else:
            targets = [int(v) for v in target_views]
            if len(targets) != num_views or len(set(targets)) != num_views:
                raise Sv4dError(
                    f"target_views must be {num_views} distinct view indices (num_views), got {list(target_views)}"
                )
            if input_view != "random" and int(input_view) in targets:
                raise Sv4dError(f"target_views {targets} include the input view {input_view}")
        self.T, self.V, self.S = int(num_frames), int(num_views), int(image_size)
        self.stride = int(frame_stride)
        self.mode, self.static_prob, self.seed = mode, float(static_prob), int(seed)
        self.input_view, self.targets, self.cache_images = input_view, targets, cache_images

        self.views = None if views is None or len(views) == 0 else [int(v) for v in views]
        if self.views is not None:
            if len(set(self.views)) != len(self.views) or min(self.views) < 0:
                raise Sv4dError(f"views must be distinct non-negative view indices, got {self.views}")
            named = ([] if input_view == "random" else [int(input_view)]) + (targets or [])
            outside = [v for v in named if v not in self.views]
            if outside:
                raise Sv4dError(f"input/target view(s) {outside} are not among the allowed views {self.views}")
        self.sets = [s if isinstance(s, MultiViewSet) else read_multiview(s) for s in sets]
        self.angles = []
        for s in self.sets:
            usable = s.num_views if self.views is None else len(self.views)
            if usable < 1 + self.V:
                raise Sv4dError(f"{s.root}: {usable} usable views; a sample needs 1 input + {self.V} target views")
            named = ([] if input_view == "random" else [int(input_view)]) + (targets or []) + (self.views or [])
            bad = sorted({v for v in named if not 0 <= v < s.num_views})
            if bad:
                raise Sv4dError(f"view index(es) {bad} out of range for {s.root} ({s.num_views} views)")
            self.angles.append((s.rig.elevation_deg, s.rig.azimuth_deg))
        span = (self.T - 1) * self.stride + 1
        starts = [s.num_frames if mode == "static" else max(1, s.num_frames - span + 1) for s in self.sets]
        self.pairs = [(k, start) for k, n in enumerate(starts) for start in range(n)]
        if draws_per_window < 1:
            raise Sv4dError(f"draws_per_window must be >= 1, got {draws_per_window}")
        self.length = draws_per_window * len(self.pairs) if samples_per_epoch is None else int(samples_per_epoch)
        if self.length < 1:
            raise Sv4dError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _image(self, k: int, view: int, frame: int) -> np.ndarray:
        """(S, S, 3) uint8 rgb_white image of set k, resized if needed."""
        key = (k, view, frame)
        img = self._cache.get(key)
        if img is None:
            img = _to_square(self.sets[k].load_image(view, frame, kind="rgb_white"))
            if img.shape[0] != self.S:
                img = np.asarray(Image.fromarray(img).resize((self.S, self.S), Image.LANCZOS))
            if self.cache_images:
                self._cache[key] = img
        return img

    def _tensor(self, k: int, views: Sequence[int], frames: Sequence[int]) -> torch.Tensor:
        """(len(frames)*len(views), 3, S, S) float32 in [-1, 1], frame-major."""
        return images_to_tensor(np.stack([self._image(k, v, f) for f in frames for v in views]))

    def allowed_views(self, k: int) -> list[int]:
        """The view indices of set ``k`` that samples may use."""
        return list(range(self.sets[k].num_views)) if self.views is None else list(self.views)

    def spec(self, i: int) -> WindowSpec:
        """Which images item ``i`` is made of (no pixels are read)."""
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} samples")
        i = int(i) % self.length
        rng = np.random.default_rng((self.seed, i))
        k, start = self.pairs[i % len(self.pairs)]
        s = self.sets[k]
        # Draw order is part of the data's identity: static?, frame, input view, targets.
        static = self.mode == "static" or (self.mode == "mixed" and rng.random() < self.static_prob)
        if static and self.mode == "mixed":
            start = int(rng.integers(s.num_frames))
        if static or s.num_frames == 1:
            frames, static = [start] * self.T, True
        else:
            frames = [min(start + t * self.stride, s.num_frames - 1) for t in range(self.T)]
        usable = self.allowed_views(k)
        if self.input_view == "random":
            allowed = [v for v in usable if v not in (self.targets or ())]
            inp = int(allowed[rng.integers(len(allowed))])
        else:
            inp = int(self.input_view)
        if self.targets is None:
            others = [v for v in usable if v != inp]
            targets = [int(v) for v in rng.choice(others, size=self.V, replace=False)]
        else:
            targets = list(self.targets)
        el, az = self.angles[k]
        targets.sort(key=lambda v: (round((az[v] - az[inp]) % 360.0, 9) % 360.0, el[v], v))
        chosen = [inp] + targets
        polar, azimuth = relative_angles(
            elevations_deg=[float(el[v]) for v in chosen],
            azimuths_deg=[float(az[v]) for v in chosen],
            num_frames=self.T,
        )
        return WindowSpec(
            set_index=k,
            input_view=inp,
            target_views=targets,
            frames=frames,
            polar=polar,
            azimuth=azimuth,
            static=static,
            source=f"{s.root.name}:{inp}:{','.join(map(str, frames))}",
        )

    def __getitem__(self, i: int) -> TrainingSample:
        w = self.spec(i)
        target = self._tensor(w.set_index, w.target_views, w.frames)
        return TrainingSample(
            frames=self._tensor(w.set_index, [w.input_view], w.frames),
            target=target,
            ref_views=target[: self.V].clone(),
            polar=w.polar,
            azimuth=w.azimuth,
            static=w.static,
            source=w.source,
        )

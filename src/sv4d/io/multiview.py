"""The multi-view video set: the one reader/writer of the folder every stage exchanges.

Layout (conventions in ``shared/data/multiview/README.md``)::

    cameras.json                       cameras, intrinsics, frame times (fields as in fox_walk's)
    rgba/view_XX/frame_YYY.png         RGBA, straight alpha (optional if rgb_white exists)
    rgb_white/view_XX/frame_YYY.png    the same composited over white
    transforms.json                    D-NeRF/Blender style copy of the cameras (every image)
    transforms_{train,val,test}.json   D-NeRF splits for other 4D tools (nerfstudio, 4DGaussians,
    dnerf/frame_YYY/r_VV.png           K-Planes, HexPlane) and the images they list: hard links
                                       of rgba/ (conventions and splits: :mod:`sv4d.io.dnerf`)

The cameras and frame times are a :class:`~sv4d.cameras.Rig` (conventions in
:mod:`sv4d.cameras`: +Y up, (elevation, azimuth) in degrees, OpenGL camera-to-world plus an
OpenCV copy, intrinsics in pixels with pixel centres at +0.5, times in seconds): reading gives
``MultiViewSet.rig``, writing takes one.
File names use the position of the view / frame: ``view_{v:02d}``, ``frame_{i:03d}``.
Other folders (``depth/``, ``geometry.npz``) may be present and are ignored.

:func:`read_multiview` also opens a plain D-NeRF folder (no ``cameras.json``) whose cameras are
fixed, views x frames (:func:`sv4d.io.dnerf.read_dnerf`); its images are found through
``MultiViewSet.files`` instead of ``view_dirs``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..cameras import CONVENTIONS, PIXEL_CONVENTION, Intrinsics, Rig, View, pose_matrix
from ..errors import Sv4dError
from . import dnerf
from .atomic import atomic_folder

KINDS = ("rgba", "rgb_white")
RESERVED_KEYS = ("image_size", "intrinsics", "camera_distance", "frames", "views")
"""Top-level cameras.json keys computed from the rig: ``extra`` may not set them."""
VIEW_DIR, FRAME_FILE = "view_{:02d}", "frame_{:03d}.png"  # names by position in the set


def composite_white(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA uint8 (..., 4) over white -> RGB uint8 (..., 3).

    ``round(rgb * a + 255 * (1 - a))`` with ``a = alpha / 255``, computed in float32.
    """
    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.shape[-1:] != (4,):
        raise Sv4dError(f"composite_white needs uint8 (..., 4) RGBA, got {rgba.dtype} {rgba.shape}")
    a = rgba[..., 3:].astype(np.float32) / np.float32(255.0)
    out = rgba[..., :3].astype(np.float32) * a + np.float32(255.0) * (np.float32(1.0) - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class MultiViewSet:
    """A multi-view video set on disk (images are loaded on demand).

    ``rig``: the cameras, intrinsics and frame times; ``view_dirs``: each view's folder name
    under ``rgba/`` and ``rgb_white/``; ``meta``: the whole cameras.json.
    A D-NeRF folder (:mod:`sv4d.io.dnerf`) has ``files[v][i]``, the path of view v's image at
    frame i relative to ``root`` (RGBA or RGB; both kinds are made from it), ``view_dirs`` are then
    only names, and ``meta`` is the cameras.json its rig would have, with ``"format": "dnerf"``.
    """

    root: Path
    rig: Rig
    view_dirs: list[str]
    has_rgba: bool
    has_rgb_white: bool
    meta: dict = field(repr=False)
    files: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)

    @property
    def intrinsics(self) -> Intrinsics:
        return self.rig.intrinsics

    @property
    def views(self) -> tuple[View, ...]:
        return self.rig.views

    @property
    def times(self) -> np.ndarray:
        """(n,) float64 frame times in seconds."""
        return self.rig.times

    @property
    def camera_distance(self) -> float | None:
        return self.rig.camera_distance

    @property
    def num_views(self) -> int:
        return self.rig.num_views

    @property
    def num_frames(self) -> int:
        return self.rig.num_frames

    def image_path(self, view: int, frame: int, kind: str = "rgba") -> Path:
        """Path of one image (it may not exist if that kind was not written). kind: rgba | rgb_white."""
        if kind not in KINDS:
            raise Sv4dError(f"unknown image kind {kind!r}; use 'rgba' or 'rgb_white'")
        if not (0 <= view < self.num_views and 0 <= frame < self.num_frames):
            raise Sv4dError(
                f"view {view}, frame {frame} out of range for a set of "
                f"{self.num_views} views x {self.num_frames} frames"
            )
        if self.files is not None:
            return self.root / self.files[view][frame]
        return self.root / kind / self.view_dirs[view] / FRAME_FILE.format(frame)

    def load_image(self, view: int, frame: int, kind: str = "rgba") -> np.ndarray:
        """One image as uint8: (H, W, 4) for ``rgba``, (H, W, 3) for ``rgb_white``.

        When the requested kind was not written, ``rgb_white`` is composited from ``rgba``
        (:func:`composite_white`) and ``rgba`` is ``rgb_white`` with alpha 255 everywhere.
        """
        if kind not in KINDS:
            raise Sv4dError(f"unknown image kind {kind!r}; use 'rgba' or 'rgb_white'")
        stored = kind if (self.has_rgba if kind == "rgba" else self.has_rgb_white) else None
        src = stored or ("rgb_white" if kind == "rgba" else "rgba")
        path = self.image_path(view, frame, src)
        try:
            with Image.open(path) as im:
                im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info else "RGB")
                arr = np.asarray(im)
        except (OSError, ValueError) as e:
            raise Sv4dError(f"cannot read image {path}: {e}") from None
        if arr.shape[:2] != (self.intrinsics.height, self.intrinsics.width):
            index = "cameras.json" if self.files is None else "the D-NeRF transforms"
            raise Sv4dError(
                f"{path} is {arr.shape[1]}x{arr.shape[0]} but {index} says "
                f"{self.intrinsics.width}x{self.intrinsics.height}"
            )
        if kind == "rgba" and arr.shape[-1] == 3:
            return np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        if kind == "rgb_white" and arr.shape[-1] == 4:
            return composite_white(arr)
        return arr

    def load_view(self, view: int, kind: str = "rgba") -> np.ndarray:
        """All frames of one view: (n, H, W, C) uint8, C = 4 (rgba) or 3 (rgb_white)."""
        return np.stack([self.load_image(view, i, kind) for i in range(self.num_frames)])

    def load_all(self, kind: str = "rgba") -> np.ndarray:
        """Every image: (V, n, H, W, C) uint8, view-major."""
        return np.stack([self.load_view(v, kind) for v in range(self.num_views)])


def _read_intrinsics(meta: dict) -> Intrinsics:
    try:
        width, height = (int(s) for s in meta["image_size"])
        block = meta["intrinsics"]
        if "K" in block:
            K = np.asarray(block["K"], dtype=np.float64)
            fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        else:
            fx, fy, cx, cy = (block[k] for k in ("fx", "fy", "cx", "cy"))
        intr = Intrinsics(width, height, float(fx), float(fy), float(cx), float(cy))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise Sv4dError(
            "cameras.json: 'image_size' must be [W, H] and 'intrinsics' must hold K "
            f"(3x3) or fx, fy, cx, cy ({type(e).__name__}: {e})"
        ) from None
    if min(width, height) <= 0 or min(intr.fx, intr.fy) <= 0:
        raise Sv4dError(f"cameras.json: invalid image size or focal length {intr}")
    return intr


def _read_view(pos: int, entry: Any) -> tuple[View, str]:
    try:
        az, el = entry.get("azimuth_deg"), entry.get("elevation_deg")
        c2w = pose_matrix(entry["c2w"], f"cameras.json: views[{pos}].c2w")
        view = View(c2w, None if el is None else float(el), None if az is None else float(az))
        return view, str(entry.get("dir", VIEW_DIR.format(pos)))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise Sv4dError(f"cameras.json: views[{pos}] must be an object with a 4x4 'c2w' and numeric angles") from None


def _read_dnerf_set(root: Path) -> MultiViewSet:
    grid = dnerf.read_dnerf(root)
    extra = {"generator": "D-NeRF folder", "format": "dnerf", "transforms": list(grid.sources)}
    meta = _cameras_json(grid.rig, extra)
    dirs = [VIEW_DIR.format(v) for v in range(grid.rig.num_views)]
    return MultiViewSet(root, grid.rig, dirs, grid.has_alpha, not grid.has_alpha, meta, grid.files)


def read_multiview(path: str | os.PathLike) -> MultiViewSet:
    """Open a multi-view video set folder (checks that every image file is present), or a D-NeRF
    folder of fixed cameras (:mod:`sv4d.io.dnerf`; used when there is no cameras.json)."""
    root = Path(path)
    if not root.is_dir():
        raise Sv4dError(f"multi-view set folder {root} does not exist (or is not a folder)")
    cam_path = root / "cameras.json"
    if not cam_path.is_file():
        if dnerf.transforms_files(root):
            return _read_dnerf_set(root)
        raise Sv4dError(
            f"{root} has no cameras.json (nor a D-NeRF transforms_train.json or transforms.json); "
            "is it a multi-view video set folder?"
        )
    try:
        meta = json.loads(cam_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Sv4dError(f"cannot parse {cam_path}: {e}") from None
    if not isinstance(meta, dict):
        raise Sv4dError(f"{cam_path} must hold a JSON object")
    missing = [k for k in ("image_size", "intrinsics", "frames", "views") if k not in meta]
    if missing:
        raise Sv4dError(f"{cam_path} lacks the required key(s) {', '.join(missing)}")
    intr = _read_intrinsics(meta)
    distance = meta.get("camera_distance")
    if distance is not None and not isinstance(distance, (int, float)):
        raise Sv4dError(f"{cam_path}: 'camera_distance' must be a number or null")
    frames, views_meta = meta["frames"], meta["views"]
    if not isinstance(frames, list) or not frames or not isinstance(views_meta, list) or not views_meta:
        raise Sv4dError(f"{cam_path}: 'frames' and 'views' must be non-empty lists")
    try:
        times = np.array([float(f["time_s"]) for f in frames], dtype=np.float64)
        indices = [int(f.get("index", i)) for i, f in enumerate(frames)]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise Sv4dError(f"{cam_path}: every frame needs a numeric 'time_s'") from None
    if indices != list(range(len(frames))):
        raise Sv4dError(f"{cam_path}: frame indices must be 0..{len(frames) - 1} in order")
    read = [_read_view(i, e) for i, e in enumerate(views_meta)]
    views, dirs = [v for v, _ in read], [d for _, d in read]
    try:
        rig = Rig(intr, tuple(views), times, None if distance is None else float(distance))
    except Sv4dError as e:
        raise Sv4dError(f"{cam_path}: {e}") from None
    has = {k: (root / k).is_dir() for k in KINDS}
    if not any(has.values()):
        raise Sv4dError(f"{root} has neither an rgba/ nor an rgb_white/ image folder")
    wanted = {FRAME_FILE.format(i) for i in range(len(times))}
    for kind in (k for k in KINDS if has[k]):
        for d in dirs:
            vdir = root / kind / d
            if not vdir.is_dir():
                raise Sv4dError(f"view folder {vdir} is missing (cameras.json lists view {d!r})")
            lacking = sorted(wanted - set(os.listdir(vdir)))
            if lacking:
                raise Sv4dError(f"{vdir} lacks {len(lacking)} of {len(times)} frames (first: {lacking[0]})")
    return MultiViewSet(root, rig, dirs, has["rgba"], has["rgb_white"], meta)


def _check_images(arr: Any, name: str, want: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8 or arr.shape != want:
        raise Sv4dError(f"{name} must be uint8 of shape (V, n, H, W, {want[-1]}) = {want}, got {arr.dtype} {arr.shape}")
    return arr


def _cameras_json(rig: Rig, extra: dict) -> dict:
    intr = rig.intrinsics
    near_far = {k: float(extra.pop(k, d)) for k, d in (("znear", 0.01), ("zfar", 12.0))}
    view_entries = []
    for pos, v in enumerate(rig.views):
        entry: dict[str, Any] = {"index": pos}
        if v.elevation_deg is not None:
            entry["elevation_deg"] = float(v.elevation_deg)
        if v.azimuth_deg is not None:
            entry["azimuth_deg"] = float(v.azimuth_deg)
        entry.update(dir=VIEW_DIR.format(pos), c2w=v.c2w.tolist(), c2w_opencv=v.c2w_opencv.tolist())
        view_entries.append(entry)
    meta = {
        "generator": "sv4d",
        "image_size": [intr.width, intr.height],
        "intrinsics": {
            "fx": intr.fx,
            "fy": intr.fy,
            "cx": intr.cx,
            "cy": intr.cy,
            "K": intr.K.tolist(),
            "fov_x_deg": intr.fov_x_deg,
            "fov_y_deg": intr.fov_y_deg,
            "pixel_convention": PIXEL_CONVENTION,
            **near_far,
        },
        "camera_distance": rig.camera_distance,
        "conventions": dict(CONVENTIONS),
        "frames": [{"index": i, "time_s": float(t)} for i, t in enumerate(rig.times)],
        "views": view_entries,
    }
    meta.update(extra)
    return meta


def _transforms_json(rig: Rig, kind: str) -> dict:
    unit = rig.unit_times()
    frames = [
        {
            "file_path": f"./{kind}/{VIEW_DIR.format(v)}/{FRAME_FILE.format(i)[:-4]}",
            "time": float(unit[i]),
            "time_s": float(t),
            "view": v,
            "frame": i,
            "transform_matrix": view.c2w.tolist(),
        }
        for v, view in enumerate(rig.views)
        for i, t in enumerate(rig.times)
    ]
    return {**dnerf.camera_fields(rig.intrinsics), "frames": frames}


def _link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link of ``src`` (a copy where the file system has none)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_multiview(
    path: str | os.PathLike,
    rig: Rig,
    *,
    rgba: np.ndarray | None = None,
    rgb_white: np.ndarray | None = None,
    extra: dict | None = None,
    transforms: bool = True,
    test_views: Sequence[int] | None = None,
    overwrite: bool = False,
    atomic: bool = True,
    compress_level: int = 4,
    progress: bool = False,
) -> Path:
    """Write a multi-view video set folder for ``rig`` and return its path.

    rgba: (V, n, H, W, 4) uint8 straight alpha; rgb_white: (V, n, H, W, 3) uint8. At least one;
    rgb_white is composited from rgba when not given; with only rgb_white no rgba/ is written.
    V = rig.num_views, n = rig.num_frames, H x W = the rig's intrinsics' size. Views are written
    in the rig's order as ``view_00, view_01, ...``.
    extra: more top-level cameras.json keys (e.g. "normalization", "source"); its "znear" and
    "zfar" (defaults 0.01 / 12.0) go into the intrinsics block; it may replace "generator"
    or "conventions" but not the keys computed from the rig (:data:`RESERVED_KEYS`).
    transforms: also write a D-NeRF/Blender ``transforms.json`` (every image; paths without
    ".png", time in unit time over the set, ``Rig.unit_times``, view-major) and the D-NeRF splits
    ``transforms_{train,val,test}.json`` with their images ``dnerf/frame_YYY/r_VV.png`` (hard
    links of rgba/; RGBA files with alpha 255 when only rgb_white is given), which nerfstudio's
    ``dnerf`` parser, 4DGaussians, K-Planes and HexPlane open as they are (:mod:`sv4d.io.dnerf`).
    test_views: the views the splits hold out for test and val (default: none held out; test =
    val = view 0, the input view of a generated set, and train = every view).
    atomic: build everything in a hidden sibling folder and rename it to ``path`` when
    complete (an existing ``path`` is replaced only then, with overwrite=True); nothing is left
    behind on error. atomic=False writes straight into ``path``, which may exist if empty
    (or, with overwrite, is written over in place) and is not cleaned up on error.
    compress_level: PNG zlib level 0-9; progress: a tqdm bar over the images.
    """
    path = Path(path)
    if not isinstance(rig, Rig):
        raise Sv4dError(f"write_multiview needs a Rig, got {type(rig).__name__}")
    if rgba is None and rgb_white is None:
        raise Sv4dError("write_multiview needs rgba and/or rgb_white images")
    intrinsics = rig.intrinsics
    rgb_shape = (rig.num_views, rig.num_frames, intrinsics.height, intrinsics.width)
    rgba = None if rgba is None else _check_images(rgba, "rgba", rgb_shape + (4,))
    rgb_white = None if rgb_white is None else _check_images(rgb_white, "rgb_white", rgb_shape + (3,))
    if not 0 <= compress_level <= 9:
        raise Sv4dError(f"compress_level must be 0..9, got {compress_level}")
    extra = dict(extra or {})
    clash = [k for k in RESERVED_KEYS if k in extra]
    if clash:
        raise Sv4dError(f"extra may not set {', '.join(clash)}; they come from the rig")
    kinds = (["rgba"] if rgba is not None else []) + ["rgb_white"]
    meta = _cameras_json(rig, extra)
    splits = dnerf.split_documents(rig, test_views) if transforms else {}

    def write_into(folder: Path) -> None:
        with tqdm(
            total=len(kinds) * rgb_shape[0] * rgb_shape[1], desc="writing images", unit="img", disable=not progress
        ) as bar:
            for v in range(rig.num_views):
                white = rgb_white[v] if rgb_white is not None else composite_white(rgba[v])
                for kind in kinds:
                    vdir = folder / kind / VIEW_DIR.format(v)
                    vdir.mkdir(parents=True, exist_ok=True)
                    for i, image in enumerate(rgba[v] if kind == "rgba" else white):
                        Image.fromarray(np.ascontiguousarray(image)).save(
                            vdir / FRAME_FILE.format(i), compress_level=compress_level
                        )
                        bar.update()
        # Cameras last: a folder with a cameras.json has all its images.
        if transforms:
            for v in range(rig.num_views):
                for i in range(rig.num_frames):
                    dst = folder / dnerf.image_name(v, i)
                    if rgba is not None:
                        _link(folder / "rgba" / VIEW_DIR.format(v) / FRAME_FILE.format(i), dst)
                    else:  # a new file, never written through an old hard link
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        dst.unlink(missing_ok=True)
                        opaque = np.concatenate([rgb_white[v, i], np.full(rgb_shape[2:] + (1,), 255, np.uint8)], -1)
                        Image.fromarray(opaque).save(dst, compress_level=compress_level)
            for name, doc in splits.items():
                (folder / name).write_text(json.dumps(doc, indent=1) + "\n")
            (folder / "transforms.json").write_text(json.dumps(_transforms_json(rig, kinds[0]), indent=1) + "\n")
        (folder / "cameras.json").write_text(json.dumps(meta, indent=1) + "\n")

    exists = path.exists() or path.is_symlink()
    if exists and not path.is_dir():
        raise Sv4dError(f"{path} exists and is not a folder; choose another output folder")
    if not atomic:
        if exists and any(path.iterdir()) and not overwrite:
            raise Sv4dError(f"{path} already exists and is not empty; pass overwrite or choose another folder")
        path.mkdir(parents=True, exist_ok=True)
        write_into(path)
        return path
    if exists and not overwrite:
        raise Sv4dError(f"{path} already exists; pass overwrite to replace it or choose another folder")
    with atomic_folder(path) as tmp:
        write_into(tmp)
    return path

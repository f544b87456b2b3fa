"""D-NeRF folders: the split files sv4d writes beside a set, and reading a plain D-NeRF folder as a set.

**What the D-NeRF readers of other 4D tools expect** (checked in their sources; they decide
every choice below):

* nerfstudio's ``dnerf`` data parser reads ``transforms_{split}.json`` for ``train``, ``val``
  (its evaluation images during ``ns-train``) and ``test`` (``ns-eval``); 4DGaussians'
  ``readNerfSyntheticInfo`` reads ``transforms_train.json`` and ``transforms_test.json``;
  K-Planes and HexPlane read ``transforms_train.json`` and ``transforms_test.json``.
* ``frames[].file_path`` is given **without** its extension: nerfstudio, 4DGaussians and
  HexPlane append ``".png"`` unconditionally (K-Planes appends it when the name has no
  extension), so a path with ``.png`` would break three of them. nerfstudio strips ``"./"``,
  the others join the path to the folder as it is.
* K-Planes also takes the camera id from the file name (the integer after its last ``r_``,
  the original ``./train/r_000`` names) and treats a name containing ``_r`` as its own video
  layout. sv4d's ``frame_YYY.png`` cannot be parsed, so the split files point at copies named
  :data:`IMAGE_FILE` = ``dnerf/frame_YYY/r_VV.png`` (view VV at frame YYY; the number K-Planes
  reads is the view). ``write_multiview`` makes them hard links of ``rgba/`` (no extra space;
  a copy where the file system has no hard links).
* ``frames[].time`` is in [0, 1] (K-Planes and HexPlane map it to [-1, 1] with ``2 t - 1``;
  4DGaussians divides by the largest time, so a one-frame set, all times 0, fails there);
  written as :meth:`sv4d.cameras.Rig.unit_times`.
* ``frames[].transform_matrix``: the OpenGL/Blender camera-to-world (sv4d's ``View.c2w``).
* ``camera_angle_x`` (radians) gives the focal length ``0.5 * W / tan(0.5 * camera_angle_x)``
  with the principal point at the centre (nerfstudio, 4DGaussians, HexPlane); K-Planes uses
  ``fl_x``/``fl_y``/``cx``/``cy`` when present. Both are written. 4DGaussians and HexPlane
  resize every image to a square (800 x 800 / downsample), so they need square images.
* Images are RGBA PNGs composited on white (nerfstudio ``alpha_color="white"``, HexPlane always,
  4DGaussians with its ``white_background`` option; K-Planes composites on random colours while
  training). HexPlane reshapes every image to 4 channels, so the links are RGBA even when a
  set has only ``rgb_white/`` (then written with alpha 255).
* No reader uses the per-frame ``rotation`` of the original files; it is not written.

**Splits written** (:func:`split_documents`): ``train`` = every view; ``test`` = ``val`` =
view 0's frames. A generated set has no held-out ground truth, and its view 0 is the input
clip (the only real images), so the tools' evaluation measures how well the input view is
reproduced; it is not held out. ``test_views`` holds views out instead (train = the others).

**Reading** (:func:`read_dnerf`): a folder without ``cameras.json`` whose
``transforms_train.json`` (merged with ``transforms_val.json`` and ``transforms_test.json``)
or else ``transforms.json`` lists images of fixed cameras: frames are grouped by camera pose
(within :data:`POSE_TOL`) into views and by ``time`` into frames, and every view must have
every time (the original D-NeRF data, one camera per image, is not such a grid). Views are
ordered as they first appear (or by the ``view`` numbers sv4d writes), times ascending; the
frame times are the files' ``time_s`` (seconds, written by sv4d) when every frame has one,
else their ``time``. Intrinsics come from ``fl_x``/``fl_y``/``cx``/``cy`` when present, else
``camera_angle_x`` and the image size. Each ``file_path`` is tried with ``".png"`` appended,
then as it is; it must stay inside the folder (no absolute path, no ``..``, no symbolic link
leading out). An image listed twice (a split repeating another) is taken once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..cameras import Intrinsics, Rig, View, orbit_angles, orbit_c2w, pose_matrix
from ..errors import Sv4dError

SPLITS = ("train", "val", "test")
SPLIT_FILE = "transforms_{}.json"
ALL_FILE = "transforms.json"
IMAGE_FILE = "dnerf/frame_{frame:03d}/r_{view:02d}.png"
"""Where the split files' images are, relative to the set (hard links of the ``rgba/`` images)."""
POSE_TOL = 1e-5
"""Two camera-to-world matrices are one camera when no entry differs by more (translation
entries: relative to the camera's distance when that exceeds 1)."""
TIME_TOL = 1e-6
"""Frame times closer than this are one time."""
ORBIT_TOL = 1e-6
"""A pose is on an orbit when it equals ``orbit_c2w`` of its angles to within this."""


# --- writing ----------------------------------------------------------------------------------


def image_name(view: int, frame: int) -> str:
    """Path of the split files' image of ``view`` at ``frame``, relative to the set folder."""
    return IMAGE_FILE.format(view=view, frame=frame)


def split_views(num_views: int, test_views: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """(train, test) view indices: every view and view 0 by default, else the views not in
    ``test_views`` and ``test_views`` (non-empty, distinct, leaving at least one to train on)."""
    if test_views is None:
        return list(range(num_views)), [0]
    try:
        test = [int(v) for v in test_views]
    except (TypeError, ValueError):
        raise Sv4dError(f"test_views must be view indices, got {test_views!r}") from None
    bad = [v for v in test if not 0 <= v < num_views]
    if bad:
        raise Sv4dError(f"test_views {bad} do not exist (the set has {num_views} views: 0..{num_views - 1})")
    if not test or len(set(test)) != len(test):
        raise Sv4dError(f"test_views must be distinct view indices, at least one, got {test}")
    train = [v for v in range(num_views) if v not in test]
    if not train:
        raise Sv4dError(f"test_views {test} hold out every view; leave at least one to train on")
    return train, sorted(test)


def camera_fields(intr: Intrinsics) -> dict:
    """The top-level intrinsics of a transforms file: ``camera_angle_x`` (radians) and
    ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h`` (pixels)."""
    return {
        "camera_angle_x": math.radians(intr.fov_x_deg),
        "fl_x": intr.fx,
        "fl_y": intr.fy,
        "cx": intr.cx,
        "cy": intr.cy,
        "w": intr.width,
        "h": intr.height,
    }


def _document(rig: Rig, views: Sequence[int]) -> dict:
    intr, unit = rig.intrinsics, rig.unit_times()
    frames = [
        {
            "file_path": "./" + image_name(v, i)[: -len(".png")],
            "time": float(unit[i]),
            "time_s": float(t),
            "view": v,
            "frame": i,
            "transform_matrix": rig.views[v].c2w.tolist(),
        }
        for v in views
        for i, t in enumerate(rig.times)
    ]
    return {**camera_fields(intr), "frames": frames}


def split_documents(rig: Rig, test_views: Sequence[int] | None = None) -> dict[str, dict]:
    """``{"transforms_train.json": ..., "transforms_val.json": ..., "transforms_test.json": ...}``
    for ``rig`` (images at :func:`image_name`; splits as :func:`split_views`)."""
    train, test = split_views(rig.num_views, test_views)
    held = _document(rig, test)
    return {
        SPLIT_FILE.format("train"): _document(rig, train),
        SPLIT_FILE.format("val"): held,
        SPLIT_FILE.format("test"): held,
    }


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DNeRFGrid:
    """A D-NeRF folder read as views x frames: ``files[v][i]`` is the image of view v at frame i
    (relative to the folder, ``/``-separated); ``has_alpha``: some image has an alpha channel;
    ``sources``: the json files read."""

    rig: Rig
    files: tuple[tuple[str, ...], ...]
    has_alpha: bool
    sources: tuple[str, ...]


def transforms_files(root: str | Path) -> list[Path]:
    """The D-NeRF files of ``root`` that :func:`read_dnerf` reads (empty when there are none)."""
    root = Path(root)
    if (root / SPLIT_FILE.format("train")).is_file():
        return [root / SPLIT_FILE.format(s) for s in SPLITS if (root / SPLIT_FILE.format(s)).is_file()]
    return [root / ALL_FILE] if (root / ALL_FILE).is_file() else []


@dataclass
class _Frame:
    source: str
    index: int
    file: str
    c2w: np.ndarray
    time: float
    time_s: float | None
    view: int | None

    @property
    def where(self) -> str:
        return f"{self.source}: frames[{self.index}]"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _resolve(root: Path, real_root: Path, file_path: Any, where: str) -> str:
    """``file_path`` as the readers take it (``.png`` appended, else as it is), relative to ``root``."""
    if not isinstance(file_path, str) or not file_path.strip():
        raise Sv4dError(f"{where}.file_path must be a non-empty string")
    p = file_path.replace("\\", "/")
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p):
        raise Sv4dError(f"{where}.file_path {file_path!r} is absolute; it must be relative to the folder")
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if not parts or ".." in parts:
        raise Sv4dError(f"{where}.file_path {file_path!r} leads out of the folder")
    rel = "/".join(parts)
    for cand in (rel + ".png", rel):
        full = root / cand
        if full.is_file():
            if not full.resolve().is_relative_to(real_root):
                raise Sv4dError(f"{where}.file_path {file_path!r}: {full} is a link leading out of the folder")
            return cand
    raise Sv4dError(f"{where}: image {file_path!r} not found (tried {rel}.png and {rel} in {root})")


def _intrinsics(meta: dict, name: str, width: int, height: int) -> Intrinsics:
    def field(key: str) -> float | None:
        if key not in meta:
            return None
        v = _number(meta[key])
        if v is None or not math.isfinite(v) or (key != "cx" and key != "cy" and v <= 0):
            raise Sv4dError(f"{name}: {key!r} must be a finite positive number, got {meta[key]!r}")
        return v

    for key, size in (("w", width), ("h", height)):
        given = field(key)
        if given is not None and int(given) != size:
            raise Sv4dError(f"{name}: {key!r} is {meta[key]} but the images are {width}x{height}")
    fl_x, fl_y, angle = field("fl_x"), field("fl_y"), field("camera_angle_x")
    if fl_x is None and fl_y is None:
        if angle is None:
            raise Sv4dError(f"{name} lacks 'camera_angle_x' (and 'fl_x'): the focal length is unknown")
        if not angle < math.pi:
            raise Sv4dError(f"{name}: 'camera_angle_x' is in radians and must be below pi, got {angle}")
        fl_x = 0.5 * width / math.tan(0.5 * angle)
    fx = fl_x if fl_x is not None else fl_y
    fy = fl_y if fl_y is not None else fx
    cx, cy = field("cx"), field("cy")
    return Intrinsics(width, height, fx, fy, width / 2.0 if cx is None else cx, height / 2.0 if cy is None else cy)


def _load(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Sv4dError(f"cannot parse {path}: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise Sv4dError(f"{path} must hold a JSON object with a non-empty 'frames' list")
    return meta


def _frames(root: Path, real_root: Path, name: str, meta: dict) -> list[_Frame]:
    out = []
    for j, f in enumerate(meta["frames"]):
        where = f"{name}: frames[{j}]"
        if not isinstance(f, dict):
            raise Sv4dError(f"{where} must be an object")
        for key in ("file_path", "transform_matrix", "time"):
            if key not in f:
                raise Sv4dError(f"{where} has no {key!r}")
        c2w = pose_matrix(f["transform_matrix"], f"{where}.transform_matrix")
        r = c2w[:3, :3]
        if not np.allclose(c2w[3], [0, 0, 0, 1], atol=1e-6) or not np.allclose(r.T @ r, np.eye(3), atol=1e-4):
            raise Sv4dError(f"{where}.transform_matrix is not a rigid camera-to-world (rotation and translation)")
        time = _number(f["time"])
        if time is None or not math.isfinite(time):
            raise Sv4dError(f"{where}.time must be a finite number, got {f['time']!r}")
        time_s = _number(f.get("time_s"))
        view = f.get("view")
        file = _resolve(root, real_root, f["file_path"], where)
        out.append(
            _Frame(
                name,
                j,
                file,
                c2w,
                time,
                time_s if time_s is not None and math.isfinite(time_s) else None,
                view if isinstance(view, int) and not isinstance(view, bool) else None,
            )
        )
    return out


def _same_pose(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(1.0, float(np.linalg.norm(a[:3, 3])))
    return bool(
        np.abs(a[:3, :3] - b[:3, :3]).max() <= POSE_TOL and np.abs(a[:3, 3] - b[:3, 3]).max() <= POSE_TOL * scale
    )


def _cluster_times(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Distinct times (ascending, first of each run within TIME_TOL) and each value's index."""
    order = sorted(set(values))
    reps: list[float] = []
    for t in order:
        if not reps or t - reps[-1] > TIME_TOL:
            reps.append(t)
    index = [int(np.searchsorted(np.array(reps) + TIME_TOL, t)) for t in values]
    return reps, index


def _fmt(times: Sequence[float], limit: int = 6) -> str:
    shown = ", ".join(f"{t:g}" for t in times[:limit])
    return shown + (f" and {len(times) - limit} more" if len(times) > limit else "")


def _grid_error(root: Path, frames: list[_Frame], view_of: list[int], time_of: list[int], times: list[float]) -> None:
    num_views = max(view_of) + 1
    have: list[set[int]] = [set() for _ in range(num_views)]
    for v, t in zip(view_of, time_of):
        have[v].add(t)
    lacking = [(v, [times[t] for t in range(len(times)) if t not in h]) for v, h in enumerate(have)]
    lacking = [(v, ts) for v, ts in lacking if ts]
    if lacking and num_views == len(frames):
        raise Sv4dError(
            f"D-NeRF set {root}: its cameras do not form a views x frames grid: each of its {len(frames)} images "
            "has its own camera (as in the original D-NeRF data); sv4d needs fixed cameras that each see every "
            "frame time"
        )
    if lacking:
        parts = [f"view {v} lacks times {_fmt(ts)}" for v, ts in lacking[:3]]
        more = f" (and {len(lacking) - 3} more views)" if len(lacking) > 3 else ""
        raise Sv4dError(
            f"D-NeRF set {root}: its cameras do not form a views x frames grid ({num_views} cameras, "
            f"{len(times)} times): " + "; ".join(parts) + more + "; sv4d needs fixed cameras that each see every time"
        )


def _frame_times(frames: list[_Frame], time_of: list[int], times: list[float]) -> np.ndarray:
    """Seconds from ``time_s`` when every frame has one consistently, else the D-NeRF times."""
    seconds: list[float | None] = [None] * len(times)
    for f, t in zip(frames, time_of):
        if f.time_s is None:
            return np.array(times)
        if seconds[t] is None:
            seconds[t] = f.time_s
        elif abs(seconds[t] - f.time_s) > 1e-9:
            return np.array(times)
    out = np.array(seconds, dtype=np.float64)
    return out if not (np.diff(out) < 0).any() else np.array(times)


def _view(c2w: np.ndarray) -> View:
    """The camera, with its orbit angles when it looks at the origin from an orbit."""
    distance = float(np.linalg.norm(c2w[:3, 3]))
    if distance > 0:
        el, az = orbit_angles(c2w)
        if abs(el) < 90.0 and np.allclose(orbit_c2w(el, az, distance), c2w, atol=ORBIT_TOL * max(1.0, distance)):
            return View(c2w, el, az)
    return View(c2w)


def _headers(root: Path, files: list[str]) -> tuple[int, int, bool]:
    size, alpha = None, False
    for rel in files:
        try:
            with Image.open(root / rel) as im:
                this, has = im.size, im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        except (OSError, ValueError) as e:
            raise Sv4dError(f"cannot read image {root / rel}: {e}") from None
        if size is None:
            size = this
        elif this != size:
            raise Sv4dError(f"D-NeRF set {root}: {rel} is {this[0]}x{this[1]} but {files[0]} is {size[0]}x{size[1]}")
        alpha = alpha or has
    assert size is not None
    return size[0], size[1], alpha


def read_dnerf(path: str | Path) -> DNeRFGrid:
    """Read a D-NeRF folder of fixed cameras as views x frames (see the module docstring)."""
    root = Path(path)
    real_root = root.resolve()
    sources = transforms_files(root)
    if not sources:
        raise Sv4dError(f"{root} has no {SPLIT_FILE.format('train')} or {ALL_FILE}; is it a D-NeRF folder?")
    metas = [(p.name, _load(p)) for p in sources]
    frames: list[_Frame] = []
    seen: dict[str, _Frame] = {}
    for name, meta in metas:
        for f in _frames(root, real_root, name, meta):
            first = seen.get(f.file)
            if first is None:
                seen[f.file] = f
                frames.append(f)
            elif not (_same_pose(first.c2w, f.c2w) and abs(first.time - f.time) <= TIME_TOL):
                raise Sv4dError(f"{f.where} lists {f.file} with another camera or time than {first.where}")
    reps: list[np.ndarray] = []
    view_of = []
    for f in frames:
        v = next((k for k, c in enumerate(reps) if _same_pose(c, f.c2w)), None)
        if v is None:
            reps.append(f.c2w)
            v = len(reps) - 1
        view_of.append(v)
    times, time_of = _cluster_times([f.time for f in frames])
    _grid_error(root, frames, view_of, time_of, times)
    # Views in the order of sv4d's "view" numbers when they name the cameras one to one.
    numbers = {}
    for f, v in zip(frames, view_of):
        numbers.setdefault(v, set()).add(f.view)
    named = [next(iter(n)) for _, n in sorted(numbers.items())]
    if all(len(n) == 1 for n in numbers.values()) and None not in named and len(set(named)) == len(named):
        order = sorted(range(len(reps)), key=lambda v: named[v])
    else:
        order = list(range(len(reps)))
    grid: list[list[str | None]] = [[None] * len(times) for _ in reps]
    for f, v, t in zip(frames, view_of, time_of):
        if grid[v][t] is None:  # a second image of one camera and time: the first is kept
            grid[v][t] = f.file
    files = tuple(tuple(str(x) for x in grid[v]) for v in order)
    width, height, alpha = _headers(root, [x for row in files for x in row])
    intrinsics = [_intrinsics(meta, name, width, height) for name, meta in metas]
    for (name, _), other in zip(metas[1:], intrinsics[1:]):
        a, b = np.array(intrinsics[0].K), np.array(other.K)
        if not np.allclose(a, b, rtol=1e-6, atol=1e-6):
            raise Sv4dError(
                f"D-NeRF set {root}: {name} has other intrinsics than {metas[0][0]} ({other} vs {intrinsics[0]})"
            )
    views = tuple(_view(reps[v]) for v in order)
    distances = [v.distance for v in views]
    on_orbit = all(v.elevation_deg is not None for v in views)
    same = max(distances) - min(distances) <= 1e-6 * max(distances)
    distance = float(np.mean(distances)) if on_orbit and same and min(distances) > 0 else None
    try:
        rig = Rig(intrinsics[0], views, _frame_times(frames, time_of, times), distance)
    except Sv4dError as e:
        raise Sv4dError(f"D-NeRF set {root}: {e}") from None
    return DNeRFGrid(rig, files, alpha, tuple(p.name for p in sources))

"""The multi-view video set folder: cameras, round trips, transforms.json, atomic writes, errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from sv4d.cameras import Intrinsics, Rig, View
from sv4d.errors import Sv4dError
from sv4d.io import multiview as mv
from sv4d.io.multiview import composite_white, read_multiview, write_multiview

FOX_SMALL = DATA / "multiview" / "fox_small"


@pytest.fixture(scope="module")
def fox() -> mv.MultiViewSet:
    return read_multiview(FOX_SMALL)


def _tiny_set(num_views: int = 2, num_frames: int = 3, size: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (num_views, num_frames, size, size + 2, 4), dtype=np.uint8)
    views = [View.on_orbit(10.0, 90.0 * v, 1.5) for v in range(num_views)]
    intr = Intrinsics.from_fov(40.0, size + 2, size)
    return dict(intrinsics=intr, views=views, times=np.arange(num_frames) * 0.25, rgba=rgba)


def _write(path, s: dict, camera_distance=None, **kwargs) -> Path:
    """write_multiview of a _tiny_set dict (the rig is built here, so bad rig inputs raise here too)."""
    rig = Rig(s["intrinsics"], s["views"], s["times"], camera_distance)
    kwargs.setdefault("extra", s.get("extra"))
    return write_multiview(path, rig, rgba=s.get("rgba"), rgb_white=s.get("rgb_white"), **kwargs)


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


# --- the shipped sample -------------------------------------------------------------------


def test_fox_small_reads_with_expected_layout(fox):
    assert (fox.num_views, fox.num_frames) == (4, 3)
    assert fox.intrinsics.width == fox.intrinsics.height == 64
    assert fox.has_rgba and fox.has_rgb_white and fox.camera_distance == 2.0
    assert [v.elevation_deg for v in fox.views] == [0.0, 0.0, 0.0, 20.0]
    assert np.allclose(fox.times, np.array([0, 5, 10]) * 0.70833331346511840 / 21, atol=1e-9)
    assert "CC BY 4.0" in fox.meta["source"]["licence"] and "normalization" in fox.meta
    assert fox.load_all().shape == (4, 3, 64, 64, 4)
    assert fox.load_view(3, "rgb_white").shape == (3, 64, 64, 3)
    assert sum(p.stat().st_size for p in FOX_SMALL.rglob("*") if p.is_file()) < 200_000


# --- compositing ----------------------------------------------------------------------------


def test_composite_white_formula():
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 128], [10, 20, 30, 1]]], dtype=np.uint8)
    a = np.float32(128) / np.float32(255)
    mid = [round(float(np.float32(c) * a + np.float32(255) * (np.float32(1) - a))) for c in (200, 100, 0)]
    expected = np.array([[[200, 100, 0], [255, 255, 255], mid, [254, 254, 254]]], dtype=np.uint8)
    np.testing.assert_array_equal(composite_white(rgba), expected)
    assert composite_white(np.zeros((2, 3, 5, 5, 4), np.uint8)).shape == (2, 3, 5, 5, 3)
    with pytest.raises(Sv4dError):
        composite_white(np.zeros((4, 4, 3), np.uint8))


def test_shipped_rgb_white_is_composite_of_rgba(fox):
    np.testing.assert_array_equal(
        composite_white(fox.load_all("rgba")), np.stack([fox.load_view(v, "rgb_white") for v in range(4)])
    )


# --- round trips ------------------------------------------------------------------------------


def test_round_trip_is_bit_exact(tmp_path):
    s = _tiny_set()
    out = _write(tmp_path / "set", s, camera_distance=1.5, extra={"frame_ratio": 2})
    back = read_multiview(out)
    np.testing.assert_array_equal(back.load_all("rgba"), s["rgba"])
    np.testing.assert_array_equal(back.load_all("rgb_white"), composite_white(s["rgba"]))
    np.testing.assert_array_equal(back.times, s["times"])
    assert back.intrinsics == s["intrinsics"] and back.camera_distance == 1.5
    for a, b in zip(back.views, s["views"]):
        np.testing.assert_array_equal(a.c2w, b.c2w)
        assert (a.azimuth_deg, a.elevation_deg) == (b.azimuth_deg, b.elevation_deg)
    assert back.meta["frame_ratio"] == 2 and back.meta["generator"] == "sv4d"
    assert back.meta["intrinsics"]["znear"] == 0.01 and back.meta["intrinsics"]["zfar"] == 12.0


def test_rewriting_fox_small_reproduces_its_cameras_and_images(fox, tmp_path):
    out = write_multiview(
        tmp_path / "copy",
        fox.rig,
        rgba=fox.load_all(),
        extra={k: fox.meta[k] for k in ("normalization", "source")},
        compress_level=9,
    )
    assert json.loads((out / "cameras.json").read_text()) == fox.meta
    for f in sorted(FOX_SMALL.rglob("*.png")):
        other = out / f.relative_to(FOX_SMALL)
        np.testing.assert_array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(other)))


def test_only_rgb_white_and_fallbacks(tmp_path):
    s = _tiny_set()
    white = composite_white(s.pop("rgba"))
    out = _write(tmp_path / "white", dict(s, rgb_white=white), extra={"znear": 0.1})
    assert not (out / "rgba").exists()
    back = read_multiview(out)
    assert back.has_rgb_white and not back.has_rgba and back.meta["intrinsics"]["znear"] == 0.1
    rgba = back.load_all("rgba")
    np.testing.assert_array_equal(rgba[..., :3], white)
    assert (rgba[..., 3] == 255).all()
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert frames[0]["file_path"] == "./rgb_white/view_00/frame_000"


def test_rgb_white_is_composited_when_only_rgba_exists(tmp_path):
    s = _tiny_set()
    out = _write(tmp_path / "set", s)
    shutil.rmtree(out / "rgb_white")
    back = read_multiview(out)
    assert back.has_rgba and not back.has_rgb_white
    np.testing.assert_array_equal(back.load_view(1, "rgb_white"), composite_white(s["rgba"][1]))


def test_transforms_json(tmp_path):
    s = _tiny_set(num_views=2, num_frames=3)
    out = _write(tmp_path / "set", s)
    t = json.loads((out / "transforms.json").read_text())
    intr = s["intrinsics"]
    assert t["camera_angle_x"] == pytest.approx(math.radians(40.0))
    assert (t["fl_x"], t["fl_y"], t["cx"], t["cy"], t["w"], t["h"]) == (
        intr.fx,
        intr.fy,
        intr.cx,
        intr.cy,
        intr.width,
        intr.height,
    )
    assert [(f["view"], f["frame"]) for f in t["frames"]] == [(v, i) for v in range(2) for i in range(3)]
    assert [f["time"] for f in t["frames"][:3]] == [0.0, 0.5, 1.0]
    assert [f["time_s"] for f in t["frames"][:3]] == [0.0, 0.25, 0.5]
    for f in t["frames"]:
        assert not f["file_path"].endswith(".png")
        assert (out / (f["file_path"] + ".png")).is_file()
        np.testing.assert_array_equal(f["transform_matrix"], s["views"][f["view"]].c2w)
    one = _write(tmp_path / "one", _tiny_set(num_frames=1))
    assert [f["time"] for f in json.loads((one / "transforms.json").read_text())["frames"]] == [0.0, 0.0]
    none = _write(tmp_path / "none", s, transforms=False)
    assert not (none / "transforms.json").exists()


# --- atomic writes ------------------------------------------------------------------------------


def test_existing_folder_without_overwrite_is_left_untouched(tmp_path):
    target = tmp_path / "set"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(Sv4dError, match="overwrite"):
        _write(target, _tiny_set())
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and _siblings(target) == ["set"]


def test_failure_midway_leaves_no_folder_and_no_temp_dir(tmp_path, monkeypatch):
    calls = []
    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 4:
            raise RuntimeError("disk full")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path / "set", _tiny_set())
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_folder(tmp_path, monkeypatch):
    target = _write(tmp_path / "set", _tiny_set(seed=1))
    before = read_multiview(target).load_all()
    monkeypatch.setattr(mv, "_transforms_json", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        _write(target, _tiny_set(seed=2), overwrite=True)
    np.testing.assert_array_equal(read_multiview(target).load_all(), before)
    assert _siblings(target) == ["set"]


def test_overwrite_replaces_the_folder(tmp_path):
    target = _write(tmp_path / "set", _tiny_set(num_views=3, seed=1))
    (target / "stale.txt").write_text("x")
    new = _tiny_set(num_views=2, seed=2)
    _write(target, new, overwrite=True)
    back = read_multiview(target)
    assert back.num_views == 2 and not (target / "stale.txt").exists()
    assert not (target / "rgba" / "view_02").exists()
    np.testing.assert_array_equal(back.load_all(), new["rgba"])
    assert _siblings(target) == ["set"]


def test_non_atomic_writes_into_an_empty_existing_folder(tmp_path):
    target = tmp_path / "managed"
    target.mkdir()
    _write(target, _tiny_set(), atomic=False)
    assert read_multiview(target).num_frames == 3 and _siblings(target) == ["managed"]
    with pytest.raises(Sv4dError, match="not empty"):
        _write(target, _tiny_set(), atomic=False)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(rgba=s["rgba"][:1]), r"\(V, n, H, W, 4\)"),
        (lambda s: s.update(times=s["times"][:2]), r"\(V, n, H, W, 4\)"),
        (lambda s: s.update(rgba=s["rgba"].astype(np.float32)), "uint8"),
        (lambda s: s.update(rgba=None), "rgba and/or rgb_white"),
        (lambda s: s.update(times=[0.5, 0.25, 0.0]), "non-decreasing"),
        (lambda s: s.update(extra={"views": []}), "extra may not set views"),
        (lambda s: s.update(times=[0.0, float("nan"), 0.5]), "finite frame time"),
        (lambda s: s["views"].__setitem__(0, np.eye(4)), "only Views"),
    ],
)
def test_write_validates_its_inputs(tmp_path, change, message):
    s = _tiny_set()
    change(s)
    with pytest.raises(Sv4dError, match=message):
        _write(tmp_path / "set", s)
    assert list(tmp_path.iterdir()) == []


# --- read errors -----------------------------------------------------------------------------


@pytest.fixture
def written(tmp_path) -> Path:
    return _write(tmp_path / "set", _tiny_set())


def test_read_missing_folder(tmp_path):
    with pytest.raises(Sv4dError, match="does not exist"):
        read_multiview(tmp_path / "nope")


def test_read_missing_or_broken_cameras_json(written):
    (written / "cameras.json").write_text("{not json")
    with pytest.raises(Sv4dError, match="cannot parse .*cameras.json"):
        read_multiview(written)
    (written / "cameras.json").unlink()
    assert read_multiview(written).meta["format"] == "dnerf"  # the D-NeRF files are read instead
    for f in written.glob("transforms*.json"):
        f.unlink()
    with pytest.raises(Sv4dError, match="no cameras.json"):
        read_multiview(written)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("views"), "lacks the required key.*views"),
        (lambda m: m["intrinsics"].clear(), "intrinsics"),
        (lambda m: m["frames"][1].pop("time_s"), "time_s"),
        (lambda m: m["views"][0].pop("c2w"), r"views\[0\]"),
        (lambda m: m["frames"][1].__setitem__("time_s", float("nan")), "finite frame time"),
        (lambda m: m["views"][1].__setitem__("elevation_deg", float("inf")), "finite"),
    ],
)
def test_read_bad_cameras_json(written, edit, message):
    meta = json.loads((written / "cameras.json").read_text())
    edit(meta)
    (written / "cameras.json").write_text(json.dumps(meta))
    with pytest.raises(Sv4dError, match=message):
        read_multiview(written)


def test_read_intrinsics_from_fx_fy_cx_cy_without_K(written):
    meta = json.loads((written / "cameras.json").read_text())
    del meta["intrinsics"]["K"]
    (written / "cameras.json").write_text(json.dumps(meta))
    assert read_multiview(written).intrinsics == _tiny_set()["intrinsics"]


def test_read_missing_view_folder_or_frame(written):
    (written / "rgba" / "view_00" / "frame_002.png").unlink()
    with pytest.raises(Sv4dError, match=r"view_00 lacks 1 of 3 frames \(first: frame_002.png\)"):
        read_multiview(written)
    shutil.rmtree(written / "rgb_white" / "view_01")
    shutil.rmtree(written / "rgba")
    with pytest.raises(Sv4dError, match="view folder .*view_01 is missing"):
        read_multiview(written)
    shutil.rmtree(written / "rgb_white")
    with pytest.raises(Sv4dError, match="neither an rgba/ nor an rgb_white/"):
        read_multiview(written)


def test_load_image_errors(written):
    s = read_multiview(written)
    with pytest.raises(Sv4dError, match="out of range"):
        s.load_image(2, 0)
    with pytest.raises(Sv4dError, match="unknown image kind"):
        s.load_image(0, 0, "depth")
    Image.new("RGBA", (4, 4)).save(s.image_path(0, 1))
    with pytest.raises(Sv4dError, match="4x4 but cameras.json says 10x8"):
        s.load_image(0, 1)

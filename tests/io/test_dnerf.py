"""D-NeRF interop: the split files as the D-NeRF readers of nerfstudio, 4DGaussians, K-Planes and
HexPlane read them, plain D-NeRF folders read as sets (and fitted / evaluated), and their errors."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from sv4d.cameras import Intrinsics, Rig, View
from sv4d.cli import main
from sv4d.errors import Sv4dError
from sv4d.io import dnerf
from sv4d.io.multiview import composite_white, read_multiview, write_multiview

FOX_SMALL = DATA / "multiview" / "fox_small"
SPLIT_NAMES = [f"transforms_{s}.json" for s in ("train", "val", "test")]


@pytest.fixture(scope="module")
def fox32():
    """fox_small at 32 x 32 (2 x 2 mean of straight RGBA: enough for these checks): (rig, rgba)."""
    fox = read_multiview(FOX_SMALL)
    rgba = fox.load_all().astype(np.float64)
    v, n, h, w, c = rgba.shape
    small = rgba.reshape(v, n, h // 2, 2, w // 2, 2, c).mean(axis=(3, 5)).round().astype(np.uint8)
    return fox.rig.at_height(32), small


@pytest.fixture(scope="module")
def fox_set(fox32, tmp_path_factory) -> Path:
    rig, rgba = fox32
    return write_multiview(tmp_path_factory.mktemp("sets") / "fox", rig, rgba=rgba)


def _pure_dnerf(src: Path, dst: Path) -> Path:
    """A copy of a written set with only what a D-NeRF folder has: the split files and their images."""
    dst.mkdir(parents=True)
    for name in SPLIT_NAMES:
        shutil.copyfile(src / name, dst / name)
    shutil.copytree(src / "dnerf", dst / "dnerf")
    return dst


# --- an independent reader of the split files, as each tool's parser does it ----------------


def _parser_paths(root: Path, file_path: str) -> dict[str, Path]:
    """The image path each tool builds from ``file_path``."""
    kplanes = os.path.join(root, file_path)
    if "." not in os.path.basename(kplanes):
        kplanes += ".png"
    return {
        "nerfstudio": root / (file_path.replace("./", "") + ".png"),
        "4DGaussians": Path(os.path.join(root, file_path + ".png")),
        "HexPlane": Path(os.path.join(root, f"{file_path}.png")),
        "K-Planes": Path(kplanes),
    }


def _kplanes_pose_id(file_path: str) -> int:
    """K-Planes' camera id of a D-NeRF frame (its file name; ``_r`` would switch to its own layout)."""
    assert "_r" not in file_path
    return int(file_path.split("r_")[-1]) if "r_" in file_path else int(file_path.split("r")[-1])


def test_split_files_open_in_the_four_readers(fox32, fox_set):
    rig, rgba = fox32
    docs = {name: json.loads((fox_set / name).read_text()) for name in SPLIT_NAMES}
    unit = rig.unit_times()
    all_times = [f["time"] for name in ("transforms_train.json", "transforms_test.json") for f in docs[name]["frames"]]
    seen = {}
    for name, doc in docs.items():
        width = rig.intrinsics.width
        assert 0.5 * width / math.tan(0.5 * doc["camera_angle_x"]) == pytest.approx(rig.intrinsics.fx, rel=1e-12)
        assert (doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"]) == (
            rig.intrinsics.fx,
            rig.intrinsics.fy,
            rig.intrinsics.cx,
            rig.intrinsics.cy,
        )
        for f in doc["frames"]:
            paths = _parser_paths(fox_set, f["file_path"])
            assert all(p.is_file() for p in paths.values()), paths
            assert len({p.resolve() for p in paths.values()}) == 1
            v = _kplanes_pose_id(f["file_path"])
            i = int(np.argmin(np.abs(unit - f["time"])))
            assert 0.0 <= f["time"] <= 1.0 and f["time"] == unit[i]
            assert f["time"] / max(all_times) == f["time"]  # 4DGaussians' time map leaves it as it is
            np.testing.assert_array_equal(np.array(f["transform_matrix"]), rig.views[v].c2w)
            with Image.open(paths["HexPlane"]) as im:
                assert im.mode == "RGBA"  # HexPlane reshapes every image to 4 channels
                np.testing.assert_array_equal(np.asarray(im), rgba[v, i])
            seen.setdefault(name, []).append((v, i))
    every = [(v, i) for v in range(rig.num_views) for i in range(rig.num_frames)]
    assert sorted(seen["transforms_train.json"]) == every
    assert seen["transforms_test.json"] == seen["transforms_val.json"] == [(0, i) for i in range(rig.num_frames)]


def test_split_images_are_links_of_the_rgba_images(fox_set):
    for v in range(4):
        for i in range(3):
            assert os.path.samefile(fox_set / dnerf.image_name(v, i), fox_set / f"rgba/view_{v:02d}/frame_{i:03d}.png")


def test_test_views_are_held_out(fox32, tmp_path):
    rig, rgba = fox32
    out = write_multiview(tmp_path / "held", rig, rgba=rgba, test_views=[3, 1])
    views = {name: sorted({f["view"] for f in json.loads((out / name).read_text())["frames"]}) for name in SPLIT_NAMES}
    assert views == {"transforms_train.json": [0, 2], "transforms_val.json": [1, 3], "transforms_test.json": [1, 3]}


@pytest.mark.parametrize(
    "test_views, message",
    [
        ([4], r"test_views \[4\] do not exist"),
        ([0, 1, 2, 3], "hold out every view"),
        ([], "at least one"),
        ([1, 1], "distinct"),
    ],
)
def test_bad_test_views_write_nothing(fox32, tmp_path, test_views, message):
    rig, rgba = fox32
    with pytest.raises(Sv4dError, match=message):
        write_multiview(tmp_path / "set", rig, rgba=rgba, test_views=test_views)
    assert list(tmp_path.iterdir()) == []


def test_only_rgb_white_gives_opaque_rgba_split_images(fox32, tmp_path):
    rig, rgba = fox32
    white = composite_white(rgba)
    out = write_multiview(tmp_path / "white", rig, rgb_white=white)
    with Image.open(out / dnerf.image_name(2, 1)) as im:
        assert im.mode == "RGBA"
        arr = np.asarray(im)
    np.testing.assert_array_equal(arr[..., :3], white[2, 1])
    assert (arr[..., 3] == 255).all()


def test_writing_over_a_set_in_place_relinks_the_split_images(fox32, tmp_path):
    rig, rgba = fox32
    target = tmp_path / "managed"
    target.mkdir()
    write_multiview(target, rig, rgba=rgba, atomic=False)
    write_multiview(target, rig, rgb_white=composite_white(255 - rgba), atomic=False, overwrite=True)
    with Image.open(target / dnerf.image_name(1, 1)) as im:
        np.testing.assert_array_equal(np.asarray(im)[..., :3], composite_white(255 - rgba)[1, 1])
    with Image.open(target / "rgba/view_01/frame_001.png") as im:  # the old file, not written through a link
        np.testing.assert_array_equal(np.asarray(im), rgba[1, 1])


def test_no_transforms_writes_no_split_files(fox32, tmp_path):
    rig, rgba = fox32
    out = write_multiview(tmp_path / "plain", rig, rgba=rgba, transforms=False)
    assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "rgb_white", "rgba"]


# --- reading D-NeRF folders ----------------------------------------------------------------------


def _assert_same_set(got, rig: Rig, rgba: np.ndarray, exact_times: bool = True) -> None:
    assert (got.num_views, got.num_frames) == (rig.num_views, rig.num_frames)
    np.testing.assert_array_equal(got.rig.c2w, rig.c2w)
    if exact_times:
        np.testing.assert_array_equal(got.times, rig.times)
    np.testing.assert_allclose(got.rig.unit_times(), rig.unit_times(), atol=1e-12)
    assert got.intrinsics == rig.intrinsics
    assert got.camera_distance == pytest.approx(rig.camera_distance, rel=1e-9)
    for a, b in zip(got.views, rig.views):
        assert a.elevation_deg == pytest.approx(b.elevation_deg, abs=1e-9)
        assert (a.azimuth_deg - b.azimuth_deg + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)
    np.testing.assert_array_equal(got.load_all("rgba"), rgba)
    np.testing.assert_array_equal(got.load_all("rgb_white"), composite_white(rgba))


def test_pure_dnerf_folder_reads_as_the_same_set(fox32, fox_set, tmp_path):
    rig, rgba = fox32
    got = read_multiview(_pure_dnerf(fox_set, tmp_path / "pure"))
    _assert_same_set(got, rig, rgba)
    assert got.has_rgba and not got.has_rgb_white and got.meta["format"] == "dnerf"
    assert got.meta["transforms"] == SPLIT_NAMES and got.view_dirs == ["view_00", "view_01", "view_02", "view_03"]
    assert got.image_path(1, 2, "rgb_white") == got.root / dnerf.image_name(1, 2)


def test_held_out_views_come_back_in_their_order(fox32, tmp_path):
    rig, rgba = fox32
    out = write_multiview(tmp_path / "held", rig, rgba=rgba, test_views=[0, 2])
    _assert_same_set(read_multiview(_pure_dnerf(out, tmp_path / "pure")), rig, rgba)


def test_foreign_dnerf_fields_only(fox32, fox_set, tmp_path):
    """Without sv4d's extra fields, paths with '.png', RGB images: views in order of appearance,
    times are the D-NeRF times."""
    rig, rgba = fox32
    pure = _pure_dnerf(fox_set, tmp_path / "pure")
    for name in SPLIT_NAMES:
        doc = json.loads((pure / name).read_text())
        for k in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
            doc.pop(k)
        for f in doc["frames"]:
            for k in ("time_s", "view", "frame"):
                f.pop(k)
            f["file_path"] = f["file_path"][2:] + ".png"
        doc["frames"].reverse()  # last frame first: times are sorted, views keep their order of appearance
        (pure / name).write_text(json.dumps(doc))
    for p in (pure / "dnerf").rglob("*.png"):
        with Image.open(p) as im:
            rgb = im.convert("RGB")
        p.unlink()  # a hard link: write a new file
        rgb.save(p)
    got = read_multiview(pure)
    assert not got.has_rgba and got.has_rgb_white
    np.testing.assert_array_equal(got.times, rig.unit_times())
    order = [3, 2, 1, 0]  # as they first appear in the reversed train list
    np.testing.assert_array_equal(got.rig.c2w, rig.c2w[order])
    np.testing.assert_array_equal(got.load_all("rgb_white"), rgba[order][..., :3])
    assert got.intrinsics.fx == pytest.approx(rig.intrinsics.fx, rel=1e-12) and got.intrinsics.cx == 16.0


def test_transforms_json_alone_is_read(fox32, fox_set, tmp_path):
    rig, rgba = fox32
    folder = tmp_path / "all"
    shutil.copytree(fox_set, folder)
    for name in ["cameras.json", *SPLIT_NAMES]:
        (folder / name).unlink()
    shutil.rmtree(folder / "dnerf")
    got = read_multiview(folder)
    _assert_same_set(got, rig, rgba)
    assert got.meta["transforms"] == ["transforms.json"] and got.files[1][0] == "rgba/view_01/frame_000.png"


def test_cameras_json_wins_over_the_dnerf_files(fox_set):
    assert read_multiview(fox_set).files is None


# --- fit and evaluate a D-NeRF folder ---------------------------------------------------------------

TINY = ["--set", "resolutions=[16,32]", "--set", "hull_resolution=32", "--set", "rays=128"]
TINY += ["--set", "features=8", "--set", "hidden=32", "--set", "occupancy_start=40", "--set", "occupancy_every=40"]


def test_fit_and_evaluate_a_dnerf_folder(fox_set, tmp_path):
    pure = _pure_dnerf(fox_set, tmp_path / "fox_dnerf")
    out = tmp_path / "fit"
    argv = ["fit", str(pure), "--resolution", "16", "--steps", "3", "--no-videos", "-o", str(out), *TINY, "-q"]
    assert main(argv) == 0
    summary = json.loads((out / "fit.json").read_text())
    assert summary["views"] == [0, 1, 2, 3] and summary["frames"] == [0, 1, 2] and summary["resolution"] == [16, 16]
    report = tmp_path / "report"
    assert main(["evaluate", str(pure), str(fox_set), "-o", str(report), "-q", "--no-fvd"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"]["ssim"]["mean"] == pytest.approx(1.0) and not metrics["warnings"]


# --- errors -------------------------------------------------------------------------------------------------


def _folder(tmp_path: Path, cameras: list[View], times: list[list[float]], **top) -> Path:
    """A D-NeRF folder: camera k sees times[k] (one 8 x 8 RGBA image each, ./train/r_NNN)."""
    root = tmp_path / "dnerf_set"
    (root / "train").mkdir(parents=True)
    frames = []
    for k, (cam, ts) in enumerate(zip(cameras, times)):
        for t in ts:
            name = f"train/r_{len(frames):03d}"
            Image.new("RGBA", (8, 8), (k * 40, 0, 0, 255)).save(root / f"{name}.png")
            frames.append({"file_path": f"./{name}", "time": t, "transform_matrix": cam.c2w.tolist()})
    doc = {"camera_angle_x": 0.6, "frames": frames, **top}
    (root / "transforms_train.json").write_text(json.dumps(doc))
    return root


def _edit(root: Path, change) -> None:
    doc = json.loads((root / "transforms_train.json").read_text())
    change(doc)
    (root / "transforms_train.json").write_text(json.dumps(doc))


def _orbit(n: int) -> list[View]:
    return [View.on_orbit(10.0, 360.0 * k / n, 4.0) for k in range(n)]


def test_a_small_grid_reads(tmp_path):
    got = read_multiview(_folder(tmp_path, _orbit(2), [[0.0, 0.5, 1.0], [1.0, 0.0, 0.5]]))
    assert (got.num_views, got.num_frames) == (2, 3) and got.camera_distance == pytest.approx(4.0)
    assert got.intrinsics == Intrinsics(8, 8, 4 / math.tan(0.3), 4 / math.tan(0.3), 4.0, 4.0)
    assert got.files[1] == ("train/r_004.png", "train/r_005.png", "train/r_003.png")
    assert [v.azimuth_deg for v in got.views] == pytest.approx([0.0, 180.0])


def test_one_camera_per_image_is_not_a_grid(tmp_path):
    root = _folder(tmp_path, _orbit(4), [[0.0], [0.25], [0.5], [1.0]])
    with pytest.raises(Sv4dError, match="each of its 4 images has its own camera .*fixed cameras"):
        read_multiview(root)


def test_a_view_lacking_times_is_named(tmp_path):
    root = _folder(tmp_path, _orbit(4), [[0.0, 0.25, 0.5]] * 3 + [[0.0]])
    with pytest.raises(Sv4dError, match=r"not form a views x frames grid .*view 3 lacks times 0.25, 0.5"):
        read_multiview(root)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["frames"][1].__setitem__("file_path", "./train/r_999"),
            r"frames\[1\]: image './train/r_999' not found",
        ),
        (lambda d: d["frames"][0].__setitem__("file_path", "../outside"), "leads out of the folder"),
        (lambda d: d["frames"][0].__setitem__("file_path", "train/../../x"), "leads out of the folder"),
        (lambda d: d["frames"][0].__setitem__("file_path", "/etc/passwd"), "is absolute"),
        (lambda d: d["frames"][2].__setitem__("time", float("nan")), r"frames\[2\].time must be a finite number"),
        (lambda d: d["frames"][2].pop("time"), r"frames\[2\] has no 'time'"),
        (lambda d: d.pop("camera_angle_x"), "lacks 'camera_angle_x'"),
        (lambda d: d["frames"][0]["transform_matrix"][0].__setitem__(0, 3.0), "not a rigid camera-to-world"),
        (lambda d: d.__setitem__("w", 16), "'w' is 16 but the images are 8x8"),
    ],
)
def test_bad_dnerf_files(tmp_path, change, message):
    root = _folder(tmp_path, _orbit(2), [[0.0, 1.0], [0.0, 1.0]])
    _edit(root, change)
    with pytest.raises(Sv4dError, match=message):
        read_multiview(root)


def test_a_link_leading_out_is_refused(tmp_path):
    root = _folder(tmp_path, _orbit(2), [[0.0, 1.0], [0.0, 1.0]])
    outside = tmp_path / "elsewhere.png"
    Image.new("RGBA", (8, 8)).save(outside)
    (root / "train" / "r_000.png").unlink()
    (root / "train" / "r_000.png").symlink_to(outside)
    with pytest.raises(Sv4dError, match="link leading out of the folder"):
        read_multiview(root)


def test_cli_reports_a_bad_dnerf_folder_cleanly(tmp_path, capsys):
    root = _folder(tmp_path, _orbit(3), [[0.0], [0.5], [1.0]])
    assert main(["fit", str(root), "-o", str(tmp_path / "fit"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "sv4d: error:" in err and "own camera" in err and "Traceback" not in err

"""sv4d render-asset: cameras and times, rasterisation through pyrender/EGL, the written set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT
from sv4d.cameras import Intrinsics
from sv4d.cli import main
from sv4d.data.times import adaptive_times, clip_times
from sv4d.errors import Sv4dError
from sv4d.io.multiview import read_multiview, write_multiview

ASSETS = DATA / "assets"
FOX96 = ROOT / "examples" / "fox_walk_96"


# ---------------------------------------------------------------------------------------------
# frame times (no rendering)


def test_clip_times_exclude_the_end():
    t = clip_times(0.0, 0.7083333, 21)
    assert len(t) == 21 and t[0] == 0.0 and t[1] == pytest.approx(0.7083333 / 21) and t[-1] < 0.7083333


def test_adaptive_times_follow_motion():
    base = np.random.default_rng(0).normal(size=(50, 3)) * 0.5

    def pose(t):  # still for the first half, then moving along +X at 1 unit/s
        return base + [max(0.0, t - 1.0), 0.0, 0.0]

    times = adaptive_times(pose, 0.0, 2.0, min_motion=0.05, max_frames=40)
    size = float((base.max(0) - base.min(0)).max())
    assert times[0] == 0.0
    assert times[1] > 1.0  # nothing moves before t = 1, so no frame is spent there
    gaps = np.diff(times[1:])
    assert np.all(gaps >= 0.05 * size - 1e-9) and np.all(gaps <= 0.05 * size + 2.0 / 40 + 1e-9)
    assert len(adaptive_times(lambda t: base, 0.0, 2.0, 0.05, 40)) == 1  # a frozen clip: one frame


# ---------------------------------------------------------------------------------------------
# rendering (pyrender on EGL)


@pytest.fixture(scope="module")
def egl():
    """Skip when this machine cannot open an offscreen OpenGL context (.ci/run installs Mesa EGL)."""
    from sv4d.data.render import AssetRenderer, RenderSettings

    try:
        AssetRenderer(RenderSettings(size=8, ssaa=1)).close()
    except Sv4dError as e:
        pytest.skip(str(e))


def _project(points: np.ndarray, c2w: np.ndarray, intr: Intrinsics) -> np.ndarray:
    cv = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera, as cameras.json's c2w_opencv
    cam = (points - cv[:3, 3]) @ cv[:3, :3]
    return np.stack([intr.fx * cam[:, 0] / cam[:, 2] + intr.cx, intr.fy * cam[:, 1] / cam[:, 2] + intr.cy], -1)


@pytest.fixture(scope="module")
def box_set(egl, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "box"
    assert (
        main(
            [
                "render-asset",
                str(ASSETS / "BoxAnimated.gltf"),
                "--out",
                str(out),
                "--num-frames",
                "4",
                "--views",
                "0:0,0:90,30:200",
                "--size",
                "48",
                "--depth",
                "-q",
            ]
        )
        == 0
    )
    return out


def test_frames_picks_some_of_the_frames(box_set, tmp_path):
    out = tmp_path / "some"
    argv = ["render-asset", str(ASSETS / "BoxAnimated.gltf"), "-o", str(out), "--num-frames", "4", "--frames", "1-3:2"]
    assert main([*argv, "--views", "0:0", "--size", "16", "-q"]) == 0
    s, full = read_multiview(out), read_multiview(box_set)
    assert s.num_frames == 2 and np.allclose(s.times, full.times[[1, 3]])
    assert s.meta["frame_rule"].endswith("frames [1, 3] of those kept")
    assert main([*argv[:-1], "4-5", "-o", str(tmp_path / "bad"), "-q"]) == 2 and not (tmp_path / "bad").exists()


def test_rendered_set_follows_the_conventions(box_set):
    s = read_multiview(box_set)
    assert s.num_views == 3 and s.num_frames == 4 and s.intrinsics.width == 48
    assert s.meta["animation"]["name"] is not None and s.meta["generator"] == "sv4d render-asset"
    assert s.times[0] == 0.0 and s.times[1] == pytest.approx(s.meta["animation"]["clip_end_s"] / 4, rel=1e-6)
    geo = np.load(box_set / "geometry.npz")
    v = geo["vertices"]
    assert v.shape[0] == 4 and v.shape[2] == 3 and np.allclose(geo["times"], s.times)
    lo, hi = v.reshape(-1, 3).min(0), v.reshape(-1, 3).max(0)
    assert np.all(lo >= -0.5 - 1e-5) and np.all(hi <= 0.5 + 1e-5)
    assert np.isclose((hi - lo).max(), 1.0, atol=1e-5)  # the clip fills the unit cube
    assert np.allclose((hi + lo) / 2, 0.0, atol=1e-5)
    norm = s.meta["normalization"]
    assert norm["yaw_deg"] == 90.0 and norm["scale"] > 0
    # the box moves: frames differ
    assert np.abs(v[0] - v[2]).max() > 0.01


def test_posed_geometry_projects_inside_the_rendered_alpha(box_set):
    s = read_multiview(box_set)
    v = np.load(box_set / "geometry.npz")["vertices"]
    total = inside = 0
    for vi, view in enumerate(s.views):
        for f in range(s.num_frames):
            alpha = s.load_image(vi, f, "rgba")[..., 3] > 0
            grown = alpha.copy()  # dilate the mask by 1 px
            grown[1:] |= alpha[:-1]
            grown[:-1] |= alpha[1:]
            grown[:, 1:] |= alpha[:, :-1]
            grown[:, :-1] |= alpha[:, 1:]
            uv = np.floor(_project(v[f].astype(np.float64), view.c2w, s.intrinsics)).astype(int)
            ok = (uv[:, 0] >= 0) & (uv[:, 0] < 48) & (uv[:, 1] >= 0) & (uv[:, 1] < 48)
            assert ok.all()
            inside += grown[uv[:, 1], uv[:, 0]].sum()
            total += len(uv)
    assert inside / total > 0.99
    # alpha is anti-aliased coverage, not a hard mask
    a = np.stack([s.load_image(0, f, "rgba")[..., 3] for f in range(s.num_frames)])
    assert ((a > 0) & (a < 255)).any() and (a == 255).any()


def test_depth_is_camera_z(box_set):
    s = read_multiview(box_set)
    from PIL import Image

    d = np.asarray(Image.open(box_set / "depth" / "view_00" / "frame_000.png")).astype(np.float64) / 10000.0
    a = s.load_image(0, 0, "rgba")[..., 3]
    assert (d[a == 0] == 0).all() and (d[a == 255] > 0).all()
    # the camera is 2 units from the origin and the object lies inside the unit cube
    assert 2.0 - 0.9 < d[a == 255].min() and d[a == 255].max() < 2.0 + 0.9


def test_fox_walk_like_the_reference_set(egl, tmp_path):
    """Same cameras and times as the shipped fox_walk copy give images of the same fox in the same place."""
    ref = read_multiview(FOX96)
    views = [0, 3, 10]
    frames = list(range(ref.num_frames))
    sub = write_multiview(
        tmp_path / "ref", ref.rig.select(views), rgba=np.stack([ref.load_view(v, "rgba") for v in views])
    )
    out = tmp_path / "fox"
    assert (
        main(["render-asset", str(ASSETS / "Fox.glb"), "--clip", "Walk", "--like", str(sub), "--out", str(out), "-q"])
        == 0
    )
    mine, sub = read_multiview(out), read_multiview(sub)
    assert mine.intrinsics == ref.intrinsics and np.allclose(mine.times, ref.times)
    for i in range(len(views)):
        assert np.allclose(mine.views[i].c2w, ref.views[views[i]].c2w, atol=1e-9)
    ious, diffs = [], []
    for vi in range(len(views)):
        for fi in frames:
            a, b = mine.load_image(vi, fi, "rgba"), sub.load_image(vi, fi, "rgba")
            ma, mb = a[..., 3] > 127, b[..., 3] > 127
            ious.append((ma & mb).sum() / (ma | mb).sum())
            both = ma & mb
            diffs.append(np.abs(a[both][:, :3].astype(int) - b[both][:, :3].astype(int)).mean())
    assert min(ious) > 0.9 and np.mean(ious) > 0.95, (min(ious), np.mean(ious))
    assert np.mean(diffs) < 4, np.mean(diffs)


def test_asset_without_animation_renders_static(egl, tmp_path, capsys):
    from sv4d.io.mesh import Mesh, write_glb

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float) - 0.25
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    write_glb(tmp_path / "tet.glb", [Mesh(v, f, colors=np.full((4, 3), 0.7))])
    assert (
        main(
            [
                "render-asset",
                str(tmp_path / "tet.glb"),
                "--out",
                str(tmp_path / "tet"),
                "--size",
                "32",
                "--num-views",
                "3",
            ]
        )
        == 0
    )
    assert "no animation: rendered static" in capsys.readouterr().err
    s = read_multiview(tmp_path / "tet")
    assert s.num_frames == 1 and s.num_views == 3 and s.meta["animation"] is None
    assert (s.load_image(0, 0, "rgba")[..., 3] > 0).any()


def test_bad_input_is_a_clear_error(egl, tmp_path, capsys):
    (tmp_path / "notes.glb").write_text("not a model")
    assert main(["render-asset", str(tmp_path / "notes.glb"), "--out", str(tmp_path / "a"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "sv4d: error:" in err and "Traceback" not in err
    assert main(["render-asset", str(ASSETS / "Fox.glb"), "--clip", "Dance", "--out", str(tmp_path / "b"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "Dance" in err and "Walk" in err and "Survey" in err
    assert (
        main(
            [
                "render-asset",
                str(ASSETS / "Fox.glb"),
                "--views",
                "0:0",
                "--like",
                str(FOX96),
                "--out",
                str(tmp_path / "c"),
                "-q",
            ]
        )
        == 2
    )
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir())
    assert main(["render-asset", str(ASSETS / "Fox.glb"), "--list-clips"]) == 0
    assert "'Walk' 0.708 s" in capsys.readouterr().out


def _walker(path: Path) -> Path:
    """A tetrahedron that walks 3 units along +Z (its glTF front) in 1 s, bobbing up and down."""
    from test_data_gltf import _f, _write_gltf

    arrays = [
        _f([[0], [0.25], [0.5], [0.75], [1.0]], "SCALAR"),
        _f([[0, 0, 0], [0, 0.1, 0.75], [0, 0, 1.5], [0, 0.1, 2.25], [0, 0, 3]], "VEC3"),
        _f([[0, 0, 0], [0.4, 0, 0], [0, 0.4, 0], [0, 0, 0.4]], "VEC3"),
    ]
    arrays[1][1].update(min=[0, 0, 0], max=[0, 0.1, 3])
    doc = {
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 2}}]}],
        "animations": [
            {
                "name": "walk",
                "samplers": [{"input": 0, "output": 1}],
                "channels": [{"sampler": 0, "target": {"node": 0, "path": "translation"}}],
            }
        ],
    }
    return _write_gltf(path, doc, arrays)


def test_rectify_adaptive_and_auto_distance(egl, tmp_path):
    walker = _walker(tmp_path / "walker.gltf")
    plain, fixed = tmp_path / "plain", tmp_path / "fixed"
    for out, extra in ((plain, []), (fixed, ["--rectify"])):
        assert (
            main(
                [
                    "render-asset",
                    str(walker),
                    "--out",
                    str(out),
                    "--num-frames",
                    "8",
                    "--num-views",
                    "2",
                    "--size",
                    "32",
                    "-q",
                    *extra,
                ]
            )
            == 0
        )
    rect = read_multiview(fixed).meta["rectified"]
    assert rect["drift_before"] > 0.3 and rect["drift_after"] < 1e-6
    g_plain, g_fixed = np.load(plain / "geometry.npz")["vertices"], np.load(fixed / "geometry.npz")["vertices"]
    assert np.ptp(g_plain.mean(1)[:, 0], 0) > 0.5  # walks across the normalised cube along +X (yaw 90)
    assert np.ptp(g_fixed.mean(1), 0).max() < 1e-6  # rectified: stays put
    assert read_multiview(plain).meta["rectified"] is None

    out = tmp_path / "box"
    assert (
        main(
            [
                "render-asset",
                str(ASSETS / "BoxAnimated.gltf"),
                "--out",
                str(out),
                "--adaptive",
                "0.2",
                "--max-frames",
                "24",
                "--distance",
                "auto",
                "--orbit",
                "dynamic",
                "--num-views",
                "4",
                "--size",
                "32",
                "-q",
            ]
        )
        == 0
    )
    s = read_multiview(out)
    assert 2 <= s.num_frames < 24 and s.meta["frame_rule"].startswith("adaptive")
    el = [v.elevation_deg for v in s.views]
    assert max(el) - min(el) > 30  # the dynamic orbit swings +-20 deg
    assert s.meta["images_touching_border"] == 0
    # auto: as close as the margin allows, so the object fills most of some image
    extent = max(
        np.ptp(np.nonzero(s.load_image(v, f, "rgba")[..., 3])[0]) for v in range(4) for f in range(s.num_frames)
    )
    assert extent >= 0.7 * 32


def test_rendered_sets_feed_the_training_reader(box_set):
    from sv4d.train.data import MultiViewWindows

    ds = MultiViewWindows(
        [box_set], num_frames=2, num_views=2, image_size=32, mode="mixed", static_prob=0.5, samples_per_epoch=12
    )
    sample = ds[0]
    assert sample.frames.shape == (2, 3, 32, 32) and sample.target.shape == (4, 3, 32, 32)
    kinds = {ds[i].static for i in range(12)}
    assert kinds == {True, False}


def test_curation_drops_a_dark_render_of_a_real_asset(egl, tmp_path):
    from sv4d.data.curate import curate

    for name, extra in (("fox", []), ("fox_dark", ["--light-scale", "0.02"])):
        assert (
            main(
                [
                    "render-asset",
                    str(ASSETS / "Fox.glb"),
                    "--clip",
                    "Walk",
                    "--num-frames",
                    "6",
                    "--num-views",
                    "3",
                    "--size",
                    "48",
                    "--out",
                    str(tmp_path / name),
                    "-q",
                    *extra,
                ]
            )
            == 0
        )
    r = curate([tmp_path / "fox", tmp_path / "fox_dark"], tmp_path / "report", progress=False)
    by = {Path(s["path"]).name: s for s in r["sets"]}
    assert by["fox"]["keep"], by["fox"]["reasons"]
    assert not by["fox_dark"]["keep"] and len(by["fox_dark"]["reasons"]) == 1
    assert by["fox_dark"]["reasons"][0].startswith("dark lighting")

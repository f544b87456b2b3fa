"""`sv4d fit`, `sv4d render`, `sv4d export` end to end on a small analytic set, and their errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import plyfile
import pytest
import trimesh
from fit_scene import scene, write_scene

from conftest import assert_valid_gltf
from sv4d.cli import main
from sv4d.io.multiview import read_multiview

TINY = [
    "--set",
    "resolutions=[16,32]",
    "--set",
    "hull_resolution=32",
    "--set",
    "rays=1024",
    "--set",
    "features=8",
    "--set",
    "hidden=32",
    "--set",
    "occupancy_start=40",
    "--set",
    "occupancy_every=40",
]


@pytest.fixture(scope="module")
def sphere_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets") / "sphere"
    write_scene(root, scene(azimuths=(0, 60, 120, 180, 240, 300, 30), elevations=[0, 0, 0, 0, 0, 0, 20], size=32))
    return root


@pytest.fixture(scope="module")
def nerf_fit(sphere_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("fits") / "nerf"
    rc = main(
        [
            "fit",
            str(sphere_set),
            "--views",
            "0-5",
            "--resolution",
            "32",
            "--steps",
            "100",
            "--orbit-frames",
            "6",
            "--out",
            str(out),
            *TINY,
            "-q",
        ]
    )
    assert rc == 0
    return out


def test_fit_writes_a_checkpoint_videos_and_a_summary(nerf_fit):
    for name in ("checkpoint.pt", "orbit.mp4", "train_views.mp4", "fit.json"):
        assert (nerf_fit / name).is_file()
    s = json.loads((nerf_fit / "fit.json").read_text())
    assert s["steps"] == 100 and s["views"] == [0, 1, 2, 3, 4, 5]
    assert s["training_views"]["psnr"] > 20 and s["training_views"]["iou"] > 0.8  # measured 23.2 dB, white 16.5
    assert not list(nerf_fit.glob(".*"))  # no temporary files left


def test_render_like_writes_a_set_with_the_other_sets_cameras(nerf_fit, sphere_set, tmp_path):
    out = tmp_path / "rendered"
    assert main(["render", str(nerf_fit / "checkpoint.pt"), "--like", str(sphere_set), "--out", str(out), "-q"]) == 0
    got, want = read_multiview(out), read_multiview(sphere_set)
    assert got.num_views == want.num_views and got.num_frames == want.num_frames
    np.testing.assert_allclose(got.views[6].c2w, want.views[6].c2w, atol=1e-6)
    # the held-out elevated view (6) looks like the ground truth
    a = got.load_view(6, "rgb_white").astype(np.float64) / 255
    b = want.load_view(6, "rgb_white").astype(np.float64) / 255
    assert 10 * np.log10(1 / ((a - b) ** 2).mean()) > 22
    assert main(["render", str(nerf_fit / "checkpoint.pt"), "--like", str(sphere_set), "--out", str(out)]) == 2


def test_render_orbit_and_fixed_views(nerf_fit, tmp_path):
    ck = str(nerf_fit / "checkpoint.pt")
    assert main(["render", ck, "--orbit-frames", "4", "--elevation", "30", "--out", str(tmp_path / "o.mp4"), "-q"]) == 0
    assert (
        main(
            [
                "render",
                ck,
                "--orbit-frames",
                "3",
                "--azimuth",
                "90",
                "--resolution",
                "24",
                "--out",
                str(tmp_path / "a.mp4"),
                "-q",
            ]
        )
        == 0
    )
    assert (tmp_path / "o.mp4").stat().st_size > 0 and (tmp_path / "a.mp4").stat().st_size > 0
    assert main(["render", ck, "--time", "2", "--out", str(tmp_path / "t.mp4"), "-q"]) == 2


def test_export_meshes_load_back(nerf_fit, tmp_path):
    ck = str(nerf_fit / "checkpoint.pt")
    assert (
        main(
            [
                "export",
                ck,
                "--mesh",
                "--flipbook",
                "--format",
                "obj",
                "--grid",
                "40",
                "--frames",
                "0",
                "--out",
                str(tmp_path / "obj"),
                "-q",
            ]
        )
        == 0
    )
    mesh = trimesh.load(tmp_path / "obj" / "mesh_frame_000.obj", process=False)
    r = np.linalg.norm(mesh.vertices - np.array([-0.15, 0, 0]), axis=1)
    assert len(mesh.faces) > 100 and abs(np.median(r) - 0.25) < 0.06  # the sphere at t = 0
    assert main(["export", ck, "--mesh", "--flipbook", "--grid", "40", "--out", str(tmp_path / "glb"), "-q"]) == 0
    files = sorted(p.name for p in (tmp_path / "glb").iterdir())
    assert files == ["mesh_frame_000.glb", "mesh_frame_001.glb", "mesh_frame_002.glb", "sequence.glb"]
    assert_valid_gltf(tmp_path / "glb" / "sequence.glb")
    seq = trimesh.load(tmp_path / "glb" / "sequence.glb")
    assert len(seq.geometry) == 3
    assert main(["export", ck, "--ply", "--out", str(tmp_path / "ply")]) == 2  # PLY is for Gaussians


def test_export_tracks_one_mesh_through_the_fit(nerf_fit, tmp_path, capsys):
    from sv4d.io.animated_glb import read_animated_glb

    ck = str(nerf_fit / "checkpoint.pt")
    out = tmp_path / "mesh"
    args = ["export", ck, "--mesh", "--grid", "40", "--faces", "800", "--texture", "256", "--format", "obj"]
    rc = main([*args, "--out", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "animated.glb",
        "mesh_frame_000.obj",
        "mesh_frame_001.obj",
        "mesh_frame_002.obj",
        "report.json",
        "tracked_mesh.npz",
    ]
    assert_valid_gltf(out / "animated.glb")
    verts, faces, times, uv, tex = read_animated_glb(out / "animated.glb")
    assert verts.shape[0] == 3 and tex.shape == (256, 256, 3) and times[0] == 0 and np.all(np.diff(times) > 0)
    report = json.loads((out / "report.json").read_text())
    assert report["faces"] <= 800 and [f["frame"] for f in report["frames"]] == [0, 1, 2]
    # the tracked sphere moves as the fitted one does: its centre follows the set's path
    with np.load(out / "tracked_mesh.npz") as z:
        centres = z["vertices"].mean(1)
    assert centres[-1][0] > centres[0][0] + 0.1
    # options that belong to other exports are refused
    assert main(["export", ck, "--mesh", "--flipbook", "--faces", "100", "--out", str(tmp_path / "x"), "-q"]) == 2
    assert main(["export", ck, "--ply", "--texture", "0", "--out", str(tmp_path / "y"), "-q"]) == 2
    assert "is for --mesh" in capsys.readouterr().err
    assert main([*args, "--reference-frame", "7", "--out", str(tmp_path / "z"), "-q"]) == 2
    assert "not among the exported frames" in capsys.readouterr().err


def test_resume_continues_and_mismatched_options_are_refused(sphere_set, tmp_path):
    out = tmp_path / "fit"
    args = [
        "fit",
        str(sphere_set),
        "--views",
        "0-5",
        "--resolution",
        "32",
        "--no-videos",
        "--out",
        str(out),
        *TINY,
        "-q",
    ]
    assert main(args + ["--steps", "10"]) == 0
    assert main(args + ["--steps", "10"]) == 2  # a fit is there: --resume or --overwrite
    assert main(args + ["--steps", "20", "--resume"]) == 0
    assert json.loads((out / "fit.json").read_text())["steps"] == 20
    assert main(args[:3] + ["0-4"] + args[4:] + ["--steps", "30", "--resume"]) == 2  # other views


@pytest.mark.parametrize("case", ["no_cameras", "frames_disagree", "bad_view", "not_a_set", "bad_indices"])
def test_bad_input_exits_2_with_a_clear_message(case, sphere_set, tmp_path, capsys):
    src = tmp_path / "set"
    shutil.copytree(sphere_set, src)
    args = ["fit", str(src), "--steps", "2", "--no-videos", "--out", str(tmp_path / "o"), "-q"]
    if case == "no_cameras":
        (src / "cameras.json").unlink()
    elif case == "frames_disagree":
        shutil.rmtree(src / "rgb_white")
        for p in (src / "rgba" / "view_03").glob("frame_002.png"):
            p.unlink()
    elif case == "bad_view":
        args += ["--views", "0,9"]
    elif case == "not_a_set":
        args[1] = str(tmp_path / "nowhere")
    elif case == "bad_indices":
        args += ["--frames", "3-1"]
    with pytest.raises(SystemExit) if case == "bad_indices" else _nothing():
        rc = main(args)
        assert rc == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    if case == "bad_view":
        assert "9" in err and "0..6" in err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_gaussian_fit_renders_and_exports_ply(sphere_set, tmp_path):
    out = tmp_path / "gs"
    assert (
        main(
            [
                "fit",
                str(sphere_set),
                "--method",
                "gaussians",
                "--views",
                "0-5",
                "--resolution",
                "32",
                "--steps",
                "60",
                "--orbit-frames",
                "4",
                "--set",
                "init_count=2000",
                "--set",
                "hull_resolution=32",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    s = json.loads((out / "fit.json").read_text())
    assert s["method"] == "gaussians" and s["training_views"]["psnr"] > 20
    assert (
        main(["export", str(out / "checkpoint.pt"), "--ply", "--frames", "0,2", "--out", str(tmp_path / "ply"), "-q"])
        == 0
    )
    ply = plyfile.PlyData.read(str(tmp_path / "ply" / "gaussians_frame_002.ply"))
    names = [p.name for p in ply["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert not [n for n in names if n.startswith("f_rest")]  # degree 0 by default
    # --sh-degree 3: the reference 3DGS layout, 45 f_rest fields of zeros; the rest unchanged
    deg3 = tmp_path / "ply3"
    argv = ["export", str(out / "checkpoint.pt"), "--ply", "--frames", "2-2", "--sh-degree", "3", "-o", str(deg3)]
    assert main([*argv, "-q"]) == 0
    ply3 = plyfile.PlyData.read(str(deg3 / "gaussians_frame_002.ply"))["vertex"]
    names3 = [p.name for p in ply3.properties]
    assert names3[9:54] == [f"f_rest_{i}" for i in range(45)] and names3[54] == "opacity"
    assert all(not np.any(ply3[f"f_rest_{i}"]) for i in range(45))
    for name in names:
        assert np.array_equal(ply3[name], ply["vertex"][name]), name
    assert main(["export", str(out / "checkpoint.pt"), "--mesh", "--sh-degree", "1", "-o", str(tmp_path / "m")]) == 2
    xyz = np.stack([ply["vertex"][k] for k in "xyz"], 1)
    assert len(xyz) > 100 and (np.abs(xyz) < [0.55, 0.4, 0.4]).all()  # around the sphere's path (x -0.4..0.4)
    # --mesh: the canonical Gaussians' surface, moved by the deformation field
    mesh_args = ["--mesh", "--grid", "48", "--faces", "600", "--texture", "0", "--out", str(tmp_path / "m"), "-q"]
    assert main(["export", str(out / "checkpoint.pt"), *mesh_args]) == 0
    assert_valid_gltf(tmp_path / "m" / "animated.glb")
    with np.load(tmp_path / "m" / "tracked_mesh.npz") as z:
        assert z["vertices"].shape[0] == 3 and (np.abs(z["vertices"]) < [0.6, 0.45, 0.45]).all()
        assert z["colors"].shape == z["vertices"].shape[1:]
    assert json.loads((tmp_path / "m" / "report.json").read_text())["template_frame"] is None  # canonical
    assert (
        main(["render", str(out / "checkpoint.pt"), "--orbit-frames", "3", "--out", str(tmp_path / "o.mp4"), "-q"]) == 0
    )


def test_visibility_weights_are_computed_and_kept_in_the_checkpoint(sphere_set, tmp_path):
    import torch

    out = tmp_path / "vis"
    assert (
        main(
            [
                "fit",
                str(sphere_set),
                "--views",
                "0-5",
                "--resolution",
                "32",
                "--steps",
                "30",
                "--visibility",
                "on",
                "--no-videos",
                "--out",
                str(out),
                *TINY,
                "-q",
            ]
        )
        == 0
    )
    assert json.loads((out / "fit.json").read_text())["visibility_weighting"] is True
    w = torch.load(out / "checkpoint.pt", weights_only=True)["extra"]["weight"]
    assert w.shape == (6, 3, 32, 32)
    assert torch.equal(w[0], torch.ones_like(w[0]))  # the reference view
    assert float(w.min()) >= 0.2 - 1e-6 and float(w[3].min()) < 0.5  # the back view is mostly unseen
    assert (
        main(
            [
                "fit",
                str(sphere_set),
                "--views",
                "1-5",
                "--visibility",
                "on",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "v2"),
                "-q",
            ]
        )
        == 2
    )  # no reference view among the fitted ones

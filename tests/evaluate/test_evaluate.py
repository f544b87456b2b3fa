"""sv4d evaluate: grid orderings, Frechet distance, image metrics, Chamfer, report and CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from conftest import assert_valid_gltf
from sv4d.cameras import Intrinsics, Rig
from sv4d.cli import main
from sv4d.errors import Sv4dError
from sv4d.evaluate import EvalOptions, evaluate, load_grids
from sv4d.evaluate.degrade import degrade_set
from sv4d.evaluate.geometry import chamfer, chamfer_per_frame, sample_surface
from sv4d.io.mesh import Mesh, read_mesh, write_glb, write_obj
from sv4d.io.multiview import read_multiview, write_multiview
from sv4d.metrics.fvd import clip_indices, clip_starts, frechet_distance, grid_sequences, variant_clips

# ---------------------------------------------------------------------------------------------
# synthetic sets


def _images(views: int, frames: int, size: int, seed: int = 0) -> np.ndarray:
    """A textured disc that moves with time and looks different from each view: (V, F, S, S, 4)."""
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (views, size, size, 3)).astype(np.float32)
    tex = (tex + np.roll(tex, 1, 1) + np.roll(tex, 1, 2)) / 3  # some spatial correlation
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros((views, frames, size, size, 4), np.uint8)
    for f in range(frames):
        cx = size * (0.35 + 0.3 * f / max(frames - 1, 1))
        r = np.hypot(xx - cx, yy - size / 2)
        alpha = np.clip(size * 0.3 - r + 0.5, 0, 1)
        for v in range(views):
            out[v, f, ..., :3] = np.roll(tex[v], f, 1).astype(np.uint8)
            out[v, f, ..., 3] = np.round(alpha * 255).astype(np.uint8)
    return out


def _write(path, rgba: np.ndarray, azimuths=None, times=None, fov: float = 40.0):
    v_n, f_n, size = rgba.shape[0], rgba.shape[1], rgba.shape[2]
    azimuths = azimuths if azimuths is not None else [360.0 * i / v_n for i in range(v_n)]
    times = np.arange(f_n) / 10.0 if times is None else times
    rig = Rig.orbit([(0.0, a) for a in azimuths], 2.0, Intrinsics.from_fov(fov, size), times)
    return write_multiview(path, rig, rgba=rgba)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalsets")
    gt = _write(root / "gt", _images(3, 6, 32))
    return root, gt


# ---------------------------------------------------------------------------------------------
# FVD orderings and the Frechet distance


def test_orderings_on_a_known_grid():
    assert grid_sequences("fvd_f", 2, 3) == [[(0, 0), (0, 1), (0, 2)], [(1, 0), (1, 1), (1, 2)]]
    assert grid_sequences("fvd_v", 2, 3) == [[(0, 0), (1, 0)], [(0, 1), (1, 1)], [(0, 2), (1, 2)]]
    assert grid_sequences("fvd_diag", 3, 4) == [
        [(0, 0), (1, 1), (2, 2), (0, 3)],
        [(1, 0), (2, 1), (0, 2), (1, 3)],
        [(2, 0), (0, 1), (1, 2), (2, 3)],
    ]
    assert grid_sequences("fv4d", 3, 2) == [[(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1)]]
    # every variant but FVD-Diag's wrap visits each image exactly once
    for variant in ("fvd_f", "fvd_v", "fvd_diag", "fv4d"):
        seen = sorted(i for s in grid_sequences(variant, 4, 5) for i in s)
        assert seen == sorted((v, f) for v in range(4) for f in range(5)), variant
    with pytest.raises(Sv4dError):
        grid_sequences("fvd_x", 2, 2)


def test_fv4d_steps_change_one_index_at_a_time():
    seq = grid_sequences("fv4d", 4, 5)[0]
    for (v0, f0), (v1, f1) in zip(seq, seq[1:]):
        assert abs(v1 - v0) + abs(f1 - f0) == 1


def test_clip_cutting():
    assert clip_starts(21, 16) == [0, 5]
    assert clip_starts(32, 16) == [0, 16]
    assert clip_starts(40, 16, 8) == [0, 8, 16, 24]
    seq = [(0, i) for i in range(21)]
    clips = clip_indices(seq, 16)
    assert [c[0] for c in clips] == [(0, 0), (0, 5)] and all(len(c) == 16 for c in clips)
    short = clip_indices([(0, 0), (1, 0), (2, 0)], 9)  # stretched by repeating images
    assert short == [[(0, 0)] * 3 + [(1, 0)] * 3 + [(2, 0)] * 3]
    assert len(variant_clips("fv4d", 13, 21, 16)) == 18  # 273 images: 17 clips + one ending at the last


def _scipy_fd(x, y):
    """The usual sqrtm formula, computed independently of sv4d."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_and_is_zero_for_identical_sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) * 0.7 + 0.3
    assert frechet_distance(x, y) == pytest.approx(_scipy_fd(x, y), rel=1e-6)
    assert abs(frechet_distance(x, x)) < 1e-9
    # one-dimensional Gaussians: (m1 - m2)^2 + (s1 - s2)^2
    a, b = rng.normal(size=(5000, 1)), rng.normal(size=(5000, 1)) * 2 + 3
    expect = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expect, rel=1e-9)
    # few samples in many dimensions (rank-deficient covariances) stay finite and zero on identity
    z = rng.normal(size=(8, 400))
    assert abs(frechet_distance(z, z)) < 1e-8 and frechet_distance(z, z + 1) == pytest.approx(400, rel=1e-6)
    with pytest.raises(Sv4dError):
        frechet_distance(x, y[:, :3])


# ---------------------------------------------------------------------------------------------
# image metrics through evaluate()


def _opts(**kw):
    return EvalOptions(progress=False, fvd=kw.pop("fvd", False), thumb=16, **kw)


def test_identical_sets_score_perfectly(sets, tmp_path):
    _, gt = sets
    m = evaluate(gt, gt, tmp_path / "rep", _opts())
    im = m["images"]
    assert im["psnr"]["mean"] == 100.0 and m["psnr_capped_images"] == 18
    assert any("capped at 100 dB" in n for n in m["notices"])
    assert im["ssim"]["mean"] == pytest.approx(1.0) and im["mse"]["mean"] == 0.0 and im["iou"]["mean"] == 1.0
    assert len(im["psnr"]["per_view"]) == 3 and len(im["psnr"]["per_frame"]) == 6
    assert np.asarray(im["ssim"]["per_image"]).shape == (3, 6)
    saved = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert saved["images"]["psnr"]["mean"] == 100.0 and saved["settings"]["psnr_cap_db"] == 100.0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "grid/view_00.png" in html and "plots/per_frame.png" in html
    for f in ("plots/per_view.png", "plots/per_frame.png", "plots/error_scale.png", "grid/view_02.png"):
        assert (tmp_path / "rep" / f).is_file()


def test_blur_and_shift_score_monotonically_worse(sets, tmp_path):
    root, gt = sets
    results = {}
    for kind, amounts in (("blur_sigma", (0.5, 1.0, 2.0)), ("shift_px", (1, 2, 4))):
        rows = []
        for a in amounts:
            deg = degrade_set(gt, tmp_path / f"{kind}_{a}", **{kind: a})
            m = evaluate(deg, gt, tmp_path / f"rep_{kind}_{a}", _opts())
            rows.append({k: m["images"][k]["mean"] for k in ("psnr", "ssim", "mse", "iou")})
        results[kind] = rows
        for better, worse in zip(rows, rows[1:]):
            assert worse["psnr"] < better["psnr"] and worse["ssim"] < better["ssim"]
            assert worse["mse"] > better["mse"] and worse["iou"] <= better["iou"]
    assert results["shift_px"][-1]["iou"] < 0.95


def test_views_and_frames_subsets(sets, tmp_path):
    root, gt = sets
    grid = load_grids(gt, gt, views=[2, 0], frames=[1, 3, 5], progress=False)
    assert grid.pred.shape == (2, 3, 32, 32, 3) and grid.views == [2, 0] and grid.view_names == ["view_02", "view_00"]
    full = read_multiview(gt)
    assert np.array_equal(grid.gt[0, 1], full.load_image(2, 3, "rgb_white"))
    with pytest.raises(Sv4dError, match="view 5 does not exist"):
        load_grids(gt, gt, views=[5], progress=False)


def test_different_cameras_or_sizes_are_reported(sets, tmp_path):
    root, gt = sets
    moved = _write(tmp_path / "moved", _images(3, 6, 32), azimuths=[0.0, 100.0, 240.0])
    with pytest.raises(Sv4dError, match="cameras differ: view 1"):
        load_grids(moved, gt, progress=False)
    grid = load_grids(moved, gt, ignore_cameras=True, progress=False)
    assert any("cameras differ" in w for w in grid.warnings)
    late = _write(tmp_path / "late", _images(3, 6, 32), times=np.arange(6) / 10.0 + 0.5)
    with pytest.raises(Sv4dError, match="frame times differ"):
        load_grids(late, gt, progress=False)
    fewer = _write(tmp_path / "fewer", _images(2, 6, 32), azimuths=[0.0, 120.0])
    with pytest.raises(Sv4dError, match="2 views x 6 frames"):
        load_grids(fewer, gt, progress=False)
    big = _write(tmp_path / "big", np.repeat(np.repeat(_images(3, 6, 32), 2, 2), 2, 3))
    with pytest.raises(Sv4dError, match="pass --resize"):
        load_grids(big, gt, progress=False)
    grid = load_grids(big, gt, resize=True, progress=False)
    assert grid.pred.shape == grid.gt.shape
    # 2x2 pixel replication resized back by area-like averaging gives the original back
    assert np.abs(grid.pred.astype(int) - grid.gt.astype(int)).max() <= 1


# ---------------------------------------------------------------------------------------------
# network metrics with random weights


def test_lpips_skipped_without_weights_and_used_with_them(sets, tmp_path):
    root, gt = sets
    m = evaluate(gt, gt, tmp_path / "a", _opts())
    assert "lpips" not in m["images"] and any(n.startswith("LPIPS (VGG) skipped") for n in m["notices"])
    from sv4d.metrics.lpips import LPIPS

    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lins:  # published LPIPS channel weights are non-negative
        lin.model[1].weight.data.abs_()
    torch.save(net.state_dict(), tmp_path / "lpips_vgg_combined.pth")  # one file: backbone + lin layers
    w = str(tmp_path / "lpips_vgg_combined.pth")
    same = evaluate(gt, gt, tmp_path / "b", _opts(lpips=w))
    assert same["images"]["lpips"]["mean"] == pytest.approx(0.0, abs=1e-7)
    assert same["weights"]["lpips"] == w
    scores = [
        evaluate(degrade_set(gt, tmp_path / f"blur{s}", blur_sigma=s), gt, tmp_path / f"r{s}", _opts(lpips=w))[
            "images"
        ]["lpips"]["mean"]
        for s in (0.7, 2.0)
    ]
    assert 1e-7 < scores[0] < scores[1]


def test_fvd_of_identical_sets_is_zero_with_random_i3d(tmp_path):
    from sv4d.metrics.i3d import InceptionI3d

    torch.manual_seed(0)
    net = InceptionI3d()
    torch.save(net.state_dict(), tmp_path / "i3d_pretrained_400.pt")
    gt = _write(tmp_path / "gt", _images(2, 9, 24))
    m = evaluate(gt, gt, tmp_path / "rep", _opts(fvd=True, weights=str(tmp_path), clip_length=9))
    v = m["fvd"]["variants"]
    assert set(v) == {"fvd_f", "fvd_v", "fvd_diag", "fv4d"}
    assert [v[k]["clips"] for k in ("fvd_f", "fvd_v", "fvd_diag", "fv4d")] == [2, 9, 2, 2]
    for k, r in v.items():
        assert r["fvd"] is not None and abs(r["fvd"]) < 1e-6, (k, r)
    assert m["fvd"]["clip_length"] == 9


def test_wrong_weight_file_is_a_clear_error(sets, tmp_path):
    root, gt = sets
    bad = tmp_path / "i3d_pretrained_400.pt"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": torch.zeros(64, 3, 5, 7, 7)}, bad)
    with pytest.raises(Sv4dError, match="not a"):
        evaluate(gt, gt, tmp_path / "rep", _opts(fvd=True, i3d=str(bad)))
    assert not (tmp_path / "rep").exists()  # nothing half-written
    notweights = tmp_path / "notes.pt"
    notweights.write_text("hello")
    with pytest.raises(Sv4dError, match="cannot read weights"):
        evaluate(gt, gt, tmp_path / "rep", _opts(clip=str(notweights)))


# ---------------------------------------------------------------------------------------------
# geometry


def _sphere(radius: float, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    th, ph = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False), indexing="ij")
    v = radius * np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    idx = np.arange(n * 2 * n).reshape(n, 2 * n)
    nxt = np.roll(idx, -1, 1)
    f = np.concatenate(
        [
            np.stack([idx[:-1], idx[1:], nxt[1:]], -1).reshape(-1, 3),
            np.stack([idx[:-1], nxt[1:], nxt[:-1]], -1).reshape(-1, 3),
        ]
    )
    return v, f


def test_chamfer_between_concentric_spheres():
    v1, f1 = _sphere(0.3)
    v2, f2 = _sphere(0.4)
    same = chamfer(sample_surface(v1, f1, 20000, 0), sample_surface(v1, f1, 20000, 1))
    assert same["chamfer_l1"] < 0.005
    d = chamfer(sample_surface(v1, f1, 20000, 0), sample_surface(v2, f2, 20000, 1))
    for k in ("accuracy", "completeness", "chamfer_l1"):
        assert d[k] == pytest.approx(0.1, abs=0.006), k
    assert d["chamfer_l2"] == pytest.approx(0.02, abs=0.002)
    pts = sample_surface(v1, f1, 5000, 3)
    assert np.allclose(np.linalg.norm(pts, axis=1), 0.3, atol=0.003)


def test_mesh_readers_and_chamfer_per_frame(tmp_path):
    v, f = _sphere(0.3, 16)
    gt_v = np.stack([v, v + [0.05, 0, 0]])
    write_obj(tmp_path / "mesh_frame_000.obj", Mesh(v, f))
    write_glb(tmp_path / "mesh_frame_001.glb", [Mesh(v + [0.05, 0, 0], f)])
    for name, want in (("mesh_frame_000.obj", v), ("mesh_frame_001.glb", v + [0.05, 0, 0])):
        rv, rf = read_mesh(tmp_path / name)
        assert np.allclose(rv, want, atol=1e-6) and np.array_equal(rf, f)
    assert_valid_gltf(tmp_path / "mesh_frame_001.glb")
    rows = chamfer_per_frame(tmp_path, gt_v, f, [0, 1], samples=4000)
    assert [r["mesh"] for r in rows] == ["mesh_frame_000.obj", "mesh_frame_001.glb"]
    assert all(r["chamfer_l1"] < 0.01 for r in rows)
    # the tracked mesh of `sv4d export --mesh`: one npz, frames by their set numbers
    tracked = tmp_path / "tracked"
    tracked.mkdir()
    np.savez(tracked / "tracked_mesh.npz", vertices=gt_v[::-1], faces=f, frames=np.array([1, 0]))
    rows = chamfer_per_frame(tracked, gt_v, f, [0, 1], samples=4000)
    assert [r["mesh"] for r in rows] == ["tracked_mesh.npz[0]", "tracked_mesh.npz[1]"]
    assert all(r["chamfer_l1"] < 0.01 for r in rows)
    np.savez(tracked / "tracked_mesh.npz", vertices=gt_v, faces=f + 10_000, frames=np.array([0, 1]))
    with pytest.raises(Sv4dError, match="face indices out of range"):
        chamfer_per_frame(tracked, gt_v, f, [0], samples=100)
    with pytest.raises(Sv4dError, match="no mesh for frame 2"):
        chamfer_per_frame(tmp_path, np.stack([v] * 3), f, [2], samples=100)
    (tmp_path / "bad.glb").write_bytes(b"nope")
    with pytest.raises(Sv4dError, match="not a binary glTF"):
        read_mesh(tmp_path / "bad.glb")


def test_evaluate_with_meshes(tmp_path):
    v, f = _sphere(0.3, 16)
    gt = _write(tmp_path / "gt", _images(2, 2, 24))
    np.savez(
        tmp_path / "gt" / "geometry.npz",
        vertices=np.stack([v, v]).astype(np.float32),
        faces=f.astype(np.int32),
        times=np.array([0.0, 0.1]),
    )
    meshes = tmp_path / "mesh"
    meshes.mkdir()
    for k, r in enumerate((0.3, 0.35)):
        write_obj(meshes / f"mesh_frame_{k:03d}.obj", Mesh(v * r / 0.3, f))
    m = evaluate(gt, gt, tmp_path / "rep", _opts(mesh=str(meshes), chamfer_samples=5000))
    rows = m["geometry"]["per_frame"]
    assert rows[0]["chamfer_l1"] < 0.01 and rows[1]["chamfer_l1"] == pytest.approx(0.05, abs=0.006)
    assert "chamfer_l1" in (tmp_path / "rep" / "index.html").read_text()
    with pytest.raises(Sv4dError, match="no geometry.npz"):
        evaluate(gt, _write(tmp_path / "gt2", _images(2, 2, 24)), tmp_path / "rep2", _opts(mesh=str(meshes)))


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_writes_report_and_fails_cleanly(sets, tmp_path, capsys):
    root, gt = sets
    rep = tmp_path / "rep"
    assert main(["evaluate", str(gt), str(gt), "-o", str(rep), "--views", "0,1", "-q", "--no-fvd"]) == 0
    m = json.loads((rep / "metrics.json").read_text())
    assert m["views"] == [0, 1] and math.isclose(m["images"]["ssim"]["mean"], 1.0)
    assert main(["evaluate", str(gt), str(gt), "-o", str(rep), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing"), str(gt), "-o", str(tmp_path / "r2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "r2").exists()


def test_report_crops_every_image_to_one_box_around_the_object():
    from sv4d.evaluate.grid import EvalGrid
    from sv4d.evaluate.report import content_box

    pred = np.full((2, 3, 40, 50, 3), 255, np.uint8)
    gt = pred.copy()
    gt[1, 2, 10:20, 5:10] = 0  # object in one ground-truth image
    pred[0, 0, 30:32, 40:42] = 90  # a stray predicted blob elsewhere
    grid = EvalGrid(pred, gt, None, None, [0, 1], [0, 1, 2], ["a", "b"], np.zeros(3))
    y0, y1, x0, x1 = content_box(grid, margin=0.0)
    assert (y0, y1, x0, x1) == (9, 33, 4, 43)  # the union of both, plus one pixel
    grid.gt[:] = 255
    grid.pred[:] = 255
    assert content_box(grid) == (0, 40, 0, 50)

"""The tracked mesh on analytic moving shapes whose true vertex paths are known: rigid motion, a
bend, a fit-like field through :mod:`sv4d.fit.animate`, Gaussians moved by a deformation field, and
surfaces that cannot be tracked."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import assert_valid_gltf
from sv4d.cameras import TimeSpan
from sv4d.errors import Sv4dError
from sv4d.fit.animate import FitSurface, animate_fit, export_animated
from sv4d.fit.mesh import marching_cubes_mesh
from sv4d.fit.tracking import (
    TrackingOptions,
    clean_mesh,
    decimate_mesh,
    mesh_edges,
    mesh_quality,
    track_surfaces,
)
from sv4d.io.mesh import Mesh

R = 56
AX = np.linspace(-1, 1, R)
GRID = np.stack(np.meshgrid(AX, AX, AX, indexing="ij"), -1).reshape(-1, 3)
BODY = np.array([0.5, 0.3, 0.22])
BUMP = np.array([0.45, 0.0, 0.1])


def _blob(q: np.ndarray) -> np.ndarray:
    """An ellipsoid with a bump (no symmetry a tracker could slide along), in its own frame."""
    return 1.0 - np.sqrt(((q / BODY) ** 2).sum(-1)) + 0.25 * np.exp(-((q - BUMP) ** 2).sum(-1) / 0.01)


def _rot(t: float) -> np.ndarray:
    c, s = np.cos(0.6 * t), np.sin(0.6 * t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _centre(t: float) -> np.ndarray:
    return np.array([0.25 * t, 0.1 * np.sin(3 * t), 0.0])


def _rigid(p: np.ndarray, t: float) -> np.ndarray:
    return _blob((p - _centre(t)) @ _rot(t))


def _bend_inverse(p: np.ndarray, t: float) -> np.ndarray:
    q = p - [0.2 * t, 0, 0]
    return q - np.stack([0 * q[:, 0], 0 * q[:, 0], 0.8 * t * q[:, 0] ** 2], -1)


def _bend_forward(p: np.ndarray, t: float) -> np.ndarray:
    return p + np.stack([0 * p[:, 0] + 0.2 * t, 0 * p[:, 0], 0.8 * t * p[:, 0] ** 2], -1)


def _surface(fn):
    return lambda t: clean_mesh(marching_cubes_mesh(fn(GRID, t).reshape(R, R, R), (-1, 1), 0.0))


def _euler(mesh: Mesh) -> int:
    """V - E + F: 2 for a closed sphere-like surface."""
    return len(np.unique(mesh.faces)) - len(mesh_edges(mesh.faces)) + len(mesh.faces)


def _diag(v: np.ndarray) -> float:
    return float(np.linalg.norm(np.ptp(v, axis=0)))


def test_clean_drops_floaters_and_decimate_keeps_the_shape():
    dens = _rigid(GRID, 0.0)
    speck = 0.05 - np.linalg.norm(GRID - [0.8, 0.8, 0.8], axis=1)  # a small floater
    mesh = marching_cubes_mesh(np.maximum(dens, speck).reshape(R, R, R), (-1, 1), 0.0)
    clean = clean_mesh(mesh)
    assert len(clean.faces) < len(mesh.faces) and clean.vertices.max(0)[0] < 0.7
    small = decimate_mesh(clean, 1000)
    assert 900 <= len(small.faces) <= 1000 and small.volume > 0
    assert abs(small.volume / clean.volume - 1) < 0.03
    assert _euler(small) == 2  # still one closed sphere-like surface
    with pytest.raises(Sv4dError, match="face budget"):
        decimate_mesh(clean, 2)


def test_rigid_motion_is_followed_vertex_by_vertex():
    target = _surface(_rigid)
    times = np.linspace(0, 1, 6)
    tmpl = decimate_mesh(target(0.0), 1500)
    verts, reports = track_surfaces(tmpl, target, times, 0)
    assert verts.shape == (6, len(tmpl.vertices), 3)
    diag = _diag(tmpl.vertices)
    for k, t in enumerate(times):
        truth = (tmpl.vertices - _centre(0)) @ _rot(0) @ _rot(t).T + _centre(t)
        err = np.linalg.norm(verts[k] - truth, axis=1) / diag
        assert err.mean() < 0.025 and err.max() < 0.06, (k, err.mean(), err.max())  # grid cell: 3% of it
        assert reports[k].distance_p95 < 0.01 * diag and reports[k].uncovered < 0.01
        assert reports[k].notes == []
    q = mesh_quality(verts, tmpl.faces)
    assert q["worst"]["folded_fraction"] < 0.01 and q["worst"]["edge_distortion"] < 0.1


def test_a_bend_is_followed_and_tracking_backward_from_a_later_reference():
    target = _surface(lambda p, t: _blob(_bend_inverse(p, t)))
    times = np.linspace(0, 1, 6)
    ref = 3
    tmpl = decimate_mesh(target(times[ref]), 1500)
    verts, reports = track_surfaces(tmpl, target, times, ref)
    rest = _bend_inverse(tmpl.vertices.astype(np.float64), times[ref])  # the template's body points
    diag = _diag(tmpl.vertices)
    for k, t in enumerate(times):
        err = np.linalg.norm(verts[k] - _bend_forward(rest, t), axis=1) / diag
        assert err.mean() < 0.03 and err.max() < 0.12, (k, err.mean(), err.max())
        assert reports[k].distance_mean < 0.005 * diag


class _AnalyticNerf:
    """What :class:`FitSurface` uses of a NeRF fit, for an analytic field: density, colour, bound."""

    def __init__(self, fn, bound: float = 1.0) -> None:
        self.fn, self.bound, self.step_size = fn, bound, float(np.log(2.0))  # level = 1

    def density(self, p: torch.Tensor, t: float) -> torch.Tensor:
        return torch.from_numpy(1.0 + 4 * self.fn(p.double().numpy(), t)).float()

    def color(self, p: torch.Tensor, t: float) -> torch.Tensor:
        return (p.float().clamp(-1, 1) + 1) / 2


def _record(n: int) -> SimpleNamespace:
    times = np.linspace(0.0, 2.0, n)
    span = TimeSpan(0.0, 2.0)
    return SimpleNamespace(
        method="nerf",
        frames=list(range(n)),
        rig=SimpleNamespace(times=times),
        unit_times=lambda: span.to_unit(times).tolist(),
    )


def test_export_of_a_moving_field_writes_a_textured_animation(tmp_path):
    from sv4d.io.animated_glb import read_animated_glb

    model = _AnalyticNerf(_rigid)
    paths = export_animated(model, _record(4), tmp_path / "mesh", [0, 1, 2, 3], faces=1200, grid=R, texture=256)
    assert [p.name for p in paths] == ["animated.glb", "tracked_mesh.npz", "report.json"]
    with np.load(tmp_path / "mesh" / "tracked_mesh.npz") as z:
        v, f, times = z["vertices"], z["faces"], z["times"]
        assert v.shape[0] == 4 and f.shape[1] == 3 and 1000 <= len(f) <= 1200
        np.testing.assert_allclose(times, np.linspace(0, 2, 4), atol=1e-6)
        uv_v = z["uv_vertex"]
    assert_valid_gltf(tmp_path / "mesh" / "animated.glb")
    gv, gf, gt, uv, tex = read_animated_glb(tmp_path / "mesh" / "animated.glb")
    np.testing.assert_allclose(gv, v[:, uv_v], atol=1e-5)
    assert tex.shape == (256, 256, 3) and uv.shape == (len(uv_v), 2)
    report = json.loads((tmp_path / "mesh" / "report.json").read_text())
    assert [r["frame"] for r in report["frames"]] == [0, 1, 2, 3] and report["template_frame"] == 0
    assert max(r["uncovered"] for r in report["frames"]) < 0.02
    # the texture holds the field's colour: (p + 1) / 2 at the template's surface
    z = np.load(tmp_path / "mesh" / "tracked_mesh.npz")
    col = (
        tex[
            (uv[:, 1] * 256 - 0.5).round().astype(int).clip(0, 255),
            (uv[:, 0] * 256 - 0.5).round().astype(int).clip(0, 255),
        ]
        / 255.0
    )
    want = (np.clip(z["vertices"][0][uv_v], -1, 1) + 1) / 2
    assert np.abs(col - want).mean() < 0.03


def test_a_surface_that_jumps_is_refused_and_a_split_is_reported(tmp_path):
    def jump(p, t):  # a sphere that is elsewhere at every frame
        return 0.3 - np.linalg.norm(p - [-0.6 + 1.2 * t, 0, 0], axis=1)

    with pytest.raises(Sv4dError, match=r"cannot track .*\n.*frame 1.*\n(.*\n)*.*--flipbook"):
        export_animated(_AnalyticNerf(jump), _record(2), tmp_path / "m", [0, 1], faces=600, grid=40, texture=0)
    assert not (tmp_path / "m").exists()

    def split(p, t):  # one blob that becomes two
        gap = 0.35 * t
        a = 0.32 - np.linalg.norm(p - [-0.3 - gap, 0, 0], axis=1)
        b = 0.32 - np.linalg.norm(p - [0.3 + gap, 0, 0], axis=1)
        neck = 0.12 - np.linalg.norm(p[:, 1:], axis=1) - (np.abs(p[:, 0]) > 0.3 + gap) * 1.0 - 0.6 * t
        return np.maximum(np.maximum(a, b), neck)

    surface = FitSurface(_AnalyticNerf(split), "nerf", 48)
    anim = animate_fit(surface, [0, 1, 2], [0.0, 0.5, 1.0], [0.0, 0.5, 1.0], faces=1500, progress=False)
    assert any("topology" in n for n in anim.reports[-1].notes), anim.reports[-1]
    assert anim.reports[0].notes == []


def test_gaussians_move_the_template_with_their_deformation_field(tmp_path):
    from sv4d.fit.gaussians import GaussianModel
    from sv4d.fit.gaussians.config import GaussianConfig

    rng = np.random.default_rng(0)
    d = rng.normal(size=(3000, 3))
    pts = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, 0.4, (3000, 1)) ** (1 / 3) * 0.4 / 0.4
    n = len(pts)
    params = {
        "means": torch.from_numpy(pts).float(),
        "log_scales": torch.full((n, 3), float(np.log(0.04))),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacity_logits": torch.full((n,), 3.0),
        "color_logits": torch.zeros(n, 3),
    }
    model = GaussianModel(GaussianConfig(), 1.0, params, time_resolution=4)

    def shift(x, t):  # a known deformation: translate along x by 0.3 t
        dx = torch.zeros_like(x)
        dx[:, 0] = 0.3 * float(t)
        return dx, torch.zeros(len(x), 4), torch.zeros(len(x), 3)

    model.deform = shift
    surface = FitSurface(model, "gaussians", 48)
    anim = animate_fit(surface, [0, 1, 2], [0.0, 0.5, 1.0], [0.0, 0.5, 1.0], faces=800, progress=False)
    assert anim.reference is None
    np.testing.assert_allclose(anim.vertices[2] - anim.rest, np.tile([0.3, 0, 0], (len(anim.rest), 1)), atol=1e-5)
    assert all(r.distance_p95 < 0.03 * r.tolerance / 0.02 for r in anim.reports)


def test_tracking_options_are_checked():
    with pytest.raises(Sv4dError):
        TrackingOptions(iterations=0)
    tmpl = Mesh(np.zeros((3, 3)), [[0, 1, 2]])
    with pytest.raises(Sv4dError, match="reference"):
        track_surfaces(tmpl, lambda t: tmpl, [0.0], 2)

"""The camera package: one angle order, orbit poses and their inverse, OpenGL/OpenCV, intrinsics,
rays and projection, orbits and view lists, the framing and auto distances, the rig and unit time,
the model's view layout and conditioning angles."""

from __future__ import annotations

import inspect
import math
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA
from sv4d import cameras
from sv4d.cameras import (
    SV4D_FOV_DEG,
    Intrinsics,
    Rig,
    TimeSpan,
    View,
    ViewAngles,
    camera_rays,
    dynamic_orbit,
    fit_distance,
    framing_distance,
    model_views,
    opencv_from_opengl,
    orbit_angles,
    orbit_c2w,
    orbit_path,
    parse_views,
    project,
    relative_angles,
    scene_bound,
    static_orbit,
    world_to_camera_opencv,
)
from sv4d.errors import Sv4dError
from sv4d.io.multiview import read_multiview

FOX_SMALL = DATA / "multiview" / "fox_small"


@pytest.fixture(scope="module")
def fox():
    return read_multiview(FOX_SMALL)


# --- one angle order -------------------------------------------------------------------------


def test_every_angle_pair_is_elevation_then_azimuth():
    """orbit_c2w, orbit_angles, ViewAngles, the orbits and the el:az notation agree on the order."""
    c2w = orbit_c2w(20.0, 90.0, 2.0)  # 20 deg up, on the +X side
    np.testing.assert_allclose(
        c2w[:3, 3], 2.0 * np.array([math.cos(math.radians(20)), math.sin(math.radians(20)), 0]), atol=1e-12
    )
    assert orbit_angles(c2w) == pytest.approx((20.0, 90.0))
    assert orbit_angles(c2w).elevation_deg == pytest.approx(20.0)
    assert ViewAngles(20.0, 90.0) == parse_views("20:90")[0] == static_orbit(4, 20.0)[1]
    assert View.on_orbit(20.0, 90.0, 2.0).angles() == (20.0, 90.0)
    # the two angle lists of the conditioning cannot be passed by position
    with pytest.raises(TypeError):
        relative_angles([0.0, 90.0], 0.0, 1)  # type: ignore[misc]


def test_the_field_of_view_and_the_elevation_limit_are_defined_once():
    src = Path(cameras.__file__).parents[1]
    literal = []  # the number 33.8 in code (docstrings and help texts may mention it)
    for path in src.rglob("*.py"):
        with open(path, "rb") as f:
            tokens = list(tokenize.tokenize(f.readline))
        if any(t.type == tokenize.NUMBER and t.string.replace("_", "") in ("33.8", "33.80") for t in tokens):
            literal.append(str(path.relative_to(src)))
    assert sorted(literal) == ["cameras/intrinsics.py"], f"the SV4D field of view is written out in {literal}"
    assert SV4D_FOV_DEG == 33.8
    for bad in (90.0, -90.0, 120.0, float("nan")):
        with pytest.raises(Sv4dError, match="strictly between -90 and 90"):
            cameras.check_elevation(bad)
    assert cameras.check_elevation(89.5) == 89.5


# --- poses -----------------------------------------------------------------------------------


def test_orbit_c2w_reproduces_every_stored_camera(fox):
    for view, entry in zip(fox.views, fox.meta["views"]):
        c2w = orbit_c2w(view.elevation_deg, view.azimuth_deg, fox.camera_distance)
        np.testing.assert_allclose(c2w, view.c2w, atol=1e-12)
        np.testing.assert_allclose(view.c2w_opencv, np.asarray(entry["c2w_opencv"]), atol=1e-12)
        np.testing.assert_allclose(opencv_from_opengl(c2w), c2w @ np.diag([1.0, -1, -1, 1]))
        centre, forward = c2w[:3, 3], -c2w[:3, 2]  # OpenGL camera looks along -Z
        np.testing.assert_allclose(forward, -centre / np.linalg.norm(centre), atol=1e-12)
        np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)
        assert c2w[1, 1] >= 0  # camera up has no downward tilt: +Y is up


@pytest.mark.parametrize("elevation", [90.0, -90.0, 89.9999])
def test_orbit_c2w_is_a_valid_pose_at_the_poles(elevation):
    c2w = orbit_c2w(elevation, 30.0, 2.0)
    assert np.isfinite(c2w).all()
    np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 3], [0, 2.0 * math.sin(math.radians(elevation)), 0], atol=1e-3)
    np.testing.assert_allclose(-c2w[:3, 2], -c2w[:3, 3] / 2.0, atol=1e-12)


@pytest.mark.parametrize("az,el", [(0.0, 0.0), (30.0, 0.0), (-135.0, 20.0), (170.0, -45.0)])
def test_orbit_angles_inverts_orbit_c2w(az, el):
    e, a = orbit_angles(orbit_c2w(el, az, 1.7))
    assert a == pytest.approx(az) and e == pytest.approx(el)
    with pytest.raises(Sv4dError, match="origin"):
        orbit_angles(np.eye(4))


def test_projection_with_K_and_opencv_pose_hits_the_object(fox):
    """The origin (object centre) projects to the principal point in every view."""
    for i, view in enumerate(fox.views):
        w2c = np.linalg.inv(view.c2w_opencv)
        p = fox.intrinsics.K @ (w2c @ np.array([0, 0, 0, 1.0]))[:3]
        np.testing.assert_allclose(p[:2] / p[2], [fox.intrinsics.cx, fox.intrinsics.cy], atol=1e-9)
        assert fox.load_image(i, 0)[..., 3].max() == 255


def test_world_to_camera_opencv_inverts_the_opencv_pose():
    c2w = orbit_c2w(-25.0, 70.0, 2.5)
    w2c = world_to_camera_opencv(torch.tensor(c2w, dtype=torch.float32))
    np.testing.assert_allclose(w2c.double().numpy() @ opencv_from_opengl(c2w), np.eye(4), atol=1e-6)


# --- intrinsics ------------------------------------------------------------------------------


def test_intrinsics_from_fov_matches_fox_walk_and_scales():
    intr = Intrinsics.from_fov(SV4D_FOV_DEG, 256)
    assert abs(intr.fx - 421.29760784890755) < 1e-6 and intr.fy == intr.fx
    assert (intr.cx, intr.cy, intr.width, intr.height) == (128.0, 128.0, 256, 256)
    assert intr.fov_x_deg == pytest.approx(33.8) and intr.fov_y_deg == pytest.approx(33.8)
    np.testing.assert_array_equal(intr.K, [[intr.fx, 0, 128], [0, intr.fx, 128], [0, 0, 1]])
    small = intr.scaled(64, 32)
    assert (small.fx, small.fy, small.cx, small.cy) == pytest.approx((intr.fx / 4, intr.fx / 8, 32, 16))
    wide = Intrinsics.from_fov(60.0, 320, 240)
    assert wide.fov_x_deg == pytest.approx(60.0) and wide.fov_y_deg < 60.0 and wide.cy == 120.0
    assert wide.at_height(120) == wide.scaled(160, 120) and wide.at_height(None) is wide
    assert Intrinsics.from_dict(wide.to_dict()) == wide
    with pytest.raises(Sv4dError, match="width, height"):
        Intrinsics.from_dict({"width": 3})


# --- rays and projection ---------------------------------------------------------------------


def test_rays_go_through_pixel_centres_and_project_back(fox):
    rig = fox.rig.at_height(32)
    c2w = torch.from_numpy(rig.c2w).float()
    o, dirs = camera_rays(c2w, rig.intrinsics)
    assert o.shape == dirs.shape == (4, 32, 32, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(4, 32, 32))
    K = torch.tensor(rig.intrinsics.K, dtype=torch.float64)
    for v in range(4):
        w2c = torch.linalg.inv(torch.tensor(opencv_from_opengl(rig.c2w[v])))
        for row, col in ((0, 0), (5, 20), (31, 31)):
            p = o[v, row, col].double() + 1.7 * dirs[v, row, col].double()
            cam = w2c[:3, :3] @ p + w2c[:3, 3]
            uv = (K @ cam)[:2] / cam[2]
            torch.testing.assert_close(uv, torch.tensor([col + 0.5, row + 0.5], dtype=torch.float64), rtol=0, atol=1e-4)
            uv2, z = project(p.float()[None], c2w[v : v + 1], rig.intrinsics)
            torch.testing.assert_close(uv2[0, 0].double(), uv, rtol=0, atol=1e-3)
            assert float(z[0, 0]) > 0
    # the cameras look at the origin: the centre ray passes it
    centre = o[:, 16, 16] + dirs[:, 16, 16] * (o[:, 16, 16].norm(dim=-1, keepdim=True))
    assert centre.norm(dim=-1).max() < 0.05


def test_scene_bound_is_the_box_every_camera_sees():
    intr = Intrinsics.from_fov(40.0, 64, 32)  # the vertical field of view is the smaller one
    c2w = torch.from_numpy(np.stack([orbit_c2w(0.0, a, d) for a, d in ((0.0, 2.0), (90.0, 3.0))])).float()
    assert scene_bound(c2w, intr) == pytest.approx(2.0 * 16 / intr.fy, rel=1e-6)


# --- orbits, view lists, paths, distances ---------------------------------------------------


def test_orbits_and_view_lists():
    assert static_orbit(4, 10.0) == [(10.0, 0.0), (10.0, 90.0), (10.0, 180.0), (10.0, 270.0)]
    dyn = dynamic_orbit(8, 10.0, 20.0)
    assert [a for _, a in dyn] == [45.0 * k for k in range(8)]
    assert dyn[2][0] == pytest.approx(30.0) and dyn[6][0] == pytest.approx(-10.0) and dyn[0][0] == pytest.approx(10.0)
    assert parse_views("0:0, 20:-45") == [(0.0, 0.0), (20.0, 315.0)]
    for bad in ("0:0:1", "abc", "", "95:0", "0:nan"):
        with pytest.raises(Sv4dError):
            parse_views(bad)
    with pytest.raises(Sv4dError, match="strictly between"):
        dynamic_orbit(4, 80.0, 20.0)


def test_orbit_path_turns_while_time_goes_there_and_back():
    c2w, az, t = orbit_path(8, 10.0, 2.0, start_azimuth_deg=30.0)
    assert c2w.shape == (8, 4, 4) and az[0] == 30.0 and az[4] == pytest.approx(210.0)
    np.testing.assert_allclose(c2w[2].numpy(), orbit_c2w(10.0, az[2], 2.0), atol=1e-6)
    np.testing.assert_allclose(t, [0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25])
    with pytest.raises(Sv4dError):
        orbit_path(0, 10.0, 2.0)
    with pytest.raises(Sv4dError, match="distance"):
        orbit_path(4, 10.0, 0.0)


def test_framing_distance_puts_the_unit_cube_at_frame_ratio():
    d = framing_distance(0.9)
    assert d == pytest.approx(0.5 / (0.9 * math.tan(math.radians(16.9))))
    K = Intrinsics.from_fov(SV4D_FOV_DEG, 576).K
    u = K[0, 0] * 0.5 / d + K[0, 2]  # the point (0.5, 0, 0) seen from (0, 0, d)
    assert (u - 288) / 288 == pytest.approx(0.9)
    with pytest.raises(Sv4dError):
        framing_distance(0.0)


def test_fit_distance_keeps_points_inside_every_view():
    pts = np.random.default_rng(1).uniform(-0.5, 0.5, size=(400, 3)) * [1.0, 0.4, 0.2]
    views = static_orbit(6, 0.0) + [ViewAngles(40.0, 30.0)]
    fov = 30.0
    d = fit_distance(pts, views, fov, margin=0.05)
    intr = Intrinsics.from_fov(fov, 100)
    worst = 0.0
    for el, az in views:
        c2w = orbit_c2w(el, az, d)
        cam = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # OpenGL camera coordinates
        u = intr.fx * cam[:, 0] / -cam[:, 2] / 50.0
        v = intr.fy * cam[:, 1] / -cam[:, 2] / 50.0
        worst = max(worst, float(np.abs(np.concatenate([u, v])).max()))
    assert worst == pytest.approx(0.95, abs=1e-6)  # just inside, touching the 5 % margin
    assert fit_distance(pts, views, fov, min_distance=10.0) == 10.0


# --- the rig and unit time --------------------------------------------------------------------


def test_rig_selects_scales_and_maps_time(fox):
    rig = fox.rig
    assert (rig.num_views, rig.num_frames) == (4, 3) and rig.c2w.shape == (4, 4, 4)
    np.testing.assert_allclose(rig.unit_times(), [0.0, 0.5, 1.0])
    sub = rig.select(views=[3, 1], frames=[1, 2])
    assert sub.num_views == 2 and sub.views[0] is rig.views[3]
    np.testing.assert_array_equal(sub.times, rig.times[1:])
    # a subset keeps its place in the whole set's time
    np.testing.assert_allclose(rig.time_span.to_unit(sub.times), [0.5, 1.0])
    np.testing.assert_allclose(sub.unit_times(), [0.0, 1.0])
    assert sub.at_height(16).intrinsics == rig.intrinsics.at_height(16)
    np.testing.assert_allclose(rig.elevation_deg, [0, 0, 0, 20])
    span = TimeSpan(1.0, 2.0)
    np.testing.assert_allclose(span.to_unit([0.0, 1.0, 2.0, 4.0], clip=True), [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(TimeSpan(3.0, 0.0).to_unit([3.0, 5.0]), [0.0, 0.0])  # one frame


def test_views_without_angles_take_them_from_the_pose():
    v = View(orbit_c2w(-20.0, 250.0, 2.0))
    e, a = v.angles()
    assert e == pytest.approx(-20.0) and a % 360 == pytest.approx(250.0)
    assert View(orbit_c2w(-20.0, 250.0, 2.0), elevation_deg=-20.0).angles().elevation_deg == -20.0
    assert v.distance == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(views=()), "at least one View"),
        (dict(times=[]), "finite frame time"),
        (dict(times=[0.0, float("inf")]), "finite frame time"),
        (dict(times=[0.2, 0.1]), "non-decreasing"),
        (dict(camera_distance=-1.0), "positive"),
    ],
)
def test_rig_refuses_bad_values(kwargs, match):
    base = dict(intrinsics=Intrinsics.from_fov(40.0, 8), views=(View.on_orbit(0.0, 0.0, 2.0),), times=[0.0, 0.1])
    with pytest.raises(Sv4dError, match=match):
        Rig(**{**base, **kwargs})
    with pytest.raises(Sv4dError, match="finite"):
        View(np.eye(4), elevation_deg=float("nan"))


# --- the model's views and their conditioning ------------------------------------------------


def test_model_views_defaults_and_errors():
    views = model_views(4, (0, 60, 120, 180, 240))
    assert [v.azimuth_deg for v in views] == [0, 60, 120, 180, 240] and [v.elevation_deg for v in views] == [0] * 5
    views = model_views(4, (0, 60, 120, 180, 240), [10, 20, 30, 40], [5, 6, 7, 8], 3)
    assert views == [(3, 0), (5, 10), (6, 20), (7, 30), (8, 40)]
    assert [v.elevation_deg for v in model_views(4, (0, 60, 120, 180, 240), None, 20.0)] == [20.0] * 5
    with pytest.raises(Sv4dError, match="4 values"):
        model_views(4, (0, 60, 120, 180, 240), [10, 20, 30])
    with pytest.raises(Sv4dError, match="elevations"):
        model_views(4, (0, 60, 120, 180, 240), None, [1, 2])
    with pytest.raises(Sv4dError, match="between -90 and 90"):
        model_views(4, (0, 60, 120, 180, 240), None, 90.0)
    with pytest.raises(Sv4dError, match="finite"):
        model_views(4, (0, 60, 120, 180, 240), [10, 20, float("nan"), 40])


def test_relative_angles_are_keyword_only_and_relative_to_the_input():
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in inspect.signature(relative_angles).parameters.values())
    polar, azim = relative_angles(elevations_deg=[10.0, 30.0, 10.0], azimuths_deg=[20.0, 80.0, 380.0], num_frames=2)
    np.testing.assert_allclose(polar.numpy(), [math.pi / 2 - math.radians(20), math.pi / 2] * 2, atol=1e-12)
    np.testing.assert_allclose(azim.numpy(), [math.radians(60), 0.0] * 2, atol=1e-12)

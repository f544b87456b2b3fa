"""The dynamic NeRF fitter on an analytic moving sphere (tests/fit_scene.py)."""

from __future__ import annotations

import math

import pytest
import torch
from fit_scene import RADIUS, centre, scene

from sv4d.errors import Sv4dError
from sv4d.fit.hull import visual_hull
from sv4d.fit.nerf import DynamicNerf, NerfConfig, NerfFitter, render_rays
from sv4d.fit.optimize import Hook, Schedule, load_checkpoint, optimize
from sv4d.fit.render import fit_metrics, render_grid

SMALL = NerfConfig(
    resolutions=(16, 32), hull_resolution=32, rays=1024, features=8, hidden=32, occupancy_start=60, occupancy_every=50
)


@pytest.fixture(scope="module")
def data():
    return scene()


@pytest.fixture(scope="module")
def fitted(data):
    fitter = NerfFitter(data, SMALL, seed=0)
    losses = []
    optimize(
        fitter,
        Schedule(steps=150),
        data.shape[1],
        progress_bar=False,
        log_every=10,
        on_log=lambda s, a: losses.append(a["loss"]),
    )
    return fitter, losses


def test_hull_holds_the_sphere_at_every_frame_and_little_else(data):
    hull, bound = visual_hull(data, 32)
    assert bound == pytest.approx(DISTANCE_TAN := 2.0 * math.tan(math.radians(20.0)), rel=1e-4)
    c = (torch.arange(32) + 0.5) / 32 * 2 * bound - bound
    grid = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1)
    for f, t in enumerate(data.times.tolist()):
        inside = (grid - centre(t)).norm(dim=-1) < RADIUS - 2 * bound / 32
        assert hull[f][inside].all()  # nothing of the object is carved away
        sphere = (grid - centre(t)).norm(dim=-1) < RADIUS
        assert hull[f].float().mean() < 4 * sphere.float().mean()  # six views carve most of the box
    assert DISTANCE_TAN > 0


def test_fit_reduces_the_loss_and_renders_held_out_views(fitted):
    fitter, losses = fitted
    assert losses[-1] < 0.25 * losses[0]
    held = scene(azimuths=(30, 200), elevations=[20.0, -10.0])
    rgb, alpha = render_grid(fitter.model, held.c2w, held.intrinsics, held.times.tolist())
    m = fit_metrics(rgb, alpha, held.rgb, held.alpha)
    white = fit_metrics(torch.ones_like(held.rgb), torch.zeros_like(held.alpha), held.rgb, held.alpha)
    assert m["psnr"] > white["psnr"] + 7  # measured: 25.8 dB vs 16.5 dB for an all-white image
    assert m["iou"] > 0.85


def test_the_fitted_motion_follows_the_object(fitted, data):
    """The rendered opacity's centre of mass moves along +X like the sphere."""
    fitter, _ = fitted
    front = data.c2w[0]  # azimuth 0 looks along -Z: +X is image right
    xs = []
    for t in (0.0, 1.0):
        a = fitter.model.render(front, data.intrinsics, t)["alpha"]
        u = torch.arange(a.shape[1], dtype=torch.float32) + 0.5
        xs.append(float((a.sum(0) * u).sum() / a.sum()))
    shift_px = (0.3 / (2.0 * math.tan(math.radians(20.0)))) * data.intrinsics.width / 2
    assert xs[1] - xs[0] == pytest.approx(shift_px, rel=0.3)


def test_rendering_is_differentiable(data):
    fitter = NerfFitter(data, SMALL)
    pix = (data.alpha[0, 0].reshape(-1) > 0).nonzero()[:, 0]  # rays that meet the sphere
    o, d = fitter.origins[0, pix], fitter.dirs[0, pix]
    n = len(pix)
    out = render_rays(
        fitter.model.field,
        fitter.model.occupancy,
        o,
        d,
        torch.zeros(n),
        torch.zeros(n, dtype=torch.long),
        fitter.model.step_size,
    )
    assert out["alpha"].min() > 0
    (out["rgb"].sum() + out["alpha"].sum()).backward()
    grads = [p.grad for p in fitter.model.field.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert (
        fitter.model.field.space[0].grad.abs().sum() > 0 and fitter.model.field.sigma_net[0].weight.grad.abs().sum() > 0
    )


def test_static_stage_leaves_the_time_planes_alone(data):
    fitter = NerfFitter(data, SMALL)
    fitter.set_stage("static")
    before = [p.detach().clone() for p in fitter.model.field.time]
    space_before = fitter.model.field.space[0].detach().clone()
    for i in range(5):
        fitter.train_step(i, [0], 0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, fitter.model.field.time))
    assert not torch.equal(space_before, fitter.model.field.space[0])


def test_schedule_is_static_then_progressive():
    s = Schedule(steps=100, static_fraction=0.1, frame_strides=(4, 2, 1), progressive_fraction=0.6)
    assert s.stage(0.05) == "static" and s.frames(0.05, 9) == [0]
    assert s.frames(0.15, 9) == [0, 4, 8]
    assert s.frames(0.45, 9) == [0, 2, 4, 6, 8]
    assert s.frames(0.8, 9) == list(range(9))
    with pytest.raises(Sv4dError):
        Schedule(steps=10, static_fraction=1.0)
    with pytest.raises(Sv4dError):
        Schedule(steps=10, reference_frame=5).frames(0.0, 3)


def test_an_interrupted_run_resumes_to_the_same_result(data, tmp_path):
    sched = Schedule(steps=24, static_fraction=0.25)
    cfg = NerfConfig(**{**SMALL.__dict__, "occupancy_start": 8, "occupancy_every": 6})
    full = NerfFitter(data, cfg, seed=3)
    ref = []
    optimize(full, sched, data.shape[1], progress_bar=False, log_every=1, on_log=lambda s, a: ref.append(a["loss"]))

    def stop() -> None:
        raise KeyboardInterrupt

    ckpt = tmp_path / "checkpoint.pt"
    first = NerfFitter(data, cfg, seed=3)
    got = []
    with pytest.raises(KeyboardInterrupt):
        optimize(
            first,
            sched,
            data.shape[1],
            progress_bar=False,
            log_every=1,
            checkpoint=ckpt,
            hooks=[Hook(0.5, "stop", stop)],
            on_log=lambda s, a: got.append(a["loss"]),
        )
    blob = load_checkpoint(ckpt)
    assert blob["step"] == 12
    again = NerfFitter(data, cfg, seed=99)  # a different seed: everything must come from the checkpoint
    again.load_state(blob["state"])
    optimize(
        again,
        sched,
        data.shape[1],
        start_step=blob["step"],
        start_elapsed=blob["elapsed"],
        progress_bar=False,
        log_every=1,
        fired=["stop"],
        on_log=lambda s, a: got.append(a["loss"]),
    )
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-9)
    model = DynamicNerf.from_state(again.state()["model"])
    cam = data.c2w[1]
    assert torch.allclose(
        model.render(cam, data.intrinsics, 0.5)["rgb"], full.model.render(cam, data.intrinsics, 0.5)["rgb"], atol=1e-5
    )


def test_settings_are_checked():
    with pytest.raises(Sv4dError, match="unknown NeRF setting"):
        NerfConfig.from_dict({"resolution": 3})

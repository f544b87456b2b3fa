"""Denoiser scaling, EDM sigmas, guider scales and the Euler sampler."""

import math

import torch

from sv4d.diffusion.denoiser import denoise, v_scaling
from sv4d.diffusion.guiders import cfg_inputs, combine, linear_scales, spatiotemporal_scales
from sv4d.diffusion.samplers import sample_euler
from sv4d.diffusion.schedules import edm_sigmas


def test_edm_sigmas_match_formula_and_reference_values():
    s = edm_sigmas(4)
    ref = torch.tensor([700.0001, 70.5409, 2.26912, 0.0020000036, 0.0])
    assert torch.allclose(s, ref, rtol=1e-5)
    s50 = edm_sigmas(50)
    assert len(s50) == 51 and s50[-1] == 0 and torch.all(s50[:-1] > s50[1:])
    i = 17
    want = (700 ** (1 / 7) + i / 49 * (0.002 ** (1 / 7) - 700 ** (1 / 7))) ** 7
    assert math.isclose(float(s50[i]), want, rel_tol=1e-5)


def test_v_scaling():
    sig = torch.tensor([0.5, 3.0])
    c_skip, c_out, c_in, c_noise = v_scaling(sig)
    assert torch.allclose(c_skip, 1 / (sig**2 + 1))
    assert torch.allclose(c_out, -sig / torch.sqrt(sig**2 + 1))
    assert torch.allclose(c_in, 1 / torch.sqrt(sig**2 + 1))
    assert torch.allclose(c_noise, 0.25 * sig.log())


def test_denoise_does_not_scale_concat():
    seen = {}

    def net(x_in, c_noise, context, y, cond_view):
        seen["x_in"] = x_in
        return torch.zeros_like(x_in[:, :4])

    x = torch.ones(2, 4, 2, 2)
    cond = {"concat": torch.full((2, 4, 2, 2), 5.0), "crossattn": None, "vector": None, "cond_view": None}
    out = denoise(net, x, torch.tensor([2.0, 2.0]), cond)
    assert torch.allclose(seen["x_in"][:, :4], x / math.sqrt(5)) and torch.equal(seen["x_in"][:, 4:], cond["concat"])
    assert torch.allclose(out, x / 5)  # c_skip * x with a zero network


def test_guider_scales_as_the_spec_tabulates():
    lin = linear_scales(12, 4, 1.0, 2.0)
    assert lin[0] == 1.0 and lin[-1] == 2.0 and len(lin) == 48
    st = spatiotemporal_scales(5, 8, 1.5, 2.5).reshape(5, 8)
    assert torch.allclose(st[0], torch.tensor([1.5, 1.643, 1.786, 1.929, 1.929, 1.786, 1.643, 1.5]), atol=1e-3)
    assert torch.allclose(st[4] - st[0], torch.full((8,), 0.5))


def test_cfg_order_is_uncond_first_and_combine():
    c = {
        "vector": torch.ones(3, 2),
        "crossattn": torch.ones(1, 3, 2),
        "concat": torch.ones(3, 1),
        "cond_view": torch.ones(1, 1),
        "cond_motion": torch.ones(3, 1),
        "other": torch.full((1,), 7.0),
    }
    uc = {k: torch.zeros_like(v) for k, v in c.items()}
    x2, s2, cond = cfg_inputs(torch.randn(3, 1), torch.ones(3), c, uc)
    assert x2.shape[0] == 6 and torch.equal(cond["vector"][:3], uc["vector"]) and torch.equal(cond["other"], c["other"])
    d = torch.cat([torch.zeros(3, 1), torch.ones(3, 1)])
    assert torch.allclose(combine(d, torch.tensor([1.0, 1.5, 2.0])), torch.tensor([[1.0], [1.5], [2.0]]))


def test_euler_with_exact_denoiser_lands_on_the_data():
    target = torch.tensor([0.3, -1.2])
    sig = edm_sigmas(10)
    x = torch.randn(2) * torch.sqrt(1 + sig[0] ** 2)
    out = sample_euler(lambda x, s: target.expand_as(x), x, sig)
    assert torch.allclose(out, target, atol=1e-5)


def test_relative_camera_angles_equal_the_reference_inputs(data_dir):
    from safetensors.torch import load_file

    from sv4d.cameras import relative_angles

    for name, az, T in (
        ("sampling_sv4d2_first_window", [0, 60, 120, 180, 240], 3),
        ("sampling_sv4d2_8views", [0, 30, 75, 120, 165, 210, 255, 300, 330], 2),
    ):
        t = load_file(str(data_dir / "golden" / f"{name}.safetensors"))
        polar, azim = relative_angles(elevations_deg=0.0, azimuths_deg=az, num_frames=T)
        assert torch.equal(polar, t["in.polar_rad_f64"]) and torch.equal(azim, t["in.azimuth_rad_f64"])
    polar, _ = relative_angles(elevations_deg=[10.0, 30.0], azimuths_deg=[0, 90], num_frames=1)
    assert math.isclose(float(polar[0]), math.pi / 2 - math.radians(20), rel_tol=1e-12)

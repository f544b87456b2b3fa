"""One window end to end through the public API, with the CLIP image tower in the loop."""

import pytest
import torch

import sv4d
from sv4d.cameras import relative_angles
from sv4d.config import CLIPVisionConfig
from sv4d.diffusion.sampling import guidance, sample


def _model(dtype=torch.float32):
    cfg = sv4d.tiny_config("tiny-clip", num_frames=2, num_views=3).replace(
        clip=CLIPVisionConfig(
            image_size=28,
            patch_size=14,
            width=64,
            layers=1,
            heads=4,
            output_dim=32,
            vocab_size=10,
            context_length=4,
            text_width=8,
        )
    )
    torch.manual_seed(0)
    return sv4d.SV4DModel(cfg).eval().to(dtype)


def _window(model, seed, cond_mv=False):
    cfg = model.cfg
    T, V, H = cfg.num_frames, cfg.num_views, cfg.image_size
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(T, 3, H, H, generator=g) * 2 - 1
    refs = torch.rand(V, 3, H, H, generator=g) * 2 - 1 if cond_mv else torch.zeros(V, 3, H, H)
    polar, azim = relative_angles(elevations_deg=0.0, azimuths_deg=cfg.azimuths_deg, num_frames=T)
    with torch.no_grad():
        c, uc = model.conditioner(
            frames,
            frames.repeat_interleave(V, 0),
            refs,
            frames,
            polar,
            azim,
            cond_mv=cond_mv,
            generator=torch.Generator().manual_seed(seed),
        )
    noise = torch.randn(T * V, 4, cfg.latent_size, cfg.latent_size, generator=torch.Generator().manual_seed(seed))
    z = sample(model, c, uc, noise, num_steps=3, scales=guidance(model, T, V))
    return c, uc, model.decode(z, chunk=2)


def test_window_shapes_and_same_seed_same_output():
    model = _model()
    c, uc, img = _window(model, seed=5)
    T, V, H = 2, 3, 48
    assert c["crossattn"].shape == (1, T, 32) and c["vector"].shape == (T * V, 128)
    assert c["concat"].shape == (T * V, 4, 6, 6) and c["cond_view"].abs().max() == 0
    assert torch.equal(uc["vector"][:, :32], torch.zeros(T * V, 32))
    assert img.shape == (T * V, 3, H, H) and torch.isfinite(img).all()
    assert torch.equal(img, _window(model, seed=5)[2])
    assert not torch.equal(img, _window(model, seed=6)[2])


def test_reference_views_reach_the_output_only_when_cond_mv():
    model = _model()
    _, _, a = _window(model, seed=5, cond_mv=False)
    _, _, b = _window(model, seed=5, cond_mv=True)
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_window_runs_close_to_fp32(dtype):
    ref = _window(_model(), seed=5)[2]
    got = _window(_model(dtype), seed=5)[2]
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert (got - ref).abs().mean() < 0.1 * ref.abs().mean()


def test_conditioner_encodes_repeated_frames_once():
    """frames_repeat=V (what the pipeline uses) equals passing the V copies, without noise."""
    from sv4d.config import tiny_config
    from sv4d.models.sv4d import SV4DModel

    torch.manual_seed(0)
    cfg = tiny_config(num_frames=3, num_views=2, with_clip=True)
    m = SV4DModel(cfg).eval()
    g = torch.Generator().manual_seed(1)
    fr = torch.rand(3, 3, 48, 48, generator=g) * 2 - 1
    view = torch.rand(2, 3, 48, 48, generator=g) * 2 - 1
    pol, az = torch.zeros(6), torch.linspace(0, 3, 6)
    with torch.no_grad():
        full = m.conditioner(fr, fr.repeat_interleave(2, 0), view, fr, pol, az, noise_sigma=0.0)
        once = m.conditioner(fr, fr, view, fr, pol, az, noise_sigma=0.0, frames_repeat=2)
    for a, b in zip(full, once):
        for k in a:
            assert a[k].shape == b[k].shape, k
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)

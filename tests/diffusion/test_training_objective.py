"""The training objective: sigma sampling, EDM weighting, masking/dropout, stage-1 switch."""

from __future__ import annotations

import math

import pytest
import torch

from sv4d.config import tiny_config
from sv4d.diffusion.training import ObjectiveConfig, diffusion_loss, drop_conditions, loss_weight, sample_sigmas
from sv4d.errors import Sv4dError
from sv4d.models.sv4d import SV4DModel

T, V = 3, 4


def test_loss_weight_is_edm_for_sigma_data_one():
    s = torch.tensor([0.5, 1.0, 4.0])
    assert torch.allclose(loss_weight(s), (s**2 + 1) / s**2)
    assert loss_weight(torch.tensor([1.0])).item() == pytest.approx(2.0)


def test_sigmas_are_log_normal():
    cfg = ObjectiveConfig(p_mean=0.7, p_std=1.3)
    ln = sample_sigmas(40000, cfg, torch.Generator().manual_seed(0)).log()
    assert ln.mean().item() == pytest.approx(0.7, abs=0.03)
    assert ln.std().item() == pytest.approx(1.3, abs=0.03)


def _cond(b: int, fill: float) -> dict[str, torch.Tensor]:
    n = T * V
    return {
        "crossattn": torch.full((b, T, 8), fill),
        "vector": torch.full((b * n, 16), fill),
        "concat": torch.full((b * n, 4, 2, 2), fill),
        "cond_view": torch.full((b * V, 4, 2, 2), fill),
        "cond_motion": torch.full((b * T, 4, 2, 2), fill),
    }


def test_drop_conditions_per_window():
    b = 64
    c, uc = _cond(b, 1.0), _cond(b, 0.0)
    cfg = ObjectiveConfig(ref_mask_prob=0.5, uncond_prob=0.3)
    out, masked, dropped = drop_conditions(c, uc, b, cfg, torch.Generator().manual_seed(1))
    assert 0 < masked.sum() < b and 0 < dropped.sum() < b
    for k, v in out.items():
        rows = v.reshape(b, -1)
        for i in range(b):
            zero = bool(dropped[i]) or (k == "cond_view" and bool(masked[i]))
            assert (rows[i] == (0.0 if zero else 1.0)).all(), (k, i)
    none, m0, d0 = drop_conditions(c, uc, b, ObjectiveConfig(ref_mask_prob=0, uncond_prob=0))
    assert not m0.any() and not d0.any() and all(torch.equal(none[k], c[k]) for k in c)
    with pytest.raises(Sv4dError):
        ObjectiveConfig(uncond_prob=1.5)


def _batch(model: SV4DModel, b: int, seed: int):
    """b windows of random images with the conditioning the inference conditioner builds."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    S, n = cfg.image_size, T * V
    target = torch.rand(b * n, 3, S, S, generator=g) * 2 - 1
    frames = torch.rand(b * T, 3, S, S, generator=g) * 2 - 1
    views = torch.rand(b * V, 3, S, S, generator=g) * 2 - 1
    emb = torch.randn(b, T, cfg.unet.context_dim, generator=g)
    pol, az = torch.full((n,), math.pi / 2), torch.linspace(0.5, 5, n)
    cs, ucs = [], []
    with torch.no_grad():
        x0 = model.encode_latents(target)
        for i in range(b):
            fr = frames[i * T : (i + 1) * T]
            c, uc = model.conditioner(
                emb[i],
                fr,
                views[i * V : (i + 1) * V],
                fr,
                pol,
                az,
                noise_sigma=0.0,
                crossattn=emb[i][None],
                frames_repeat=V,
            )
            cs.append(c)
            ucs.append(uc)
    cat = lambda ds: {k: torch.cat([d[k] for d in ds]) for k in ds[0]}  # noqa: E731
    return x0, cat(cs), cat(ucs)


def test_a_tiny_model_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = SV4DModel(tiny_config(num_frames=T, num_views=V))
    unet = model.unet.train()
    x0, c, uc = _batch(model, 2, 0)
    ocfg = ObjectiveConfig()
    g = torch.Generator().manual_seed(5)
    eval_sigma = torch.tensor([0.5, 3.0])
    eval_noise = torch.randn(x0.shape, generator=g)

    def eval_loss() -> float:
        with torch.no_grad():
            return diffusion_loss(unet, x0, c, eval_sigma, eval_noise).mean().item()

    before = eval_loss()
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)
    for _ in range(20):  # 20 steps reach about 0.45 of the starting loss
        cond, _, _ = drop_conditions(c, uc, 2, ocfg, g)
        loss = diffusion_loss(unet, x0, cond, sample_sigmas(2, ocfg, g), torch.randn(x0.shape, generator=g))
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)


def test_stage_one_freezes_and_bypasses_motion_attention():
    torch.manual_seed(0)
    cfg = tiny_config(num_frames=T, num_views=V)
    cfg = cfg.replace(unet=cfg.unet.__class__(**{**cfg.unet.__dict__, "motion_attention": False}))
    model = SV4DModel(cfg)
    unet = model.unet
    assert all(not m.motion_enabled for m in unet.attention_layers())
    motion = unet.motion_parameters()
    assert motion and all("motion" in k for k in motion)
    for p in motion.values():
        p.requires_grad_(False)
    before = {k: p.detach().clone() for k, p in unet.named_parameters()}
    x0, c, uc = _batch(model, 1, 1)
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.Adam([p for p in unet.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        loss = diffusion_loss(unet, x0, c, sample_sigmas(1, ObjectiveConfig(), g), torch.randn(x0.shape, generator=g))
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    after = dict(unet.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in motion)  # frozen
    assert any(not torch.equal(before[k], after[k]) for k in after if k not in motion)  # the rest trained
    # pass-through: the output does not depend on the motion parameters at all
    sigma, noise = torch.tensor([1.0]), torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        ref = diffusion_loss(unet, x0, c, sigma, noise)
        for p in motion.values():
            p.add_(1.0)
        assert torch.equal(diffusion_loss(unet, x0, c, sigma, noise), ref)
    # the switch travels with the config (and so with checkpoints)
    from sv4d.config import ModelConfig

    assert ModelConfig.from_json(cfg.to_json()).unet.motion_attention is False

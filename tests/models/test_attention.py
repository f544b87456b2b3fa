"""The camera-stage token groupings: reference 3-D grouping, per-pixel view attention, joint."""

import pytest
import torch

from sv4d.config import UNetConfig
from sv4d.models.unet import SpatialViewMotionTransformer


def _layer(mode: str, seed: int = 0) -> SpatialViewMotionTransformer:
    torch.manual_seed(seed)
    cfg = UNetConfig(
        model_channels=32,
        channel_mult=(1,),
        attention_resolutions=(1,),
        num_head_channels=8,
        context_dim=16,
        adm_in_channels=128,
        view_attention=mode,
    )
    layer = SpatialViewMotionTransformer(32, cfg).eval()
    with torch.no_grad():  # make every branch matter
        for p in layer.parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[1] ** -0.5)
    return layer


def _stage_inputs(b=1, T=3, V=4, P=9, C=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, T, V, P, C, generator=g), torch.randn(b, T, 16, generator=g)


def test_joint_equals_per_pixel_for_a_single_position():
    x, ctx = _stage_inputs(P=1)
    a = _layer("per_pixel")._camera_stage(x, ctx)
    j = _layer("joint")
    j.load_state_dict(_layer("per_pixel").state_dict())
    assert torch.allclose(a, j._camera_stage(x, ctx), atol=1e-6)


def test_joint_mixes_views_and_positions_per_pixel_only_views():
    x, ctx = _stage_inputs()
    for mode, crosses_positions in (("per_pixel", False), ("joint", True)):
        layer = _layer(mode)
        base = layer._camera_stage(x, ctx)
        x2 = x.clone()
        x2[0, 1, 2, 5] += 1.0  # frame 1, view 2, position 5
        d = (layer._camera_stage(x2, ctx) - base).abs().sum(-1)[0]  # (T, V, P)
        assert d[0].max() == 0 and d[2].max() == 0  # never across frames
        assert d[1, 0, 5] > 0  # other views at the same position
        assert (d[1, :, 4].max() > 0) == crosses_positions


def test_grouped_sequences_are_consecutive_view_position_entries():
    """Spec 2.6.3: sequences are V consecutive flattened (view, position) tokens of a frame."""
    T, V, P = 3, 4, 9  # hw = 9 not divisible by V: groups straddle views
    x, ctx = _stage_inputs(T=T, V=V, P=P)
    layer = _layer("grouped")
    base = layer._camera_stage(x, ctx)
    x2 = x.clone()
    x2[0, 1, 0, 8] += 1.0  # flattened r = 0*9 + 8 = 8 -> group 2 = r 8..11 = (v0,p8),(v1,p0..2)
    d = (layer._camera_stage(x2, ctx) - base).abs().sum(-1)[0]
    changed = {(v, p) for v in range(V) for p in range(P) if d[1, v, p] > 0}
    assert changed == {(0, 8), (1, 0), (1, 1), (1, 2)}
    assert d[0].max() == 0 and d[2].max() == 0


def test_grouped_context_frame_depends_on_spatial_group_not_frame():
    """Perturbing context frame 2 changes only the last third of the (view, position) range."""
    T, V, P = 3, 4, 9
    x, ctx = _stage_inputs(T=T, V=V, P=P)
    layer = _layer("grouped")
    base = layer._camera_stage(x, ctx)
    ctx2 = ctx.clone()
    ctx2[0, 2] += 1.0
    d = (layer._camera_stage(x, ctx2) - base).abs().sum(-1)[0].reshape(T, V * P)  # r = v*P + p
    n = V * P
    assert d[:, : 2 * n // 3].max() == 0
    assert (d[:, 2 * n // 3 :] > 0).all()


@pytest.mark.parametrize("mode", ["grouped", "per_pixel", "joint"])
def test_full_layer_runs_and_motion_switch_is_pass_through(mode):
    layer = _layer(mode)
    b, T, V, h = 2, 3, 4, 3
    g = torch.Generator().manual_seed(3)
    x = torch.randn(b * T * V, 32, h, h, generator=g)
    emb = torch.randn(b * T * V, 128, generator=g)
    ctx = torch.randn(b, T, 16, generator=g)
    cv = torch.randn(b * V, 4, 6, 6, generator=g)
    on = layer(x, emb, ctx, cv)
    layer.motion_enabled = False
    off = layer(x, emb, ctx, cv)
    assert on.shape == x.shape and not torch.allclose(on, off)
    # with motion off, cond_view has no influence
    assert torch.equal(off, layer(x, emb, ctx, torch.zeros_like(cv)))


def test_view_embedding_comes_from_frame_zero_only():
    layer = _layer("grouped")
    b, T, V, h = 1, 3, 4, 3
    g = torch.Generator().manual_seed(4)
    x = torch.randn(b * T * V, 32, h, h, generator=g)
    emb = torch.randn(b * T * V, 128, generator=g)
    ctx = torch.randn(b, T, 16, generator=g)
    cv = torch.randn(b * V, 4, h, h, generator=g)
    base = layer(x, emb, ctx, cv)
    emb2 = emb.clone()
    emb2[V:] += 1.0  # rows of frames 1..T-1
    assert torch.equal(layer(x, emb2, ctx, cv), base)
    emb2[:V] += 1.0
    assert not torch.allclose(layer(x, emb2, ctx, cv), base)


@pytest.mark.parametrize("mode", ["grouped", "per_pixel", "joint"])
def test_attention_in_slices_of_rows_gives_the_same_result(mode, monkeypatch):
    """The full-size camera and motion attention feed up to 124 416 rows, over the 65 535 the fused
    CUDA kernels take: attention runs in slices of rows. Here the limit is 5 rows, so every stage of
    the layer (spatial, camera, motion) is sliced, several times over, and the output is unchanged."""
    from sv4d.models import layers

    layer = _layer(mode)
    b, T, V, h = 1, 3, 4, 3
    g = torch.Generator().manual_seed(2)
    x = torch.randn(b * T * V, 32, h, h, generator=g)
    emb = torch.randn(b * T * V, 128, generator=g)
    ctx = torch.randn(b, T, 16, generator=g)
    cond_view = torch.randn(b * V, layer.motion_blocks[0].attn2.to_k.in_features, 2, 2, generator=g)
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(q, k, v):
        calls.append(q.shape[0])
        return real(q, k, v)

    monkeypatch.setattr(layers.F, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        whole = layer(x, emb, ctx, cond_view)
        assert max(calls) > 5
        calls.clear()
        monkeypatch.setattr(layers, "MAX_ATTENTION_ROWS", 5)
        sliced = layer(x, emb, ctx, cond_view)
    assert max(calls) <= 5 and len(calls) > 3
    assert torch.allclose(sliced, whole, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_output_and_gradients(monkeypatch):
    """Full-size training needs the UNet's activations recomputed in backward instead of kept:
    the switch must change memory only, not the numbers."""
    from sv4d.config import tiny_config
    from sv4d.models.sv4d import SV4DModel

    torch.manual_seed(0)
    unet = SV4DModel(tiny_config(num_frames=2, num_views=2, image_size=16)).unet.train()
    cfg = unet.cfg
    g = torch.Generator().manual_seed(3)
    b, T, V, h = 1, 2, 2, 4
    n = b * T * V
    x = torch.randn(n, cfg.in_channels, h, h, generator=g)
    t = torch.rand(n, generator=g) * 10
    ctx = torch.randn(b, T, cfg.context_dim, generator=g)
    y = torch.randn(n, cfg.adm_in_channels, generator=g)
    cv = torch.randn(b * V, cfg.motion_context_dim, h, h, generator=g)
    from sv4d.models.unet import Stage

    runs, calls = [], []
    stage_forward = Stage.forward

    def counted(self, *a, **k):
        if self is unet.middle_block:
            calls.append(1)
        return stage_forward(self, *a, **k)

    monkeypatch.setattr(Stage, "forward", counted)
    for on in (False, True):
        unet.gradient_checkpointing = on
        unet.zero_grad()
        calls.clear()
        out = unet(x, t, ctx, y, cv)
        out.square().mean().backward()
        assert len(calls) == (2 if on else 1)  # with the switch, the block runs again in backward
        runs.append((out.detach(), {k: p.grad.clone() for k, p in unet.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = runs
    assert torch.equal(a, b) and ga.keys() == gb.keys() and len(ga) > 50
    assert all(torch.allclose(ga[k], gb[k], atol=1e-6, rtol=1e-5) for k in ga)

"""Half-precision runs keep the reference's float32 islands: norms and the blend of the attention
stages are computed in float32 and rounded once (the reference keeps fp32 weights under autocast)."""

from __future__ import annotations

import torch
from torch import nn

from sv4d.models.clip import _layer_norm
from sv4d.models.layers import GroupNorm32, MixFactor
from sv4d.models.vae import _norm


def test_layer_norm_blend_and_group_norm_are_float32_inside_and_rounded_once():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 7, 64, generator=g) * 30 + 5).bfloat16()
    ln = nn.LayerNorm(64)
    with torch.no_grad():
        ln.weight.normal_(1, 0.1, generator=g)
        ln.bias.normal_(0, 0.1, generator=g)
    exact = nn.functional.layer_norm(x.float(), (64,), ln.weight, ln.bias, ln.eps).bfloat16()
    assert _layer_norm(ln, x).dtype == torch.bfloat16 and torch.equal(_layer_norm(ln, x), exact)

    mix = MixFactor(0.3)
    a, b = torch.randn(2, 5, 16, generator=g).bfloat16(), torch.randn(2, 5, 16, generator=g).bfloat16()
    alpha = torch.sigmoid(torch.tensor(0.3))
    assert torch.equal(mix(a, b), (alpha * a.float() + (1 - alpha) * b.float()).bfloat16())

    norm = _norm(64)
    assert isinstance(norm, GroupNorm32) and norm.eps == 1e-6
    y = (torch.randn(2, 64, 4, 4, generator=g) * 50).half()
    assert torch.equal(norm(y), nn.functional.group_norm(y.float(), 32, None, None, 1e-6).half())

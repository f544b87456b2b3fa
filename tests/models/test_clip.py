"""Tests for sv4d.models.clip: checkpoint layout, tower maths, preprocessing, dtypes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import DATA
from sv4d.config import CLIPVisionConfig
from sv4d.errors import Sv4dError
from sv4d.models.clip import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPImageEmbedder,
    antialias_sigma,
    gaussian_blur2d,
    gaussian_kernel1d,
    resize_antialiased_bicubic,
)

MANIFEST = DATA / "sv4d2_keys.tsv"
PREFIX = "conditioner.embedders.0."

TINY = CLIPVisionConfig(
    image_size=28,
    patch_size=14,
    width=64,
    layers=2,
    heads=4,
    output_dim=32,
    vocab_size=100,
    context_length=7,
    text_width=16,
)


def _manifest() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in MANIFEST.read_text().splitlines():
        if not line.startswith(PREFIX):
            continue
        key, shape, _numel = line.split("\t")
        dims = tuple(int(s) for s in shape.split(",")) if shape else ()
        rows.append((key[len(PREFIX) :], dims))
    return rows


def _randomised(cfg: CLIPVisionConfig, seed: int = 0) -> CLIPImageEmbedder:
    """A tiny embedder with every parameter random (LayerNorms too)."""
    torch.manual_seed(seed)
    m = CLIPImageEmbedder(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ".ln_" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return m.eval()


# ---------------------------------------------------------------------------
# 1. checkpoint layout
# ---------------------------------------------------------------------------


def test_full_size_keys_match_manifest_on_meta() -> None:
    expected = _manifest()
    assert len(expected) == 398
    with torch.device("meta"):
        m = CLIPImageEmbedder(CLIPVisionConfig(), include_unused=True)
    got = [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert got == expected  # names, shapes and order
    assert all(v.is_meta for v in m.state_dict().values())
    # mean/std are non-persistent and stay real tensors
    assert "mean" not in m.state_dict() and not m.mean.is_meta

    with torch.device("meta"):
        m2 = CLIPImageEmbedder(CLIPVisionConfig(), include_unused=False)
    got2 = [(k, tuple(v.shape)) for k, v in m2.state_dict().items()]
    assert got2 == [(k, s) for k, s in expected if k.startswith("open_clip.model.visual.")]
    assert len(got2) == 398 - 6


def test_meta_build_then_assign_load_matches_eager() -> None:
    ref = _randomised(TINY, seed=1)
    with torch.device("meta"):
        m = CLIPImageEmbedder(TINY, include_unused=True)
    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    for k, v in m.state_dict().items():
        if k not in sd:  # unused text leftovers
            sd[k] = torch.zeros(v.shape)
    m.load_state_dict(sd, assign=True, strict=True)
    m.eval()
    x = torch.rand(2, 3, 50, 40) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)


# ---------------------------------------------------------------------------
# 2. tower maths vs an independent nn.MultiheadAttention implementation
# ---------------------------------------------------------------------------


def _reference_tower(m: CLIPImageEmbedder, x: torch.Tensor) -> torch.Tensor:
    cfg = m.cfg
    v = m.visual
    p, w = cfg.patch_size, cfg.width
    b = x.shape[0]
    g = cfg.image_size // p
    # patches by reshaping, row-major over the grid, channel-major within a patch
    patches = x.reshape(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * p * p)
    tok = patches @ v.conv1.weight.reshape(w, -1).T
    tok = torch.cat([v.class_embedding.expand(b, 1, w), tok], dim=1) + v.positional_embedding

    def ln(mod: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
        ref = nn.LayerNorm(w, eps=1e-5)
        ref.load_state_dict(mod.state_dict())
        return ref(t)

    tok = ln(v.ln_pre, tok)
    for blk in v.transformer.resblocks:
        mha = nn.MultiheadAttention(w, cfg.heads, batch_first=True)
        mha.load_state_dict(
            {
                "in_proj_weight": blk.attn.in_proj_weight,
                "in_proj_bias": blk.attn.in_proj_bias,
                "out_proj.weight": blk.attn.out_proj.weight,
                "out_proj.bias": blk.attn.out_proj.bias,
            }
        )
        mha.eval()
        h = ln(blk.ln_1, tok)
        tok = tok + mha(h, h, h, need_weights=False)[0]
        h = ln(blk.ln_2, tok)
        h = blk.mlp.c_fc(h)
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        tok = tok + blk.mlp.c_proj(h)
    return ln(v.ln_post, tok[:, 0]) @ v.proj


def test_tower_matches_reference() -> None:
    m = _randomised(TINY, seed=2)
    x = torch.randn(3, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        got = m.encode_preprocessed(x)
        want = _reference_tower(m, x)
    assert got.shape == (3, TINY.output_dim)
    assert (got - want).abs().max().item() < 1e-5
    # not L2-normalised
    assert not torch.allclose(got.norm(dim=-1), torch.ones(3), atol=1e-2)


def test_forward_is_preprocess_then_tower() -> None:
    m = _randomised(TINY, seed=3)
    x = torch.rand(2, 3, 70, 33) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(m(x), _reference_tower(m, m.preprocess(x)), atol=1e-5, rtol=0)


def test_wrong_tower_input_size_raises() -> None:
    m = CLIPImageEmbedder(TINY)
    with pytest.raises(Sv4dError, match=r"expects \(B, 3, 28, 28\)"):
        m.encode_preprocessed(torch.zeros(1, 3, 30, 30))


# ---------------------------------------------------------------------------
# 3. preprocessing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 96, 96), (1, 3, 100, 60), (1, 3, 300, 460), (1, 3, 600, 100)])
def test_resize_matches_kornia(shape: tuple[int, ...]) -> None:
    kornia = pytest.importorskip("kornia")
    torch.manual_seed(4)
    x = torch.rand(*shape) * 2 - 1
    want = kornia.geometry.transform.resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
    got = resize_antialiased_bicubic(x, (224, 224))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_preprocess_identity_resize_at_224() -> None:
    m = CLIPImageEmbedder(CLIPVisionConfig(layers=1, width=32, heads=2, output_dim=16))
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(m.preprocess(x), ((x + 1) / 2 - mean) / std, atol=1e-6, rtol=0)


def test_antialias_sigma_and_kernel_size() -> None:
    assert antialias_sigma(224, 224) is None
    assert antialias_sigma(100, 224) is None
    assert antialias_sigma(576, 224) == pytest.approx((576 / 224 - 1) / 2)  # ~0.786
    assert gaussian_kernel1d(antialias_sigma(576, 224)).numel() == 3
    assert gaussian_kernel1d(0.75).numel() == 3  # int(3.0) = 3, odd
    assert gaussian_kernel1d(2.0).numel() == 9  # int(8.0) = 8 -> forced odd
    assert gaussian_kernel1d(2.3).numel() == 9  # int(9.2) = 9


def test_blur_hand_computed() -> None:
    # 448 -> 224: sigma = 0.5, kernel [a, 1, a] / (1 + 2a) with a = exp(-1 / (2 * 0.25)) = exp(-2)
    sigma = antialias_sigma(448, 224)
    assert sigma == pytest.approx(0.5)
    a = math.exp(-2.0)
    k = [a / (1 + 2 * a), 1 / (1 + 2 * a), a / (1 + 2 * a)]
    torch.testing.assert_close(gaussian_kernel1d(sigma), torch.tensor(k), atol=1e-7, rtol=0)

    x = torch.zeros(1, 1, 6, 7)
    x[0, 0, 3, 4] = 1.0  # interior delta
    x[0, 0, 1, 0] = 2.0  # next to the top-left corner, probes the reflect border
    y = gaussian_blur2d(x, sigma, sigma)
    assert y[0, 0, 3, 4].item() == pytest.approx(k[1] * k[1], abs=1e-6)
    assert y[0, 0, 2, 5].item() == pytest.approx(k[0] * k[2], abs=1e-6)
    assert y[0, 0, 3, 6].item() == pytest.approx(0.0, abs=1e-6)
    # reflect (no edge repeat): column -1 mirrors column 1 (zero), so (1, 0) gets k1 * k1;
    # row -1 mirrors row 1, so row 0 sees row 1 twice, with weight k0 + k2 = 2 k0
    assert y[0, 0, 1, 0].item() == pytest.approx(2.0 * k[1] * k[1], abs=1e-6)
    assert y[0, 0, 0, 0].item() == pytest.approx(2.0 * k[1] * 2 * k[0], abs=1e-6)
    assert y[0, 0, 0, 1].item() == pytest.approx(2.0 * k[0] * 2 * k[0], abs=1e-6)
    # blur only along one axis
    yx = gaussian_blur2d(x, None, sigma)
    assert yx[0, 0, 2, 4].item() == 0.0 and yx[0, 0, 3, 5].item() == pytest.approx(k[2], abs=1e-6)

    # the resize is the hand blur followed by bicubic interpolation
    torch.manual_seed(5)
    img = torch.rand(1, 3, 448, 448)
    k2 = torch.tensor(k)
    kernel = (k2[:, None] * k2[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="reflect"), kernel, groups=3)
    want = F.interpolate(blurred, size=(224, 224), mode="bicubic", align_corners=True)
    torch.testing.assert_close(resize_antialiased_bicubic(img, (224, 224)), want, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------
# 4. reduced precision
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_fp32(dtype: torch.dtype) -> None:
    m = _randomised(TINY, seed=6)
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        ref = m(x)
        m_low = m.to(dtype)
        got = m_low(x)
        got_low_in = m_low(x.to(dtype))
    assert got.dtype == dtype and got_low_in.dtype == dtype
    assert torch.isfinite(got.float()).all()
    tol = 0.05 if dtype == torch.float16 else 0.15
    scale = ref.abs().max().item()
    assert (got.float() - ref).abs().max().item() < tol * scale
    assert (got_low_in.float() - ref).abs().max().item() < tol * scale

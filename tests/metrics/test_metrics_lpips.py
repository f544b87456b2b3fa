"""LPIPS v0.1 VGG: the maths against a plain re-computation, its defining properties, and
loading the published weight layouts (random weights; the real files cannot be fetched)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sv4d.errors import Sv4dError
from sv4d.metrics.lpips import LPIPS, LPIPS_CHANNELS, VGG16Features, load_lpips
from sv4d.models.clip import gaussian_blur2d

CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
POOLS = (4, 9, 16, 23)
TAPS = (3, 8, 15, 22, 29)
SLICES = ((1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30)))


@pytest.fixture(scope="module")
def model() -> LPIPS:
    """Random LPIPS with He-initialised convolutions and non-negative lin weights (as the
    published ones), rounded to float16 values so that float16 files hold them exactly."""
    torch.manual_seed(0)
    m = LPIPS()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("net."):
                if p.ndim == 4:
                    p.normal_(0.0, math.sqrt(2.0 / (p.shape[1] * 9)))
                else:
                    p.normal_(0.0, 0.05)
            else:
                p.copy_(torch.rand_like(p) / p.shape[1])
            p.copy_(p.half().float())
    return m.eval().requires_grad_(False)


def _texture(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    stripes = 0.5 + 0.25 * torch.sin(xx * 0.9 + yy * 0.4)
    return (stripes + 0.25 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def _reference(state: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS written out from the paper and the published constants, in float64."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def taps(x):
        x = ((x.double() * 2 - 1) - shift) / scale
        out = []
        for i in range(30):
            if i in CONVS:
                x = F.conv2d(
                    x, state[f"net.features.{i}.weight"].double(), state[f"net.features.{i}.bias"].double(), padding=1
                )
            elif i in POOLS:
                x = F.max_pool2d(x, 2)
            else:
                x = F.relu(x)
            if i in TAPS:
                out.append(x)
        return out

    total = torch.zeros(a.shape[0], dtype=torch.float64)
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = state[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((fa - fb).pow(2) * w).sum(1).mean(dim=(1, 2))
    return total


def test_layout_and_taps() -> None:
    vgg = VGG16Features()
    keys = [k for k in vgg.state_dict()]
    assert keys == [f"features.{i}.{t}" for i in CONVS for t in ("weight", "bias")]
    taps = vgg(torch.rand(1, 3, 32, 48))
    assert [t.shape[1] for t in taps] == list(LPIPS_CHANNELS)
    assert [tuple(t.shape[-2:]) for t in taps] == [(32 // f, 48 // f) for f in (1, 2, 4, 8, 16)]
    assert all((t >= 0).all() for t in taps)  # every tap is after a ReLU
    lp = LPIPS().state_dict()
    assert [k for k in lp if k.startswith("lin")] == [f"lin{k}.model.1.weight" for k in range(5)]
    assert [tuple(lp[f"lin{k}.model.1.weight"].shape) for k in range(5)] == [(1, c, 1, 1) for c in LPIPS_CHANNELS]
    assert "shift" not in lp and "scale" not in lp


def test_matches_plain_recomputation(model: LPIPS) -> None:
    a = _texture(2, 48, seed=1)
    b = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    got = model(a, b)
    assert got.shape == (2,) and got.dtype == torch.float32
    ref = _reference(model.state_dict(), a, b)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-7)
    # non-square input and argument symmetry
    a2, b2 = a[:1, :, :32], b[:1, :, :32]
    torch.testing.assert_close(model(a2, b2).double(), _reference(model.state_dict(), a2, b2), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(model(b, a), got)


def test_identical_zero_and_grows_with_blur(model: LPIPS) -> None:
    x = _texture(1, 64, seed=3)
    assert model(x, x).item() == 0.0
    d = [model(x, gaussian_blur2d(x, s, s)).item() for s in (0.5, 1.0, 1.5, 2.5, 4.0)]
    assert d[0] > 0
    assert all(u < v for u, v in zip(d, d[1:])), d


def test_input_errors(model: LPIPS) -> None:
    with pytest.raises(Sv4dError, match="one shape"):
        model(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))
    with pytest.raises(Sv4dError, match="16 x 16"):
        model(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))


def _published(model: LPIPS) -> tuple[dict, dict]:
    """(torchvision vgg16 state dict with a classifier, lpips vgg.pth), float16."""
    sd = {k: v.half() for k, v in model.state_dict().items()}
    vgg = {k[len("net.") :]: v for k, v in sd.items() if k.startswith("net.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 8)  # ignored extra keys
    vgg["classifier.0.bias"] = torch.zeros(4)
    lin = {k: v for k, v in sd.items() if k.startswith("lin")}
    return vgg, lin


def test_load_published_layouts(model: LPIPS, tmp_path) -> None:
    vgg, lin = _published(model)
    a, b = _texture(2, 32, seed=4), _texture(2, 32, seed=5)
    want = model(a, b)

    d1 = tmp_path / "lpips_dir"
    d1.mkdir()
    torch.save(lin, d1 / "vgg.pth")
    torch.save(vgg, d1 / "vgg16-397923af.pth")
    d2 = tmp_path / "lpips_dir2"  # other accepted names, safetensors backbone
    d2.mkdir()
    torch.save(lin, d2 / "lpips_vgg.pth")
    save_file(vgg, str(d2 / "vgg16_imagenet.safetensors"))

    ours = tmp_path / "ours.safetensors"  # this module's own state dict
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ours))
    torchvision_style = tmp_path / "features_and_lin.pth"  # features.* + lin*
    torch.save({**vgg, **lin}, torchvision_style)

    full = {"scaling_layer.shift": torch.zeros(1, 3, 1, 1), "scaling_layer.scale": torch.ones(1, 3, 1, 1)}
    for s, idx in SLICES:  # the lpips package's LPIPS(net="vgg").state_dict()
        for i in idx:
            if i in CONVS:
                full[f"net.slice{s}.{i}.weight"] = vgg[f"features.{i}.weight"]
                full[f"net.slice{s}.{i}.bias"] = vgg[f"features.{i}.bias"]
    for k in range(5):
        full[f"lin{k}.model.1.weight"] = lin[f"lin{k}.model.1.weight"]
        full[f"lins.{k}.model.1.weight"] = lin[f"lin{k}.model.1.weight"]
    lpips_full = tmp_path / "lpips_full.pth"
    torch.save({"state_dict": full}, lpips_full)

    for path in (d1, d2, ours, torchvision_style, lpips_full):
        m = load_lpips(path)
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        got = m.state_dict()
        assert all(torch.equal(got[k], v) for k, v in model.state_dict().items()), path
        assert got["net.features.0.weight"].dtype == torch.float32
        if path == lpips_full:
            torch.testing.assert_close(m(a, b), want, rtol=0, atol=0)


def test_load_errors(model: LPIPS, tmp_path) -> None:
    vgg, lin = _published(model)
    lin_only = tmp_path / "vgg.pth"
    torch.save(lin, lin_only)
    with pytest.raises(Sv4dError, match="VGG16 backbone is needed too"):
        load_lpips(lin_only)
    (tmp_path / "only_lin").mkdir()
    torch.save(lin, tmp_path / "only_lin" / "vgg.pth")
    with pytest.raises(Sv4dError, match="no VGG16 backbone weights"):
        load_lpips(tmp_path / "only_lin")

    backbone_only = tmp_path / "vgg16-397923af.pth"
    torch.save(vgg, backbone_only)
    with pytest.raises(Sv4dError, match="no LPIPS linear layers"):
        load_lpips(backbone_only)

    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({**lin, "lin2.model.1.weight": torch.zeros(1, 128, 1, 1)}, bad / "vgg.pth")
    torch.save(vgg, bad / "vgg16-397923af.pth")
    with pytest.raises(Sv4dError, match=r"lin2\.model\.1\.weight: \(1, 128, 1, 1\) in the file"):
        load_lpips(bad)

    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    with pytest.raises(Sv4dError, match="cannot read weights"):
        load_lpips(text)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(Sv4dError, match="not an LPIPS VGG weight file"):
        load_lpips(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Sv4dError, match="no LPIPS linear-layer weights"):
        load_lpips(tmp_path / "empty")
    with pytest.raises(Sv4dError, match="does not exist"):
        load_lpips(tmp_path / "missing.pth")

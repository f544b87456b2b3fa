"""Image metrics against kornia's implementations and their defining properties."""

from __future__ import annotations

import math

import pytest
import torch

from sv4d.errors import Sv4dError
from sv4d.metrics import psnr, ssim

kornia = pytest.importorskip("kornia")


def _pair(seed: int = 0, shape=(3, 3, 40, 52), noise: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    return a, (a + noise * torch.randn(shape, generator=g)).clamp(0, 1)


def test_ssim_matches_kornia_valid_padding():
    for seed, noise in ((0, 0.1), (1, 0.3), (2, 0.02)):
        a, b = _pair(seed, noise=noise)
        ref = kornia.metrics.ssim(a, b, 11, padding="valid").flatten(1).mean(1)
        torch.testing.assert_close(ssim(a, b), ref, rtol=1e-5, atol=1e-5)
    a, b = _pair(3)
    ref = kornia.metrics.ssim(a * 255, b * 255, 11, max_val=255.0, padding="valid").flatten(1).mean(1)
    torch.testing.assert_close(ssim(a * 255, b * 255, data_range=255.0), ref, rtol=1e-5, atol=1e-5)


def test_psnr_matches_kornia_and_the_formula():
    a, b = _pair(4)
    for i in range(a.shape[0]):
        torch.testing.assert_close(psnr(a, b)[i], kornia.metrics.psnr(a[i], b[i], 1.0), rtol=1e-5, atol=1e-4)
    x = torch.zeros(1, 3, 16, 16)
    assert math.isclose(psnr(x, x + 0.1).item(), 20.0, rel_tol=1e-5)  # MSE 0.01


def test_identical_images_and_errors():
    a, _ = _pair(5)
    assert torch.allclose(ssim(a, a), torch.ones(3)) and torch.isinf(psnr(a, a)).all()
    assert (ssim(a, 1 - a) < 0.5).all()
    with pytest.raises(Sv4dError, match="one shape"):
        ssim(a, a[:, :2])
    with pytest.raises(Sv4dError, match="at least 11"):
        ssim(a[..., :8, :8], a[..., :8, :8])

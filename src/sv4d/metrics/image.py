"""Full-reference image metrics on (N, C, H, W) float images in [0, data_range].

* ``psnr``: 10 log10(data_range^2 / MSE), per image.
* ``ssim``: Wang et al. 2004 structural similarity with an 11 x 11 Gaussian window
  (sigma 1.5), K1 = 0.01, K2 = 0.03, computed per channel over the *valid* window positions
  (no padding) and averaged over channels and positions, per image; the usual settings of
  scikit-image (``gaussian_weights=True, use_sample_covariance=False``) and kornia
  (``padding="valid"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import Sv4dError


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise Sv4dError(f"metrics need two (N, C, H, W) tensors of one shape, got {tuple(a.shape)} "
                        f"and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N,) PSNR in dB (inf for identical images)."""
    _check(a, b)
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / mse)).float()


def batch_psnr_pm1(a: torch.Tensor, b: torch.Tensor) -> float:
    """One PSNR (dB) from the MSE over a whole batch of images in [-1, 1], scored as [0, 1]
    images; ``a`` is clamped to [-1, 1] first (a quick training-time figure, not per image)."""
    mse = (((a.clamp(-1, 1) - b) / 2) ** 2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(device=device, dtype=dtype)
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """(N,) mean SSIM."""
    _check(a, b)
    n, c, h, w = a.shape
    if h < window or w < window:
        raise Sv4dError(f"SSIM needs images of at least {window} x {window} pixels, got {h} x {w}")
    a, b = a.double(), b.double()
    kern = _gaussian_window(window, sigma, a.dtype, a.device).expand(c, 1, window, window)
    blur = lambda x: F.conv2d(x, kern, groups=c)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1).float()

"""Full-reference image metrics on (N, C, H, W) float images in [0, data_range].

* ``psnr``: 10 log10(data_range^2 / MSE), per image.
* ``ssim``: Wang et al. 2004 structural similarity with an 11 x 11 Gaussian window
  (sigma 1.5), K1 = 0.01, K2 = 0.03, computed per channel over the *valid* window positions
  (no padding) and averaged over channels and positions, per image; the usual settings of
  scikit-image (``gaussian_weights=True, use_sample_covariance=False``) and kornia
  (``padding="valid"``). Computed in float64.
* ``ssim_map``: the per-pixel, per-channel SSIM that ``ssim`` averages, in the inputs' own dtype
  and differentiable; ``padding="zeros"`` keeps the image size (zero padding, as the 3DGS
  D-SSIM loss of :mod:`sv4d.fit.gaussians` uses it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import Sv4dError


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise Sv4dError(
            f"metrics need two (N, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N,) PSNR in dB (inf for identical images)."""
    _check(a, b)
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def batch_psnr_pm1(a: torch.Tensor, b: torch.Tensor) -> float:
    """One PSNR (dB) from the MSE over a whole batch of images in [-1, 1], scored as [0, 1]
    images; ``a`` is clamped to [-1, 1] first (a quick training-time figure, not per image)."""
    mse = (((a.clamp(-1, 1) - b) / 2) ** 2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


SSIM_PADDINGS = ("valid", "zeros")


def gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """(size, size) normalised Gaussian kernel (odd ``size``: centred on the middle tap), computed
    in ``dtype``."""
    r = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-r * r / (2 * sigma * sigma))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(
    a: torch.Tensor,
    b: torch.Tensor,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    padding: str = "valid",
) -> torch.Tensor:
    """Per-pixel SSIM (N, C, H', W') of two (N, C, H, W) images, in their dtype (differentiable).

    padding "valid": only window positions inside the image, H' = H - window + 1 (the metric);
    "zeros": the image zero-padded by window // 2, H' = H for an odd window (the 3DGS training loss)."""
    _check(a, b)
    if padding not in SSIM_PADDINGS:
        raise Sv4dError(f"unknown SSIM padding {padding!r}; use one of {SSIM_PADDINGS}")
    c = a.shape[1]
    kern = gaussian_window(window, sigma, a.dtype, a.device).expand(c, 1, window, window)
    stats = torch.cat([a, b, a * a, b * b, a * b])  # (5N, C, H, W)
    pad = window // 2 if padding == "zeros" else 0
    mu_a, mu_b, aa, bb, ab = F.conv2d(stats, kern, padding=pad, groups=c).chunk(5)  # 5 x (N, C, H', W')
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """(N,) mean SSIM over the valid window positions, computed in float64."""
    _check(a, b)
    h, w = a.shape[-2:]
    if h < window or w < window:
        raise Sv4dError(f"SSIM needs images of at least {window} x {window} pixels, got {h} x {w}")
    s = ssim_map(a.double(), b.double(), data_range, window, sigma, k1, k2, padding="valid")
    return s.flatten(1).mean(1).float()

"""Image and video metrics."""

from .image import batch_psnr_pm1, psnr, ssim

__all__ = ["batch_psnr_pm1", "psnr", "ssim"]

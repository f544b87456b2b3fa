"""Image and video metrics."""

from .image import psnr, ssim

__all__ = ["psnr", "ssim"]

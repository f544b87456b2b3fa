"""Rendering a fitted 4D representation at given cameras and times (camera paths come from
:mod:`sv4d.cameras`), and the fit metrics."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ..cameras import Intrinsics
from ..errors import Sv4dError
from ..io.video import write_video
from ..metrics.image import ssim


class Renderable(Protocol):
    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]: ...


def render_grid(
    model: Renderable, c2w: torch.Tensor, intrinsics: Intrinsics, times: Sequence[float], progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every camera (V, 4, 4) at every time: rgb (V, F, H, W, 3) and alpha (V, F, H, W), on the CPU."""
    rgb, alpha = [], []
    with tqdm(total=len(c2w) * len(times), disable=not progress, desc="render", unit="img") as bar:
        for cam in c2w:
            row_rgb, row_a = [], []
            for t in times:
                out = model.render(cam, intrinsics, float(t))
                row_rgb.append(out["rgb"].clamp(0, 1).cpu())
                row_a.append(out["alpha"].clamp(0, 1).cpu())
                bar.update(1)
            rgb.append(torch.stack(row_rgb))
            alpha.append(torch.stack(row_a))
    return torch.stack(rgb), torch.stack(alpha)


def render_video(
    model: Renderable,
    path: str | os.PathLike,
    c2w: torch.Tensor,
    intrinsics: Intrinsics,
    times: Sequence[float],
    fps: float,
    progress: bool = False,
) -> Path:
    """Render camera k (c2w (n, 4, 4)) at times[k] for every k and write the frames as an mp4."""
    images = [
        model.render(cam, intrinsics, float(t))["rgb"].clamp(0, 1).cpu()
        for cam, t in tqdm(list(zip(c2w, times)), desc="render", unit="frame", disable=not progress)
    ]
    return write_video(path, (torch.stack(images).numpy() * 255 + 0.5).astype(np.uint8), fps)


def fit_metrics(
    rgb: torch.Tensor, alpha: torch.Tensor, gt_rgb: torch.Tensor, gt_alpha: torch.Tensor
) -> dict[str, float]:
    """The fit benchmark's figures over a stack of images (..., H, W, 3) / (..., H, W):
    PSNR over whole images (mean of per-image PSNR), foreground PSNR (pixels with gt alpha > 0,
    per image), SSIM (mean), and mask IoU (gt alpha > 0.5 against opacity > 0.5, pooled)."""
    if rgb.shape != gt_rgb.shape or alpha.shape != gt_alpha.shape:
        raise Sv4dError(f"prediction {tuple(rgb.shape)} and ground truth {tuple(gt_rgb.shape)} differ")
    h, w = alpha.shape[-2:]
    x, y = rgb.reshape(-1, h, w, 3).double(), gt_rgb.reshape(-1, h, w, 3).double()
    a, ga = alpha.reshape(-1, h, w), gt_alpha.reshape(-1, h, w)
    se = ((x - y) ** 2).mean(-1)
    mse = se.flatten(1).mean(1)
    fg = (ga > 0).double()
    fg_mse = (se * fg).flatten(1).sum(1) / fg.flatten(1).sum(1).clamp_min(1)
    pm, gm = a > 0.5, ga > 0.5
    iou = float((pm & gm).sum()) / max(1, int((pm | gm).sum()))
    s = ssim(x.permute(0, 3, 1, 2).float(), y.permute(0, 3, 1, 2).float())
    return {
        "psnr": float((10 * torch.log10(1 / mse.clamp_min(1e-12))).mean()),
        "fg_psnr": float((10 * torch.log10(1 / fg_mse.clamp_min(1e-12))).mean()),
        "ssim": float(s.mean()),
        "iou": iou,
    }

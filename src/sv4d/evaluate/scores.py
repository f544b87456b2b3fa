"""Per-image scores over the views x frames grid.

PSNR, SSIM and MSE come from scikit-image on [0, 1] float RGB images over white:
``peak_signal_noise_ratio(data_range=1)``; ``structural_similarity`` with Wang et al.'s
settings (11 x 11 Gaussian window, sigma 1.5, population covariance, K1 0.01, K2 0.03,
per channel and averaged); ``mean_squared_error``. PSNR of identical images is infinite:
it is capped at ``PSNR_CAP_DB`` and the number of capped images is reported. Mask IoU uses
alpha >= 128 in both sets (1 when both masks are empty). LPIPS and CLIP-S run their networks
on batches of images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from tqdm.auto import tqdm

from .grid import EvalGrid

__all__ = ["PSNR_CAP_DB", "pixel_scores", "network_scores", "summarise"]

PSNR_CAP_DB = 100.0


def pixel_scores(grid: EvalGrid, progress: bool = True) -> tuple[dict[str, np.ndarray], int]:
    """``{"psnr", "ssim", "mse"[, "iou"]}`` as (V, F) float64 arrays, and the number of PSNR
    values capped at PSNR_CAP_DB."""
    v_n, f_n = grid.shape
    names = ["psnr", "ssim", "mse"] + (["iou"] if grid.pred_alpha is not None else [])
    out = {k: np.zeros((v_n, f_n)) for k in names}
    capped = 0
    with tqdm(total=v_n * f_n, desc="PSNR/SSIM", unit="image", disable=not progress) as bar:
        for v in range(v_n):
            for f in range(f_n):
                a = grid.pred[v, f].astype(np.float64) / 255.0
                b = grid.gt[v, f].astype(np.float64) / 255.0
                mse = float(mean_squared_error(b, a))
                out["mse"][v, f] = mse
                if mse == 0.0:
                    out["psnr"][v, f] = PSNR_CAP_DB
                    capped += 1
                else:
                    out["psnr"][v, f] = min(float(peak_signal_noise_ratio(b, a, data_range=1.0)), PSNR_CAP_DB)
                    capped += out["psnr"][v, f] == PSNR_CAP_DB
                out["ssim"][v, f] = structural_similarity(
                    b, a, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
                )
                if grid.pred_alpha is not None and grid.gt_alpha is not None:
                    ma, mb = grid.pred_alpha[v, f] >= 128, grid.gt_alpha[v, f] >= 128
                    union = np.logical_or(ma, mb).sum()
                    out["iou"][v, f] = 1.0 if union == 0 else np.logical_and(ma, mb).sum() / union
                bar.update()
    return out, int(capped)


def network_scores(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    grid: EvalGrid,
    *,
    desc: str,
    batch: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """(V, F) scores of a network metric ``fn(pred, gt) -> (N,)`` on (N, 3, H, W) [0, 1] images."""
    v_n, f_n = grid.shape
    flat_p = grid.pred.reshape(v_n * f_n, *grid.pred.shape[2:])
    flat_g = grid.gt.reshape(v_n * f_n, *grid.gt.shape[2:])
    out = np.zeros(v_n * f_n)

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float() / 255.0

    with torch.inference_mode():
        for s in tqdm(range(0, len(out), batch), desc=desc, unit="batch", disable=not progress):
            out[s : s + batch] = fn(tensor(flat_p[s : s + batch]), tensor(flat_g[s : s + batch])).double().cpu().numpy()
    return out.reshape(v_n, f_n)


def summarise(scores: np.ndarray) -> dict:
    """Mean over everything, per view (over frames) and per frame (over views)."""
    return {"mean": float(scores.mean()), "per_view": scores.mean(1).tolist(), "per_frame": scores.mean(0).tolist()}

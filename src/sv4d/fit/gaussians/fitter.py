"""The 4D Gaussian fitter: a :class:`~.model.GaussianModel` fitted to a :class:`~sv4d.fit.data.FitData`.

Training draws one whole image per step (a random training view at a random allowed frame),
renders it with :func:`~.rasterize.rasterize_gaussians` on white and takes an L1 loss on colour
(optionally mixed with D-SSIM, :func:`sv4d.metrics.image.ssim_map` with zero padding) and on
opacity against the mask (per-pixel weighted when the data carries weights), plus the field's
plane regularisers in the dynamic stage. Adam with per-group learning rates; position and field
rates decay exponentially over the run. Densification follows 3DGS (:class:`~.densify.DensifyStrategy`):
every ``densify_every`` steps Gaussians whose mean screen-space gradient is large are cloned
(small ones) or split in two (large ones); transparent or oversized ones are pruned. In the
static stage the deformation field is skipped (time has no effect) and only the canonical
Gaussians learn. Initialisation: :mod:`.seeding`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from einops import rearrange
from torch import nn

from ...cameras import scene_bound
from ...devices import resolve_device
from ...errors import Sv4dError
from ...metrics.image import ssim_map
from ..base import Fitter, check_stage, step_psnr
from ..data import FitData
from .config import PER_GAUSSIAN, GaussianConfig
from .densify import DensifyStrategy
from .model import GaussianModel
from .seeding import seed_gaussians


class GaussianFitter(Fitter):
    """4D Gaussians fitted to a :class:`FitData` (see the module docstring); ``model`` is the
    :class:`GaussianModel` being fitted. ``init_points`` (M, 3): seed the Gaussians there
    instead of the configured initialisation. device: "cpu" or a CUDA device (then gsplat
    renders when installed)."""

    method = "gaussians"

    def __init__(
        self,
        data: FitData,
        config: GaussianConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        init_points: torch.Tensor | None = None,
    ) -> None:
        self.data, self.config, self.seed = data, config or GaussianConfig(), int(seed)
        cfg = self.config
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(self.seed)
        bound = scene_bound(data.c2w, data.intrinsics)
        params = seed_gaussians(data, cfg, bound, self.generator, init_points)
        time_res = cfg.time_resolution or max(len(data.times), 2)
        self.model = GaussianModel(cfg, bound, params, time_res, self.seed).to(self.device)
        self.optimizer = self._make_optimizer()
        b = self.model.bound
        self.strategy = DensifyStrategy(
            cfg.grad_threshold,
            cfg.dense_size * b,
            cfg.prune_opacity,
            cfg.prune_size * b,
            cfg.max_gaussians,
            cfg.densify_from,
            cfg.densify_every,
            cfg.densify_until,
            cfg.opacity_reset_every,
        )
        self.strategy.reset(self.model.count, self.device)
        self.stage = "dynamic"

    # ------------------------------------------------------------------ optimiser
    def _base_lrs(self) -> dict[str, float]:
        c = self.config
        return {
            "means": c.lr_means * self.model.bound,
            "log_scales": c.lr_scales,
            "quats": c.lr_quats,
            "opacity_logits": c.lr_opacity,
            "color_logits": c.lr_color,
            "planes": c.lr_planes,
            "mlp": c.lr_mlp,
        }

    def _make_optimizer(self) -> torch.optim.Adam:
        lrs, m = self._base_lrs(), self.model
        groups = [{"params": [m.params[k]], "lr": lrs[k], "name": k} for k in PER_GAUSSIAN]
        groups += [
            {"params": m.deform.plane_parameters(), "lr": lrs["planes"], "name": "planes"},
            {"params": m.deform.mlp_parameters(), "lr": lrs["mlp"], "name": "mlp"},
        ]
        return torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-15)

    def _set_lrs(self, progress: float) -> None:
        p = min(1.0, max(0.0, progress))
        decay = {"means": self.config.lr_final**p, "planes": self.config.lr_field_final**p}
        decay["mlp"] = decay["planes"]
        lrs = self._base_lrs()
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[group["name"]] * decay.get(group["name"], 1.0)

    # ------------------------------------------------------------------ Fitter
    def set_stage(self, stage: str) -> None:
        self.stage = check_stage(stage)
        self.model.static = stage == "static"

    def train_step(self, step: int, frames: Sequence[int], progress: float | None = None) -> dict[str, float]:
        """One image: a random training view at a random frame among ``frames`` (positions);
        ``progress`` in [0, 1] drives the learning-rate decay and the densification window
        (default ``step / schedule_steps``)."""
        cfg, data, model = self.config, self.data, self.model
        frames = list(frames)
        v, f, h, w = data.shape
        if not frames or any(not 0 <= int(fi) < f for fi in frames):
            raise Sv4dError(f"train_step needs frame positions in 0..{f - 1}, got {frames}")
        p = min(1.0, step / cfg.schedule_steps) if progress is None else float(progress)
        self._set_lrs(p)
        vi = int(torch.randint(v, (1,), generator=self.generator))
        fi = int(frames[int(torch.randint(len(frames), (1,), generator=self.generator))])
        out = model.rasterize(data.c2w[vi], data.intrinsics, float(data.times[fi]))
        gt_rgb, gt_a = data.rgb[vi, fi].to(self.device), data.alpha[vi, fi].to(self.device)  # (H, W, 3), (H, W)
        err_rgb, err_a = (out["rgb"] - gt_rgb).abs().mean(-1), (out["alpha"] - gt_a).abs()
        if cfg.ssim_weight > 0:
            chw = "h w c -> 1 c h w"
            ssim = ssim_map(rearrange(out["rgb"], chw), rearrange(gt_rgb, chw), padding="zeros").mean(1)[0]  # (H, W)
            err_rgb = (1 - cfg.ssim_weight) * err_rgb + cfg.ssim_weight * (1 - ssim)
        if data.weight is not None:
            wgt = data.weight[vi, fi].to(self.device)
            err_rgb, err_a = err_rgb * wgt, err_a * wgt
        rgb_loss, alpha_loss = err_rgb.mean(), err_a.mean()
        loss = rgb_loss + cfg.alpha_weight * alpha_loss
        if not model.static:
            reg = model.deform.regularisers()
            loss = (
                loss
                + cfg.tv_weight * reg["tv"]
                + cfg.time_smooth_weight * reg["time_smooth"]
                + cfg.time_l1_weight * reg["time_l1"]
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        model.params = self.strategy.step_post_backward(
            model.params, self.optimizer, out, step, p, w, h, self.generator
        )
        return {
            "loss": float(loss.detach()),
            "rgb": float(rgb_loss.detach()),
            "alpha": float(alpha_loss.detach()),
            "psnr": step_psnr(out["rgb"], gt_rgb),
            "gaussians": float(model.count),
        }

    def gaussians_at(self, t: float) -> dict[str, torch.Tensor]:
        """See :meth:`GaussianModel.gaussians_at`."""
        return self.model.gaussians_at(t)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "stage": self.stage,
            "stats": self.strategy.state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        m, model = state["model"], self.model
        try:
            model.params = {
                k: nn.Parameter(m["params"][k].detach().clone().float().to(self.device)) for k in PER_GAUSSIAN
            }
            model.deform.load_state_dict(m["deform"])
            self.optimizer = self._make_optimizer()
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
            self.strategy.load_state(state["stats"], self.device)
            self.generator.set_state(state["generator"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise Sv4dError(f"not a Gaussian fit state, or one for other settings ({type(e).__name__}: {e})") from None
        self.set_stage(state["stage"])

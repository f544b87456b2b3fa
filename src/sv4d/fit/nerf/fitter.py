"""The dynamic NeRF fitter: a :class:`~.model.DynamicNerf` fitted to a :class:`~sv4d.fit.data.FitData`.

Each step draws ``rays`` random pixels (view, pixel) of the allowed frames among those whose rays
can meet the hull (the masks dilated one pixel beyond the carving), renders them with sample
jitter and takes a weighted MSE on RGB (on white) and on alpha (rendered opacity against the
mask); every ``reg_every`` steps the field's plane regularisers are added (TV, time smoothness and
a pull of the space-time planes towards 1), weighted by ``reg_every``. Adam with one group for the
planes and one for the MLPs; learning rates warm up linearly, then follow a cosine decay (by run
progress) to ``lr_final``. From ``occupancy_start`` the occupancy of the drawn frames is
tightened every ``occupancy_every`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ...cameras import camera_rays
from ...devices import resolve_device
from ...errors import Sv4dError
from ..base import Fitter, check_stage, step_psnr
from ..data import FitData
from ..hull import dilate, visual_hull
from .config import NerfConfig
from .model import DynamicNerf, unpack_bits
from .renderer import render_rays


class NerfFitter(Fitter):
    """Dynamic NeRF fitted to a :class:`FitData` (see the module docstring); ``model`` is the
    :class:`DynamicNerf` being fitted. hull (F, R, R, R) bool and bound: a precomputed visual hull
    (default: carved here from the data's masks)."""

    method = "nerf"

    def __init__(
        self,
        data: FitData,
        config: NerfConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        hull: torch.Tensor | None = None,
        bound: float | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.data, self.config, self.seed = data, config or NerfConfig(), seed
        cfg = self.config
        v, f, h, w = data.shape
        if hull is None:
            hull, bound = visual_hull(data, cfg.hull_resolution, bound, cfg.hull_dilate, cfg.hull_misses)
        self.model = DynamicNerf(cfg, bound, hull, data.times, seed, self.device)
        field = self.model.field
        self.optimizer = torch.optim.Adam(
            [{"params": field.plane_parameters(), "lr": cfg.lr}, {"params": field.mlp_parameters(), "lr": cfg.lr_mlp}],
            betas=(0.9, 0.99),
            eps=1e-15,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.stage = "dynamic"
        o, d = camera_rays(data.c2w, data.intrinsics)
        dev = self.device
        self.origins, self.dirs = o.reshape(v, -1, 3).to(dev), d.reshape(v, -1, 3).to(dev)  # (V, H*W, 3)
        self._rgb, self._alpha = data.rgb.to(dev), data.alpha.to(dev)
        self._weight_of: torch.Tensor | None = None  # the data.weight that self._weight is a copy of
        self._weight: torch.Tensor | None = None
        self._times = data.times.to(dev)
        self._hw = h * w
        # Pixels whose rays can meet the hull: the masks dilated one pixel beyond the carving.
        cand = dilate(data.alpha > 0, cfg.hull_dilate + 1)  # (V, F, H, W)
        self._candidates = [cand[:, fi].reshape(-1).nonzero()[:, 0] for fi in range(f)]
        self._pool_key: tuple[int, ...] | None = None

    def set_stage(self, stage: str) -> None:
        self.stage = check_stage(stage)
        self.model.field.static = stage == "static"

    def _lr_factor(self, step: int, progress: float) -> float:
        """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine from 1 to ``lr_final``."""
        cfg = self.config
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        p = min(1.0, max(0.0, progress))
        return cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * p))

    def _pool(self, frames: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame (P,), flat view*pixel id (P,)) of every candidate ray of ``frames``."""
        key = tuple(frames)
        if key != self._pool_key:
            ids = [self._candidates[fi] for fi in frames]
            self._pool_frames = torch.cat([torch.full((len(c),), fi) for fi, c in zip(frames, ids)])
            self._pool_ids = torch.cat(ids)
            self._pool_key = key
            if len(self._pool_ids) == 0:
                raise Sv4dError("the chosen frames have empty object masks in every view")
        return self._pool_frames, self._pool_ids

    def _device_weight(self) -> torch.Tensor:
        """``data.weight`` (V, F, H, W) on the device: copied once, and again only when a hook
        replaces it (not the whole tensor on every step)."""
        if self._weight_of is not self.data.weight:
            self._weight_of, self._weight = self.data.weight, self.data.weight.to(self.device)
        return self._weight

    def train_step(self, step: int, frames: Sequence[int], progress: float) -> dict[str, float]:
        cfg, data, field = self.config, self.data, self.model.field
        pool_f, pool_ids = self._pool(frames)
        pick = torch.randint(len(pool_ids), (cfg.rays,), generator=self.generator)
        fi, flat = pool_f[pick].to(self.device), pool_ids[pick].to(self.device)
        vi, pix = flat // self._hw, flat % self._hw
        out = render_rays(
            field,
            self.model.occupancy,
            self.origins[vi, pix],
            self.dirs[vi, pix],
            self._times[fi],
            fi,
            self.model.step_size,
            self.generator,
            box=self.model.box(),
        )
        w = data.shape[3]
        py, px = pix // w, pix % w
        gt_rgb, gt_a = self._rgb[vi, fi, py, px], self._alpha[vi, fi, py, px]
        wgt = self._device_weight()[vi, fi, py, px] if data.weight is not None else torch.ones_like(gt_a)
        rgb_loss = (wgt[:, None] * (out["rgb"] - gt_rgb) ** 2).mean()
        alpha_loss = (wgt * (out["alpha"] - gt_a) ** 2).mean()
        loss = rgb_loss + cfg.alpha_weight * alpha_loss
        if step % cfg.reg_every == 0:  # the plane regularisers touch every plane cell: not every step
            reg = field.regularisers()
            loss = loss + cfg.reg_every * (
                cfg.tv_weight * reg["tv"]
                + cfg.time_smooth_weight * reg["time_smooth"]
                + cfg.time_l1_weight * reg["time_l1"]
            )
        factor = self._lr_factor(step, progress)
        for group, base in zip(self.optimizer.param_groups, (cfg.lr, cfg.lr_mlp)):
            group["lr"] = base * factor
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if step >= cfg.occupancy_start and (step - cfg.occupancy_start) % cfg.occupancy_every == 0:
            self.model.update_occupancy(frames)
        return {
            "loss": loss.item(),
            "rgb": rgb_loss.item(),
            "alpha": alpha_loss.item(),
            "psnr": step_psnr(out["rgb"], gt_rgb),
        }

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "stage": self.stage,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        m = state["model"]
        self.model.field.load_state_dict(m["field"])
        self.model.set_occupancy(unpack_bits(m["occupancy"], tuple(self.model.occupancy.shape)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.set_stage(state["stage"])

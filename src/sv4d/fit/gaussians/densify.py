"""Adaptive density control for 3D Gaussians (as in 3DGS) and the optimiser surgery it needs.

Every densification round looks at each Gaussian's mean screen-space gradient of its
projected centre (in NDC units: pixel gradients times half the image size) since the last
round: above a threshold, Gaussians no larger than ``dense_size`` are cloned (a copy at the
same place, which the next steps pull apart) and larger ones are split into two samples drawn
from the Gaussian itself, 1.6 times smaller. Then Gaussians that are nearly transparent or
larger than ``prune_size`` are removed. Adam moments follow their rows; new rows start at zero.

:class:`DensifyStrategy` is the piece a fitter holds: it owns the gradient statistics and the
schedule (when to densify, when to reset opacities) and is called once per step after the
backward pass and the optimiser step (:meth:`DensifyStrategy.step_post_backward`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .rasterize import quat_to_rotmat


@dataclass
class DensifyStats:
    """Accumulated per-Gaussian screen gradients: grad (N,) sum of NDC gradient norms, count
    (N,) renders in which the Gaussian was visible."""

    grad: torch.Tensor
    count: torch.Tensor

    @classmethod
    def zeros(cls, n: int, device: str | torch.device = "cpu") -> DensifyStats:
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device))

    def update(self, grad2d: torch.Tensor, visible: torch.Tensor, width: int, height: int) -> None:
        """grad2d (N, 2): gradient of the loss with respect to the projected centres (pixels)."""
        g = grad2d.reshape(-1, 2) * torch.tensor([0.5 * width, 0.5 * height], device=grad2d.device)
        self.grad += torch.where(visible, g.norm(dim=-1), torch.zeros_like(self.grad))
        self.count += visible.to(self.count.dtype)

    def state(self) -> dict[str, torch.Tensor]:
        return {"grad": self.grad.cpu().clone(), "count": self.count.cpu().clone()}


def nearest_spacing(points: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
    """(N,) mean distance of each point (N, 3) to its k nearest other points (chunked; O(N^2))."""
    n = len(points)
    if n < 2:
        return torch.ones(n, device=points.device)
    k = min(k, n - 1)
    out = []
    for i in range(0, n, chunk):
        d = torch.cdist(points[i : i + chunk], points)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(-1))
    return torch.cat(out)


def grow_and_keep(
    optimizer: torch.optim.Optimizer,
    params: dict[str, nn.Parameter],
    keep: torch.Tensor,
    extra: dict[str, torch.Tensor],
) -> dict[str, nn.Parameter]:
    """Replace each per-Gaussian parameter by its ``keep`` (N,) rows followed by ``extra[name]``
    rows, in the model and in the optimiser (whose groups carry a ``name``); Adam moments are
    kept for the kept rows and zero for the new ones. Returns the new parameters."""
    new: dict[str, nn.Parameter] = {}
    for group in optimizer.param_groups:
        name = group.get("name")
        if name not in params:
            continue
        old = group["params"][0]
        p = nn.Parameter(torch.cat([old.detach()[keep], extra[name].to(old.dtype)]))
        st = optimizer.state.pop(old, None)
        if st:
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    st[key] = torch.cat([st[key][keep], torch.zeros_like(extra[name])])
            optimizer.state[p] = st
        group["params"][0] = p
        new[name] = p
    for name in params:
        if name not in new:
            new[name] = nn.Parameter(torch.cat([params[name].detach()[keep], extra[name]]))
    return new


def densify_and_prune(
    params: dict[str, torch.Tensor],
    stats: DensifyStats,
    generator: torch.Generator,
    *,
    grad_threshold: float,
    dense_size: float,
    prune_opacity: float,
    prune_size: float,
    max_count: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One round of clone / split / prune. Returns (keep (N,) bool over the current Gaussians,
    new rows {name: (M, ...)}). Random split samples come from ``generator`` (CPU)."""
    with torch.no_grad():
        n = len(params["means"])
        dev = params["means"].device
        avg = stats.grad / stats.count.clamp_min(1.0)
        scales = params["log_scales"].exp()
        size = scales.amax(-1)
        cand = avg >= grad_threshold
        room = max(0, max_count - n)
        if int(cand.sum()) > room:  # keep the strongest within the budget (a split adds one)
            order = torch.argsort(avg, descending=True)
            chosen = torch.zeros_like(cand)
            chosen[order[:room]] = True
            cand &= chosen
        clone = cand & (size <= dense_size)
        split = cand & (size > dense_size)
        new = {k: v[clone] for k, v in params.items()}
        if split.any():
            s_idx = split.nonzero()[:, 0].repeat(2)
            noise = torch.randn(len(s_idx), 3, generator=generator).to(dev) * scales[s_idx]
            rot = quat_to_rotmat(params["quats"][s_idx])
            parts = {k: v[s_idx] for k, v in params.items()}
            parts["means"] = parts["means"] + (rot @ noise[..., None])[..., 0]
            parts["log_scales"] = parts["log_scales"] - math.log(1.6)
            new = {k: torch.cat([new[k], parts[k]]) for k in params}

        def ok(p: dict[str, torch.Tensor]) -> torch.Tensor:
            return (torch.sigmoid(p["opacity_logits"]) >= prune_opacity) & (
                p["log_scales"].exp().amax(-1) <= prune_size
            )

        keep = ok(params) & ~split
        keep_new = ok(new)
        if not keep.any() and not keep_new.any():  # never remove everything
            keep[torch.argmax(params["opacity_logits"])] = True
        new = {k: v[keep_new] for k, v in new.items()}
    return keep, new


def reset_opacity(optimizer: torch.optim.Optimizer, param: nn.Parameter, ceiling: float = 0.01) -> None:
    """Cap opacities at ``ceiling`` (in place) and clear their Adam moments."""
    with torch.no_grad():
        param.clamp_(max=math.log(ceiling / (1 - ceiling)))
    st = optimizer.state.get(param)
    if st:
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                st[key].zero_()


@dataclass
class DensifyStrategy:
    """The 3DGS densification schedule and its statistics, as one object.

    Sizes are world lengths. Every step the screen gradients of the visible Gaussians are
    accumulated; at every multiple of ``every`` from step ``start`` on, while progress < ``until``,
    Gaussians are cloned, split and pruned (:func:`densify_and_prune`, at
    most ``max_count``) and the statistics restart; every ``opacity_reset_every`` steps (0: never)
    while progress < ``until``, opacities are capped (:func:`reset_opacity`)."""

    grad_threshold: float
    dense_size: float
    prune_opacity: float
    prune_size: float
    max_count: int
    start: int
    every: int
    until: float
    opacity_reset_every: int = 0
    stats: DensifyStats | None = None

    def reset(self, count: int, device: str | torch.device = "cpu") -> None:
        """Empty statistics for ``count`` Gaussians."""
        self.stats = DensifyStats.zeros(count, device)

    def step_post_backward(
        self,
        params: dict[str, nn.Parameter],
        optimizer: torch.optim.Optimizer,
        info: dict[str, Any],
        step: int,
        progress: float,
        width: int,
        height: int,
        generator: torch.Generator,
    ) -> dict[str, nn.Parameter]:
        """After ``loss.backward()`` and the optimiser step of ``step``: accumulate the screen
        gradients of ``info`` (the rasteriser's output: ``means2d`` with its ``.grad``, ``visible``
        (N,)) for an image of width x height pixels, then densify and reset opacities when due.
        Returns the per-Gaussian parameters (new ones after a densification, also swapped into
        ``optimizer``, whose groups carry a ``name``)."""
        assert self.stats is not None, "call reset() first"
        if info["means2d"].grad is not None:
            self.stats.update(info["means2d"].grad, info["visible"], width, height)
        if step >= self.start and step % self.every == 0 and progress < self.until:
            keep, new = densify_and_prune(
                params,
                self.stats,
                generator,
                grad_threshold=self.grad_threshold,
                dense_size=self.dense_size,
                prune_opacity=self.prune_opacity,
                prune_size=self.prune_size,
                max_count=self.max_count,
            )
            params = grow_and_keep(optimizer, params, keep, new)
            self.reset(len(params["means"]), self.stats.grad.device)
        if self.opacity_reset_every > 0 and step > 0 and step % self.opacity_reset_every == 0 and progress < self.until:
            reset_opacity(optimizer, params["opacity_logits"])
        return params

    def state(self) -> dict[str, torch.Tensor]:
        """The statistics (grad, count) on the CPU."""
        assert self.stats is not None, "call reset() first"
        return self.stats.state()

    def load_state(self, state: dict[str, torch.Tensor], device: str | torch.device = "cpu") -> None:
        """Restore what :meth:`state` returned."""
        self.stats = DensifyStats(state["grad"].clone().to(device), state["count"].clone().to(device))

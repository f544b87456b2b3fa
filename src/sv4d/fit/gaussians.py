"""4D Gaussians: canonical 3D Gaussians moved by a space-time deformation field.

The canonical set is the usual 3DGS one (positions, log scales, wxyz quaternions, opacity
logits) with a view-independent colour (sigmoid of a logit; exported as degree-0 SH). A
deformation field gives each Gaussian, from its canonical position and the time, offsets to
its position, quaternion and log scale: multi-scale space-time feature planes (the K-Planes
field of :mod:`sv4d.fit.field`, whose space-time planes start at 1) decoded by a small MLP
whose last layer starts at zero, so the field starts as the identity. In the static stage the
field is skipped (time has no effect) and only the canonical Gaussians learn.

Training draws one whole image per step (a random training view at a random allowed frame),
renders it with :func:`~sv4d.fit.rasterize.rasterize_gaussians` on white and takes an L1 loss
on colour and on opacity against the mask (per-pixel weighted when the data carries weights),
plus the field's plane regularisers in the dynamic stage. Adam with per-group learning rates;
position and field rates decay exponentially over the run. Densification follows 3DGS: every
``densify_every`` steps Gaussians whose mean screen-space gradient is large are cloned (small
ones) or split in two (large ones); transparent or oversized ones are pruned.

Initialisation: Gaussians are seeded near the surface of the visual hull of the training
masks (:func:`sv4d.fit.hull.visual_hull`, union over frames), or uniformly in the scene box
[-b, b]^3 (b = camera distance x tan(fov / 2)), or at given points.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Sv4dError
from ..io.multiview import Intrinsics
from .base import STAGES, Fitter, config_from_dict
from .data import FitData
from .densify import DensifyStats, densify_and_prune, grow_and_keep, nearest_spacing, reset_opacity
from .field import KPlanesField
from .hull import scene_bound, visual_hull
from .rasterize import rasterize_gaussians

SH_C0 = 0.28209479177387814
INITS = ("hull", "box")
PER_GAUSSIAN = ("means", "log_scales", "quats", "opacity_logits", "color_logits")


@dataclass(frozen=True)
class GaussianConfig:
    """Settings of the 4D Gaussian fit (lengths relative to the scene box half-side b)."""

    init: str = "hull"                   # "hull": near the masks' visual hull surface; "box": uniform
    init_count: int = 20000
    init_opacity: float = 0.1
    hull_resolution: int = 96
    hull_dilate: int = 1                 # pixels
    hull_misses: int = 0
    hull_shell: int = 3                  # seed within this many hull cells of its surface
    resolutions: tuple[int, ...] = (32, 64)   # deformation planes
    time_resolution: int = 0             # 0: one knot per fitted frame
    features: int = 16
    hidden: int = 64
    lr_means: float = 1.6e-3             # x b, decays to lr_means * lr_final
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_color: float = 1e-2
    lr_planes: float = 0.02
    lr_mlp: float = 3e-3
    lr_final: float = 0.01               # the position learning rate decays to this fraction
    lr_field_final: float = 0.1          # the deformation field's learning rates decay to this fraction
    schedule_steps: int = 3000           # run length assumed when train_step gets no progress
    alpha_weight: float = 1.0
    ssim_weight: float = 0.0             # share of D-SSIM in the colour loss (3DGS: 0.2)
    tv_weight: float = 1e-4
    time_smooth_weight: float = 1e-3
    time_l1_weight: float = 1e-4
    densify_from: int = 200              # steps
    densify_every: int = 100             # steps
    densify_until: float = 0.6           # fraction of the run
    grad_threshold: float = 2e-4         # mean screen gradient (NDC units) that densifies
    dense_size: float = 0.03             # x b: larger Gaussians split, smaller ones clone
    prune_opacity: float = 0.005
    prune_size: float = 0.25             # x b
    max_gaussians: int = 60000
    opacity_reset_every: int = 0         # steps; 0: never
    tile: int = 8                        # rasteriser tile (pixels)

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise Sv4dError(f"unknown Gaussian init {self.init!r}; use one of {INITS}")
        if self.init_count < 1 or self.max_gaussians < 1:
            raise Sv4dError("init_count and max_gaussians must be positive")
        if not 0.0 < self.init_opacity < 1.0:
            raise Sv4dError(f"init_opacity must be in (0, 1), got {self.init_opacity}")
        if not self.resolutions or any(int(r) < 2 for r in self.resolutions):
            raise Sv4dError(f"resolutions must be integers >= 2, got {self.resolutions}")
        if self.densify_every < 1 or self.schedule_steps < 1:
            raise Sv4dError("densify_every and schedule_steps must be positive")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GaussianConfig":
        return config_from_dict(cls, d, "Gaussian")


class Deformation(nn.Module):
    """(canonical positions (N, 3), time) -> offsets to position (N, 3), quaternion (N, 4) and
    log scale (N, 3); exactly zero until trained (last layer starts at zero)."""

    def __init__(self, bound: float, resolutions: Sequence[int], time_resolution: int, features: int,
                 hidden: int, seed: int = 0) -> None:
        super().__init__()
        self.planes = KPlanesField(bound, resolutions, time_resolution, features, hidden=8, geo_features=1,
                                   seed=seed)
        for p in self.planes.mlp_parameters():   # the field's own decoders are not used here
            p.requires_grad_(False)
        g = torch.Generator().manual_seed(seed + 1)
        n_in = features * len(self.planes.resolutions)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 10)
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    b = 1.0 / layer.in_features ** 0.5
                    layer.weight.uniform_(-b, b, generator=g)
                    layer.bias.uniform_(-b, b, generator=g)
            self.head.weight.zero_()
            self.head.bias.zero_()

    def plane_parameters(self) -> list[nn.Parameter]:
        return self.planes.plane_parameters()

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [*self.net.parameters(), *self.head.parameters()]

    def forward(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.planes.features(x, torch.full((len(x),), float(t), device=x.device))
        d = self.head(self.net(feat))
        return d[:, :3], d[:, 3:7], d[:, 7:]

    def regularisers(self) -> dict[str, torch.Tensor]:
        return self.planes.regularisers()


class GaussianModel:
    """A fitted set of 4D Gaussians: canonical parameters and the deformation field; all that
    rendering and export need (no images)."""

    def __init__(self, config: GaussianConfig, bound: float, params: dict[str, torch.Tensor],
                 time_resolution: int, seed: int = 0) -> None:
        missing = [k for k in PER_GAUSSIAN if k not in params]
        if missing:
            raise Sv4dError(f"Gaussian parameters lack {missing}")
        self.config, self.bound, self.time_resolution = config, float(bound), int(time_resolution)
        self.params = {k: nn.Parameter(params[k].detach().clone().float()) for k in PER_GAUSSIAN}
        self.deform = Deformation(self.bound, config.resolutions, self.time_resolution, config.features,
                                  config.hidden, seed)
        self.static = False
        self.backend = "auto"

    @property
    def count(self) -> int:
        return int(self.params["means"].shape[0])

    def to(self, device: str | torch.device) -> "GaussianModel":
        self.params = {k: nn.Parameter(v.detach().to(device)) for k, v in self.params.items()}
        self.deform.to(device)
        return self

    def deformed(self, t: float) -> dict[str, torch.Tensor]:
        """Gaussians at time t (differentiable): means (N, 3), quats (N, 4) unnormalised,
        log_scales (N, 3), opacities (N,), colors (N, 3)."""
        p = self.params
        means, quats, log_scales = p["means"], p["quats"], p["log_scales"]
        if not self.static:
            dx, dq, ds = self.deform(means.detach(), t)
            means, quats, log_scales = means + dx, quats + dq, log_scales + ds
        return {"means": means, "quats": quats, "log_scales": log_scales,
                "opacities": torch.sigmoid(p["opacity_logits"]), "colors": torch.sigmoid(p["color_logits"])}

    def rasterize(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float,
                  background: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, torch.Tensor]:
        g = self.deformed(t)
        dev = g["means"].device
        return rasterize_gaussians(g["means"], g["quats"], torch.exp(g["log_scales"]), g["opacities"], g["colors"],
                                   c2w.to(dev).float(), intrinsics, background, backend=self.backend,
                                   tile=self.config.tile)

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        """One OpenGL camera (4, 4) at time t -> rgb (H, W, 3) on white, alpha (H, W), depth (H, W)
        (blending-weighted distance from the camera, 0 where empty); CPU tensors."""
        out = self.rasterize(c2w, intrinsics, t)
        return {k: out[k].cpu() for k in ("rgb", "alpha", "depth")}

    @torch.no_grad()
    def gaussians_at(self, t: float) -> dict[str, torch.Tensor]:
        """The Gaussians at time t in the 3DGS PLY parameterisation: means (N, 3), quats (N, 4)
        wxyz normalised, log_scales (N, 3), opacity_logits (N,), sh_dc (N, 3) = (rgb - 0.5) / C0."""
        g = self.deformed(t)
        q = g["quats"] / g["quats"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return {"means": g["means"].cpu(), "quats": q.cpu(), "log_scales": g["log_scales"].cpu(),
                "opacity_logits": self.params["opacity_logits"].detach().cpu(),
                "sh_dc": ((g["colors"] - 0.5) / SH_C0).cpu()}

    def state(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "bound": self.bound, "time_resolution": self.time_resolution,
                "params": {k: v.detach().cpu().clone() for k, v in self.params.items()},
                "deform": {k: v.detach().cpu().clone() for k, v in self.deform.state_dict().items()},
                "static": self.static}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "GaussianModel":
        model = cls(GaussianConfig.from_dict(state["config"]), state["bound"], state["params"],
                    state["time_resolution"])
        model.deform.load_state_dict(state["deform"])
        model.static = bool(state["static"])
        return model


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (H, W), averaged over channels, of two (H, W, 3) images in [0, 1]
    (Gaussian window, zero padding, as the 3DGS loss)."""
    x = torch.stack([a, b]).permute(0, 3, 1, 2)                           # (2, 3, H, W)
    r = torch.arange(window, dtype=a.dtype, device=a.device) - window // 2
    g = torch.exp(-r * r / (2 * sigma * sigma))
    g = (g / g.sum())
    kern = (g[:, None] * g[None, :]).expand(3, 1, window, window)
    stats = torch.cat([x, x * x, (x[0] * x[1])[None]])                   # (5, 3, H, W)
    mu_a, mu_b, aa, bb, ab = F.conv2d(stats, kern, padding=window // 2, groups=3)
    va, vb, cov = aa - mu_a ** 2, bb - mu_b ** 2, ab - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return s.mean(0)


def hull_points(data: FitData, count: int, generator: torch.Generator, resolution: int = 96, dilate_px: int = 1,
                misses: int = 0, shell: int = 3, bound: float | None = None) -> torch.Tensor:
    """``count`` points (count, 3) drawn uniformly in the cells of the masks' visual hull (union
    over frames) that lie within ``shell`` cells of its surface (0: anywhere in the hull)."""
    hull, bound = visual_hull(data, resolution, bound, dilate_px, misses)
    occ = hull.any(0)
    if shell > 0:
        outside = (~occ).float()[None, None]
        near_out = F.max_pool3d(outside, 2 * shell + 1, stride=1, padding=shell)[0, 0] > 0.5
        occ = occ & near_out
    cells = occ.reshape(-1).nonzero()[:, 0]
    pick = cells[torch.randint(len(cells), (count,), generator=generator)]
    ijk = torch.stack([pick // (resolution * resolution), (pick // resolution) % resolution, pick % resolution], -1)
    u = torch.rand(count, 3, generator=generator)
    return ((ijk.float() + u) / resolution * 2.0 - 1.0) * bound


class GaussianFitter(Fitter):
    """4D Gaussians fitted to a :class:`FitData` (see the module docstring); ``model`` is the
    :class:`GaussianModel` being fitted. ``init_points`` (M, 3): seed the Gaussians there
    instead of the configured initialisation. device: "cpu" or a CUDA device (then gsplat
    renders when installed)."""

    method = "gaussians"

    def __init__(self, data: FitData, config: GaussianConfig | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, init_points: torch.Tensor | None = None) -> None:
        self.data, self.config, self.seed = data, config or GaussianConfig(), int(seed)
        cfg = self.config
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise Sv4dError(f"unknown device {device!r}: {e}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise Sv4dError("a CUDA device was asked for but torch sees no GPU; use device='cpu'")
        self.generator = torch.Generator().manual_seed(self.seed)
        bound = scene_bound(data.c2w, data.intrinsics)
        if init_points is not None:
            pts = torch.as_tensor(init_points).detach().float().cpu()
            if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0 or not torch.isfinite(pts).all():
                raise Sv4dError(f"init_points must be a finite (M, 3) tensor with M >= 1, got {tuple(pts.shape)}")
        elif cfg.init == "hull":
            pts = hull_points(data, cfg.init_count, self.generator, cfg.hull_resolution, cfg.hull_dilate,
                              cfg.hull_misses, cfg.hull_shell, bound)
        else:
            pts = (torch.rand(cfg.init_count, 3, generator=self.generator) * 2 - 1) * bound
        spacing = nearest_spacing(pts).clamp(1e-3 * bound, 0.05 * bound)
        n = len(pts)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        params = {"means": pts, "log_scales": spacing.log()[:, None].repeat(1, 3), "quats": quats,
                  "opacity_logits": torch.full((n,), math.log(cfg.init_opacity / (1 - cfg.init_opacity))),
                  "color_logits": 0.1 * torch.randn(n, 3, generator=self.generator)}
        time_res = cfg.time_resolution or max(len(data.times), 2)
        self.model = GaussianModel(cfg, bound, params, time_res, self.seed).to(self.device)
        self.optimizer = self._make_optimizer()
        self.stats = DensifyStats.zeros(n, self.device)
        self.stage = "dynamic"

    # ------------------------------------------------------------------ optimiser
    def _base_lrs(self) -> dict[str, float]:
        c = self.config
        return {"means": c.lr_means * self.model.bound, "log_scales": c.lr_scales, "quats": c.lr_quats,
                "opacity_logits": c.lr_opacity, "color_logits": c.lr_color, "planes": c.lr_planes,
                "mlp": c.lr_mlp}

    def _make_optimizer(self) -> torch.optim.Adam:
        lrs, m = self._base_lrs(), self.model
        groups = [{"params": [m.params[k]], "lr": lrs[k], "name": k} for k in PER_GAUSSIAN]
        groups += [{"params": m.deform.plane_parameters(), "lr": lrs["planes"], "name": "planes"},
                   {"params": m.deform.mlp_parameters(), "lr": lrs["mlp"], "name": "mlp"}]
        return torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-15)

    def _set_lrs(self, progress: float) -> None:
        p = min(1.0, max(0.0, progress))
        decay = {"means": self.config.lr_final ** p, "planes": self.config.lr_field_final ** p}
        decay["mlp"] = decay["planes"]
        lrs = self._base_lrs()
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[group["name"]] * decay.get(group["name"], 1.0)

    # ------------------------------------------------------------------ Fitter
    def set_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise Sv4dError(f"unknown stage {stage!r}; use one of {STAGES}")
        self.stage = stage
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
        gt_rgb, gt_a = data.rgb[vi, fi].to(self.device), data.alpha[vi, fi].to(self.device)
        err_rgb, err_a = (out["rgb"] - gt_rgb).abs().mean(-1), (out["alpha"] - gt_a).abs()
        if cfg.ssim_weight > 0:
            err_rgb = (1 - cfg.ssim_weight) * err_rgb + cfg.ssim_weight * (1 - ssim_map(out["rgb"], gt_rgb))
        if data.weight is not None:
            wgt = data.weight[vi, fi].to(self.device)
            err_rgb, err_a = err_rgb * wgt, err_a * wgt
        rgb_loss, alpha_loss = err_rgb.mean(), err_a.mean()
        loss = rgb_loss + cfg.alpha_weight * alpha_loss
        if not model.static:
            reg = model.deform.regularisers()
            loss = loss + cfg.tv_weight * reg["tv"] + cfg.time_smooth_weight * reg["time_smooth"] \
                + cfg.time_l1_weight * reg["time_l1"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if out["means2d"].grad is not None:
            self.stats.update(out["means2d"].grad, out["visible"], w, h)
        self.optimizer.step()
        if step >= cfg.densify_from and step % cfg.densify_every == 0 and p < cfg.densify_until:
            self._densify()
        if cfg.opacity_reset_every > 0 and step > 0 and step % cfg.opacity_reset_every == 0 \
                and p < cfg.densify_until:
            reset_opacity(self.optimizer, model.params["opacity_logits"])
        with torch.no_grad():
            psnr = -10 * torch.log10(((out["rgb"] - gt_rgb) ** 2).mean().clamp_min(1e-10))
        return {"loss": float(loss.detach()), "rgb": float(rgb_loss.detach()), "alpha": float(alpha_loss.detach()),
                "psnr": float(psnr), "gaussians": float(model.count)}

    def _densify(self) -> None:
        cfg, model = self.config, self.model
        keep, new = densify_and_prune(model.params, self.stats, self.generator, grad_threshold=cfg.grad_threshold,
                                      dense_size=cfg.dense_size * model.bound, prune_opacity=cfg.prune_opacity,
                                      prune_size=cfg.prune_size * model.bound, max_count=cfg.max_gaussians)
        model.params = grow_and_keep(self.optimizer, model.params, keep, new)
        self.stats = DensifyStats.zeros(model.count, self.device)

    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        return self.model.render(c2w, intrinsics, t)

    def gaussians_at(self, t: float) -> dict[str, torch.Tensor]:
        """See :meth:`GaussianModel.gaussians_at`."""
        return self.model.gaussians_at(t)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state(), "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "generator": self.generator.get_state(), "stage": self.stage, "stats": self.stats.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        m, model = state["model"], self.model
        try:
            model.params = {k: nn.Parameter(m["params"][k].detach().clone().float().to(self.device))
                            for k in PER_GAUSSIAN}
            model.deform.load_state_dict(m["deform"])
            self.optimizer = self._make_optimizer()
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
            self.stats = DensifyStats(state["stats"]["grad"].clone().to(self.device),
                                      state["stats"]["count"].clone().to(self.device))
            self.generator.set_state(state["generator"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise Sv4dError(f"not a Gaussian fit state, or one for other settings ({type(e).__name__}: {e})") from None
        self.set_stage(state["stage"])

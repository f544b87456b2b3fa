"""The dynamic NeRF fitter: K-Planes field, rays marched only through occupied cells, white background.

Sampling: every ray is cut by the scene box and sampled at a fixed step (one occupancy cell
by default, jittered in training); only samples that fall in an occupied cell of the ray's
frame are sent through the field. The occupancy starts as the visual hull of the training
masks (per frame) and is tightened during training to the hull cells (dilated by one cell)
whose density is still visible. Volume rendering uses optical depth sums
(T_i = exp(-sum_{j<i} sigma_j delta)) and composites on white.

Losses: weighted MSE on RGB and on alpha (rendered opacity against the mask), plane TV, time
smoothness and a pull of the space-time planes towards 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import Sv4dError
from ..io.multiview import Intrinsics
from .base import STAGES, Fitter, config_from_dict
from .data import FitData, camera_rays
from .field import KPlanesField
from .hull import cell_centres, cell_size, dilate, visual_hull


@dataclass(frozen=True)
class NerfConfig:
    resolutions: tuple[int, ...] = (32, 64, 128)
    time_resolution: int = 0          # 0: one knot per fitted frame
    features: int = 16
    hidden: int = 64
    hull_resolution: int = 128
    hull_dilate: int = 2              # pixels
    hull_misses: int = 0              # views a hull cell may fall outside (generated views: 1)
    rays: int = 4096
    lr: float = 0.02
    lr_mlp: float = 0.005
    lr_final: float = 0.1             # cosine decay to this fraction
    warmup: int = 50
    alpha_weight: float = 1.0
    tv_weight: float = 1e-4
    time_smooth_weight: float = 1e-3
    time_l1_weight: float = 1e-4
    reg_every: int = 4                # steps between regulariser terms (weighted by this)
    occupancy_every: int = 200
    occupancy_start: int = 300
    occupancy_alpha: float = 0.005    # a cell stays while one step through it is this opaque
    render_chunk: int = 16384

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NerfConfig":
        return config_from_dict(cls, d, "NeRF")


def ray_box(o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor | float, hi: torch.Tensor | float | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays (N, 3) through the box [lo, hi] (a float ``lo`` alone:
    the cube [-lo, lo]^3); far <= near means a miss."""
    if hi is None:
        lo, hi = -lo, lo
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def occupied_box(occupancy: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The world box (lo (3,), hi (3,)) around every occupied cell of (G, R^3) grids."""
    res = round(occupancy.shape[-1] ** (1 / 3))
    cube = occupancy.reshape(-1, res, res, res).any(0)
    if not bool(cube.any()):
        z = torch.zeros(3, device=occupancy.device)
        return z, z
    ext = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = cube.any(dim=other).nonzero()[:, 0]
        ext.append((int(idx[0]), int(idx[-1]) + 1))
    cell = 2 * bound / res
    lo = torch.tensor([-bound + a * cell for a, _ in ext], device=occupancy.device)
    hi = torch.tensor([-bound + b * cell for _, b in ext], device=occupancy.device)
    return lo, hi


def cell_index(x: torch.Tensor, bound: float, res: int) -> torch.Tensor:
    """Flat index of the occupancy cell of points (..., 3)."""
    i = ((x + bound) / (2 * bound) * res).long().clamp(0, res - 1)
    return (i[..., 0] * res + i[..., 1]) * res + i[..., 2]


def render_rays(field: KPlanesField, occupancy: torch.Tensor, o: torch.Tensor, d: torch.Tensor,
                t: torch.Tensor, grid_index: torch.Tensor, step: float, jitter: torch.Generator | None = None,
                stop_transmittance: float = 1e-3, segment: int = 24,
                box: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Volume-render rays on white.

    occupancy: (G, R^3) bool (flattened cells); grid_index: (N,) which grid each ray uses;
    o, d: (N, 3) origins and unit directions; t: (N,) times in [0, 1]; step: sample spacing.
    Only rays that meet ``box`` (lo, hi), by default the box around every occupied cell, are
    sampled, from where they enter it. Rays are marched ``segment`` samples at a time and stop once their transmittance falls
    below ``stop_transmittance`` (with gradients on, a density-only pass finds where each ray
    stops and only the samples before that are rendered with gradients).
    Returns rgb (N, 3), alpha (N,), depth (N,) (0 where nothing is hit)."""
    n_all, dev = len(o), o.device
    res = round(occupancy.shape[1] ** (1 / 3))
    bound = field.bound
    offs_all = (torch.rand(n_all, 1, generator=jitter).to(dev) if jitter is not None
                else torch.full((n_all, 1), 0.5, device=dev))
    lo, hi = occupied_box(occupancy, bound) if box is None else box
    near, far = ray_box(o, d, lo, hi)
    rays = (far > near).nonzero()[:, 0]  # only rays that meet the occupied box are marched
    o, d, t, grid_index, near, far = o[rays], d[rays], t[rays], grid_index[rays], near[rays], far[rays]
    n = len(rays)
    s = max(1, int(math.ceil(float((hi - lo).norm()) / step)) + 1)
    z = near[:, None] + (torch.arange(s, dtype=o.dtype, device=dev) + offs_all[rays]) * step  # (N, S)
    valid = z < far[:, None]
    pts = o[:, None] + d[:, None] * z[..., None]
    cells = cell_index(pts, bound, res) + grid_index[:, None] * res ** 3
    mask = valid & occupancy.reshape(-1)[cells]
    grad = torch.is_grad_enabled()
    with torch.no_grad():
        trans = torch.ones(n, device=dev)
        rgb = torch.zeros(n, 3, device=dev)
        depth = torch.zeros(n, device=dev)
        for s0 in range(0, s, segment):
            m = mask[:, s0:s0 + segment]
            m &= (trans > stop_transmittance)[:, None]  # also trims ``mask`` for the gradient pass
            r, k = m.nonzero(as_tuple=True)
            if len(r) == 0:
                if not bool((trans > stop_transmittance).any()):
                    mask[:, s0 + segment:] = False
                    break
                continue
            sig, col = field(pts[r, s0 + k], t[r], with_color=not grad)
            tau = torch.zeros(n, m.shape[1], device=dev).index_put((r, k), sig * step)
            if not grad:
                tr = trans[:, None] * torch.exp(-(torch.cumsum(tau, 1) - tau))
                w = tr * (1 - torch.exp(-tau))
                rgb.index_add_(0, r, w[r, k][:, None] * col)
                depth += (w * z[:, s0:s0 + m.shape[1]]).sum(1)
            trans = trans * torch.exp(-tau.sum(1))
    if not grad:
        return _scatter(n_all, rays, rgb + trans[:, None], 1 - trans, depth)
    ray_id, sample_id = mask.nonzero(as_tuple=True)
    if len(ray_id) == 0:
        zero = torch.zeros(n, device=dev) + 0 * field.sigma_net[0].bias.sum()
        return _scatter(n_all, rays, torch.ones(n, 3, device=dev) + zero[:, None], zero, zero)
    sigma, color = field(pts[ray_id, sample_id], t[ray_id])
    tau = torch.zeros(n, s, device=dev).index_put((ray_id, sample_id), sigma * step)
    tr = torch.exp(-(torch.cumsum(tau, 1) - tau))
    w = tr * (1 - torch.exp(-tau))
    rgb = torch.zeros(n, 3, device=dev).index_add(0, ray_id, w[ray_id, sample_id][:, None] * color)
    alpha = w.sum(1)
    return _scatter(n_all, rays, rgb + (1 - alpha[:, None]), alpha, (w * z).sum(1))


def _scatter(n: int, rays: torch.Tensor, rgb: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor
             ) -> dict[str, torch.Tensor]:
    """Results of the marched rays into all n rays (the others: white, empty)."""
    dev = rgb.device
    return {"rgb": torch.ones(n, 3, device=dev, dtype=rgb.dtype).index_put((rays,), rgb),
            "alpha": torch.zeros(n, device=dev, dtype=alpha.dtype).index_put((rays,), alpha),
            "depth": torch.zeros(n, device=dev, dtype=depth.dtype).index_put((rays,), depth)}


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """bool tensor -> uint8 tensor of its bits (8x smaller in a checkpoint)."""
    return torch.from_numpy(np.packbits(mask.reshape(-1).numpy()))


def unpack_bits(bits: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits.numpy(), count=n).astype(bool)).reshape(shape)


class DynamicNerf:
    """A fitted dynamic NeRF: the field, the per-frame occupancy and the frames' times; all that
    rendering and export need (no images)."""

    def __init__(self, config: NerfConfig, bound: float, hull: torch.Tensor, times: torch.Tensor,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.config, self.bound, self.hull = config, float(bound), hull.to(self.device)
        self.times = times.float().to(self.device)
        f = len(self.times)
        self.occupancy = self.hull.reshape(f, -1).clone()
        self.step_size = cell_size(self.bound, config.hull_resolution)
        self.field = KPlanesField(self.bound, config.resolutions, config.time_resolution or max(f, 2),
                                  config.features, config.hidden, seed=seed).to(self.device)

    @torch.no_grad()
    def update_occupancy(self, frames: Sequence[int]) -> None:
        """Keep the hull cells (dilated by one cell) whose density makes one step visible."""
        res = self.config.hull_resolution
        c = cell_centres(self.bound, res, self.device)
        for fi in frames:
            hull = self.hull[fi].reshape(-1)
            idx = hull.nonzero()[:, 0]
            ix, iy, iz = idx // (res * res), (idx // res) % res, idx % res
            pts = torch.stack([c[ix], c[iy], c[iz]], -1)
            t = self.times[fi].expand(len(pts))
            sigma = torch.cat([self.field(pts[i:i + 262144], t[i:i + 262144], with_color=False)[0]
                               for i in range(0, len(pts), 262144)] or [torch.zeros(0, device=self.device)])
            keep = torch.zeros(res ** 3, dtype=torch.bool, device=self.device)
            keep[idx] = (1 - torch.exp(-sigma * self.step_size)) > self.config.occupancy_alpha
            keep = F.max_pool3d(keep.reshape(1, 1, res, res, res).float(), 3, 1, 1).reshape(-1) > 0.5
            self.occupancy[fi] = keep & hull
        self._box = None

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The box around the occupied cells of every frame (cached until the occupancy changes)."""
        if getattr(self, "_box", None) is None:
            self._box = occupied_box(self.occupancy, self.bound)
        return self._box

    def occupancy_at(self, t: float) -> torch.Tensor:
        """(R^3,) occupancy at time t: the union of the two nearest fitted frames' grids
        (the first frame's alone while the field is static)."""
        times = self.times
        if self.field.static or len(times) == 1:
            return self.occupancy[0]
        j = int(torch.searchsorted(times.cpu(), torch.tensor(float(t))).clamp(1, len(times) - 1))
        return self.occupancy[j - 1] | self.occupancy[j]

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        """One OpenGL camera (4, 4) at time t -> rgb (H, W, 3) on white, alpha (H, W), depth (H, W)."""
        o, d = camera_rays(c2w.cpu().reshape(1, 4, 4), intrinsics)
        o, d = o.reshape(-1, 3).to(self.device), d.reshape(-1, 3).to(self.device)
        occ = self.occupancy_at(t)[None]
        n, chunk = len(o), self.config.render_chunk
        tt = torch.full((n,), float(t), device=self.device)
        zero = torch.zeros(n, dtype=torch.long, device=self.device)
        parts = [render_rays(self.field, occ, o[i:i + chunk], d[i:i + chunk], tt[i:i + chunk], zero[i:i + chunk],
                             self.step_size) for i in range(0, n, chunk)]
        h, w = intrinsics.height, intrinsics.width
        return {k: torch.cat([p[k] for p in parts]).reshape(h, w, *parts[0][k].shape[1:]).cpu() for k in parts[0]}

    @torch.no_grad()
    def density(self, points: torch.Tensor, t: float) -> torch.Tensor:
        """Density at world points (P, 3) and time t (0 outside the occupied cells)."""
        points = points.to(self.device)
        occ = self.occupancy_at(t)
        keep = (points.abs() <= self.bound).all(-1)
        keep &= occ[cell_index(points, self.bound, self.config.hull_resolution)]
        out = torch.zeros(len(points), device=self.device)
        if keep.any():
            n = int(keep.sum())
            out[keep] = self.field(points[keep], torch.full((n,), float(t), device=self.device), with_color=False)[0]
        return out.cpu()

    @torch.no_grad()
    def color(self, points: torch.Tensor, t: float) -> torch.Tensor:
        """Colour (P, 3) in [0, 1] at world points (P, 3) and time t."""
        points = points.to(self.device)
        return self.field(points, torch.full((len(points),), float(t), device=self.device))[1].cpu()

    def state(self) -> dict[str, Any]:
        """Field weights, packed occupancy bits and times (the hull is the data's, rebuilt on resume)."""
        return {"config": asdict(self.config), "bound": self.bound, "times": self.times.clone(),
                "occupancy": pack_bits(self.occupancy.cpu()), "field": self.field.state_dict(), "static": self.field.static}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | torch.device = "cpu") -> "DynamicNerf":
        config = NerfConfig.from_dict(state["config"])
        occupancy = unpack_bits(state["occupancy"], (len(state["times"]), config.hull_resolution ** 3))
        model = cls(config, state["bound"], occupancy, state["times"], device=device)
        model.field.load_state_dict(state["field"])
        model.field.static = bool(state["static"])
        return model


class NerfFitter(Fitter):
    """Dynamic NeRF fitted to a :class:`FitData` (see the module docstring); ``model`` is the
    :class:`DynamicNerf` being fitted."""

    method = "nerf"

    def __init__(self, data: FitData, config: NerfConfig | None = None, device: str = "cpu", seed: int = 0,
                 hull: torch.Tensor | None = None, bound: float | None = None) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise Sv4dError("CUDA was asked for but torch sees no CUDA device")
        self.data, self.config, self.seed = data, config or NerfConfig(), seed
        cfg = self.config
        v, f, h, w = data.shape
        if hull is None:
            hull, bound = visual_hull(data, cfg.hull_resolution, bound, cfg.hull_dilate, cfg.hull_misses)
        self.model = DynamicNerf(cfg, bound, hull, data.times, seed, self.device)
        field = self.model.field
        self.optimizer = torch.optim.Adam(
            [{"params": field.plane_parameters(), "lr": cfg.lr},
             {"params": field.mlp_parameters(), "lr": cfg.lr_mlp}], betas=(0.9, 0.99), eps=1e-15)
        self.generator = torch.Generator().manual_seed(seed)
        self.stage = "dynamic"
        o, d = camera_rays(data.c2w, data.intrinsics)
        dev = self.device
        self.origins, self.dirs = o.reshape(v, -1, 3).to(dev), d.reshape(v, -1, 3).to(dev)
        self._rgb, self._alpha = data.rgb.to(dev), data.alpha.to(dev)
        self._times = data.times.to(dev)
        self._hw = h * w
        # Pixels whose rays can meet the hull: the masks dilated one pixel beyond the carving.
        cand = dilate(data.alpha > 0, cfg.hull_dilate + 1)  # (V, F, H, W)
        self._candidates = [cand[:, fi].reshape(-1).nonzero()[:, 0] for fi in range(f)]
        self._pool_key: tuple[int, ...] | None = None

    def set_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise Sv4dError(f"unknown stage {stage!r}; use one of {STAGES}")
        self.stage = stage
        self.model.field.static = stage == "static"

    def _lr_factor(self, step: int, progress: float) -> float:
        cfg = self.config
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        p = min(1.0, max(0.0, progress))
        return cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * p))

    def _pool(self, frames: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame, flat view*pixel id) of every candidate ray of ``frames``."""
        key = tuple(frames)
        if key != self._pool_key:
            ids = [self._candidates[fi] for fi in frames]
            self._pool_frames = torch.cat([torch.full((len(c),), fi) for fi, c in zip(frames, ids)])
            self._pool_ids = torch.cat(ids)
            self._pool_key = key
            if len(self._pool_ids) == 0:
                raise Sv4dError("the chosen frames have empty object masks in every view")
        return self._pool_frames, self._pool_ids

    def train_step(self, step: int, frames: Sequence[int], progress: float) -> dict[str, float]:
        cfg, data, field = self.config, self.data, self.model.field
        pool_f, pool_ids = self._pool(frames)
        pick = torch.randint(len(pool_ids), (cfg.rays,), generator=self.generator)
        fi, flat = pool_f[pick].to(self.device), pool_ids[pick].to(self.device)
        vi, pix = flat // self._hw, flat % self._hw
        out = render_rays(field, self.model.occupancy, self.origins[vi, pix], self.dirs[vi, pix], self._times[fi], fi,
                          self.model.step_size, self.generator, box=self.model.box())
        w = data.shape[3]
        py, px = pix // w, pix % w
        gt_rgb, gt_a = self._rgb[vi, fi, py, px], self._alpha[vi, fi, py, px]
        wgt = (data.weight.to(self.device)[vi, fi, py, px] if data.weight is not None else torch.ones_like(gt_a))
        rgb_loss = (wgt[:, None] * (out["rgb"] - gt_rgb) ** 2).mean()
        alpha_loss = (wgt * (out["alpha"] - gt_a) ** 2).mean()
        loss = rgb_loss + cfg.alpha_weight * alpha_loss
        if step % cfg.reg_every == 0:  # the plane regularisers touch every plane cell: not every step
            reg = field.regularisers()
            loss = loss + cfg.reg_every * (cfg.tv_weight * reg["tv"] + cfg.time_smooth_weight * reg["time_smooth"]
                                           + cfg.time_l1_weight * reg["time_l1"])
        factor = self._lr_factor(step, progress)
        for group, base in zip(self.optimizer.param_groups, (cfg.lr, cfg.lr_mlp)):
            group["lr"] = base * factor
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if step >= cfg.occupancy_start and (step - cfg.occupancy_start) % cfg.occupancy_every == 0:
            self.model.update_occupancy(frames)
        with torch.no_grad():
            psnr = -10 * torch.log10(((out["rgb"] - gt_rgb) ** 2).mean().clamp_min(1e-10))
        return {"loss": loss.item(), "rgb": rgb_loss.item(), "alpha": alpha_loss.item(), "psnr": psnr.item()}

    def render(self, c2w: torch.Tensor, intrinsics: Intrinsics, t: float) -> dict[str, torch.Tensor]:
        return self.model.render(c2w, intrinsics, t)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "stage": self.stage}

    def load_state(self, state: dict[str, Any]) -> None:
        m = state["model"]
        self.model.field.load_state_dict(m["field"])
        self.model.occupancy = unpack_bits(m["occupancy"], tuple(self.model.occupancy.shape)).to(self.device)
        self.model._box = None
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.set_stage(state["stage"])

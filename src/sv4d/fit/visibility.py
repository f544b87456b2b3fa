"""Soft visibility weights: how much a generated view's pixel should count in the fit.

A generated view invents what the reference views (the real input) never showed. Following
the soft visibility mask of SV3D, a surface point seen in a generated view counts by how well
the nearest reference camera sees it. What is implemented, per pixel of every non-reference
view and frame:

1. the current fit is rendered from that view: opacity, and depth -> the surface point p;
   its normal n comes from the cross product of the depth map's neighbouring points;
2. the reference camera whose viewing direction is closest to this view's is chosen; p is
   projected into it and compared with that camera's own rendered depth (a shadow-map test:
   p is hidden when it lies more than ``tolerance`` behind the reference surface);
3. visibility = max(0, n . (c_ref - p) / |c_ref - p|) when not hidden, else 0;
   weight = floor + (1 - floor) * visibility on the object (opacity > 0.5), 1 elsewhere, so
   the background and the mask still count fully.

Reference views keep weight 1. The weights are recomputed as the fit improves (at the start of
the dynamic stage, from the static shape; then once every frame takes part, per frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..cameras import Intrinsics, camera_rays, project
from .data import FitData
from .render import Renderable


def _normals(points: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) surface points -> unit normals (H, W, 3) from central differences (edges: one-sided)."""
    px = torch.nn.functional.pad(points.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    dx = px[1:-1, 2:] - px[1:-1, :-2]
    dy = px[2:, 1:-1] - px[:-2, 1:-1]
    n = torch.cross(dx, dy, dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def view_weights(
    model: Renderable,
    c2w: torch.Tensor,
    ref_c2w: torch.Tensor,
    intr: Intrinsics,
    t: float,
    floor: float = 0.2,
    tolerance: float = 0.03,
) -> torch.Tensor:
    """Weights (H, W) for one generated view (c2w (4, 4)) at time t, given one reference camera."""
    out = model.render(c2w, intr, t)
    o, d = camera_rays(c2w[None], intr)
    p = o[0] + d[0] * out["depth"][..., None]
    n = _normals(p)
    cam = c2w[:3, 3]  # camera centre
    n = torch.where(((n * (cam - p)).sum(-1, keepdim=True) < 0), -n, n)  # face the viewing camera
    ref_c = ref_c2w[:3, 3]
    to_ref = ref_c - p
    cos = ((n * to_ref).sum(-1) / to_ref.norm(dim=-1).clamp_min(1e-9)).clamp(0, 1)
    ref = model.render(ref_c2w, intr, t)
    uv, z = project(p.reshape(-1, 3), ref_c2w[None], intr)
    uv, z = uv[0], z[0]
    h, w = out["alpha"].shape
    ui = uv[:, 0].floor().long().clamp(0, w - 1)
    vi = uv[:, 1].floor().long().clamp(0, h - 1)
    # reference depth is a distance along the ray; turn it into depth along the viewing axis
    _, ref_d = camera_rays(ref_c2w[None], intr)
    fwd = -ref_c2w[:3, 2]
    ref_z = (ref["depth"] * (ref_d[0] @ fwd)).reshape(-1)[vi * w + ui]
    ref_hit = ref["alpha"].reshape(-1)[vi * w + ui] > 0.5
    hidden = ref_hit & (z > ref_z + tolerance)
    vis = torch.where(hidden.reshape(h, w), torch.zeros_like(cos), cos)
    on_object = out["alpha"] > 0.5
    return torch.where(on_object, floor + (1 - floor) * vis, torch.ones_like(vis))


def visibility_weights(
    model: Renderable,
    data: FitData,
    reference_views: Sequence[int],
    frames: Sequence[int] | None = None,
    floor: float = 0.2,
) -> torch.Tensor:
    """(V, F, H, W) weights for every fitted view and frame; ``reference_views`` are positions
    into ``data.views``. With ``frames`` given, only those frames are rendered and each other
    frame takes the weights of the nearest rendered one."""
    v, f, h, w = data.shape
    refs = list(reference_views)
    weights = torch.ones(v, f, h, w)
    if not refs or len(refs) == v:
        return weights
    fwd = -data.c2w[:, :3, 2]
    rendered = list(range(f)) if frames is None else sorted(set(frames))
    for vi in range(v):
        if vi in refs:
            continue
        ref = max(refs, key=lambda r: float(fwd[vi] @ fwd[r]))
        per = {
            fi: view_weights(model, data.c2w[vi], data.c2w[ref], data.intrinsics, float(data.times[fi]), floor)
            for fi in rendered
        }
        for fi in range(f):
            near = min(rendered, key=lambda r: abs(r - fi))
            weights[vi, fi] = per[near]
    return weights

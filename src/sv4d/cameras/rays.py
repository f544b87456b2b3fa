"""Rays and projection for OpenGL cameras (PyTorch, batched over cameras).

Cameras are ``c2w`` (V, 4, 4) OpenGL camera-to-world matrices (looking along -Z, +Y up) and one
:class:`~sv4d.cameras.intrinsics.Intrinsics`; pixel (u, v) has its centre at (u + 0.5, v + 0.5)
and v grows downwards.
"""

from __future__ import annotations

import torch

from .intrinsics import Intrinsics
from .orbit import GL_TO_CV


def camera_rays(c2w: torch.Tensor, intr: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of OpenGL cameras.

    c2w: (V, 4, 4). Returns origins and unit directions, each (V, H, W, 3) float32.
    """
    c2w = c2w.float()
    v_, u_ = torch.meshgrid(
        torch.arange(intr.height, dtype=torch.float32) + 0.5,
        torch.arange(intr.width, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    d_cam = torch.stack([(u_ - intr.cx) / intr.fx, -(v_ - intr.cy) / intr.fy, -torch.ones_like(u_)], -1)
    d = torch.einsum("vij,hwj->vhwi", c2w[:, :3, :3], d_cam)
    d = d / d.norm(dim=-1, keepdim=True)
    o = c2w[:, None, None, :3, 3].expand_as(d)
    return o.contiguous(), d.contiguous()


def project(points: torch.Tensor, c2w: torch.Tensor, intr: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """World points (..., 3) into OpenGL cameras (V, 4, 4): pixel coordinates (V, ..., 2) with
    pixel centres at +0.5, and depth along the viewing axis (V, ...) (positive in front)."""
    w2c = torch.linalg.inv(c2w.float())
    flat = points.reshape(-1, 3)
    cam = torch.einsum("vij,pj->vpi", w2c[:, :3, :3], flat) + w2c[:, None, :3, 3]
    z = -cam[..., 2]
    zs = z.clamp_min(1e-6)
    u = intr.fx * cam[..., 0] / zs + intr.cx
    v = -intr.fy * cam[..., 1] / zs + intr.cy
    lead = points.shape[:-1]
    return torch.stack([u, v], -1).reshape(len(c2w), *lead, 2), z.reshape(len(c2w), *lead)


def world_to_camera_opencv(c2w: torch.Tensor) -> torch.Tensor:
    """(4, 4) OpenGL camera-to-world -> (4, 4) float32 OpenCV world-to-camera (+Z forward, +Y down),
    inverted in float64."""
    flip = torch.tensor(GL_TO_CV.diagonal(), dtype=torch.float64, device=c2w.device)  # scales the columns
    return torch.linalg.inv(c2w.double() * flip[None, :]).to(torch.float32)


def scene_bound(c2w: torch.Tensor, intr: Intrinsics) -> float:
    """Half side of the box [-b, b]^3 that every camera (V, 4, 4) looking at the origin sees whole:
    ``b = min_v d_v tan(fov / 2)`` with the smaller of the two fields of view."""
    dist = c2w[:, :3, 3].norm(dim=-1)
    half = min(intr.width / (2 * intr.fx), intr.height / (2 * intr.fy))
    return float(dist.min()) * half

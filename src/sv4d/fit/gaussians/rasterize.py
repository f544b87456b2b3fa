"""Differentiable 3D Gaussian splatting: a tile-based pure-PyTorch rasteriser that is fast on
the CPU, and gsplat behind the same function for CUDA tensors when it is installed.

The maths is the standard 3DGS one. Each Gaussian (mean ``mu``, covariance
``Sigma = R S S^T R^T``) is projected with the EWA approximation
``Sigma' = J W Sigma W^T J^T + 0.3 I`` (pixels^2; ``W`` the world-to-camera rotation, ``J`` the
Jacobian of the pinhole projection at the mean), and pixels are composited front to back
in order of camera depth: ``alpha_i = min(0.99, o_i exp(-d^T Sigma'^-1 d / 2))``, contributions
with ``alpha_i < 1/255`` are skipped, ``C = sum_i c_i alpha_i T_i + T_end * background`` with
``T_i = prod_{j<i} (1 - alpha_j)``. Gaussians whose mean is not beyond the near plane are culled.
Pixel (u, v) has its centre at (u + 0.5, v + 0.5).

CPU algorithm: the image is cut into square tiles; each Gaussian is listed in every tile that
its support box overlaps (the axis-aligned box of the ellipse where ``alpha >= 1/255``, i.e.
``sqrt(2 ln(255 o))`` standard deviations, about 3.3 at full opacity and fewer for faint
Gaussians, so no pixel that the per-pixel definition would blend is ever missed). The
(tile, Gaussian) pairs are sorted by tile then depth and packed into padded (tiles, K) tables,
tiles of similar K together, and every table is processed at once: Gaussian exponents by one
batched matrix product, transmittance by ``cumprod``, colours by another matrix product. The
backward pass is written by hand (one autograd node for all tiles), so only alpha and
transmittance are kept per (pair, pixel).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import torch

from ...cameras import Intrinsics, world_to_camera_opencv
from ...errors import Sv4dError

BACKENDS = ("auto", "torch", "gsplat")
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
LOW_PASS = 0.3  # px^2 added to the projected covariance


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) wxyz quaternions (any length > 0) -> (N, 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(-1, 3, 3)


def project_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    c2w: torch.Tensor,
    intr: Intrinsics,
    near: float = 0.01,
) -> dict[str, torch.Tensor]:
    """EWA projection of N Gaussians into one camera (differentiable).

    Returns ``mean2d`` (N, 2) pixels, ``conic`` (N, 3) = the upper triangle (a, b, c) of
    ``Sigma'^-1``, ``cov2d`` (N, 3) = (xx, xy, yy) of ``Sigma'``, ``z`` (N,) camera depth,
    ``dist`` (N,) distance from the camera centre, ``ok`` (N,) bool (in front of the near
    plane with a valid covariance).
    """
    w2c = world_to_camera_opencv(c2w.to(means.device))
    R, t = w2c[:3, :3], w2c[:3, 3]
    p = means @ R.T + t
    x, y, z = p.unbind(-1)
    ok = z > near
    zs = torch.where(ok, z, torch.ones_like(z))
    # clamp the point used for the Jacobian to a little beyond the image, as 3DGS does
    tan_x, tan_y = 0.5 * intr.width / intr.fx, 0.5 * intr.height / intr.fy
    lim_xp, lim_xn = (intr.width - intr.cx) / intr.fx + 0.3 * tan_x, intr.cx / intr.fx + 0.3 * tan_x
    lim_yp, lim_yn = (intr.height - intr.cy) / intr.fy + 0.3 * tan_y, intr.cy / intr.fy + 0.3 * tan_y
    tx = (x / zs).clamp(-lim_xn, lim_xp) * zs
    ty = (y / zs).clamp(-lim_yn, lim_yp) * zs
    zero = torch.zeros_like(zs)
    J = torch.stack([intr.fx / zs, zero, -intr.fx * tx / zs**2, zero, intr.fy / zs, -intr.fy * ty / zs**2], -1).reshape(
        -1, 2, 3
    )
    M = quat_to_rotmat(quats) * scales[:, None, :]  # R S
    T = J @ (R @ M)  # (N, 2, 3)
    cov = T @ T.transpose(1, 2)
    cxx, cxy, cyy = cov[:, 0, 0] + LOW_PASS, cov[:, 0, 1], cov[:, 1, 1] + LOW_PASS
    det = cxx * cyy - cxy * cxy
    ok = ok & (det > 0)
    det = torch.where(ok, det, torch.ones_like(det))
    conic = torch.stack([cyy / det, -cxy / det, cxx / det], -1)
    mean2d = torch.stack([intr.fx * x / zs + intr.cx, intr.fy * y / zs + intr.cy], -1)
    return {
        "mean2d": mean2d,
        "conic": conic,
        "cov2d": torch.stack([cxx, cxy, cyy], -1),
        "z": z,
        "dist": p.norm(dim=-1),
        "ok": ok,
    }


# ----------------------------------------------------------------------------- binning


def _bin(
    mean2d: torch.Tensor,
    cov2d: torch.Tensor,
    opac: torch.Tensor,
    z: torch.Tensor,
    ok: torch.Tensor,
    width: int,
    height: int,
    tile: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which tiles each Gaussian touches. Returns (pair_gaussian, tile_start, tile_count,
    visible): pair_gaussian (P,) Gaussian ids sorted by tile then depth; tile_start/count
    (TY*TX,) into it; visible (N,) bool."""
    with torch.no_grad():
        o = opac.clamp(max=1.0)
        keep = ok & (o >= ALPHA_MIN)
        r = torch.sqrt(2.0 * torch.log((255.0 * o).clamp_min(1.0)))  # support in std devs
        hx, hy = r * cov2d[:, 0].clamp_min(0).sqrt(), r * cov2d[:, 2].clamp_min(0).sqrt()
        u, v = mean2d[:, 0], mean2d[:, 1]
        big = float(4 * max(width, height))  # avoid int overflow
        x0 = torch.ceil(u - hx - 0.5).clamp(-1, big).long().clamp_min(0)
        x1 = torch.floor(u + hx - 0.5).clamp(-big, width).long().clamp_max(width - 1)
        y0 = torch.ceil(v - hy - 0.5).clamp(-1, big).long().clamp_min(0)
        y1 = torch.floor(v + hy - 0.5).clamp(-big, height).long().clamp_max(height - 1)
        keep &= (x0 <= x1) & (y0 <= y1) & torch.isfinite(u) & torch.isfinite(v)
        ids = keep.nonzero().squeeze(1)
        ids = ids[torch.argsort(z[ids], stable=True)]  # depth order
        tx0, tx1, ty0, ty1 = x0[ids] // tile, x1[ids] // tile, y0[ids] // tile, y1[ids] // tile
        nx = tx1 - tx0 + 1
        count = nx * (ty1 - ty0 + 1)
        owner = torch.repeat_interleave(torch.arange(ids.numel(), device=ids.device), count)
        first = torch.cumsum(count, 0) - count
        k = torch.arange(owner.numel(), device=ids.device) - first[owner]
        TX = (width + tile - 1) // tile
        TY = (height + tile - 1) // tile
        tiles = (ty0[owner] + k // nx[owner]) * TX + tx0[owner] + k % nx[owner]
        tiles, order = torch.sort(tiles, stable=True)  # keeps depth order
        pair_g = ids[owner[order]]
        tile_count = torch.bincount(tiles, minlength=TX * TY)
        tile_start = torch.cumsum(tile_count, 0) - tile_count
        visible = torch.zeros_like(ok)
        visible[ids] = True
    return pair_g, tile_start, tile_count, visible


def _groups(
    tile_start: torch.Tensor, tile_count: torch.Tensor, pair_g: torch.Tensor, pad_id: int, tile_px: int, budget: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pack non-empty tiles into padded tables of similar length: list of (tile ids (Tb,),
    Gaussian ids (Tb, K) with ``pad_id`` as padding), each table at most ``budget`` (pair, pixel)
    entries where possible."""
    counts = tile_count.tolist()
    nonempty = sorted((c, i) for i, c in enumerate(counts) if c > 0)[::-1]
    out, cur, cur_k = [], [], 0
    for c, i in nonempty:
        if cur and (c * 1.5 < cur_k or (len(cur) + 1) * cur_k * tile_px > budget):
            out.append((cur, cur_k))
            cur = []
        if not cur:
            cur_k = c
        cur.append(i)
    if cur:
        out.append((cur, cur_k))
    tables = []
    dev = pair_g.device
    for tiles, k in out:
        t = torch.tensor(tiles, device=dev)
        ar = torch.arange(k, device=dev)
        pos = tile_start[t][:, None] + ar
        real = ar[None, :] < tile_count[t][:, None]
        gid = torch.where(real, pair_g[pos.clamp_max(max(pair_g.numel() - 1, 0))], torch.full_like(pos, pad_id))
        tables.append((t, gid))
    return tables


def _pixel_basis(tiles: torch.Tensor, tx_count: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates relative to each tile's centre: returns the tile centres
    (Tb, 2) and the basis Q (tile*tile, 6) = [1, x, y, x^2, xy, y^2] of the local coordinates."""
    a = torch.arange(tile, dtype=torch.float32, device=tiles.device) + 0.5 - tile / 2.0
    yy, xx = torch.meshgrid(a, a, indexing="ij")
    x, y = xx.reshape(-1), yy.reshape(-1)
    Q = torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y], -1)
    centre = torch.stack(
        [(tiles % tx_count).float() * tile + tile / 2.0, (tiles // tx_count).float() * tile + tile / 2.0], -1
    )
    return centre, Q


def _power_coefficients(m: torch.Tensor, con: torch.Tensor) -> torch.Tensor:
    """Coefficients (..., 6) on [1, x, y, x^2, xy, y^2] of ``-(a dx^2 + 2 b dx dy + c dy^2) / 2``
    with dx = x - mx, dy = y - my; m (..., 2) local means, con (..., 3) conics."""
    mx, my = m.unbind(-1)
    a, b, c = con.unbind(-1)
    return torch.stack(
        [
            -0.5 * a * mx * mx - b * mx * my - 0.5 * c * my * my,
            a * mx + b * my,
            b * mx + c * my,
            -0.5 * a,
            -b,
            -0.5 * c,
        ],
        -1,
    )


# ----------------------------------------------------------------------------- compositing


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of the packed tile tables, with a hand-written backward.

    Input ``table`` (M, 6 + D): per Gaussian [mean2d (2) pixels, conic (3), opacity, features
    (D) to blend]; its last row is the padding Gaussian (opacity 0). bg (D,). Outputs: out
    (tiles, tile^2, D) blended features plus ``T_end * bg``, trans (tiles, tile^2) = T_end.
    Per table the exponent is one matrix product of per-pair coefficients (with log opacity
    folded in) with the pixel basis, transmittance one cumprod, the blend another product.
    """

    @staticmethod
    def forward(ctx, table, bg, tables, tx_count, tile, n_tiles):
        P, D = tile * tile, table.shape[1] - 6
        out = bg.expand(n_tiles, P, D).clone()
        trans = table.new_ones(n_tiles, P)
        saved = []
        log_min = math.log(ALPHA_MIN)
        for tiles, gid in tables:
            centre, Q = _pixel_basis(tiles, tx_count, tile)
            g = table[gid]  # (Tb, K, 6 + D)
            coef = _power_coefficients(g[..., 0:2] - centre[:, None, :], g[..., 2:5])
            coef[..., 0] += torch.log(g[..., 5])
            alpha = torch.matmul(coef, Q.T)  # log alpha, (Tb, K, P)
            torch.nn.functional.threshold_(alpha, log_min, -math.inf)  # alpha < 1/255 -> 0
            alpha.exp_().clamp_(max=ALPHA_MAX)
            Tall = torch.empty(alpha.shape[0], alpha.shape[1] + 1, P, dtype=alpha.dtype, device=alpha.device)
            Tall[:, 0] = 1.0
            torch.sub(1.0, alpha, out=Tall[:, 1:])
            Tall.cumprod_(1)  # T before each, then T_end
            w = alpha * Tall[:, :-1]
            res = torch.matmul(w.transpose(1, 2), g[..., 6:])  # (Tb, P, D)
            t_end = Tall[:, -1]
            res.add_(t_end[..., None] * bg)
            out[tiles] = res
            trans[tiles] = t_end
            saved.append((tiles, gid, alpha, w, Tall))
        ctx.saved = saved
        ctx.meta = (tx_count, tile)
        ctx.save_for_backward(table, bg, trans)
        return out, trans

    @staticmethod
    def backward(ctx, g_out, g_trans):
        table, bg, trans = ctx.saved_tensors
        tx_count, tile = ctx.meta
        D = table.shape[1] - 6
        grad = torch.zeros_like(table)
        g_trans = torch.zeros_like(trans) if g_trans is None else g_trans
        g_out = trans.new_zeros(*trans.shape, D) if g_out is None else g_out
        g_bg = (g_out * trans[..., None]).sum((0, 1)) if ctx.needs_input_grad[1] else None
        for tiles, gid, alpha, w, Tall in ctx.saved:
            centre, Q = _pixel_basis(tiles, tx_count, tile)
            g = table[gid]
            go = g_out[tiles]  # (Tb, P, D)
            g_feat = torch.matmul(w, go)  # (Tb, K, D)
            s = torch.matmul(g[..., 6:], go.transpose(1, 2))  # dL/dw, (Tb, K, P)
            tail = Tall[:, -1] * ((go * bg).sum(-1) + g_trans[tiles])  # T_end dL/dT_end
            later = w * s
            total = later.sum(1, keepdim=True).add_(tail[:, None, :])
            torch.sub(total, later.cumsum_(1), out=later)  # sum over j > k + tail
            later.div_(1.0 - alpha)
            gp = s.mul_(Tall[:, :-1]).sub_(later).mul_(alpha)  # dL/d log alpha
            gp.masked_fill_(alpha >= ALPHA_MAX, 0.0)  # clamped: no gradient
            mom = torch.matmul(gp, Q)  # (Tb, K, 6)
            mx, my = (g[..., 0:2] - centre[:, None, :]).unbind(-1)
            a, b, c = g[..., 2:5].unbind(-1)
            M0, M1, M2, M3, M4, M5 = mom.unbind(-1)
            pair = torch.cat(
                [
                    torch.stack(
                        [
                            M1 * a + M2 * b - M0 * (a * mx + b * my),
                            M1 * b + M2 * c - M0 * (b * mx + c * my),
                            M1 * mx - 0.5 * M3 - 0.5 * M0 * mx * mx,
                            M1 * my + M2 * mx - M4 - M0 * mx * my,
                            M2 * my - 0.5 * M5 - 0.5 * M0 * my * my,
                            M0 / g[..., 5].clamp_min(1e-12),
                        ],
                        -1,
                    ),
                    g_feat,
                ],
                -1,
            )
            grad.index_add_(0, gid.reshape(-1), pair.reshape(-1, pair.shape[-1]))
        ctx.saved = None
        return grad, g_bg, None, None, None, None


# ----------------------------------------------------------------------------- public API


def _check(means, quats, scales, opacities, colors, c2w) -> int:
    n = means.shape[0] if means.dim() == 2 else -1
    want = {
        "means": (means, (n, 3)),
        "quats": (quats, (n, 4)),
        "scales": (scales, (n, 3)),
        "opacities": (opacities, (n,)),
        "colors": (colors, (n, 3)),
        "c2w": (c2w, (4, 4)),
    }
    for name, (t, shape) in want.items():
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise Sv4dError(f"rasterize_gaussians: {name} must have shape {shape} (N = len(means)), got {got}")
    return n


@functools.cache
def _gsplat_available() -> bool:
    """Whether gsplat can rasterise: the package imports *and* its CUDA extension is there. gsplat
    builds the extension on first use; without a compiler it leaves ``gsplat.cuda._backend._C``
    None and its first rasterisation fails, so that case falls back to the torch rasteriser
    (with a warning, once). Asked once per process (a first build can take minutes)."""
    try:
        import gsplat  # noqa: F401
    except Exception:  # noqa: BLE001 (any import failure means: not usable)
        return False
    try:
        from gsplat.cuda._backend import _C
    except Exception as e:  # noqa: BLE001 (a build or load failure of the extension)
        _C, why = None, f"{type(e).__name__}: {e}"
    else:
        why = "its CUDA extension is not built (no prebuilt binary and no compiler)"
    if _C is None:
        warnings.warn(f"gsplat is installed but cannot rasterise ({why}); using the torch rasteriser", stacklevel=2)
        return False
    return True


def rasterize_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    c2w: torch.Tensor,
    intrinsics: Intrinsics,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    backend: str = "auto",
    near: float = 0.01,
    tile: int = 8,
    budget: int = 1 << 20,
) -> dict[str, torch.Tensor]:
    """Render N 3D Gaussians into one camera, differentiably.

    means (N, 3) world positions; quats (N, 4) wxyz rotations (normalised here); scales (N, 3)
    linear standard deviations; opacities (N,) in [0, 1]; colors (N, 3); c2w (4, 4) OpenGL
    camera-to-world; background: RGB behind everything. backend: "torch" (this module, CPU or
    GPU), "gsplat" (CUDA tensors, needs the gsplat package) or "auto" (gsplat when importable
    and the tensors are on CUDA, else torch). near: Gaussians whose camera depth is not
    beyond it are culled. tile, budget: torch backend tile size (pixels) and target
    (pair x pixel) entries per packed table.

    Returns rgb (H, W, 3), alpha (H, W), depth (H, W) = sum of blending weight x distance from
    the camera centre to the Gaussian's mean (0 where empty; divide by alpha for the mean
    surface distance), means2d: the projected means, whose ``.grad`` (reshaped to (N, 2),
    pixels) is filled by backward when the means require grad (densification statistics),
    visible (N,) bool, radii (N,) float pixels (3 sigma of the major axis; 0 when culled).
    """
    n = _check(means, quats, scales, opacities, colors, c2w)
    if backend not in BACKENDS:
        raise Sv4dError(f"unknown rasteriser backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if len(tuple(background)) != 3:
        raise Sv4dError(f"background must be 3 numbers (RGB), got {background!r}")
    if tile < 1:
        raise Sv4dError(f"tile must be a positive number of pixels, got {tile}")
    if backend == "gsplat" or (backend == "auto" and means.is_cuda and _gsplat_available()):
        if not means.is_cuda:
            raise Sv4dError("the gsplat backend needs CUDA tensors; use backend='torch' on the CPU")
        if not _gsplat_available():
            raise Sv4dError(
                "the gsplat backend needs the gsplat package with its CUDA extension built (pip install gsplat; "
                "see the warning above), or backend='torch'"
            )
        return _rasterize_gsplat(means, quats, scales, opacities, colors, c2w, intrinsics, background, near)
    W, H = intrinsics.width, intrinsics.height
    proj = project_gaussians(means, quats, scales, c2w, intrinsics, near)
    mean2d = proj["mean2d"]
    if mean2d.requires_grad:
        mean2d.retain_grad()
    pair_g, tile_start, tile_count, visible = _bin(
        mean2d.detach(), proj["cov2d"].detach(), opacities.detach(), proj["z"].detach(), proj["ok"], W, H, tile
    )
    tx_count, ty_count = (W + tile - 1) // tile, (H + tile - 1) // tile
    tables = _groups(tile_start, tile_count, pair_g, n, tile * tile, budget)
    bg = torch.tensor([*background, 0.0], dtype=means.dtype, device=means.device)
    table = torch.cat([mean2d, proj["conic"], opacities[:, None], colors, proj["dist"][:, None]], -1)
    table = torch.cat([table, table.new_zeros(1, table.shape[1])])  # the padding Gaussian
    out, trans = _Composite.apply(table, bg, tables, tx_count, tile, tx_count * ty_count)
    img = out.reshape(ty_count, tx_count, tile, tile, 4).permute(0, 2, 1, 3, 4)
    img = img.reshape(ty_count * tile, tx_count * tile, 4)[:H, :W]
    tr = trans.reshape(ty_count, tx_count, tile, tile).permute(0, 2, 1, 3).reshape(ty_count * tile, -1)[:H, :W]
    with torch.no_grad():
        cxx, cxy, cyy = proj["cov2d"].unbind(-1)
        mid, det = 0.5 * (cxx + cyy), cxx * cyy - cxy * cxy
        lam = mid + (mid * mid - det).clamp_min(0.0).sqrt()
        radii = torch.where(visible, 3.0 * lam.clamp_min(0.0).sqrt(), torch.zeros_like(lam))
    return {
        "rgb": img[..., :3],
        "alpha": 1.0 - tr,
        "depth": img[..., 3],
        "means2d": mean2d,
        "visible": visible,
        "radii": radii,
    }


def _rasterize_gsplat(means, quats, scales, opacities, colors, c2w, intr, background, near):
    """The same contract through gsplat (CUDA)."""
    from gsplat import rasterization

    w2c = world_to_camera_opencv(c2w.to(means.device))
    dist = (means @ w2c[:3, :3].T + w2c[:3, 3]).norm(dim=-1)
    K = torch.tensor(intr.K, dtype=torch.float32, device=means.device)
    bg = torch.tensor([[*background, 0.0]], dtype=torch.float32, device=means.device)
    img, alphas, meta = rasterization(
        means,
        quats,
        scales,
        opacities,
        torch.cat([colors, dist[:, None]], -1),
        w2c[None],
        K[None],
        intr.width,
        intr.height,
        near_plane=near,
        eps2d=LOW_PASS,
        packed=False,
        backgrounds=bg,
        render_mode="RGB",
    )
    mean2d = meta["means2d"]
    if mean2d.requires_grad:
        mean2d.retain_grad()
    radii = meta["radii"][0]
    if radii.dim() == 2:
        radii = radii.amax(-1)
    return {
        "rgb": img[0, ..., :3],
        "alpha": alphas[0, ..., 0],
        "depth": img[0, ..., 3],
        "means2d": mean2d,
        "visible": radii > 0,
        "radii": radii.float(),
    }

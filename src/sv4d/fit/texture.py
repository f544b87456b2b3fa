"""Texture maps for meshes: a UV atlas (:func:`uv_unwrap`, xatlas charts packed into one square
texture), texel rasterisation in UV space (:func:`uv_texels`) and baking a colour field into the
atlas (:func:`bake_texture`), averaged over frames of an animated mesh.

UV convention (glTF's): ``uv = (0, 0)`` is the top-left corner of the image, u grows to the
right, v grows down, both in [0, 1]; the centre of texel (row i, column j) of an (H, W) image is
``uv = ((j + 0.5) / W, (i + 0.5) / H)``. An image written row 0 first (PNG) is read back by a
glTF viewer with exactly these coordinates, so no flip is needed anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import Sv4dError
from ..io.arrays import as_numpy
from .mesh import point_colors

__all__ = ["UVLayout", "TexelMap", "uv_unwrap", "uv_texels", "bake_texture"]

ColorFn = Callable[[torch.Tensor], torch.Tensor]

#: candidate texels tested at once by :func:`uv_texels` (bounds its working memory to ~150 MB)
_TEXEL_BATCH = 1 << 21
#: the size (largest side of the bounding box) meshes are scaled to for xatlas
_XATLAS_EXTENT = 1000.0
#: xatlas runs uv_unwrap may make to fit the padding into the texture
_PACK_TRIES = 4


@dataclass(frozen=True)
class UVLayout:
    """A mesh cut into UV charts, packed into one square texture of ``size`` texels.

    vmap: (K,) int64 — the input vertex each output vertex comes from (vertices on chart seams
        are duplicated, so K >= the number of input vertices used by faces).
    faces: (M, 3) int32 indices into the K output vertices: the input triangles in the same
        order: ``vmap[faces] == input_faces``.
    uv: (K, 2) float32 in [0, 1], glTF convention (module docstring).
    size: the texture width and height in texels the atlas was packed for.
    """

    vmap: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    size: int


@dataclass(frozen=True)
class TexelMap:
    """The texels of a (size, size) texture whose centres lie in a UV triangle.

    pixel: (T,) int64 flat index ``row * size + col``, unique, increasing.
    face: (T,) int64 the triangle covering the texel (the lowest index where several do).
    bary: (T, 3) float32 barycentric weights of the texel centre on that triangle's corners,
        in [0, 1], summing to 1 (within 1e-6).
    size: the texture width and height.
    """

    pixel: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    size: int


# ---------------------------------------------------------------------------------------------
# input checks


def _check_size(size: Any, name: str = "size") -> int:
    try:
        s = int(size)
    except (TypeError, ValueError):
        raise Sv4dError(f"{name} must be an integer number of texels, got {size!r}") from None
    if s != size or not 8 <= s <= 16384:
        raise Sv4dError(f"{name} must be an integer from 8 to 16384 texels, got {size!r}")
    return s


def _check_padding(padding: Any) -> int:
    try:
        p = int(padding)
    except (TypeError, ValueError):
        raise Sv4dError(f"padding must be a whole number of texels, got {padding!r}") from None
    if p != padding or not 0 <= p <= 64:
        raise Sv4dError(f"padding must be a whole number of texels from 0 to 64, got {padding!r}")
    return p


def _check_faces(faces: Any, n_vertices: int, name: str) -> np.ndarray:
    f = as_numpy(faces, name)
    if f.ndim != 2 or f.shape[1] != 3:
        raise Sv4dError(f"{name} must be (M, 3) vertex indices, got shape {f.shape}")
    if len(f) == 0:
        raise Sv4dError(f"{name} is empty: there are no triangles to texture")
    if not np.issubdtype(f.dtype, np.integer):
        raise Sv4dError(f"{name} must be integer vertex indices, got {f.dtype}")
    if f.min() < 0 or f.max() >= n_vertices:
        raise Sv4dError(f"{name} index vertices outside 0..{n_vertices - 1} (got {f.min()}..{f.max()})")
    return f.astype(np.int64)


def _check_points(x: Any, name: str, width: int) -> np.ndarray:
    a = as_numpy(x, name)
    if a.ndim != 2 or a.shape[1] != width:
        raise Sv4dError(f"{name} must be (N, {width}), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise Sv4dError(f"{name} must be real numbers, got {a.dtype}")
    if not np.isfinite(a).all():
        raise Sv4dError(f"{name} contain NaN or infinity")
    return a


# ---------------------------------------------------------------------------------------------
# unwrapping


def _pack(v: np.ndarray, f: np.ndarray, resolution: int, padding: int, chart_area: float):
    """One xatlas run -> (vmap, faces, uv in xatlas texels, atlas width, atlas height)."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f)
    charts = xatlas.ChartOptions()
    charts.max_chart_area = chart_area
    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = padding
    pack.bilinear = True
    pack.blockAlign = False  # aligning charts to 4x4 blocks only pays for block-compressed textures
    pack.rotate_charts = True
    atlas.generate(charts, pack)
    if atlas.atlas_count != 1 or atlas.mesh_count != 1:
        raise Sv4dError(f"xatlas packed {atlas.atlas_count} atlases, expected one")  # pragma: no cover
    vmap, out_faces, uv = atlas.get_mesh(0)
    w, h = int(atlas.width), int(atlas.height)
    # get_mesh returns uv divided by the atlas width/height; xatlas's v is its image row (down)
    uv_px = uv.astype(np.float64) * np.array([w, h], np.float64)
    return vmap.astype(np.int64), out_faces.astype(np.int64), uv_px, w, h


def uv_unwrap(
    vertices: Any,
    faces: Any,
    *,
    resolution: int = 1024,
    padding: int = 4,
    chart_area: float = 1 / 64,
) -> UVLayout:
    """Cut a triangle mesh into charts and pack them into one (resolution, resolution) texture.

    vertices: (N, 3) positions (any units); faces: (M, 3) vertex indices (numpy or torch).
    resolution: texture width and height in texels (8..16384).
    padding: texels kept free around every chart (0..64): texel centres of two different
        charts are at least ``2 * padding + 1`` texels apart, so :func:`bake_texture`'s dilation
        by the same padding never mixes charts, and neither do bilinear filtering and the first
        mip levels.
    chart_area: no chart grows beyond this fraction of the mesh's surface area (0: no limit).
        Smaller gives more, smaller charts and a much faster unwrap; xatlas's unlimited default
        takes several seconds per 20k triangles on a smooth surface.

    xatlas lays the charts out at its own estimate of the texel density; the atlas is then
    scaled uniformly to fill the texture's width or height (xatlas is run again, at a lower
    density, in the rare case the scaled padding would fall short). Triangles of zero area,
    which xatlas leaves out, get three vertices of their own at one uv point of a neighbouring
    chart. The result is deterministic: the same input gives the same layout.

    Raises :class:`Sv4dError` for empty input, bad shapes, NaN, a mesh whose triangles all
    have zero area, or a padding that cannot fit the texture.
    """
    resolution = _check_size(resolution, "resolution")
    padding = _check_padding(padding)
    v = _check_points(vertices, "vertices", 3).astype(np.float64)
    if len(v) < 3:
        raise Sv4dError(f"a mesh needs at least 3 vertices to unwrap, got {len(v)}")
    f = _check_faces(faces, len(v), "faces")
    try:
        chart_area = float(chart_area)
    except (TypeError, ValueError):
        chart_area = math.nan
    if not 0.0 <= chart_area <= 1.0:
        raise Sv4dError(f"chart_area must be a fraction of the surface area in [0, 1], got {chart_area!r}")
    t = v[f]
    areas = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    total = float(areas.sum())
    if not total > 0:
        raise Sv4dError("every triangle of the mesh has zero area; there is nothing to unwrap")
    # xatlas works in float32 and ignores triangles below a fixed area: centre the mesh and
    # give it a large fixed extent, so only exactly degenerate triangles are ignored
    lo, hi = v.min(0), v.max(0)
    scale = _XATLAS_EXTENT / float((hi - lo).max())
    v32 = ((v - (lo + hi) / 2) * scale).astype(np.float32)
    f32 = f.astype(np.uint32)
    max_area = chart_area * total * scale**2

    # xatlas picks its texel density from the resolution it is given, but its atlas overshoots
    # that resolution by a varying amount (its estimate ignores packing losses and padding), so
    # the atlas is scaled by s to fill the texture. xatlas keeps charts >= 2 * p + 1 of its
    # texels apart; asking p = padding + 1 at 80 % of the resolution usually lands s near 1 and
    # keeps the gap >= 2 * padding + 1 texels; where it does not, the content is shrunk and
    # packed again.
    asked = padding + 1 if padding else 0
    inner = max(8, round(resolution * 0.8))
    for attempt in range(_PACK_TRIES):
        vmap, out_faces, uv_px, w, h = _pack(v32, f32, inner, asked, max_area)
        s = resolution / max(w, h)
        if padding == 0 or (2 * asked + 1) * s >= 2 * padding + 1:
            break
        inner = math.floor(inner * s * 0.97)
        if inner < 8 or attempt == _PACK_TRIES - 1:
            raise Sv4dError(
                f"cannot keep {padding} texels of padding around every chart in a {resolution}x{resolution} "
                "texture; raise the resolution, lower the padding, or raise chart_area for fewer charts"
            )
    if not np.array_equal(vmap[out_faces], f):
        raise Sv4dError("xatlas changed the mesh's triangles; cannot map the texture back")  # pragma: no cover
    uv = np.clip(uv_px * s / resolution, 0.0, 1.0)
    vmap, out_faces, uv = _place_ignored(vmap, out_faces, uv)
    return UVLayout(vmap=vmap, faces=out_faces.astype(np.int32), uv=uv.astype(np.float32), size=resolution)


def _place_ignored(vmap: np.ndarray, faces: np.ndarray, uv: np.ndarray):
    """Give the triangles xatlas ignored (zero area: all three uv equal, at (0, 0)) their own
    three vertices at one uv point — that of a charted copy of one of their corners — so they
    sample a colour of their own place on the surface and cover no texel; vertices left unused
    are dropped (the others keep their order)."""
    c = uv[faces]  # (M, 3, 2)
    lost = np.flatnonzero((c == c[:, :1]).all((1, 2)))
    if len(lost) == 0:
        return vmap, faces, uv
    if len(lost) == len(faces):
        raise Sv4dError("xatlas found no triangle with an area to unwrap (the mesh is degenerate)")
    kept = np.ones(len(faces), bool)
    kept[lost] = False
    charted = np.unique(faces[kept])
    # one charted copy per input vertex: the lowest output index
    inputs, first = np.unique(vmap[charted], return_index=True)
    anchor = np.full(int(vmap.max()) + 1, -1, np.int64)
    anchor[inputs] = charted[first]
    corner_anchor = anchor[vmap[faces[lost]]]  # (L, 3), -1 where that corner has no chart
    pick = np.argmax(corner_anchor >= 0, axis=1)  # the first corner with a charted copy
    point_of = corner_anchor[np.arange(len(lost)), pick]
    point = np.where(point_of[:, None] >= 0, uv[np.maximum(point_of, 0)], uv[faces[lost, 0]])
    new = len(vmap) + np.arange(3 * len(lost)).reshape(-1, 3)
    vmap = np.concatenate([vmap, vmap[faces[lost]].reshape(-1)])
    uv = np.concatenate([uv, np.repeat(point, 3, axis=0)])
    faces = faces.copy()
    faces[lost] = new
    used = np.unique(faces)
    remap = np.full(len(vmap), -1, np.int64)
    remap[used] = np.arange(len(used))
    return vmap[used], remap[faces], uv[used]


# ---------------------------------------------------------------------------------------------
# rasterisation in UV space


def _edge_planes(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle, the barycentric weights as affine functions of the texel-space point.

    corners: (M, 3, 2) float64 texel-space corners. Returns (coef (M, 3, 3) with
    ``w_k = coef[:, k, 0] * x + coef[:, k, 1] * y + coef[:, k, 2]``, ok (M,) bool — False for
    triangles of (near) zero area, whose coefficients are zero).
    """
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    ok = np.abs(area2) > 1e-9
    inv = np.where(ok, 1.0 / np.where(ok, area2, 1.0), 0.0)
    coef = np.empty((len(corners), 3, 3))
    # w_k is the signed area of the triangle (p, next corner, next-next corner) over the whole
    for k, (p, q) in enumerate(((b, c), (c, a), (a, b))):
        coef[:, k, 0] = (p[:, 1] - q[:, 1]) * inv
        coef[:, k, 1] = (q[:, 0] - p[:, 0]) * inv
        coef[:, k, 2] = (p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]) * inv
    return coef, ok


def _check_uv_mesh(faces: Any, uv: Any) -> tuple[np.ndarray, np.ndarray]:
    uv = _check_points(uv, "uv", 2).astype(np.float64)
    f = _check_faces(faces, len(uv), "faces")
    return f, uv


def _batches(counts: np.ndarray, budget: int):
    """Consecutive (start, stop) ranges of ``counts`` summing to at most ``budget`` (or one item)."""
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        base = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, base + budget, side="right")), start + 1)
        yield start, stop
        start = stop


def uv_texels(faces: Any, uv: Any, size: int) -> TexelMap:
    """Rasterise triangles in UV space: every texel of a (size, size) texture whose centre lies
    inside a triangle, or on its edge, with that triangle and the centre's barycentric weights.

    faces: (M, 3) indices into uv; uv: (K, 2) in the module's glTF convention (values outside
    [0, 1] are allowed; the part off the texture is dropped). Texels claimed by several
    triangles (shared edges, overlapping charts) go to the lowest triangle index. Triangles of
    zero UV area claim nothing.

    Vectorised scanline rasterisation: each triangle's bounding box is expanded into rows
    (``np.repeat``), each row's covered span is solved from the three edge functions, and the
    spans are expanded into texels a bounded batch at a time.
    """
    size = _check_size(size)
    f, uv = _check_uv_mesh(faces, uv)
    corners = uv[f] * size - 0.5  # (M, 3, 2): texel centres at integer coordinates
    coef, ok = _edge_planes(corners)
    x0 = np.clip(np.ceil(corners[..., 0].min(1)), 0, size).astype(np.int64)
    x1 = np.clip(np.floor(corners[..., 0].max(1)), -1, size - 1).astype(np.int64)
    y0 = np.clip(np.ceil(corners[..., 1].min(1)), 0, size).astype(np.int64)
    y1 = np.clip(np.floor(corners[..., 1].max(1)), -1, size - 1).astype(np.int64)
    ny = np.where(ok & (x1 >= x0), np.maximum(y1 - y0 + 1, 0), 0)

    eps = 1e-7  # barycentric slack: centres on an edge count as inside
    pixels, tris, barys = [], [], []
    for t0, t1 in _batches(ny, _TEXEL_BATCH // 4):
        # 1. one item per (triangle, bounding-box row); w_k(x) = a_k * x + r_k along the row
        n_rows = ny[t0:t1]
        tri = np.repeat(np.arange(t0, t1), n_rows)
        y = y0[tri] + (np.arange(len(tri)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows))
        c = coef[tri]
        a = c[:, :, 0]
        r = c[:, :, 1] * y[:, None] + c[:, :, 2]
        # 2. the span where every w_k >= -eps: a lower bound from each a_k > 0, an upper from a_k < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = (-eps - r) / a
        lo = np.where(a > 0, bound, -np.inf).max(1)
        hi = np.where(a < 0, bound, np.inf).min(1)
        flat_out = ((a == 0) & (r < -eps)).any(1)
        xs = np.maximum(np.ceil(lo), x0[tri]).astype(np.int64)
        xe = np.minimum(np.floor(hi), x1[tri]).astype(np.int64)
        n = np.where(flat_out, 0, np.maximum(xe - xs + 1, 0))
        # 3. the spans' texels
        for s0, s1 in _batches(n, _TEXEL_BATCH):
            k = n[s0:s1]
            rows = np.arange(s0, s1)
            x = np.repeat(xs[rows], k) + (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k))
            w = np.repeat(a[rows], k, axis=0) * x[:, None] + np.repeat(r[rows], k, axis=0)
            pixels.append(np.repeat(y[rows] * size, k) + x)
            tris.append(np.repeat(tri[rows], k))
            barys.append(np.clip(w, 0.0, 1.0).astype(np.float32))  # sums to 1 within 1e-6
    pixel = np.concatenate(pixels) if pixels else np.zeros(0, np.int64)
    tri = np.concatenate(tris) if tris else np.zeros(0, np.int64)
    bary = np.concatenate(barys) if barys else np.zeros((0, 3), np.float32)
    # several triangles on one texel (shared edges): keep the first item, the lowest triangle
    # index; duplicates are few, so only they are sorted
    count = np.bincount(pixel, minlength=size * size)
    keep = count[pixel] == 1
    dup = np.flatnonzero(~keep)
    keep[dup[np.unique(pixel[dup], return_index=True)[1]]] = True
    slot = np.full(size * size, -1, np.int64)
    slot[pixel[keep]] = np.flatnonzero(keep)
    pixel = np.flatnonzero(slot >= 0)
    item = slot[pixel]
    return TexelMap(pixel=pixel, face=tri[item], bary=bary[item], size=size)


# ---------------------------------------------------------------------------------------------
# baking


def _bary_at(faces: np.ndarray, uv: np.ndarray, size: int, pixel: np.ndarray, face: np.ndarray) -> np.ndarray:
    """(T, 3) float32 weights of the texel centres ``pixel`` on triangles ``face``, clamped to the
    triangle (a texel outside it gets the nearby point on it) and summing to 1."""
    coef, _ = _edge_planes(uv[faces[face]] * size - 0.5)
    px, py = pixel % size, pixel // size
    w = np.clip(coef[:, :, 0] * px[:, None] + coef[:, :, 1] * py[:, None] + coef[:, :, 2], 0.0, None)
    total = w.sum(1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / 3.0)
    return w.astype(np.float32)


def bake_texture(
    layout: UVLayout | tuple[Any, Any],
    frames: Sequence[tuple[Any, ColorFn]],
    size: int | None = None,
    padding: int = 4,
    chunk: int = 65536,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Bake a colour field into a texture: (size, size, 3) uint8 sRGB, row 0 at the top.

    layout: a :class:`UVLayout`, or a (faces (M, 3), uv (K, 2)) pair in the same convention.
    frames: one or more (positions, color_fn) pairs. positions: (K, 3) positions of the K
        unwrapped vertices at one frame (for a :class:`UVLayout`, ``mesh_vertices[vmap]``).
        color_fn: points (P, 3) float32 torch (on ``device``) -> (P, 3) sRGB colours in [0, 1]
        (clipped), run under ``torch.no_grad`` ``chunk`` points at a time.
    size: texture width and height; default the layout's size (1024 for a (faces, uv) pair).
    padding: texels around each chart filled by dilation (0..64).
    device: where the query points are created (default CPU).

    A texel whose centre lies in a triangle maps to the 3D point with the same barycentric
    weights; its colour is the mean over the frames of that frame's color_fn there. Texels that
    touch a chart (8-neighbours, the ones bilinear filtering reads) are evaluated the same way at
    the nearest point of the nearest chart's triangle; the rest of the ``padding`` ring copies
    the nearest chart texel, and texels further away get the mean colour (flat, so PNGs stay
    small). Raises :class:`Sv4dError` for bad shapes, NaN, or a layout that covers no texel.
    """
    from scipy import ndimage

    if isinstance(layout, UVLayout):
        faces, uv = layout.faces, layout.uv
        size = layout.size if size is None else size
    else:
        try:
            faces, uv = layout
        except (TypeError, ValueError):
            raise Sv4dError("layout must be a UVLayout or a (faces, uv) pair") from None
        size = 1024 if size is None else size
    size = _check_size(size)
    padding = _check_padding(padding)
    chunk = int(chunk)
    if chunk < 1:
        raise Sv4dError(f"chunk must be positive, got {chunk}")
    f, uv = _check_uv_mesh(faces, uv)
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence) or len(frames) == 0:
        raise Sv4dError("frames must be a non-empty sequence of (positions, color_fn) pairs")
    checked = []
    for i, item in enumerate(frames):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and callable(item[1])):
            raise Sv4dError(f"frames[{i}] must be a (positions, color_fn) pair with a callable color_fn")
        pos = _check_points(item[0], f"frames[{i}] positions", 3)
        if len(pos) != len(uv):
            raise Sv4dError(f"frames[{i}] positions must have one row per uv vertex ({len(uv)}), got {len(pos)}")
        checked.append((np.ascontiguousarray(pos, np.float32), item[1]))

    # 1. texels inside triangles
    tex = uv_texels(f, uv, size)
    if len(tex.pixel) == 0:
        raise Sv4dError(f"the UV layout covers no texel centre of a {size}x{size} texture")
    covered = np.zeros(size * size, bool)
    covered[tex.pixel] = True

    # 2. the ring of texels touching a chart: nearest point of the nearest covered texel's triangle
    dist, near = ndimage.distance_transform_edt(~covered.reshape(size, size), return_indices=True)
    dist, near = dist.reshape(-1), (near[0] * size + near[1]).reshape(-1)
    ring = np.flatnonzero((dist > 0) & (dist < 1.5)) if padding > 0 else np.zeros(0, np.int64)
    owner = np.full(size * size, -1, np.int64)
    owner[tex.pixel] = np.arange(len(tex.pixel))
    ring_face = tex.face[owner[near[ring]]]
    pixel = np.concatenate([tex.pixel, ring])
    face = np.concatenate([tex.face, ring_face])
    bary = np.concatenate([tex.bary, _bary_at(f, uv, size, ring, ring_face)])
    corner = np.ascontiguousarray(f[face].T)  # (3, T)

    # 3. colours, averaged over frames
    acc = np.zeros((len(pixel), 3), np.float64)
    for pos, fn in checked:
        points = bary[:, 0:1] * pos[corner[0]] + bary[:, 1:2] * pos[corner[1]] + bary[:, 2:3] * pos[corner[2]]
        acc += point_colors(fn, points, chunk, device)
    acc /= len(checked)

    # 4. dilation: the padding ring copies its nearest chart texel, the rest is the mean colour
    img = np.empty((size * size, 3), np.float64)
    img[:] = acc[: len(tex.pixel)].mean(0)
    img[pixel] = acc
    far = np.flatnonzero((dist >= 1.5) & (dist <= padding))
    img[far] = img[near[far]]
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8).reshape(size, size, 3)

"""UV unwrapping (xatlas), UV-space rasterisation and texture baking (sv4d.fit.texture)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage, sparse

from sv4d.errors import Sv4dError
from sv4d.fit.texture import TexelMap, UVLayout, bake_texture, uv_texels, uv_unwrap

SIZE = 256


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=3)  # 1280 triangles, radius 1


@pytest.fixture(scope="module")
def layout(sphere) -> UVLayout:
    return uv_unwrap(sphere.vertices, sphere.faces, resolution=SIZE, padding=4)


def position_color(p: torch.Tensor) -> torch.Tensor:
    """An analytic colour field: the position in [-1, 1]^3 mapped to [0, 1]."""
    return (p.clamp(-1, 1) + 1) / 2


def bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) uint8 image at uv (glTF convention, edge clamped) -> (N, C) in [0, 1]."""
    h, w = img.shape[:2]
    x, y = uv[:, 0] * w - 0.5, uv[:, 1] * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]

    def at(r, c):
        return img[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)].astype(np.float64) / 255

    top = (1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)
    bottom = (1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)
    return (1 - fy) * top + fy * bottom


def charts(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(M,) chart label per triangle: triangles sharing an output (uv) vertex share a chart."""
    m = len(faces)
    rows = np.repeat(np.arange(m), 3)
    graph = sparse.coo_matrix((np.ones(3 * m), (rows, faces.reshape(-1) + m)), shape=(m + n_vertices,) * 2)
    return sparse.csgraph.connected_components(graph, directed=False)[1][:m]


def uv_areas(faces: np.ndarray, uv: np.ndarray, size: int) -> np.ndarray:
    c = uv[faces].astype(np.float64) * size
    e1, e2 = c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


# ---------------------------------------------------------------------------------------------
# uv_unwrap


def test_unwrap_maps_every_triangle_back_to_the_input(sphere, layout):
    assert layout.size == SIZE
    assert layout.vmap.dtype == np.int64 and layout.faces.dtype == np.int32 and layout.uv.dtype == np.float32
    assert layout.uv.shape == (len(layout.vmap), 2) and layout.faces.shape == sphere.faces.shape
    np.testing.assert_array_equal(layout.vmap[layout.faces], sphere.faces)  # same triangles, same order
    assert len(layout.vmap) > len(sphere.vertices)  # seams duplicate vertices
    assert set(np.unique(layout.faces)) == set(range(len(layout.vmap)))  # no unused vertex
    assert layout.uv.min() >= 0 and layout.uv.max() <= 1
    # the atlas fills the texture along one axis
    assert layout.uv.max() > 0.9


def test_unwrap_charts_do_not_overlap_and_keep_their_padding(layout):
    f, uv = layout.faces, layout.uv
    label = charts(f, len(uv))
    assert label.max() >= 1
    area = uv_areas(f, uv, SIZE)
    for c in np.unique(label):  # each chart is one consistently wound (unflipped) sheet
        a = area[label == c]
        assert (a > 0).all() or (a < 0).all()
    # charts overlap nowhere: rasterising them one by one claims exactly the texels of the whole
    whole = uv_texels(f, uv, SIZE)
    per_chart = sum(len(uv_texels(f[label == c], uv, SIZE).pixel) for c in np.unique(label))
    assert per_chart == len(whole.pixel)
    assert abs(len(whole.pixel) - np.abs(area).sum()) < 0.02 * np.abs(area).sum()
    # texels of two different charts are at least 2 * padding + 1 apart
    owner = np.full(SIZE * SIZE, -1)
    owner[whole.pixel] = label[whole.face]
    owner = np.pad(owner.reshape(SIZE, SIZE), 16, constant_values=-1)
    gap = 2 * 4 + 1
    for dy in range(0, gap):
        for dx in range(-gap + 1, gap):
            if dx * dx + dy * dy >= gap * gap or (dy == 0 and dx <= 0):
                continue
            a, b = owner[16:-16, 16:-16], np.roll(owner, (-dy, -dx), (0, 1))[16:-16, 16:-16]
            assert not ((a >= 0) & (b >= 0) & (a != b)).any(), (dy, dx)


def test_unwrap_is_deterministic(sphere, layout):
    again = uv_unwrap(sphere.vertices, sphere.faces, resolution=SIZE, padding=4)
    np.testing.assert_array_equal(again.vmap, layout.vmap)
    np.testing.assert_array_equal(again.faces, layout.faces)
    np.testing.assert_array_equal(again.uv, layout.uv)


def test_unwrap_gives_zero_area_triangles_a_point_of_their_own():
    box = trimesh.creation.box()
    faces = np.concatenate([box.faces, [[0, 0, 1], [2, 3, 2]]])
    lay = uv_unwrap(torch.as_tensor(box.vertices), faces, resolution=64, padding=1)
    np.testing.assert_array_equal(lay.vmap[lay.faces], faces)
    for tri in lay.faces[-2:]:
        assert (lay.uv[tri] == lay.uv[tri[0]]).all()  # collapsed: covers no texel
        assert len(np.intersect1d(tri, lay.faces[:-2])) == 0
        # ... at the uv of a charted copy of one of its corners
        charted = np.flatnonzero(np.isin(np.arange(len(lay.vmap)), lay.faces[:-2]))
        same = charted[np.isin(lay.vmap[charted], lay.vmap[tri])]
        assert (lay.uv[same] == lay.uv[tri[0]]).all(1).any()


@pytest.mark.parametrize(
    "vertices, faces, match",
    [
        (np.zeros((0, 3)), np.zeros((0, 3), int), "at least 3 vertices"),
        (np.eye(3), np.zeros((0, 3), int), "empty"),
        (np.eye(3), [[0, 1, 3]], "outside"),
        (np.eye(3), [[0, 1]], r"\(M, 3\)"),
        (np.eye(3), [[0.0, 1.0, 2.0]], "integer"),
        (np.eye(4)[:, :3] * np.nan, [[0, 1, 2]], "NaN"),
        (np.zeros((3, 2)), [[0, 1, 2]], r"\(N, 3\)"),
        ([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 1, 2]], "zero area"),
    ],
)
def test_unwrap_rejects_bad_meshes(vertices, faces, match):
    with pytest.raises(Sv4dError, match=match):
        uv_unwrap(vertices, faces, resolution=64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resolution": 4}, "resolution"),
        ({"resolution": 100.5}, "resolution"),
        ({"padding": -1}, "padding"),
        ({"chart_area": 2.0}, "chart_area"),
        ({"chart_area": "big"}, "chart_area"),
    ],
)
def test_unwrap_rejects_bad_options(sphere, kwargs, match):
    with pytest.raises(Sv4dError, match=match):
        uv_unwrap(sphere.vertices, sphere.faces, **kwargs)


# ---------------------------------------------------------------------------------------------
# uv_texels


def test_texel_centres_follow_the_gltf_uv_convention():
    # a small triangle around the centre of texel (row 2, column 5) of an 8 x 8 texture
    cu, cv = (5 + 0.5) / 8, (2 + 0.5) / 8
    uv = np.array([[cu - 0.02, cv - 0.02], [cu + 0.03, cv - 0.01], [cu, cv + 0.03]])
    tex = uv_texels([[0, 1, 2]], uv, 8)
    assert isinstance(tex, TexelMap) and tex.size == 8
    np.testing.assert_array_equal(tex.pixel, [2 * 8 + 5])
    np.testing.assert_allclose(tex.bary[0] @ uv, [cu, cv], atol=1e-6)


def test_texels_match_a_brute_force_inside_test():
    rng = np.random.default_rng(0)
    size = 40
    uv = rng.uniform(-0.1, 1.1, (30, 2))
    faces = rng.integers(0, 30, (20, 3))
    tex = uv_texels(faces, uv, size)
    jj, ii = np.meshgrid(np.arange(size), np.arange(size))
    centres = np.stack([(jj.ravel() + 0.5) / size, (ii.ravel() + 0.5) / size], 1)
    want_face = np.full(size * size, -1)
    for k in range(len(faces) - 1, -1, -1):  # the lowest triangle index wins
        a, b, c = uv[faces[k]]
        d = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(d) < 1e-12:
            continue
        w1 = ((centres[:, 0] - a[0]) * (c[1] - a[1]) - (centres[:, 1] - a[1]) * (c[0] - a[0])) / d
        w2 = ((b[0] - a[0]) * (centres[:, 1] - a[1]) - (b[1] - a[1]) * (centres[:, 0] - a[0])) / d
        inside = (w1 > 1e-9) & (w2 > 1e-9) & (1 - w1 - w2 > 1e-9)  # strictly inside: no edge cases
        want_face[inside] = k
    got_face = np.full(size * size, -1)
    got_face[tex.pixel] = tex.face
    strict = want_face >= 0
    assert strict.sum() > 100
    np.testing.assert_array_equal(got_face[strict], want_face[strict])
    assert (np.diff(tex.pixel) > 0).all()
    assert (tex.bary >= 0).all() and np.allclose(tex.bary.sum(1), 1, atol=1e-6)
    # barycentric weights reproduce the texel centres
    np.testing.assert_allclose(np.einsum("tk,tkd->td", tex.bary, uv[faces[tex.face]]), centres[tex.pixel], atol=1e-5)


def test_texels_on_shared_edges_are_claimed_once():
    # a square of two triangles whose diagonal and sides run through texel centres
    lo, hi = 0.5 / 16, 12.5 / 16
    uv = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    tex = uv_texels([[0, 1, 2], [0, 2, 3]], uv, 16)
    assert len(tex.pixel) == 13 * 13  # every centre on the closed square, each once
    diagonal = tex.pixel[(tex.pixel // 16) == (tex.pixel % 16)]
    assert (tex.face[np.isin(tex.pixel, diagonal)] == 0).all()  # the lower triangle index


def test_texels_of_zero_area_triangles_are_none():
    tex = uv_texels([[0, 1, 2]], [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], 32)
    assert len(tex.pixel) == 0 and tex.bary.shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# bake_texture


def test_bake_recovers_an_analytic_colour_at_the_vertices(sphere, layout):
    pos = sphere.vertices[layout.vmap].astype(np.float32)
    img = bake_texture(layout, [(pos, position_color)], padding=4, chunk=5000)
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    err = np.abs(bilinear(img, layout.uv) - (pos + 1) / 2).max(1)
    assert err.mean() < 1.5 / 255
    assert err.max() < 8 / 255  # 0.5/255 rounding + at most ~2 texels of a linear ramp


def test_bake_interior_texels_equal_the_colour_at_their_surface_point(sphere, layout):
    pos = sphere.vertices[layout.vmap].astype(np.float32)
    img = bake_texture(layout, [(pos, position_color)]).reshape(-1, 3).astype(np.float64)
    tex = uv_texels(layout.faces, layout.uv, SIZE)
    point = np.einsum("tk,tkd->td", tex.bary, pos[layout.faces[tex.face]])
    np.testing.assert_array_less(np.abs(img[tex.pixel] - np.round((point + 1) / 2 * 255)), 1.01)


def test_bake_averages_frames(sphere, layout):
    pos = sphere.vertices[layout.vmap].astype(np.float32)

    def red(p):
        return torch.tensor([1.0, 0.0, 0.0]).expand(len(p), 3)

    def blue(p):
        return torch.tensor([0.0, 0.0, 1.0]).expand(len(p), 3)

    img = bake_texture(layout, [(pos, red), (pos, blue)])
    assert (img == np.array([128, 0, 128], np.uint8)).all()  # covered, padding and far texels alike
    # a colour linear in position (no clamping here): two frames average to the frame between
    two = bake_texture(layout, [(pos / 2 - 0.2, position_color), (pos / 2 + 0.2, position_color)]).astype(int)
    mid = bake_texture(layout, [(pos / 2, position_color)]).astype(int)
    assert np.abs(two - mid).max() <= 1


def test_bake_fills_the_padding_around_charts(sphere, layout):
    pos = sphere.vertices[layout.vmap].astype(np.float32)
    tex = uv_texels(layout.faces, layout.uv, SIZE)
    covered = np.zeros(SIZE * SIZE, bool)
    covered[tex.pixel] = True
    dist, near = ndimage.distance_transform_edt(~covered.reshape(SIZE, SIZE), return_indices=True)
    dist, near = dist.ravel(), (near[0] * SIZE + near[1]).ravel()
    img = bake_texture(layout, [(pos, position_color)], padding=3).reshape(-1, 3).astype(int)
    mean = img[covered].mean(0)
    ring = (dist > 0) & (dist <= 3)
    # the ring continues its nearest chart texel (a few texels of the colour ramp away) ...
    assert np.abs(img[ring] - img[near[ring]]).max() <= 12
    assert (np.abs(img[ring] - mean).max(1) > 12).mean() > 0.5
    # ... and beyond it every texel is one flat colour, the mean
    far = dist > 3
    assert far.sum() > 1000
    assert (img[far] == img[far][0]).all() and np.abs(img[far][0] - mean).max() <= 1
    # without padding, the texels next to a chart are the flat colour too
    flat = bake_texture(layout, [(pos, position_color)], padding=0).reshape(-1, 3)
    assert (flat[dist > 0] == flat[far][0]).all()


def test_bake_takes_faces_and_uv_and_is_deterministic(sphere, layout):
    pos = sphere.vertices[layout.vmap].astype(np.float32)
    a = bake_texture(layout, [(pos, position_color)])
    b = bake_texture((layout.faces, layout.uv), [(torch.from_numpy(pos), position_color)], size=SIZE)
    np.testing.assert_array_equal(a, b)
    assert bake_texture((layout.faces, layout.uv), [(pos, position_color)], size=64).shape == (64, 64, 3)


def test_bake_rejects_bad_inputs(sphere, layout):
    pos = sphere.vertices[layout.vmap].astype(np.float32)
    cases = [
        ((layout, []), "non-empty"),
        ((layout, [(pos[:-1], position_color)]), "one row per uv vertex"),
        ((layout, [(pos * np.nan, position_color)]), "NaN"),
        ((layout, [(pos, "red")]), "callable"),
        ((layout, [(pos, lambda p: p[:, :2])]), "color_fn returned shape"),
        ((layout, [(pos, lambda p: p * np.nan)]), "NaN"),
        (("faces", [(pos, position_color)]), "UVLayout"),
        (((layout.faces, layout.uv[:, :1]), [(pos, position_color)]), "uv must be"),
        ((([[0, 1, 2]], [[0.5, 0.5], [0.5004, 0.5], [0.5, 0.5004]]), [(pos[:3], position_color)]), "covers no texel"),
    ]
    for args, match in cases:
        with pytest.raises(Sv4dError, match=match):
            bake_texture(*args)
    with pytest.raises(Sv4dError, match="padding"):
        bake_texture(layout, [(pos, position_color)], padding=-2)
    with pytest.raises(Sv4dError, match="chunk"):
        bake_texture(layout, [(pos, position_color)], chunk=0)

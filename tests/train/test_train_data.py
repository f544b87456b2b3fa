"""The training-sample reader: window layout, camera angles, static/mixed modes, determinism, errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA
from sv4d.cameras import Intrinsics, Rig, View, orbit_c2w, relative_angles
from sv4d.errors import Sv4dError
from sv4d.io.multiview import read_multiview, write_multiview
from sv4d.train.data import MultiViewWindows, TrainingSample, collate

FOX_SMALL = DATA / "multiview" / "fox_small"


def _encoded_set(root: Path, azimuths, elevations=None, num_frames: int = 4, size=(8, 8), angles: bool = True) -> Path:
    """A set whose pixels are R = 10*view + 5, G = 20*frame + 7, B = 200 everywhere."""
    elevations = [0.0] * len(azimuths) if elevations is None else elevations
    w, h = size
    img = np.zeros((len(azimuths), num_frames, h, w, 3), np.uint8)
    for v in range(len(azimuths)):
        for f in range(num_frames):
            img[v, f] = (10 * v + 5, 20 * f + 7, 200)
    views = [
        View(orbit_c2w(e, a, 2.0), e if angles else None, a if angles else None) for a, e in zip(azimuths, elevations)
    ]
    rig = Rig(Intrinsics.from_fov(30.0, w, h), views, np.arange(num_frames) * 0.1)
    return write_multiview(root, rig, rgb_white=img, transforms=False)


def _decode(rows: torch.Tensor) -> list[tuple[int, int]]:
    """(N, 3, S, S) in [-1, 1] of an encoded set -> [(view, frame)] per row (images are uniform)."""
    px = torch.round((rows[:, :, 0, 0] + 1) / 2 * 255).to(torch.int64)
    assert torch.equal(px[:, 2], torch.full_like(px[:, 2], 200))
    return [((int(r) - 5) // 10, (int(g) - 7) // 20) for r, g, _ in px]


@pytest.fixture(scope="module")
def fox():
    return read_multiview(FOX_SMALL)


@pytest.fixture
def encoded(tmp_path) -> Path:
    # view: 0 at az 0 (input), then deliberately unsorted azimuths, one tie broken by elevation.
    return _encoded_set(tmp_path / "enc", [0, 200, 40, 90, 40, 300], [0, 0, 10, 0, -5, 0])


def test_fox_shapes_range_and_reference_views(fox):
    ds = MultiViewWindows([fox], num_frames=3, num_views=3, image_size=32)
    s = ds[0]
    assert isinstance(s, TrainingSample) and len(ds) == 1
    assert s.frames.shape == (3, 3, 32, 32) and s.target.shape == (9, 3, 32, 32)
    assert s.ref_views.shape == (3, 3, 32, 32) and torch.equal(s.ref_views, s.target[:3])
    assert s.frames.dtype == s.target.dtype == torch.float32
    assert s.polar.shape == s.azimuth.shape == (9,) and s.polar.dtype == torch.float64
    for x in (s.frames, s.target):
        assert x.min() >= -1 and x.max() <= 1 and x.max() == 1  # white background survives
    assert s.source == "fox_small:0:0,1,2" and not s.static


def test_fox_angles_sorted_by_relative_azimuth_and_images_exact(fox):
    ds = MultiViewWindows([FOX_SMALL], num_frames=2, num_views=3, image_size=64, target_views=[1, 2, 3])
    s = ds[1]  # second window: frames 1, 2
    deg = math.radians
    assert torch.allclose(s.azimuth, torch.tensor([deg(30), deg(45), deg(120)] * 2, dtype=torch.float64))
    assert torch.allclose(
        s.polar, torch.tensor([math.pi / 2, math.pi / 2 - deg(20), math.pi / 2] * 2, dtype=torch.float64)
    )
    p, a = relative_angles(elevations_deg=[0.0, 0.0, 20.0, 0.0], azimuths_deg=[0.0, 30.0, 45.0, 120.0], num_frames=2)
    assert torch.equal(s.polar, p) and torch.equal(s.azimuth, a)

    # Row t*V + v is targets[v] at frame t, with targets sorted to [1, 3, 2]; no resize at 64.
    def image(view, frame):
        img = np.array(fox.load_image(view, frame, "rgb_white"))
        return torch.from_numpy(img).permute(2, 0, 1) / 255 * 2 - 1

    for row, (view, frame) in enumerate([(1, 1), (3, 1), (2, 1), (1, 2), (3, 2), (2, 2)]):
        assert torch.allclose(s.target[row], image(view, frame), atol=1e-6), row
    assert torch.allclose(s.frames[1], image(0, 2), atol=1e-6)


def test_frame_major_layout_with_encoded_set(encoded):
    ds = MultiViewWindows([encoded], num_frames=3, num_views=4, image_size=8, target_views=[1, 2, 3, 4], frame_stride=1)
    assert len(ds) == 2
    s = ds[1]  # frames 1, 2, 3
    order = [4, 2, 3, 1]  # az 40, 40, 90, 200: the tie at 40 goes to the lower elevation (view 4)
    assert _decode(s.target) == [(v, f) for f in (1, 2, 3) for v in order]
    assert _decode(s.frames) == [(0, 1), (0, 2), (0, 3)]
    assert _decode(s.ref_views) == [(v, 1) for v in order]
    assert s.source == "enc:0:1,2,3"


def test_random_views_are_distinct_sorted_and_exclude_input(encoded):
    az = {0: 0, 1: 200, 2: 40, 3: 90, 4: 40, 5: 300}
    ds = MultiViewWindows([encoded], num_frames=2, num_views=3, image_size=8, input_view="random", samples_per_epoch=40)
    inputs = set()
    for i in range(len(ds)):
        s = ds[i]
        inp = _decode(s.frames)[0][0]
        views = [v for v, _ in _decode(s.target[:3])]
        inputs.add(inp)
        assert inp not in views and len(set(views)) == 3
        rel = [(az[v] - az[inp]) % 360 for v in views]
        assert rel == sorted(rel)
        want = torch.tensor([math.radians(r) for r in rel], dtype=torch.float64)
        assert torch.allclose(s.azimuth[:3], want)
    assert len(inputs) > 3


def test_static_mode_repeats_one_frame(encoded):
    ds = MultiViewWindows([encoded], num_frames=3, num_views=2, image_size=8, mode="static")
    assert len(ds) == 4  # one window per frame
    for i in range(4):
        s = ds[i]
        assert s.static and _decode(s.frames) == [(0, i)] * 3
        assert {f for _, f in _decode(s.target)} == {i}
        assert s.source.endswith(f":{i},{i},{i}")


def test_mixed_mode_gives_both_kinds(encoded):
    ds = MultiViewWindows(
        [encoded], num_frames=3, num_views=2, image_size=8, mode="mixed", static_prob=0.5, samples_per_epoch=40
    )
    kinds = []
    for i in range(len(ds)):
        s = ds[i]
        frames = [f for _, f in _decode(s.frames)]
        assert (len(set(frames)) == 1) == s.static
        kinds.append(s.static)
    assert 5 < sum(kinds) < 35


def test_determinism_same_seed_same_item(encoded):
    kw = dict(num_frames=2, num_views=3, image_size=8, input_view="random", mode="mixed", samples_per_epoch=20)
    a, b = MultiViewWindows([encoded], seed=3, **kw), MultiViewWindows([encoded], seed=3, **kw)
    c = MultiViewWindows([encoded], seed=4, **kw)
    for i in (0, 7, 19):
        x, y = a[i], b[i]
        assert x.source == y.source and torch.equal(x.target, y.target) and torch.equal(x.azimuth, y.azimuth)
        assert a[i].source == x.source  # repeat reads (cached images) agree
    sig = lambda ds: [(ds[i].source, ds[i].azimuth.tolist()) for i in range(len(ds))]  # noqa: E731
    assert sig(a) != sig(c)


def test_short_sets_are_padded_with_their_last_frame(tmp_path):
    short = _encoded_set(tmp_path / "short", [0, 90, 180], num_frames=2)
    ds = MultiViewWindows([short], num_frames=4, num_views=2, image_size=8)
    assert len(ds) == 1
    s = ds[0]
    assert _decode(s.frames) == [(0, 0), (0, 1), (0, 1), (0, 1)] and not s.static
    # stride 2 over 5 frames: one window 0, 2, 4; over 6 frames: two windows.
    five = _encoded_set(tmp_path / "five", [0, 90, 180], num_frames=5)
    six = _encoded_set(tmp_path / "six", [0, 90, 180], num_frames=6)
    ds = MultiViewWindows([five, six], num_frames=3, num_views=2, image_size=8, frame_stride=2)
    assert len(ds) == 3
    assert [[f for _, f in _decode(ds[i].frames)] for i in range(3)] == [[0, 2, 4], [0, 2, 4], [1, 3, 5]]
    one = _encoded_set(tmp_path / "one", [0, 90, 180], num_frames=1)
    s = MultiViewWindows([one], num_frames=3, num_views=2, image_size=8)[0]
    assert s.static and _decode(s.frames) == [(0, 0)] * 3


def test_collate_stacks_in_b_t_v_order(encoded):
    ds = MultiViewWindows([encoded], num_frames=3, num_views=2, image_size=8, mode="mixed")
    samples = [ds[0], ds[1]]
    batch = collate(samples)
    assert batch["frames"].shape == (6, 3, 8, 8) and batch["target"].shape == (12, 3, 8, 8)
    assert batch["ref_views"].shape == (4, 3, 8, 8)
    assert batch["polar"].shape == batch["azimuth"].shape == (12,)
    assert batch["static"].dtype == torch.bool and batch["static"].tolist() == [s.static for s in samples]
    assert torch.equal(batch["target"][6:], samples[1].target)
    with pytest.raises(Sv4dError):
        collate([])


def test_resize_rgba_fallback_non_square_and_cache(tmp_path):
    root = _encoded_set(tmp_path / "wide", [0, 90, 180], num_frames=2, size=(12, 8))
    shutil.copytree(root / "rgb_white", root / "rgba")  # pretend only rgba was written
    shutil.rmtree(root / "rgb_white")
    ds = MultiViewWindows([root], num_frames=2, num_views=2, image_size=12)
    s = ds[0]
    assert s.target.shape == (4, 3, 12, 12)
    white = torch.ones(2, 3, 2, 12)
    assert torch.equal(s.frames[:, :, :2], white) and torch.equal(s.frames[:, :, 10:], white)  # padding
    assert _decode(s.frames[:, :, 2:]) == [(0, 0), (0, 1)]
    assert len(ds._cache) == 6
    nocache = MultiViewWindows([root], num_frames=2, num_views=2, image_size=12, cache_images=False)
    assert torch.equal(nocache[0].target, s.target) and not nocache._cache
    # Lanczos down-sizing keeps a flat image's colour exactly.
    big = _encoded_set(tmp_path / "big", [0, 90, 180], num_frames=2, size=(16, 16))
    small = MultiViewWindows([big], num_frames=2, num_views=2, image_size=5, target_views=[1, 2])[0]
    assert small.target.shape == (4, 3, 5, 5)
    assert torch.equal(small.target, small.target[:, :, :1, :1].expand(-1, -1, 5, 5))
    assert _decode(small.target) == [(1, 0), (2, 0), (1, 1), (2, 1)]


def test_missing_angles_come_from_c2w(tmp_path):
    azs, els = [0.0, 30.0, 120.0, 250.0], [0.0, 0.0, 10.0, -20.0]
    root = _encoded_set(tmp_path / "noang", azs, els, num_frames=1, angles=False)
    mvset = read_multiview(root)
    assert all(v.azimuth_deg is None for v in mvset.views)
    az, el = mvset.rig.azimuth_deg, mvset.rig.elevation_deg
    assert np.allclose(az % 360, azs) and np.allclose(el, els)
    s = MultiViewWindows([mvset], num_frames=1, num_views=3, image_size=8, target_views=[1, 2, 3])[0]
    p, a = relative_angles(elevations_deg=els, azimuths_deg=azs, num_frames=1)
    assert torch.allclose(s.polar, p) and torch.allclose(s.azimuth, a)
    meta = json.loads((root / "cameras.json").read_text())
    del meta["views"][2]["c2w"]  # neither angles nor a pose: the set is refused when read
    (root / "cameras.json").write_text(json.dumps(meta))
    with pytest.raises(Sv4dError, match=r"views\[2\].*c2w"):
        MultiViewWindows([root], num_frames=1, num_views=3, image_size=8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sets=[]), "at least one"),
        (dict(num_views=4), "1 input"),
        (dict(target_views=[0, 1]), "include the input"),
        (dict(target_views=[1, 7]), "out of range"),
        (dict(target_views=[1, 2, 3]), "2 distinct"),
        (dict(target_views=[1, 1]), "2 distinct"),
        (dict(input_view=9), "out of range"),
        (dict(mode="video"), "unknown mode"),
        (dict(static_prob=1.5), "static_prob"),
        (dict(target_views="all"), "random"),
        (dict(frame_stride=0), "frame_stride"),
    ],
)
def test_errors(kwargs, match):
    base = dict(sets=[FOX_SMALL], num_frames=2, num_views=2, image_size=8)
    base.update(kwargs)
    with pytest.raises(Sv4dError, match=match):
        MultiViewWindows(base.pop("sets"), **base)


def test_index_out_of_range_is_index_error():
    ds = MultiViewWindows([FOX_SMALL], num_frames=2, num_views=2, image_size=8)
    with pytest.raises(IndexError):
        ds[len(ds)]

"""The fit's input: views/frames selection, premultiplied area downsampling, times."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import DATA
from sv4d.errors import Sv4dError
from sv4d.fit.data import downsample_rgba, load_fit_data
from sv4d.io.multiview import read_multiview

FOX = DATA / "multiview" / "fox_small"


def test_downsampling_averages_premultiplied_colour_then_composites_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)  # one opaque red pixel, three transparent *black* ones
    rgba[0, 0] = (255, 0, 0, 255)
    rgb, alpha = downsample_rgba(rgba, 1)
    assert rgb.shape == (1, 1, 3) and alpha.shape == (1, 1)
    torch.testing.assert_close(alpha, torch.tensor([[0.25]]))
    torch.testing.assert_close(rgb[0, 0], torch.tensor([1.0, 0.75, 0.75]))  # 1/4 red + 3/4 white
    # full size: exactly composite_white (to float rounding)
    g = np.random.default_rng(0)
    img = g.integers(0, 256, (3, 5, 6, 4), dtype=np.uint8)
    rgb, alpha = downsample_rgba(img, (5, 6))
    a = img[..., 3:] / 255.0
    np.testing.assert_allclose(rgb.numpy(), img[..., :3] / 255.0 * a + (1 - a), atol=1e-6)
    # non-integer factors use the area filter
    rgb, alpha = downsample_rgba(img, (4, 4))
    assert rgb.shape == (3, 4, 4, 3)
    with pytest.raises(Sv4dError, match="only smaller"):
        downsample_rgba(img, 8)
    with pytest.raises(Sv4dError, match="uint8"):
        downsample_rgba(img.astype(np.float32), 2)


def test_load_views_frames_and_resolution():
    s = read_multiview(FOX)
    d = load_fit_data(FOX, views=[0, 2], frames=[1, 2], resolution=32)
    assert d.shape == (2, 2, 32, 32) and d.rgb.shape == (2, 2, 32, 32, 3)
    assert d.views == [0, 2] and d.frames == [1, 2]
    assert d.intrinsics.width == 32 and np.isclose(d.intrinsics.fx, s.intrinsics.fx * 32 / s.intrinsics.width)
    torch.testing.assert_close(d.times, torch.tensor([0.5, 1.0]))  # 3 frames -> 0, 0.5, 1
    np.testing.assert_allclose(d.azimuth_deg, [s.views[0].azimuth_deg, s.views[2].azimuth_deg])
    assert 0.0 < float(d.alpha.mean()) < 1.0 and float(d.rgb.min()) >= 0.0 and float(d.rgb.max()) <= 1.0
    full = load_fit_data(FOX)
    assert full.shape == (s.num_views, s.num_frames, s.intrinsics.height, s.intrinsics.width)
    # the whole-image mean of premultiplied alpha survives downsampling
    assert abs(float(full.alpha[0, 1].mean()) - float(load_fit_data(FOX, [0], [1], 32).alpha.mean())) < 1e-5


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"views": [0, 9]}, "view index"),
        ({"frames": [3]}, "frame index"),
        ({"views": []}, "no views"),
        ({"views": [1, 1]}, "repeat"),
        ({"resolution": 4}, "at least 8"),
        ({"resolution": 999}, "only smaller"),
    ],
)
def test_bad_choices_are_clear_errors(kw, match):
    with pytest.raises(Sv4dError, match=match):
        load_fit_data(FOX, **kw)

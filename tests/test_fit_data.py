"""The fit's input: views/frames selection, premultiplied area downsampling, times, rays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sv4d.errors import Sv4dError
from sv4d.fit.data import camera_rays, downsample_rgba, load_fit_data
from sv4d.io.multiview import opencv_from_opengl, read_multiview

FOX = Path(__file__).parent / "data" / "multiview" / "fox_small"


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


@pytest.mark.parametrize("kw, match", [
    ({"views": [0, 9]}, "view index"), ({"frames": [3]}, "frame index"), ({"views": []}, "no views"),
    ({"views": [1, 1]}, "repeat"), ({"resolution": 4}, "at least 8"), ({"resolution": 999}, "only smaller"),
])
def test_bad_choices_are_clear_errors(kw, match):
    with pytest.raises(Sv4dError, match=match):
        load_fit_data(FOX, **kw)


def test_rays_go_through_pixel_centres():
    d = load_fit_data(FOX, resolution=32)
    o, dirs = camera_rays(d.c2w, d.intrinsics)
    assert o.shape == dirs.shape == (4, 32, 32, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(4, 32, 32))
    K = torch.tensor(d.intrinsics.K, dtype=torch.float64)
    for v in range(4):
        w2c = torch.linalg.inv(torch.tensor(opencv_from_opengl(d.c2w[v].double().numpy())))
        for (row, col) in ((0, 0), (5, 20), (31, 31)):
            p = o[v, row, col].double() + 1.7 * dirs[v, row, col].double()
            cam = w2c[:3, :3] @ p + w2c[:3, 3]
            uv = (K @ cam)[:2] / cam[2]
            torch.testing.assert_close(uv, torch.tensor([col + 0.5, row + 0.5], dtype=torch.float64),
                                       rtol=0, atol=1e-4)
    # the cameras look at the origin: the centre ray passes it
    centre = o[:, 16, 16] + dirs[:, 16, 16] * (o[:, 16, 16].norm(dim=-1, keepdim=True))
    assert centre.norm(dim=-1).max() < 0.05

"""Soft visibility weights (SV3D-style) on the analytic sphere, whose surface is known."""

from __future__ import annotations

import torch
from fit_scene import SphereModel, scene

from sv4d.fit.visibility import view_weights, visibility_weights


def test_the_far_side_gets_the_floor_and_the_near_side_counts_fully():
    data = scene(azimuths=(0, 180, 20), frames=1, size=48)
    model = SphereModel()
    front, back, near = data.c2w[0], data.c2w[1], data.c2w[2]
    w_back = view_weights(model, back, front, data.intrinsics, 0.0, floor=0.2)
    on = model.render(back, data.intrinsics, 0.0)["alpha"] > 0.5
    # seen from behind, the visible hemisphere faces away from the reference camera
    assert torch.allclose(w_back[on], torch.full_like(w_back[on], 0.2), atol=0.02)
    assert torch.equal(w_back[~on], torch.ones_like(w_back[~on]))  # background keeps full weight
    w_near = view_weights(model, near, front, data.intrinsics, 0.0, floor=0.2)
    on = model.render(near, data.intrinsics, 0.0)["alpha"] > 0.5
    assert w_near[on].max() > 0.95  # points whose normal faces the reference camera (20 degrees away)
    assert w_near[on].mean() > 0.6 and w_near[on].min() >= 0.2


def test_reference_views_keep_weight_one_and_weights_follow_the_nearest_reference():
    data = scene(azimuths=(0, 90, 180, 270), frames=2, size=32)
    w = visibility_weights(SphereModel(), data, reference_views=[0, 2])
    assert w.shape == data.alpha.shape
    assert torch.equal(w[0], torch.ones_like(w[0])) and torch.equal(w[2], torch.ones_like(w[2]))
    on = torch.stack([SphereModel().render(data.c2w[1], data.intrinsics, float(t))["alpha"] > 0.5 for t in data.times])
    assert 0.2 - 1e-6 <= float(w[1][on].min()) and float(w[1][on].mean()) < 0.9  # side view: partly unseen
    assert torch.equal(visibility_weights(SphereModel(), data, reference_views=[0, 1, 2, 3]), torch.ones_like(w))

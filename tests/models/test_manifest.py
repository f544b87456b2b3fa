"""The full-size presets have exactly the official checkpoint's keys and shapes."""

import time

import pytest
import torch

from conftest import read_manifest
from sv4d import build_model, get_preset
from sv4d.checkpoint import check_keys, expected_shapes, is_unused_key


@pytest.mark.parametrize("preset,manifest", [("sv4d2", "sv4d2_keys.tsv"), ("sv4d2_8views", "sv4d2_8views_keys.tsv")])
def test_preset_state_dict_equals_official_manifest(preset, manifest):
    t0 = time.perf_counter()
    model = build_model(get_preset(preset), include_unused=True)
    build_s = time.perf_counter() - t0
    sd = model.state_dict()
    rows = read_manifest(manifest)
    assert len(rows) == 3204
    assert set(sd) == {k for k, _ in rows}
    for key, shape in rows:
        assert tuple(sd[key].shape) == shape, key
    assert all(v.device.type == "meta" for v in sd.values())
    # spec section 8 parameter counts
    total = sum(v.numel() for v in sd.values())
    unet = sum(v.numel() for k, v in sd.items() if k.startswith("model.diffusion_model."))
    assert total == 2_995_213_171
    assert unet == 2_010_961_338
    assert build_s < 60  # generous: meta construction allocates nothing


def test_loader_accepts_official_key_set_with_and_without_unused_keys():
    model = build_model(get_preset("sv4d2"))  # inference model: no unused parts
    expected = expected_shapes(model)
    rows = dict(read_manifest("sv4d2_keys.tsv"))
    check_keys(expected, rows, "official manifest")  # unused keys present: skipped
    used_only = {k: s for k, s in rows.items() if not is_unused_key(k)}
    assert len(rows) - len(used_only) == 426  # spec section 9
    check_keys(expected, used_only, "official manifest minus unused keys")
    unused_params = sum(torch.Size(s).numel() for k, s in rows.items() if is_unused_key(k))
    assert unused_params == 200_193_862

"""Cached latents and embeddings: the same conditioning as encoding pixels, reuse, keys, views."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import DATA
from sv4d.config import tiny_config
from sv4d.errors import Sv4dError
from sv4d.models.sv4d import SV4DModel
from sv4d.train.cache import LatentCache
from sv4d.train.config import TrainConfig
from sv4d.train.data import MultiViewWindows, collate
from sv4d.train.loop import Trainer, _generator, window_conditioning

FOX = DATA / "multiview" / "fox_small"


def _model(seed: int = 0, noise: float = 0.0) -> SV4DModel:
    cfg = tiny_config("t", num_frames=2, num_views=2, image_size=32, with_clip=True, vae_downsample=4)
    torch.manual_seed(seed)
    return SV4DModel(dataclasses.replace(cfg, cond_noise_sigma=noise)).eval()


def _data(**kw) -> MultiViewWindows:
    kw = {"input_view": "random", **kw}
    return MultiViewWindows([FOX], num_frames=2, num_views=2, image_size=32, draws_per_window=3, **kw)


def test_cached_conditioning_equals_encoding_pixels(tmp_path):
    model, ds = _model(), _data()
    cache = LatentCache(model, ds, tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    idx = [0, 4, 5]
    x0, c, uc = cache.conditioning([ds.spec(i) for i in idx], "cpu")
    rx0, rc, ruc = window_conditioning(model, collate([ds[i] for i in idx]), len(idx), _generator(0, 0), "cpu")
    assert x0.shape == rx0.shape == (3 * 4, 4, 8, 8)
    torch.testing.assert_close(x0, rx0, rtol=1e-4, atol=1e-4)
    for key in rc:
        torch.testing.assert_close(c[key], rc[key], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(uc[key], ruc[key], rtol=1e-4, atol=1e-4)
    # three independently initialised encoders are three tensors; shared weights are stored once
    assert len(set(cache.slot_key.values())) == 3
    emb = model.conditioner.embedders
    emb[4].load_state_dict(emb[1].state_dict())
    emb[5].load_state_dict(emb[1].state_dict())
    shared = LatentCache(model, ds, tmp_path, progress=False)
    assert set(shared.slot_key.values()) == {"latent_1"}
    assert shared.paths != cache.paths  # other weights, other file
    x0b, cb, _ = shared.conditioning([ds.spec(i) for i in idx], "cpu")
    torch.testing.assert_close(x0b, x0)
    torch.testing.assert_close(
        cb["cond_view"],
        window_conditioning(model, collate([ds[i] for i in idx]), len(idx), None, "cpu")[1]["cond_view"],
        rtol=1e-4,
        atol=1e-4,
    )


def test_cache_is_reused_and_keyed_by_weights_and_data(tmp_path):
    model, ds = _model(), _data()
    first = LatentCache(model, ds, tmp_path, progress=False, build=False)
    assert len(first.build(progress=False)) == 1
    again = LatentCache(model, ds, tmp_path, progress=False, build=False)
    assert again.paths == first.paths and again.build(progress=False) == []
    other_size = LatentCache(
        model, MultiViewWindows([FOX], num_frames=2, num_views=2, image_size=16), tmp_path, progress=False, build=False
    )
    assert other_size.paths != first.paths
    with torch.no_grad():
        model.conditioner.embedders[0].visual.conv1.weight.add_(0.01)  # the image encoder changed
    assert LatentCache(model, ds, tmp_path, progress=False, build=False).paths != first.paths
    assert not list(tmp_path.glob("*.part"))


def test_held_out_views_are_never_drawn_nor_cached(tmp_path):
    model, ds = _model(), _data(views=[0, 1, 3])
    for i in range(len(ds)):
        w = ds.spec(i)
        assert 2 not in [w.input_view, *w.target_views]
    cache = LatentCache(model, ds, tmp_path, progress=False)
    with pytest.raises(Sv4dError, match="not in the latent cache"):
        cache.latents(1, 0, [2], [0])
    with pytest.raises(Sv4dError, match="not among the allowed views"):
        _data(views=[0, 1, 3], target_views=[1, 2], input_view=0)
    with pytest.raises(Sv4dError, match="usable views"):
        _data(views=[0, 1])
    with pytest.raises(Sv4dError, match="out of range"):
        _data(views=[0, 1, 9])


def test_training_from_the_cache_matches_training_from_pixels(tmp_path):
    """With the conditioning noise off, both data paths give the same loss curve."""
    base = dict(
        model="tiny",
        num_frames=2,
        num_views=2,
        image_size=32,
        data=(str(FOX),),
        lr=1e-3,
        steps=3,
        save_every=100,
        sample_every=100,
        ema_decay=0.0,
        views=(0, 1, 2),
    )
    runs = {}
    for cached in (True, False):
        t = Trainer(TrainConfig(out=str(tmp_path / str(cached)), cache_latents=cached, **base), progress=False)
        t.model.cfg = dataclasses.replace(t.model.cfg, cond_noise_sigma=0.0)
        t.model.conditioner.cfg = t.model.cfg
        assert (t.cache is not None) == cached
        runs[cached] = t.run()["losses"]
    assert (tmp_path / "True" / "cache").is_dir() and not (tmp_path / "False" / "cache").exists()
    # with zero conditioning noise the pixel path draws nothing extra from the step generator,
    # so both runs see the same sigmas, noise and dropout: the same losses
    torch.testing.assert_close(torch.tensor(runs[True]), torch.tensor(runs[False]), rtol=1e-4, atol=1e-6)

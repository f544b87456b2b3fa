"""The autoencoder warm-up of from-scratch models: it learns, and its checkpoint trains on."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import DATA
from sv4d.checkpoint import load_model
from sv4d.cli import main
from sv4d.config import tiny_config
from sv4d.errors import Sv4dError
from sv4d.metrics import batch_psnr_pm1 as _psnr
from sv4d.train.autoencoder import latent_std, train_autoencoder, training_images
from sv4d.train.config import TrainConfig
from sv4d.train.data import images_to_tensor
from sv4d.train.loop import Trainer, build_model

FOX = DATA / "multiview" / "fox_small"


def _cfg(out, **kw) -> TrainConfig:
    base = dict(
        model="tiny",
        num_frames=2,
        num_views=2,
        image_size=32,
        vae_downsample=4,
        data=(str(FOX),),
        lr=2e-3,
        steps=40,
        log_every=10,
        out=str(out),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_autoencoder_learns_and_writes_a_consistent_checkpoint(tmp_path):
    cfg = _cfg(tmp_path / "ae")
    untrained = build_model(cfg)
    x = images_to_tensor(training_images(cfg, 32))
    assert x.shape == (12, 3, 32, 32)  # fox_small: 4 views x 3 frames
    with torch.no_grad():
        before = _psnr(untrained.decode(untrained.encode_latents(x)), x)
    s = train_autoencoder(cfg, progress=False)
    assert s["images_per_step"] == 2 * 3 and s["images"] == 12
    assert sum(s["losses"][-5:]) / 5 < 0.5 * sum(s["losses"][:5]) / 5
    assert s["recon_psnr"] > before + 5.0
    model = load_model(tmp_path / "ae" / "model.safetensors")
    emb = model.conditioner.embedders
    for j in (4, 5):  # all three conditioning encoders are the trained one
        for k, v in emb[1].state_dict().items():
            assert torch.equal(emb[j].state_dict()[k], v)
    assert math.isclose(model.cfg.scale_factor, s["scale_factor"])
    assert math.isclose(
        model.cfg.scale_factor * latent_std(model, training_images(cfg, 32), torch.device("cpu")), 1.0, rel_tol=1e-3
    )  # unit-spread diffusion latents
    with torch.no_grad():
        assert _psnr(model.decode(model.encode_latents(x)), x) > before + 5.0
    log = [json.loads(line) for line in (tmp_path / "ae" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert (tmp_path / "ae" / "recon.png").is_file()
    # the UNet trains on from it, with its VAE and scale factor kept
    t = Trainer(
        _cfg(
            tmp_path / "unet", init=str(tmp_path / "ae" / "model.safetensors"), steps=2, save_every=2, sample_every=100
        ),
        progress=False,
    )
    assert t.model.cfg.scale_factor == model.cfg.scale_factor
    t.run()
    trained = load_model(tmp_path / "unet" / "model.safetensors")
    assert torch.equal(
        trained.first_stage_model.decoder.conv_out.weight, model.first_stage_model.decoder.conv_out.weight
    )


def test_train_autoencoder_cli(tmp_path, capsys):
    rc = main(
        [
            "train-autoencoder",
            "steps=3",
            "image_size=32",
            "vae_downsample=4",
            f'data=["{FOX}"]',
            "-o",
            str(tmp_path / "cli"),
            "--seed",
            "3",
        ]
    )
    assert rc == 0 and (tmp_path / "cli" / "model.safetensors").is_file()
    assert "reconstruction PSNR" in capsys.readouterr().err  # the summary (-q leaves it out)
    assert main(["train-autoencoder", 'model="sv4d2"', "-q"]) == 2
    assert "official VAE" in capsys.readouterr().err
    assert main(["train-autoencoder", "vae_downsample=3", f'data=["{FOX}"]', "-q"]) == 2
    assert "power of two" in capsys.readouterr().err


def test_tiny_vae_sizes():
    assert tiny_config(image_size=32, vae_downsample=4).latent_size == 8
    assert tiny_config(image_size=48).vae.ch_mult == (1, 1, 1, 2)
    with pytest.raises(Sv4dError, match="multiple"):
        tiny_config(image_size=36, vae_downsample=8)
    with pytest.raises(Sv4dError, match="views"):
        TrainConfig(views=(1, 1))

"""The training loop: checkpoints that `sv4d generate` loads, exact resume, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import DATA, ROOT
from sv4d.cli import main
from sv4d.errors import Sv4dError
from sv4d.generate.pipeline import GenerationPipeline
from sv4d.io.video import read_clip
from sv4d.train.config import TrainConfig, load_train_config
from sv4d.train.loop import Trainer

FOX = DATA / "multiview" / "fox_small"


def _cfg(out, **kw) -> TrainConfig:
    base = dict(
        model="tiny",
        num_frames=3,
        num_views=3,
        image_size=32,
        model_channels=32,
        data=(str(FOX),),
        lr=1e-3,
        steps=4,
        save_every=2,
        sample_every=4,
        sample_steps=2,
        log_every=1,
        ema_decay=0.9,
        out=str(out),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_trained_checkpoint_loads_into_generate(tmp_path):
    summary = Trainer(_cfg(tmp_path / "run"), progress=False).run()
    assert summary["steps"] == 4 and len(summary["losses"]) == 4
    assert all(np.isfinite(summary["losses"]))
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and (run / "checkpoints" / "step_000002.safetensors").is_file()
    assert (run / "samples" / "step_000004.png").is_file()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    pipe = GenerationPipeline.from_checkpoint(run / "model.safetensors")
    assert pipe.cfg.unet.motion_attention is True and pipe.cfg.image_size == 32
    res = pipe(read_clip(DATA / "videos" / "camel_96.gif", max_frames=4), steps=1, progress=False)
    assert res.images.shape == (4, 4, 32, 32, 3)


def test_resume_reproduces_the_uninterrupted_loss_curve(tmp_path):
    full = Trainer(_cfg(tmp_path / "a", steps=6, save_every=3, sample_every=100), progress=False).run()
    first = Trainer(_cfg(tmp_path / "b", steps=3, save_every=3, sample_every=100), progress=False).run()
    second = Trainer(_cfg(tmp_path / "b", steps=6, save_every=3, sample_every=100), progress=False).run()
    assert second["resumed"] and not first["resumed"]
    resumed = first["losses"] + second["losses"]
    assert len(resumed) == 6
    np.testing.assert_allclose(resumed, full["losses"], rtol=1e-6, atol=1e-7)


def test_stage_one_trains_with_motion_attention_off_and_frozen(tmp_path):
    t = Trainer(_cfg(tmp_path / "s1", stage=1, steps=2, sample_every=100), progress=False)
    motion = {k: p.detach().clone() for k, p in t.model.unet.motion_parameters().items()}
    t.run()
    after = t.model.unet.motion_parameters()
    assert all(torch.equal(motion[k], after[k]) for k in motion)
    assert all(not m.motion_enabled for m in t.model.unet.attention_layers())
    pipe = GenerationPipeline.from_checkpoint(tmp_path / "s1" / "model.safetensors")
    assert pipe.cfg.unet.motion_attention is False  # the stage travels with the checkpoint


def test_config_overrides_and_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('steps = 7\ndata = ["sets/a"]\n[objective]\nuncond_prob = 0.2\n')
    cfg = load_train_config(p, ["lr=0.01", "objective.ref_mask_prob=1.0"])
    assert cfg.steps == 7 and cfg.lr == 0.01 and cfg.data == (str(tmp_path / "sets/a"),)
    assert cfg.objective.uncond_prob == 0.2 and cfg.objective.ref_mask_prob == 1.0
    with pytest.raises(Sv4dError, match="unknown training option"):
        load_train_config(None, ["stepz=3"])
    with pytest.raises(Sv4dError, match="stage"):
        load_train_config(None, ["stage=3"])


def test_train_cli(tmp_path, capsys):
    rc = main(
        [
            "train",
            "steps=2",
            "save_every=2",
            "sample_every=100",
            "image_size=32",
            f'data=["{FOX}"]',
            "--out",
            str(tmp_path / "cli"),
            "-q",
        ]
    )
    assert rc == 0 and (tmp_path / "cli" / "model.safetensors").is_file()
    assert main(["train", "nonsense_option=1", "-q"]) == 2
    assert "unknown training option" in capsys.readouterr().err


def test_shipped_configs_parse():
    from pathlib import Path

    configs = sorted((ROOT / "configs").glob("*.toml"))
    assert configs
    for p in configs:
        cfg = load_train_config(p, ["steps=5"])
        assert cfg.steps == 5 and cfg.data and all(Path(d).is_absolute() for d in cfg.data)
        assert cfg.model_config().image_size == cfg.image_size


def test_every_trainable_parameter_gets_a_gradient(tmp_path, monkeypatch):
    """What multi-GPU (DDP) training needs: no trainable parameter without a gradient. The
    cross-attention query and key projections and the norm before them, which a one-token context
    bypasses, are frozen."""
    trainer = Trainer(_cfg(tmp_path / "run"), progress=False)
    frozen = trainer.model.unet.bypassed_parameters()
    assert frozen and not set(frozen) & set(trainer.trainable)
    assert any(".attn2.to_v." in n for n in trainer.trainable)  # the rest of cross-attention still trains
    missing = []
    real_step = trainer.opt.step

    def step(*a, **k):
        missing.extend(n for n, p in trainer.trainable.items() if p.grad is None)
        return real_step(*a, **k)

    monkeypatch.setattr(trainer.opt, "step", step)
    trainer.train_step(0)
    assert missing == []

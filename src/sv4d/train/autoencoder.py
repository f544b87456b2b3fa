"""Train a small model's VAE before its UNet (``sv4d train-autoencoder``).

The official VAE comes with the official checkpoint; a model trained from scratch at a
small size (``model = "tiny"``) has a random one, whose latents no decoder can read back.
This warm-up trains the conditioning encoder (embedder 1: ``Encoder`` + ``quant_conv``, a KL
posterior) and the first-stage decoder as a plain KL autoencoder on the training images:
loss = L1 reconstruction + ``kl_weight`` * KL (both summed per image, as in the latent
diffusion autoencoders), with random horizontal flips. Then

* embedders 4 and 5 (reference-view and motion encoders) get the same weights, as the three
  conditioning encoders of the official model are copies of one VAE encoder;
* ``scale_factor`` becomes 1 / std of the posterior means over the data, so the diffusion
  latents have unit spread as the EDM objective (sigma_data = 1) assumes (0.18215 plays this
  role for the official VAE);
* ``OUT/model.safetensors`` is written: a full checkpoint (the UNet at its seeded random
  initialisation) that ``sv4d train`` takes as ``init``.

Each step sees ``batch_size * num_frames * (num_views + 1)`` images, as many as a diffusion
step. The run is short and does not resume: rerunning starts again.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import save_model
from ..devices import resolve_device
from ..errors import Sv4dError
from ..metrics import batch_psnr_pm1
from ..models.sv4d import SV4DModel
from .config import TrainConfig
from .data import MultiViewWindows, images_to_tensor


def training_images(cfg: TrainConfig, image_size: int) -> np.ndarray:
    """Every image (allowed views x frames) of the configured sets: (M, S, S, 3) uint8."""
    sets = sorted({p for pattern in cfg.data for p in (glob.glob(pattern) or [pattern])})
    if not sets:
        raise Sv4dError("no training data: give data = [multi-view set folders] in the config")
    ds = MultiViewWindows(
        sets, num_frames=1, num_views=1, image_size=image_size, views=cfg.views or None, cache_images=False
    )
    return np.stack(
        [ds._image(k, v, f) for k, s in enumerate(ds.sets) for v in ds.allowed_views(k) for f in range(s.num_frames)]
    )


def _moments(model: SV4DModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    enc = model.conditioner.embedders[1].encoder
    mean, logvar = enc.quant_conv(enc.encoder(x)).chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


@torch.no_grad()
def latent_std(model: SV4DModel, images: np.ndarray, device: torch.device, chunk: int = 32) -> float:
    zs = [
        model.conditioner.embedders[1](images_to_tensor(images[i : i + chunk]).to(device)).float().cpu()
        for i in range(0, len(images), chunk)
    ]
    return float(torch.cat(zs).std())


def train_autoencoder(
    cfg: TrainConfig, progress: bool = True, model: SV4DModel | None = None, device: str | torch.device = "auto"
) -> dict[str, Any]:
    """Train ``cfg.steps`` steps on ``device`` (``auto``: CUDA when available, else the CPU);
    write OUT/model.safetensors; return a summary."""
    from .loop import build_model

    dev = resolve_device(device)
    model = model if model is not None else build_model(cfg)
    mc = model.cfg
    images = training_images(cfg, mc.image_size)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.to(dev)
    model.requires_grad_(False)
    emb = model.conditioner.embedders
    params = list(emb[1].encoder.encoder.parameters()) + list(emb[1].encoder.quant_conv.parameters())
    params += list(model.first_stage_model.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_step = cfg.batch_size * mc.num_frames * (mc.num_views + 1)
    decoder = model.first_stage_model.decoder
    probe = images[np.random.default_rng(cfg.seed).permutation(len(images))[:16]]
    probe_x = images_to_tensor(probe).to(dev)
    log = open(out / "log.jsonl", "w")
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="autoencoder", unit="step", disable=not progress)
    try:
        for step in bar:
            rng = np.random.default_rng((cfg.seed, step))
            batch = images[rng.integers(len(images), size=per_step)]
            flip = rng.random(per_step) < 0.5
            batch[flip] = batch[flip, :, ::-1]
            x = images_to_tensor(batch).to(dev)
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            mean, logvar = _moments(model, x)
            z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g).to(dev)
            rec = (decoder(z) - x).abs().flatten(1).sum(1).mean()
            kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()
            loss = (rec + cfg.kl_weight * kl) / x[0].numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                rec_item = {
                    "step": step + 1,
                    "loss": losses[-1],
                    "kl": kl.item() / mean[0].numel(),
                    "seconds": round(time.perf_counter() - t0, 3),
                }
                log.write(json.dumps(rec_item) + "\n")
                log.flush()
    finally:
        bar.close()
        log.close()
    model.requires_grad_(False)
    with torch.no_grad():
        for j in (4, 5):
            emb[j].load_state_dict(emb[1].state_dict())
        std = latent_std(model, images, dev)
        if not math.isfinite(std) or std <= 0:
            raise Sv4dError(f"the trained autoencoder's latents have std {std}; lower lr or kl_weight")
        model.cfg = dataclasses.replace(mc, scale_factor=round(1.0 / std, 6))
        recon = model.decode(model.encode_latents(probe_x))
        psnr = batch_psnr_pm1(recon, probe_x)
    _save_recon(probe_x, recon, out / "recon.png")
    path = save_model(model.cpu(), out / "model.safetensors", extra_metadata={"sv4d_autoencoder_steps": str(cfg.steps)})
    summary = {
        "steps": cfg.steps,
        "images": int(len(images)),
        "images_per_step": per_step,
        "losses": losses,
        "recon_psnr": psnr,
        "scale_factor": model.cfg.scale_factor,
        "seconds": time.perf_counter() - t0,
        "model": str(path),
    }
    (out / "autoencoder.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "losses"}, indent=1))
    return summary


def _save_recon(x: torch.Tensor, y: torch.Tensor, path: Path) -> None:
    from PIL import Image

    u8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()  # noqa: E731
    rows = [torch.cat(list(u8(t[:8])), 2) for t in (x, y)]
    Image.fromarray(torch.cat(rows, 1).permute(1, 2, 0).numpy()).save(path)

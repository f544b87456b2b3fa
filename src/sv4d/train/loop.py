"""The training loop on Hugging Face ``accelerate``.

One process on a CPU, or DDP across GPUs and nodes with ``accelerate launch -m
sv4d.cli train CONFIG`` (not FSDP: the EMA and the export hold the parameters as they were
before ``accelerate.prepare``, which FSDP replaces with flat views). Mixed precision,
gradient accumulation, gradient clipping, EMA weights, periodic sample grids, safetensors
checkpoints and exact resume:

* every random draw of step ``s`` (sigmas, noise, masking, dropout, conditioning noise)
  comes from a generator seeded with ``(seed, s)``, and the samples of step ``s`` are a
  fixed function of ``(seed, s)`` (a seeded permutation per epoch), so a run resumed from
  ``OUT/state`` continues with exactly the numbers an uninterrupted run would have seen;
* ``OUT/state/`` holds the accelerate state (model, optimizer, RNG), ``ema.safetensors``
  and ``trainer.json`` (the step);
* ``OUT/model.safetensors`` (and ``OUT/checkpoints/step_XXXXXX.safetensors``) is a full
  sv4d checkpoint, EMA weights when EMA is on, that ``sv4d generate`` loads;
* ``OUT/log.jsonl`` has one line per logged step, ``OUT/samples/`` the sample grids.
"""

from __future__ import annotations

import glob
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import load_model, resolve_config, save_model
from ..devices import resolve_device
from ..diffusion.sampling import guidance, sample
from ..diffusion.training import diffusion_loss, drop_conditions, sample_sigmas
from ..errors import Sv4dError
from ..metrics import batch_psnr_pm1
from ..models.sv4d import SV4DModel
from .config import TrainConfig
from .data import MultiViewWindows, collate

VIEW_DRAWS = 16  # random input/target view draws of every window per epoch


def build_model(cfg: TrainConfig) -> SV4DModel:
    """From ``cfg.init`` (its config, with the stage's switches) or from scratch (seeded)."""
    if cfg.init:
        mcfg = cfg.model_config(resolve_config(cfg.init))
        model = load_model(cfg.init, config=mcfg, dtype="fp32")
    else:
        torch.manual_seed(cfg.seed)
        model = SV4DModel(cfg.model_config())
    return model


def _generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + salt)


@torch.no_grad()
def window_conditioning(
    model: SV4DModel, batch: dict[str, torch.Tensor], b: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Latents and conditioning of ``b`` windows, exactly as inference builds them.

    Returns x0 (b*N, 4, h, w) scaled latents of the targets, and (c, uc) with rows
    ordered (window, frame, view); reference views are kept (masking comes later).
    """
    T, V = model.cfg.num_frames, model.cfg.num_views
    cs, ucs = [], []
    for i in range(b):
        fr = batch["frames"][i * T : (i + 1) * T].to(device)
        c, uc = model.conditioner(
            fr,
            fr,
            batch["ref_views"][i * V : (i + 1) * V].to(device),
            fr,
            batch["polar"][i * T * V : (i + 1) * T * V],
            batch["azimuth"][i * T * V : (i + 1) * T * V],
            cond_mv=True,
            generator=generator,
            frames_repeat=V,
        )
        cs.append(c)
        ucs.append(uc)
    x0 = model.encode_latents(batch["target"].to(device), chunk=8)  # 8 images at a time, as generation does
    cat = lambda ds: {k: torch.cat([d[k] for d in ds]) for k in ds[0]}  # noqa: E731
    return x0, cat(cs), cat(ucs)


class Trainer:
    """``Trainer(cfg).run()`` trains ``cfg.steps`` optimizer steps (resuming from
    ``cfg.out/state`` when it exists) and returns a summary.

    device: ``auto`` (CUDA when available, else the CPU), ``cpu`` (forces the CPU) or a CUDA
    device; under ``accelerate launch`` each process takes its own GPU.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        dataset: MultiViewWindows | None = None,
        progress: bool = True,
        device: str | torch.device = "auto",
    ) -> None:
        try:
            from accelerate import Accelerator
        except ImportError:
            raise Sv4dError("training needs Hugging Face accelerate: pip install 'sv4d[train]'") from None

        dev = resolve_device(device)
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out)
        precision = cfg.mixed_precision
        if precision == "auto":
            precision = "bf16" if dev.type == "cuda" else "no"
        self.acc = Accelerator(
            mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum, cpu=dev.type == "cpu"
        )
        self.model = build_model(cfg)
        mc = self.model.cfg
        if dataset is None:
            sets = sorted({p for pattern in cfg.data for p in (glob.glob(pattern) or [pattern])})
            if not sets:
                raise Sv4dError("no training data: give data = [multi-view set folders] in the config")
            dataset = MultiViewWindows(
                sets,
                num_frames=mc.num_frames,
                num_views=mc.num_views,
                image_size=mc.image_size,
                mode=cfg.mode,
                input_view=cfg.input_view,
                frame_stride=cfg.frame_stride,
                seed=cfg.seed,
                draws_per_window=VIEW_DRAWS,  # each with its own random views
                views=cfg.views or None,
            )
        self.dataset = dataset
        self.model.requires_grad_(False)
        unet = self.model.unet
        unet.requires_grad_(True)
        for p in unet.bypassed_parameters().values():  # gradient 0 by construction; DDP would wait for it
            p.requires_grad_(False)
        checkpointing = cfg.gradient_checkpointing
        unet.gradient_checkpointing = cfg.model != "tiny" if checkpointing is None else checkpointing
        if cfg.stage == 1:
            for p in unet.motion_parameters().values():
                p.requires_grad_(False)
        self.trainable = {n: p for n, p in unet.named_parameters() if p.requires_grad}
        opt = torch.optim.AdamW(self.trainable.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.model.to(self.acc.device)
        self.cache = None
        if cfg.cache_latents and isinstance(dataset, MultiViewWindows):
            from .cache import LatentCache

            with self.acc.main_process_first():  # the main process encodes, the others read
                self.cache = LatentCache(
                    self.model,
                    dataset,
                    cfg.cache_dir or self.out / "cache",
                    progress=progress and self.acc.is_main_process,
                )
        self.unet, self.opt = self.acc.prepare(unet, opt)
        self.ema = {n: p.detach().float().clone() for n, p in self.trainable.items()} if cfg.ema_decay > 0 else None
        self.step = 0

    # ------------------------------------------------------------------ data order
    def _indices(self, step: int, micro: int) -> list[int]:
        """The dataset items of one micro-batch: a seeded permutation per epoch."""
        cfg, n = self.cfg, len(self.dataset)
        world, rank = self.acc.num_processes, self.acc.process_index
        items = []
        for k in range(cfg.batch_size):
            flat = ((step * cfg.grad_accum + micro) * world + rank) * cfg.batch_size + k
            epoch, pos = divmod(flat, n)
            perm = np.random.default_rng((cfg.seed, epoch)).permutation(n)
            items.append(int(perm[pos]))
        return items

    def _conditioning(self, step: int, micro: int, g: torch.Generator):
        """x0, c, uc of one micro-batch: from the latent cache, or encoded from pixels."""
        idx = self._indices(step, micro)
        if self.cache is not None:
            return self.cache.conditioning([self.dataset.spec(i) for i in idx], self.acc.device)
        batch = collate([self.dataset[i] for i in idx])
        return window_conditioning(self.model, batch, len(idx), g, self.acc.device)

    # ------------------------------------------------------------------ state
    def _state_dir(self) -> Path:
        return self.out / "state"

    def save_state(self) -> None:
        from safetensors.torch import save_file

        d = self._state_dir()
        self.acc.wait_for_everyone()
        self.acc.save_state(str(d))
        if self.acc.is_main_process:
            if self.ema is not None:
                save_file({k: v.contiguous() for k, v in self.ema.items()}, str(d / "ema.safetensors"))
            (d / "trainer.json").write_text(json.dumps({"step": self.step, "config": self.cfg.to_dict()}, indent=1))
            self.export(self.out / "checkpoints" / f"step_{self.step:06d}.safetensors")
            self.export(self.out / "model.safetensors")

    def load_state(self) -> bool:
        from safetensors.torch import load_file

        d = self._state_dir()
        if not (d / "trainer.json").is_file():
            return False
        self.acc.load_state(str(d))
        self.step = int(json.loads((d / "trainer.json").read_text())["step"])
        if self.ema is not None and (d / "ema.safetensors").is_file():
            ema = load_file(str(d / "ema.safetensors"), device=str(self.acc.device))  # beside the weights
            self.ema = {k: v.float() for k, v in ema.items()}
        return True

    def export(self, path: Path) -> Path:
        """A full sv4d checkpoint of the current (EMA, when on) weights."""
        unet = self.acc.unwrap_model(self.unet)
        backup = None
        if self.ema is not None:
            params = dict(unet.named_parameters())
            backup = {n: params[n].detach().clone() for n in self.ema}
            with torch.no_grad():
                for n, v in self.ema.items():
                    params[n].copy_(v)
        try:
            return save_model(self.model, path, extra_metadata={"sv4d_train_step": str(self.step)})
        finally:
            if backup is not None:
                with torch.no_grad():
                    params = dict(unet.named_parameters())
                    for n, v in backup.items():
                        params[n].copy_(v)

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> dict[str, float]:
        cfg, dev = self.cfg, self.acc.device
        total, masked_n, dropped_n = 0.0, 0, 0
        for micro in range(cfg.grad_accum):
            g = _generator(cfg.seed, step, micro)
            b = cfg.batch_size
            x0, c, uc = self._conditioning(step, micro, g)
            cond, masked, dropped = drop_conditions(c, uc, b, cfg.objective, g)
            sigma = sample_sigmas(b, cfg.objective, g)
            noise = torch.randn(x0.shape, generator=g).to(dev)
            with self.acc.accumulate(self.unet):
                with self.acc.autocast():
                    loss = diffusion_loss(self.unet, x0, cond, sigma, noise, cfg.objective.sigma_data).mean()
                self.acc.backward(loss)
                if self.acc.sync_gradients and cfg.max_grad_norm > 0:
                    self.acc.clip_grad_norm_(self.trainable.values(), cfg.max_grad_norm)
                self.opt.step()
                self.opt.zero_grad()
            total += loss.item() / cfg.grad_accum
            masked_n += int(masked.sum())
            dropped_n += int(dropped.sum())
        if self.ema is not None:
            d = cfg.ema_decay
            with torch.no_grad():
                for n, p in self.trainable.items():
                    self.ema[n].mul_(d).add_(p.detach().float(), alpha=1 - d)
        return {"loss": total, "masked": masked_n, "dropped": dropped_n}

    @torch.no_grad()
    def sample_grid(self, path: Path) -> float:
        """Sample the first training window without reference views; write target (top)
        and generated (bottom) rows per view; return the PSNR of the generated views."""
        from PIL import Image

        mc = self.model.cfg
        T, V = mc.num_frames, mc.num_views
        batch = collate([self.dataset[0]])
        dev = self.acc.device
        g = _generator(self.cfg.seed, -1)
        fr = batch["frames"].to(dev)
        c, uc = self.model.conditioner(
            fr,
            fr,
            torch.zeros_like(batch["ref_views"]).to(dev),
            fr,
            batch["polar"],
            batch["azimuth"],
            cond_mv=False,
            generator=g,
            frames_repeat=V,
        )
        self.unet.eval()
        try:
            z = sample(
                self.model,
                c,
                uc,
                torch.randn(T * V, 4, mc.latent_size, mc.latent_size, generator=g),
                num_steps=self.cfg.sample_steps,
                scales=guidance(self.model, T, V),
            )
        finally:
            self.unet.train()
        x = self.model.decode(z, 4).clamp(-1, 1).cpu()  # 4 latents at a time: 48 at 576 px would need ~40 GB
        tgt = batch["target"]
        u8 = lambda t: ((t + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
        rows = []
        for v in range(V):
            for src in (tgt, x):
                rows.append(torch.cat([u8(src[t * V + v]) for t in range(T)], 2))
        grid = torch.cat(rows, 1).permute(1, 2, 0).numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(path)
        return batch_psnr_pm1(x, tgt)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = self.load_state()
        if self.acc.is_main_process:
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        log = open(self.out / "log.jsonl", "a") if self.acc.is_main_process else None
        losses = []
        bar = tqdm(
            range(self.step, cfg.steps),
            initial=self.step,
            total=cfg.steps,
            desc="training",
            unit="step",
            disable=not self.progress or not self.acc.is_main_process,
        )
        t0 = time.perf_counter()
        try:
            for step in bar:
                stats = self.train_step(step)
                self.step = step + 1
                losses.append(stats["loss"])
                bar.set_postfix(loss=f"{stats['loss']:.4f}")
                if log is not None and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    log.write(
                        json.dumps({"step": self.step, **stats, "seconds": round(time.perf_counter() - t0, 3)}) + "\n"
                    )
                    log.flush()
                if self.step % cfg.sample_every == 0 and self.acc.is_main_process:
                    psnr = self.sample_grid(self.out / "samples" / f"step_{self.step:06d}.png")
                    log.write(json.dumps({"step": self.step, "sample_psnr": round(psnr, 3)}) + "\n")
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save_state()
        finally:
            bar.close()
            if log is not None:
                log.close()
        return {
            "steps": self.step,
            "resumed": resumed,
            "losses": losses,
            "seconds": time.perf_counter() - t0,
            "model": str(self.out / "model.safetensors"),
        }

"""``sv4d train`` and ``sv4d train-autoencoder``: training from a config file plus overrides."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_device, add_out, add_quiet, positive_int


def _loss_ends(losses: list[float]) -> tuple[int, float, float]:
    """(k, mean of the first k, mean of the last k) with k a tenth of the run (at least 1)."""
    k = max(1, len(losses) // 10)
    return k, sum(losses[:k]) / k, sum(losses[-k:]) / k


def _train_config(args: argparse.Namespace):
    from ..train.config import load_train_config

    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `sv4d train steps=10`: no config file, only overrides
        config = None
    if args.out:
        overrides.append(f"out={args.out}")
    if args.steps:
        overrides.append(f"steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return load_train_config(config, overrides)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """The arguments `sv4d train` and `sv4d train-autoencoder` share (read by _train_config)."""
    p.add_argument("config", nargs="?", default=None, help="TOML or JSON training config (default: all defaults)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config fields, values in JSON")
    add_out(p, "output folder (overrides the config's out)")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (overrides the config)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="random seed (overrides the config's seed, default 0); the same seed gives the same run",
    )
    add_device(p, " (cpu forces the CPU; under `accelerate launch` each process takes its own GPU)")
    add_quiet(p)


def run_train_autoencoder(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..errors import Sv4dError
    from ..train.autoencoder import train_autoencoder

    device = resolve_device(args.device)
    cfg = _train_config(args)
    if cfg.init is None and cfg.model != "tiny":
        raise Sv4dError(
            f"model {cfg.model!r} comes with the official VAE: give init = the official "
            "checkpoint to fine-tune its VAE, or use model = 'tiny'"
        )
    s = train_autoencoder(cfg, progress=not args.quiet, device=device)
    k, first, last = _loss_ends(s["losses"])
    if not args.quiet:
        print(
            f"sv4d: autoencoder {s['steps']} steps on {s['images']} images, loss {first:.4f} -> "
            f"{last:.4f}, reconstruction PSNR {s['recon_psnr']:.2f} dB, scale_factor "
            f"{s['scale_factor']:.4f}, {s['seconds']:.0f} s",
            file=sys.stderr,
        )
    print(s["model"])
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..train.loop import Trainer

    device = resolve_device(args.device)
    cfg = _train_config(args)
    summary = Trainer(cfg, progress=not args.quiet, device=device).run()
    if summary["losses"] and not args.quiet:
        k, first, last = _loss_ends(summary["losses"])
        print(
            f"sv4d: {summary['steps']} steps ({'resumed' if summary['resumed'] else 'new run'}), "
            f"loss {first:.4f} (first {k}) -> {last:.4f} (last {k}), "
            f"{summary['seconds']:.0f} s",
            file=sys.stderr,
        )
    print(summary["model"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        help="train or fine-tune SV4D 2.0 on multi-view video sets",
        description=(
            "Train with the SV4D 2.0 recipe (EDM objective, reference-view masking, condition "
            "dropout, progressive 3D-to-4D stages) on Hugging Face accelerate: one process on a "
            "CPU or GPU, or many GPUs with `accelerate launch -m sv4d.cli train CONFIG`. CONFIG is a "
            "TOML or JSON file of sv4d.train.config.TrainConfig fields (see configs/tiny_fox.toml); "
            "KEY=VALUE overrides any field (objective.uncond_prob=0.2). VAE latents and image "
            "embeddings are cached in OUT/cache (cache_dir=...) before the first step. A run resumes "
            "from OUT/state when it exists; OUT/model.safetensors is a checkpoint `sv4d generate` "
            'loads. A model from scratch (model="tiny") needs its VAE trained first: see '
            "`sv4d train-autoencoder --help`."
        ),
        epilog="example: sv4d train configs/tiny_fox.toml steps=50 -o runs/try",
    )
    _add_train_args(t)
    t.set_defaults(func=run_train)
    a = sub.add_parser(
        "train-autoencoder",
        help="train a small model's VAE before its UNet (for training from scratch)",
        description=(
            "Train the VAE of a from-scratch model (model = 'tiny') on the config's data: the "
            "conditioning encoder and the decoder as a KL autoencoder (L1 + kl_weight * KL). The "
            "three conditioning encoders get the trained weights and scale_factor becomes 1/std "
            "of the latents. Writes OUT/model.safetensors; then run `sv4d train CONFIG "
            "init=OUT/model.safetensors` to train the UNet with this VAE frozen. Takes the same "
            "CONFIG and KEY=VALUE overrides as `sv4d train` (lr, steps, batch_size, views, ...)."
        ),
        epilog="example: sv4d train-autoencoder configs/tiny_fox.toml steps=300 -o runs/fox_vae",
    )
    _add_train_args(a)
    a.set_defaults(func=run_train_autoencoder)

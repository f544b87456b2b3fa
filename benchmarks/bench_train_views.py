"""Training demonstration: a small model trained from scratch beats copying the input view.

    python benchmarks/bench_train_views.py                   # fox_walk, views 2, 6, 10 held out
    python benchmarks/bench_train_views.py --steps 300 --vae-steps 200   # a quick look

1. ``sv4d train-autoencoder`` on the training views (the tiny model's VAE);
2. ``sv4d train`` (UNet only, VAE frozen, latents cached) from that checkpoint;
3. on every window of T frames of the set, condition on the input view and generate the
   held-out views (no reference views, as the first window at inference), then compare with
   the ground truth in PSNR and SSIM against two references: the trivial baseline (the input
   view's frame copied to every target view) and the ceiling of the VAE (the ground truth
   encoded and decoded). Views seen in training are scored the same way for comparison.

Both training stages reuse what ``--out`` already holds (the trainer resumes from its state),
so raising ``--steps`` continues a run. Prints a table and writes OUT/results.json and
OUT/eval_grid.png (per view: ground truth, generated, copied input).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sv4d.checkpoint import load_model  # noqa: E402
from sv4d.diffusion.sampling import guidance, sample  # noqa: E402
from sv4d.io.multiview import read_multiview  # noqa: E402
from sv4d.metrics import psnr, ssim  # noqa: E402
from sv4d.train.autoencoder import train_autoencoder  # noqa: E402
from sv4d.train.config import load_train_config  # noqa: E402
from sv4d.train.data import MultiViewWindows  # noqa: E402
from sv4d.train.loop import Trainer  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@torch.no_grad()
def evaluate(model, data: str, input_view: int, targets: list[int], steps: int, seed: int):
    """Per-window scores of generated, copied and VAE-reconstructed target views."""
    mc = model.cfg
    T, V, S = mc.num_frames, mc.num_views, mc.image_size
    ds = MultiViewWindows(
        [data], num_frames=T, num_views=V, image_size=S, input_view=input_view, target_views=targets, cache_images=True
    )
    nf = ds.sets[0].num_frames
    starts = list(range(0, nf - T + 1, T))
    if starts[-1] + T < nf:
        starts.append(nf - T)  # the last frames too
    scores = {k: {"psnr": [], "ssim": []} for k in ("generated", "copy", "vae")}
    grid = None
    to01 = lambda x: ((x.clamp(-1, 1) + 1) / 2).float()  # noqa: E731
    for w, start in enumerate(starts):
        item = ds[ds.pairs.index((0, start))]
        g = torch.Generator().manual_seed(seed + w)
        fr = item.frames
        c, uc = model.conditioner(
            fr,
            fr,
            torch.zeros_like(item.ref_views),
            fr,
            item.polar,
            item.azimuth,
            cond_mv=False,
            generator=g,
            frames_repeat=V,
        )
        noise = torch.randn(T * V, 4, mc.latent_size, mc.latent_size, generator=g)
        z = sample(model, c, uc, noise, num_steps=steps, scales=guidance(model, T, V))
        outs = {
            "generated": model.decode(z),
            "copy": fr.repeat_interleave(V, 0),
            "vae": model.decode(model.encode_latents(item.target)),
        }
        gt = to01(item.target)
        for k, x in outs.items():
            scores[k]["psnr"] += psnr(to01(x), gt).tolist()
            scores[k]["ssim"] += ssim(to01(x), gt).tolist()
        if w == len(starts) // 2:
            rows = []
            for v in range(V):
                for x in (item.target, outs["generated"], outs["copy"]):
                    rows.append(torch.cat([x[t * V + v] for t in range(T)], 2))
            grid = (to01(torch.cat(rows, 1)) * 255).round().byte().permute(1, 2, 0).numpy()
    summary = {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in scores.items()}
    summary["windows"] = len(starts)
    summary["images"] = len(scores["generated"]["psnr"])
    summary["generated_beats_copy"] = float(
        np.mean(np.array(scores["generated"]["psnr"]) > np.array(scores["copy"]["psnr"]))
    )
    return summary, grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "fox_walk_views.toml"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "multiview" / "fox_walk"))
    ap.add_argument("--held-out", type=_ints, default=[2, 6, 10], help="view indices kept out of training")
    ap.add_argument("--seen", type=_ints, default=[1, 4, 9], help="training views scored for comparison")
    ap.add_argument("--input-view", type=int, default=0)
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=2000, help="UNet optimizer steps")
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_train_views"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)

    num_views = read_multiview(args.data).num_views
    train_views = [v for v in range(num_views) if v not in args.held_out]
    common = [f"data={json.dumps([args.data])}", f"views={json.dumps(train_views)}", f"seed={args.seed}"]

    vae_model = out / "vae" / "model.safetensors"
    if not vae_model.is_file():
        cfg = load_train_config(
            args.config, [*common, f"out={out / 'vae'}", f"steps={args.vae_steps}", f"lr={args.vae_lr}", "batch_size=1"]
        )
        s = train_autoencoder(cfg)
        print(
            f"autoencoder: {s['steps']} steps, {s['steps'] / s['seconds']:.2f} steps/s, "
            f"reconstruction PSNR {s['recon_psnr']:.2f} dB, scale_factor {s['scale_factor']:.4f}"
        )
    cfg = load_train_config(
        args.config, [*common, f"out={out / 'unet'}", f"init={json.dumps(str(vae_model))}", f"steps={args.steps}"]
    )
    t0 = time.perf_counter()
    s = Trainer(cfg).run()
    done = len(s["losses"])
    if done:
        k = max(1, done // 10)
        print(
            f"unet: {done} steps this run ({s['steps']} total), {done / s['seconds']:.2f} steps/s, "
            f"loss {np.mean(s['losses'][:k]):.4f} -> {np.mean(s['losses'][-k:]):.4f}"
        )
    train_seconds = time.perf_counter() - t0

    model = load_model(out / "unet" / "model.safetensors", dtype="fp32").eval()
    results = {
        "config": str(args.config),
        "data": args.data,
        "held_out": args.held_out,
        "seen": args.seen,
        "input_view": args.input_view,
        "unet_steps": s["steps"],
        "train_seconds": train_seconds,
        "model_channels": cfg.model_channels,
        "image_size": model.cfg.image_size,
        "parameters_unet": sum(p.numel() for p in model.unet.parameters()),
    }
    print(f"\n{'views':<28}{'method':<12}{'PSNR dB':>9}{'SSIM':>8}")
    for name, views in (("held-out", args.held_out), ("seen in training", args.seen)):
        t1 = time.perf_counter()
        summary, grid = evaluate(model, args.data, args.input_view, views, args.sample_steps, args.seed)
        summary["seconds"] = time.perf_counter() - t1
        results[name] = summary
        for k in ("generated", "copy", "vae"):
            label = {"generated": "generated", "copy": "copy input", "vae": "VAE ceiling"}[k]
            print(f"{name + ' ' + str(views):<28}{label:<12}{summary[k]['psnr']:>9.2f}{summary[k]['ssim']:>8.4f}")
        print(
            f"{'':<28}generated beats copy on {100 * summary['generated_beats_copy']:.0f}% of "
            f"{summary['images']} images"
        )
        if name == "held-out" and grid is not None:
            from PIL import Image

            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid).save(out / "eval_grid.png")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out / 'results.json'} and {out / 'eval_grid.png'}")


if __name__ == "__main__":
    main()

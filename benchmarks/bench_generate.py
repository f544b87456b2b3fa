"""Seconds per window and peak memory of ``sv4d generate`` (the whole pipeline).

CPU (default): a reduced model -- the mid-size UNet of bench_unet.py (model_channels 128,
channel_mult [1,2,4,4], 2 res blocks), the full-size VAE and ViT-H/14 image encoder --
at 128x128 images (16x16 latents), 12 frames x 4 views per window, on the 21-frame
example clip, with ``--steps`` sampling steps (default 5). Random weights.

GPU (``--device cuda``): the full-size presets sv4d2 (12 x 4) and sv4d2_8views (5 x 8) at
576x576 with 50 steps, in fp16 and bf16, with and without ``--offload``; random weights
unless ``--checkpoint`` gives real ones (then only that file's preset is timed).

    python benchmarks/bench_generate.py                      # CPU figures
    python benchmarks/bench_generate.py --device cuda        # GPU figures
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from sv4d.config import UNetConfig, get_preset
from sv4d.generate.pipeline import GenerationPipeline
from sv4d.io.video import read_clip
from sv4d.models.clip import CLIP_MEAN, CLIP_STD
from sv4d.models.sv4d import SV4DModel

CLIP = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "videos" / "test_video1.mp4"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0**2


def report(label: str, res, extra: str = "") -> None:
    s = res.settings
    per = s["seconds_per_window"]
    stages = [sum(x[i] for x in s["seconds_condition_sample_decode"]) / len(per) for i in range(3)]
    print(
        f"  {label:<26} windows {s['windows']}  {s['steps']} steps  "
        f"{sum(per) / len(per):7.2f} s/window  (condition {stages[0]:.2f} + sample {stages[1]:.2f} "
        f"+ decode {stages[2]:.2f})  preprocess {s['seconds_preprocess']:.2f} s{extra}"
    )


def bench_cpu(steps: int, frames: int) -> None:
    torch.manual_seed(0)
    preset = get_preset("sv4d2")
    unet = UNetConfig(model_channels=128, channel_mult=(1, 2, 4, 4), num_res_blocks=2, adm_in_channels=512)
    cfg = preset.replace(name="reduced", unet=unet, sigma_cond_dim=128, polar_dim=192, azimuth_dim=192, image_size=128)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        "reduced sv4d2: mid-size UNet (128 ch, [1,2,4,4]), full VAE and ViT-H/14, 128x128 images, "
        f"T=12 x V=4, fp32, {frames} frames of {CLIP.name}"
    )
    t0 = time.perf_counter()
    model = SV4DModel(cfg)
    print(
        f"  build (random init) {time.perf_counter() - t0:.1f} s, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f} M params"
    )
    pipe = GenerationPipeline(model, device="cpu")
    clip = read_clip(CLIP, max_frames=frames)
    res = pipe(clip, steps=steps, progress=False)
    report("cpu fp32", res, f"  peak RSS {peak_rss_gb():.2f} GB")
    st = res.settings["seconds_condition_sample_decode"]
    per_step = sum(x[1] for x in st) / len(st) / steps
    fixed = sum(x[0] + x[2] for x in st) / len(st)
    print(
        f"  {per_step:.1f} s per sampling step (2 UNet passes with CFG); "
        f"with 50 steps a window would take ~{(fixed + 50 * per_step) / 60:.0f} min"
    )


def random_model(cfg, device, dtype) -> SV4DModel:
    """A full-size model with N(0, 0.02) weights, materialised directly on ``device``."""
    torch.manual_seed(0)
    with torch.device("meta"):
        model = SV4DModel(cfg)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
        emb = model.conditioner.embedders[0]
        emb.mean.copy_(torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        emb.std.copy_(torch.tensor(CLIP_STD).view(1, 3, 1, 1))
    return model.to(dtype)


def bench_gpu(device: str, checkpoint: str | None, frames: int, steps: int) -> None:
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}")
    clip = read_clip(CLIP, max_frames=frames)
    runs = []
    if checkpoint:
        runs = [(None, dt, off) for dt in ("fp16", "bf16") for off in (False, True)]
    else:
        runs = [(p, dt, off) for p in ("sv4d2", "sv4d2_8views") for dt in ("fp16", "bf16") for off in (False, True)]
    for preset, dtype, offload in runs:
        torch.cuda.empty_cache()
        if checkpoint:
            pipe = GenerationPipeline.from_checkpoint(checkpoint, device=device, dtype=dtype, offload=offload)
            name = pipe.cfg.name
        else:
            dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
            model = random_model(get_preset(preset), "cpu" if offload else device, dt)
            pipe = GenerationPipeline(model, device=device, offload=offload)
            name = preset
        torch.cuda.reset_peak_memory_stats(device)
        res = pipe(clip, steps=steps, progress=False)
        peak = torch.cuda.max_memory_allocated(device) / 1024**3
        report(f"{name} {dtype}{' offload' if offload else ''}", res, f"  peak CUDA memory {peak:.1f} GB")
        del pipe, res
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", default=None, help="time a real checkpoint (GPU only)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: 5 on CPU, 50 on GPU)")
    ap.add_argument("--frames", type=int, default=21, help="frames of the example clip")
    a = ap.parse_args()
    if a.device == "cpu":
        bench_cpu(a.steps or 5, a.frames)
    else:
        bench_gpu(a.device, a.checkpoint, a.frames, a.steps or 50)


if __name__ == "__main__":
    main()

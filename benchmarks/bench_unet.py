"""Time one UNet forward and report peak memory.

CPU (default): a mid-size config -- model_channels 128, channel_mult [1,2,4,4], 2 res blocks,
12 frames x 4 views, 16x16 latents -- with the CFG batch (b = 2) the sampler uses, for each
view-attention mode. Also times building the full-size model on the meta device and
materialising it.

GPU (``--device cuda``): the full-size presets sv4d2 (12x4) and sv4d2_8views (5x8) at 72x72
latents (576x576 images) in fp16 and bf16, random weights.

    python benchmarks/bench_unet.py                 # CPU figures
    python benchmarks/bench_unet.py --device cuda   # GPU figures
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from sv4d.checkpoint import build_model
from sv4d.config import UNetConfig, get_preset
from sv4d.models.unet import SV4DUNet


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def inputs(cfg: UNetConfig, T: int, V: int, hw: int, b: int, device, dtype):
    g = torch.Generator().manual_seed(0)
    N = T * V
    mk = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    return dict(
        x=mk(b * N, cfg.in_channels, hw, hw),
        timesteps=torch.full((b * N,), 0.25 * torch.log(torch.tensor(10.0)).item(), device=device),
        context=mk(b, T, cfg.context_dim),
        y=mk(b * N, cfg.adm_in_channels),
        cond_view=mk(b * V, cfg.motion_context_dim, hw, hw),
    )


def time_forward(unet, inp, repeats: int, device) -> float:
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    with torch.no_grad():
        unet(**inp)  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            unet(**inp)
        sync()
    return (time.perf_counter() - t0) / repeats


def bench_cpu(repeats: int) -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        "mid-size UNet: model_channels 128, channel_mult [1,2,4,4], 2 res blocks, T=12 x V=4, 16x16 latents, b=2 (CFG)"
    )
    for mode in ("grouped", "per_pixel", "joint"):
        cfg = UNetConfig(
            model_channels=128, channel_mult=(1, 2, 4, 4), num_res_blocks=2, adm_in_channels=512, view_attention=mode
        )
        unet = SV4DUNet(cfg).eval()
        n_params = sum(p.numel() for p in unet.parameters())
        inp = inputs(cfg, 12, 4, 16, 2, "cpu", torch.float32)
        rss0 = peak_rss_mb()
        s = time_forward(unet, inp, repeats, "cpu")
        print(
            f"  {mode:<9} {n_params / 1e6:7.1f} M params  forward {s:6.2f} s  "
            f"peak RSS {peak_rss_mb():7.0f} MB (was {rss0:.0f} MB before the forward)"
        )
        del unet
    t0 = time.perf_counter()
    model = build_model(get_preset("sv4d2"), include_unused=True)
    t_meta = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = model.to(torch.bfloat16).to_empty(device="cpu")  # reserves memory, writes nothing
    t_mat = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    print(
        f"full-size sv4d2: build on meta {t_meta:.2f} s; to_empty {n / 1e9:.3f} B params in bf16 "
        f"on cpu {t_mat:.2f} s; peak RSS {peak_rss_mb():.0f} MB"
    )


def bench_gpu(device: str, repeats: int) -> None:
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}")
    for name in ("sv4d2", "sv4d2_8views"):
        cfg = get_preset(name)
        for dtype in (torch.float16, torch.bfloat16):
            torch.cuda.empty_cache()
            with torch.device("meta"):
                unet = SV4DUNet(cfg.unet)
            unet = unet.to(dtype).to_empty(device=device).eval()
            for p in unet.parameters():
                torch.nn.init.normal_(p, 0, 0.02)
            inp = inputs(cfg.unet, cfg.num_frames, cfg.num_views, cfg.latent_size, 2, device, dtype)
            torch.cuda.reset_peak_memory_stats(device)
            s = time_forward(unet, inp, repeats, device)
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            print(
                f"  {name:<13} {str(dtype):<15} T={cfg.num_frames} V={cfg.num_views} "
                f"{cfg.latent_size}x{cfg.latent_size} b=2: "
                f"forward {s * 1000:7.1f} ms, peak {peak:5.1f} GiB, 50 steps ~ {50 * s:5.1f} s/window"
            )
            del unet, inp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        bench_gpu(args.device, args.repeats)
    else:
        bench_cpu(args.repeats)


if __name__ == "__main__":
    main()

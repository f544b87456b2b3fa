"""The first GPU run, prepared: every CUDA path of sv4d once, with figures (run by gpu_check.sh).

    bash benchmarks/gpu_check.sh              # on a CUDA machine: at most ~8 minutes on an H200
    bash benchmarks/gpu_check.sh --dry-run    # the same steps at tiny sizes on the CPU (CI runs this)

Steps (each is reported ok or FAILED with its first error line, and the script goes on):

1. generate: both full-size presets (sv4d2 12 x 4, sv4d2_8views 5 x 8) with random weights at
   576 x 576, one window, ``--steps`` steps (50) with CFG, in fp16 and bf16, with and without
   offload, the VAE chunked as the pipeline does; seconds and peak CUDA memory of each;
2. fit: the NeRF and the 4D Gaussians of examples/fox_walk_96 on the device (steps per second);
3. train: a few optimizer steps of a small model with mixed precision (bf16 on CUDA);
4. evaluate: examples/fox_walk_96 against itself on the device (PSNR must be the cap);
5. equality: a tiny model's generation on the device against the CPU, same seed (tolerance).

Exit status 0 only if every step passed. ``--out`` keeps what the steps wrote (default: a
temporary folder) and results.json with every figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

FOX = ROOT / "examples" / "fox_walk_96"
CLIP = ROOT / "tests" / "fixtures" / "videos" / "test_video1.mp4"
FOX_SMALL = ROOT / "tests" / "fixtures" / "multiview" / "fox_small"


class Check:
    def __init__(self, device: str, dry: bool, steps: int, out: Path) -> None:
        self.device, self.dry, self.steps, self.out = device, dry, steps, out
        self.rows: list[dict] = []

    def step(self, name: str, fn) -> None:
        t0 = time.perf_counter()
        print(f"[{len(self.rows) + 1}] {name} ...", flush=True)
        try:
            figures = fn() or {}
            row = {"step": name, "ok": True, "seconds": round(time.perf_counter() - t0, 2), **figures}
        except Exception as e:  # noqa: BLE001 (a check reports every failure and goes on)
            traceback.print_exc()
            line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            row = {"step": name, "ok": False, "seconds": round(time.perf_counter() - t0, 2), "error": line}
        finally:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
        self.rows.append(row)
        extra = {k: v for k, v in row.items() if k not in ("step", "ok", "seconds")}
        print(f"    {'ok' if row['ok'] else 'FAILED'} in {row['seconds']} s {json.dumps(extra)}", flush=True)

    def peak_gb(self) -> float | None:
        if not self.device.startswith("cuda"):
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 1024**3, 2)

    def reset_peak(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)


# ---------------------------------------------------------------------------------------------- steps


def tiny_model(frames: int = 4, views: int = 4):
    from sv4d.config import PRESETS, tiny_config
    from sv4d.models.sv4d import SV4DModel

    torch.manual_seed(0)
    cfg = tiny_config("tiny_gen", num_frames=frames, num_views=views, with_clip=True, image_size=32, vae_downsample=4)
    return SV4DModel(cfg.replace(azimuths_deg=PRESETS["sv4d2"].azimuths_deg), include_unused=True)


def generate(check: Check, preset: str, dtype: str, offload: bool) -> dict:
    from sv4d.generate.pipeline import GenerationPipeline
    from sv4d.io.video import read_clip

    if check.dry:
        model, frames = tiny_model().to(torch.float32), 4
    else:
        from bench_generate import random_model
        from sv4d.config import get_preset

        cfg = get_preset(preset)
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        model, frames = random_model(cfg, "cpu" if offload else check.device, dt), cfg.num_frames
    pipe = GenerationPipeline(model, device=check.device, offload=offload)
    check.reset_peak()
    res = pipe(read_clip(CLIP, max_frames=frames), steps=check.steps, seed=0, progress=False)
    s = res.settings
    images = torch.from_numpy(res.images)
    if not torch.isfinite(images.float()).all():
        raise RuntimeError("the generated images are not finite")
    return {
        "windows": len(s["windows"]),
        "seconds_per_window": round(sum(s["seconds_per_window"]) / len(s["seconds_per_window"]), 2),
        "peak_gb": check.peak_gb(),
        "images": list(res.images.shape),
    }


def fit(check: Check, method: str) -> dict:
    from sv4d.fit.run import FitOptions, fit_set

    steps = 5 if check.dry else 300
    tiny = {"nerf": {"resolutions": [16, 32], "hull_resolution": 32, "rays": 1024, "features": 8, "hidden": 32},
            "gaussians": {"init_count": 2000, "hull_resolution": 32, "resolutions": [16, 32], "features": 8,
                          "hidden": 32}}  # fmt: skip
    opts = FitOptions(
        method=method, views=[0, 2, 3, 4, 6], frames=list(range(4)) if check.dry else None,
        resolution=32 if check.dry else 96, steps=steps, device=check.device,
        settings=tiny[method] if check.dry else {}, videos=False,
    )  # fmt: skip
    check.reset_peak()
    t0 = time.perf_counter()
    summary = fit_set(FOX, check.out / f"fit_{method}", opts, progress=False)
    seconds = time.perf_counter() - t0
    return {"steps": summary["steps"], "steps_per_s": round(summary["steps"] / seconds, 1), "peak_gb": check.peak_gb()}


def train(check: Check) -> dict:
    from sv4d.train.config import TrainConfig
    from sv4d.train.loop import Trainer

    cfg = TrainConfig(
        model="tiny", num_frames=3, num_views=3, image_size=32, model_channels=32, data=(str(FOX_SMALL),),
        lr=1e-3, steps=4, save_every=2, sample_every=4, sample_steps=2, log_every=1, ema_decay=0.9,
        out=str(check.out / "train"),
    )  # fmt: skip
    trainer = Trainer(cfg, progress=False, device=check.device)  # mixed precision "auto": bf16 on a GPU
    mp = str(trainer.acc.mixed_precision)
    if mp != ("bf16" if check.device.startswith("cuda") else "no"):
        raise RuntimeError(f"mixed precision auto chose {mp} on {check.device}")
    summary = trainer.run()
    losses = summary["losses"]
    if not all(abs(x) < float("inf") for x in losses):
        raise RuntimeError(f"training losses are not finite: {losses}")
    return {"mixed_precision": mp, "steps": summary["steps"], "last_loss": round(losses[-1], 4)}


def evaluate(check: Check) -> dict:
    from sv4d.evaluate.run import EvalOptions
    from sv4d.evaluate.run import evaluate as run_evaluate

    opts = EvalOptions(device=check.device, progress=False, fvd=False)
    m = run_evaluate(FOX, FOX, check.out / "evaluate", opts)
    psnr = m["images"]["psnr"]["mean"]
    if psnr != 100.0:
        raise RuntimeError(f"a set against itself should score the PSNR cap (100 dB), got {psnr}")
    return {"psnr": psnr, "ssim": round(m["images"]["ssim"]["mean"], 6)}


def equality(check: Check) -> dict:
    """A tiny model's generation on the device against the CPU, the same seed: the noise comes from
    a CPU generator, so only arithmetic differs (fp32; TF32 off for the comparison)."""
    from sv4d.generate.pipeline import GenerationPipeline
    from sv4d.io.video import read_clip

    clip = read_clip(CLIP, max_frames=4)
    out = {}
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for dev in ("cpu", check.device):
            pipe = GenerationPipeline(tiny_model(), device=dev)
            out[dev] = pipe(clip, steps=2, seed=7, progress=False).images.astype(int)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    diff = abs(out["cpu"] - out[check.device])
    worst, mean = int(diff.max()), float(diff.mean())
    if worst > 3 or mean > 0.05:  # uint8 levels
        raise RuntimeError(f"device and CPU differ: max {worst}, mean {mean:.4f} levels (allowed 3 and 0.05)")
    return {"max_diff_levels": worst, "mean_diff_levels": round(mean, 5)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="the same steps at tiny sizes on the CPU")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps per window (default 50; 2 dry)")
    ap.add_argument("--out", type=Path, default=None, help="keep the outputs and results.json here")
    args = ap.parse_args()
    device = args.device or ("cpu" if args.dry_run else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: PyTorch sees no CUDA GPU; run with --dry-run for the CPU version", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="sv4d_gpu_check_"))
    out.mkdir(parents=True, exist_ok=True)
    check = Check(device, args.dry_run, args.steps or (2 if args.dry_run else 50), out)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(f"sv4d gpu_check: torch {torch.__version__}, {name}, {'dry run' if args.dry_run else 'full size'}")
    t0 = time.perf_counter()
    runs = [(p, dt, off) for p in ("sv4d2", "sv4d2_8views") for dt in ("fp16", "bf16") for off in (False, True)]
    if args.dry_run:  # tiny fp32 on the CPU: one run with and one without offload
        runs = [("tiny", "fp32", False), ("tiny", "fp32", True)]
    for preset, dtype, offload in runs:
        label = f"generate {preset} {dtype}{' offload' if offload else ''}"
        check.step(label, lambda p=preset, d=dtype, o=offload: generate(check, p, d, o))
    for method in ("nerf", "gaussians"):
        check.step(f"fit {method}", lambda m=method: fit(check, m))
    check.step("train (mixed precision)", lambda: train(check))
    check.step("evaluate", lambda: evaluate(check))
    if device != "cpu":
        check.step(f"equality {device} vs cpu", lambda: equality(check))
    total = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps({"device": name, "seconds": round(total, 1), "steps": check.rows}))
    failed = [r["step"] for r in check.rows if not r["ok"]]
    print(f"\n{'step':<34}{'result':<8}{'seconds':>9}  figures")
    for r in check.rows:
        figures = {k: v for k, v in r.items() if k not in ("step", "ok", "seconds")}
        print(f"{r['step']:<34}{'ok' if r['ok'] else 'FAILED':<8}{r['seconds']:>9}  {json.dumps(figures)}")
    print(f"{len(check.rows) - len(failed)} passed, {len(failed)} failed in {total:.0f} s; results: {out}/results.json")
    if args.out is None and not failed:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Load a full-size checkpoint in the official key layout and report time and peak memory.

Official weights cannot be downloaded here, so by default this writes a synthetic file with
every key and shape of ``sv4d2.safetensors`` (random values, in --file-dtype, no metadata)
and loads that. Pass --checkpoint to time a real file instead.

    python benchmarks/bench_load.py --workdir /tmp/sv4d-bench --dtype bf16
    python benchmarks/bench_load.py --checkpoint sv4d2.safetensors --dtype fp16 --device cuda
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_synthetic(path: Path, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    from sv4d import build_model, get_preset

    model = build_model(get_preset("sv4d2"), include_unused=True)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in model.state_dict().items():
        t = torch.empty(v.shape, dtype=dtype)
        if t.ndim >= 2:
            t.normal_(0, t[0].numel() ** -0.5, generator=g)
        else:
            t.normal_(0, 0.1, generator=g)
        sd[k] = t
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, path)


def load_once(path: str, dtype: str, device: str) -> None:
    import sv4d

    t0 = time.perf_counter()
    model = sv4d.load(path, dtype=dtype, device=device)
    dt = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    extra = ""
    if device.startswith("cuda"):
        extra = f", GPU peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    print(
        f"loaded {path} as {dtype} on {device}: {n / 1e9:.3f} B params in {dt:.1f} s; "
        f"peak RSS {peak_rss_gb():.1f} GiB{extra}; weights alone {n * model.unet.dtype.itemsize / 2**30:.1f} GiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--workdir", default="/tmp/sv4d-bench")
    ap.add_argument("--file-dtype", default="fp16", choices=["fp16", "fp32"])
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        load_once(args.checkpoint, args.dtype, args.device)
        return
    path = args.checkpoint
    if path is None:
        wd = Path(args.workdir)
        wd.mkdir(parents=True, exist_ok=True)
        p = wd / f"synthetic_sv4d2_{args.file_dtype}.safetensors"
        if not p.exists():
            t0 = time.perf_counter()
            write_synthetic(p, torch.float16 if args.file_dtype == "fp16" else torch.float32)
            print(f"wrote {p} ({p.stat().st_size / 2**30:.1f} GiB) in {time.perf_counter() - t0:.0f} s")
        path = str(p)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sv4d", "check", path], capture_output=True, text=True)
    print(f"sv4d check (header only): {time.perf_counter() - t0:.1f} s, exit {out.returncode}")
    print(out.stdout.strip() or out.stderr.strip())
    # load in a fresh process so its peak RSS is the load's alone
    subprocess.run(
        [sys.executable, __file__, "--_child", "--checkpoint", path, "--dtype", args.dtype, "--device", args.device],
        check=True,
    )


if __name__ == "__main__":
    main()

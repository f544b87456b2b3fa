"""Web demo benchmark (issue 17): how long a person waits, and what the service adds to a job.

    python benchmarks/bench_demo.py                                  # a tiny random model on the CPU
    python benchmarks/bench_demo.py -c sv4d2 --device cuda --fit-steps 3000   # the official model

Measured, for one clip (default: the shipped example camel.mp4):

* the server: seconds from `sv4d demo` to the page answering, and to serve the page again;
* upload to preview: `Demo.prepare` (check, copy, crop and mask, the preview video);
* two jobs through the demo (`Demo.generate` then `Demo.fit`, which also zips the download), the
  second finding the model loaded, against the same options through `sv4d run` (`run_clip`,
  run after them, so as warm as the second): the demo's overhead in seconds;
* the queue: two jobs started together; the second waits for the first (its wait and the
  overlap of their device time, which must be 0).

Prints a table and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from sv4d.demo import Demo, DemoOptions  # noqa: E402
from sv4d.workflow import RunOptions, run_clip  # noqa: E402

TINY_SETTINGS = {"init_count": 2000, "hull_resolution": 32, "resolutions": [16, 32], "features": 8, "hidden": 32}


def _serve_times(ckpt: str, device: str, jobs: Path) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "sv4d.cli", "demo", "-c", ckpt, "--port", str(port), "--jobs-dir", str(jobs), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--device", device], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"sv4d demo ended with status {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    r.read()
                break
            except OSError:
                time.sleep(0.1)
        start = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in range(10):
            with urllib.request.urlopen(url, timeout=5) as r:
                size = len(r.read())
        page = (time.perf_counter() - t1) / 10
    finally:
        proc.terminate()
        proc.wait(20)
    return {"server_start_s": round(start, 2), "page_s": round(page, 4), "page_bytes": size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--checkpoint", default=None, help="a model (default: a tiny random one, made here)")
    p.add_argument("--clip", default=str(ROOT / "src" / "sv4d" / "demo" / "examples" / "camel.mp4"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-frames", type=int, default=4)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--method", default="gaussians", choices=("nerf", "gaussians"))
    p.add_argument("--fit-steps", type=int, default=60)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("-o", "--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_demo_"))
    out.mkdir(parents=True, exist_ok=True)
    tiny = args.checkpoint is None
    if tiny:
        from conftest import tiny_generation_checkpoint

        args.checkpoint = str(tiny_generation_checkpoint(out / "tiny.safetensors"))
    small = dict(grid=32, page_size=32, page_azimuths=6, fit={"orbit_frames": 6}) if tiny else {}
    base = RunOptions(
        checkpoint=args.checkpoint, method=args.method, resolution=args.resolution,
        settings=TINY_SETTINGS if tiny and args.method == "gaussians" else {}, **small,
    )  # fmt: skip
    results: dict = {"device": args.device, "checkpoint": args.checkpoint, "clip": args.clip}
    results.update(_serve_times(args.checkpoint, args.device, out / "serve_jobs"))

    demo = Demo(DemoOptions(checkpoints=(args.checkpoint,), device=args.device, jobs_dir=out / "jobs", base=base))
    page = dict(checkpoint=args.checkpoint, num_frames=args.num_frames, steps=args.steps)
    t = time.perf_counter()
    job = demo.prepare([args.clip], "auto", "union", args.num_frames)
    results["upload_to_preview_s"] = round(time.perf_counter() - t, 2)
    timings = []
    for _ in range(2):  # the second job finds the model loaded
        t = time.perf_counter()
        job = demo.generate(job, demo.run_options(**page))
        t_gen = time.perf_counter() - t
        t = time.perf_counter()
        job = demo.fit(job, args.method, args.fit_steps, 0.0)
        timings.append((t_gen, time.perf_counter() - t))
    results["demo_generate_s"] = [round(a, 2) for a, _ in timings]
    results["demo_fit_export_zip_s"] = [round(b, 2) for _, b in timings]

    opts = demo.run_options(**page, fit_steps=args.fit_steps)
    t = time.perf_counter()
    state = run_clip(job["source"], out / "direct", opts, overwrite=True, progress=False)
    direct = time.perf_counter() - t
    results["sv4d_run_s"] = round(direct, 2)
    results["sv4d_run_stages_s"] = {k: v["seconds"] for k, v in state["stages"].items()}
    results["demo_overhead_s"] = round(sum(timings[1]) - direct, 2)  # the 2nd job: imports and caches warm

    spans: dict[int, tuple[float, float]] = {}
    waits: dict[int, float] = {}
    turn = demo.queue.turn
    held = threading.local()

    @contextmanager
    def timed_turn(*a, **k):  # when each job holds the device
        with turn(*a, **k):
            t_in = time.perf_counter()
            try:
                yield
            finally:
                spans[held.i] = (t_in, time.perf_counter())

    demo.queue.turn = timed_turn

    def one(i: int) -> None:
        held.i = i
        j = demo.prepare([args.clip], "auto", "union", args.num_frames)
        t0 = time.perf_counter()
        demo.generate(j, demo.run_options(**page))
        waits[i] = spans[i][0] - t0

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    (a0, a1), (b0, b1) = spans[0], spans[1]
    results["queue_waits_s"] = sorted(round(w, 2) for w in waits.values())
    results["queue_overlap_s"] = round(max(0.0, min(a1, b1) - max(a0, b0)), 3)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    rows = [
        ("server start to page", f"{results['server_start_s']} s"),
        ("page served again", f"{results['page_s'] * 1000:.0f} ms ({results['page_bytes']} bytes)"),
        ("upload to preview", f"{results['upload_to_preview_s']} s"),
        ("demo generate (1st, 2nd job)", " / ".join(f"{x} s" for x in results["demo_generate_s"])),
        ("demo fit+export+zip (1st, 2nd)", " / ".join(f"{x} s" for x in results["demo_fit_export_zip_s"])),
        ("sv4d run, same options", f"{results['sv4d_run_s']} s {results['sv4d_run_stages_s']}"),
        ("demo overhead (2nd job)", f"{results['demo_overhead_s']} s"),
        ("queue: waits of 2 jobs", " / ".join(f"{x} s" for x in results["queue_waits_s"])),
        ("queue: overlap on the device", f"{results['queue_overlap_s']} s (must be 0)"),
    ]
    for name, value in rows:
        print(f"{name:<32}{value}")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()

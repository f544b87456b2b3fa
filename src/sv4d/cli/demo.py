"""``sv4d demo``: serve the web demo (gradio, the optional extra ``sv4d[demo]``)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from .common import add_device, add_dtype, add_quiet, add_seed, key_values, positive_float, positive_int


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from ..demo import DemoLimits, DemoOptions
    from ..demo.page import serve
    from ..errors import Sv4dError
    from ..workflow import RunOptions

    if not 1 <= args.port <= 65535:
        raise Sv4dError(f"--port must be between 1 and 65535, got {args.port}")
    base = key_values(args.run_options, "--run")
    known = {f.name for f in dataclasses.fields(RunOptions)} - {"checkpoint", "device"}
    unknown = sorted(set(base) - known)
    if unknown:
        raise Sv4dError(f"unknown --run option(s) {unknown}; use {sorted(known)}")
    options = DemoOptions(
        checkpoints=tuple(args.checkpoint or ("sv4d2", "sv4d2_8views")),
        device=args.device,
        jobs_dir=Path(args.jobs_dir) if args.jobs_dir else None,
        keep_hours=args.keep_hours,
        limits=DemoLimits(max_upload_mb=args.max_upload_mb, max_frames=args.max_frames, max_pixels=args.max_pixels),
        max_waiting=args.max_waiting,
        base=RunOptions(checkpoint="", dtype=args.dtype, seed=args.seed, **base),
    )
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="sv4d demo: %(message)s")
    if not args.quiet:
        print(f"sv4d demo: serving on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    serve(options, host=args.host, port=args.port, share=args.share, quiet=args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "demo",
        help="a web page: upload a clip, look at the generated views, turn the 4D asset around, download it",
        description=textwrap.fill(
            "Serve the sv4d web demo: upload a video or a folder of frames (or pick an example), see the "
            "preprocessed input, generate the novel views with live progress, fit a 4D asset and turn it around "
            "in a 3D viewer, and download everything as one zip. One job at a time uses the device; the others "
            "wait in line and see their place. Every job has its own folder, removed after --keep-hours. The "
            "page binds 127.0.0.1 (this machine only) unless --host says otherwise, makes no share link unless "
            "--share, sends no analytics and needs no internet once installed. Needs gradio: "
            "pip install 'sv4d[demo]'.",
            88,
        ),
        epilog=(
            "examples:\n  sv4d demo\n  sv4d demo -c sv4d2 --port 8080\n"
            "  sv4d demo -c my_model.safetensors --device cpu --run resolution=64 --run fit_steps=300\n"
            "  sv4d demo --host 0.0.0.0 --max-upload-mb 20 --keep-hours 1   # on a shared server"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "-c",
        "--checkpoint",
        action="append",
        default=None,
        metavar="CKPT",
        help="a model the page offers (repeat for several): sv4d2, sv4d2_8views (the Hugging Face Hub, fetched "
        "on first use), hf://OWNER/REPO/FILE or a local .safetensors file (default: sv4d2 and sv4d2_8views)",
    )
    r.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine)")
    r.add_argument("--port", type=positive_int, default=7860, help="the port (default 7860)")
    r.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")
    add_device(r, " (generation and fit)")
    add_dtype(r, None, "the generator's precision (default fp16 on CUDA, fp32 on the CPU)")
    add_seed(r, 23, " (the page's default)")
    add_quiet(r)
    g = r.add_argument_group("service")
    g.add_argument("--jobs-dir", default=None, metavar="DIR", help="where job folders go (default: <temp>/sv4d-demo)")
    g.add_argument(
        "--keep-hours", type=positive_float, default=6.0, metavar="H", help="remove a job unused this long (default 6)"
    )
    g.add_argument(
        "--max-upload-mb", type=positive_float, default=100.0, metavar="MB", help="largest upload (default 100)"
    )
    g.add_argument("--max-frames", type=positive_int, default=600, metavar="N", help="longest clip (default 600)")
    g.add_argument(
        "--max-pixels",
        type=positive_int,
        default=4096 * 4096,
        metavar="N",
        help="largest frame, width x height (default 4096 x 4096)",
    )
    g.add_argument(
        "--max-waiting", type=positive_int, default=16, metavar="N", help="jobs that may wait for the device (16)"
    )
    g.add_argument(
        "--run",
        dest="run_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a default for what the page does not show, by `sv4d run`'s Python names, e.g. --run resolution=64 "
        "--run grid=96 --run 'settings={\"rays\": 4096}'",
    )
    r.set_defaults(func=run)

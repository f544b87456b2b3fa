"""``sv4d fit``: a multi-view video set in, a fitted dynamic NeRF or 4D Gaussians out."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_device,
    add_out,
    add_quiet,
    add_seed,
    finite_float,
    index_list,
    key_values,
    positive_float,
    positive_int,
    say,
)


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..fit.run import FitOptions, fit_set

    device = resolve_device(args.device)
    out = Path(args.out) if args.out else Path("outputs") / f"{Path(args.set).resolve().name}_{args.method}"
    schedule = {}
    if args.static_fraction is not None:
        schedule["static_fraction"] = args.static_fraction
    if args.frame_strides is not None:
        schedule["frame_strides"] = tuple(args.frame_strides)
    opts = FitOptions(
        method=args.method,
        views=args.views,
        frames=args.frames,
        resolution=args.resolution,
        steps=args.steps,
        minutes=args.minutes or 0.0,
        seed=args.seed,
        device=str(device),
        settings=key_values(args.set_options, "--set"),
        schedule=schedule,
        visibility=args.visibility,
        reference_views=args.reference_views,
        orbit_frames=args.orbit_frames,
        orbit_elevation=args.orbit_elevation,
        videos=not args.no_videos,
    )
    s = fit_set(args.set, out, opts, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    tv = s["training_views"]
    say(args)(
        f"sv4d: {s['method']} fit on {device}, {s['steps']} steps in {s['optimisation_seconds']:.0f} s; "
        f"training views PSNR {tv['psnr']:.2f} dB (foreground {tv['fg_psnr']:.2f}), SSIM {tv['ssim']:.3f}, "
        f"mask IoU {tv['iou']:.3f}; {s['render_seconds_per_frame']:.3f} s per frame"
    )
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..fit.run import METHODS, VISIBILITY

    f = sub.add_parser(
        "fit",
        help="fit a dynamic NeRF or 4D Gaussians to a multi-view video set",
        description=(
            "Fit a 4D representation to SET (a multi-view video set: cameras.json + rgba/ or "
            "rgb_white/, from `sv4d generate` or rendered from ground truth). The SV4D 2.0 schedule: "
            "a static stage on the reference frame, then a dynamic stage with progressive frame "
            "sampling (every 4th frame, every 2nd, all). Losses on RGB over white and on alpha; "
            "generated views are down-weighted where the real input view cannot see the surface "
            "(--visibility). Writes OUT/checkpoint.pt (resumable with --resume; Ctrl-C saves it), "
            "OUT/orbit.mp4, OUT/train_views.mp4 (ground truth above, fit below) and OUT/fit.json. "
            "Runs on the GPU when there is one (--device)."
        ),
        epilog="example: sv4d fit examples/fox_walk_96 --views 0,2,3,4,6 --resolution 96 --steps 800 -o out/fox_nerf",
    )
    f.add_argument("set", metavar="SET", help="multi-view video set folder (or a D-NeRF folder of fixed cameras)")
    f.add_argument(
        "--method",
        choices=METHODS,
        default="nerf",
        help="nerf: K-Planes dynamic NeRF (default, the paper's choice); gaussians: 4D Gaussians",
    )
    add_out(f, "output folder (default: outputs/<SET name>_<method>)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the fit in OUT (same options)")
    g.add_argument("--overwrite", action="store_true", help="start again even if OUT holds a fit")
    add_quiet(f)
    d = f.add_argument_group("what to fit")
    d.add_argument(
        "--views", type=index_list, default=None, metavar="SEL", help="views to fit, e.g. 0,2,3,4,6 (default: all)"
    )
    d.add_argument(
        "--frames",
        type=index_list,
        default=None,
        metavar="SEL",
        help="frames to fit, e.g. 0-20 or 0-20:2 (default: all)",
    )
    d.add_argument(
        "--resolution",
        type=positive_int,
        default=128,
        metavar="H",
        help="image height to fit at, area-downsampled (default: 128)",
    )
    d.add_argument(
        "--visibility",
        choices=VISIBILITY,
        default="auto",
        help="soft visibility weights for generated views (auto: on for sets from sv4d generate)",
    )
    d.add_argument(
        "--reference-views",
        type=index_list,
        default=[0],
        metavar="SEL",
        help="views that are real images, for --visibility (default: 0, the input view)",
    )
    o = f.add_argument_group("optimisation")
    o.add_argument("--steps", type=positive_int, default=3000, help="optimisation steps (default: 3000)")
    o.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        help="a wall-clock budget instead of --steps (the schedule follows elapsed time)",
    )
    o.add_argument(
        "--static-fraction", type=finite_float, default=None, help="share of the run in the static stage (default 0.1)"
    )
    o.add_argument(
        "--frame-strides",
        type=index_list,
        default=None,
        metavar="SEL",
        help="progressive frame sampling strides, coarse to fine (default 4,2,1)",
    )
    o.add_argument(
        "--set",
        dest="set_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method setting (NerfConfig / GaussianConfig field), value in JSON; repeatable",
    )
    add_seed(o, 0)
    add_device(o, "; Gaussians use gsplat on CUDA when installed")
    v = f.add_argument_group("videos")
    v.add_argument(
        "--orbit-frames", type=positive_int, default=72, metavar="N", help="frames of OUT/orbit.mp4 (default 72)"
    )
    v.add_argument(
        "--orbit-elevation",
        type=finite_float,
        default=10.0,
        metavar="DEG",
        help="elevation of OUT/orbit.mp4 (degrees, default 10)",
    )
    v.add_argument("--no-videos", action="store_true", help="skip orbit.mp4 and train_views.mp4")
    f.set_defaults(func=run)

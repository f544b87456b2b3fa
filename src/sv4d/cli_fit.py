"""The ``sv4d fit``, ``sv4d render`` and ``sv4d export`` sub-commands: argument parsing only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_args import index_list, key_values, positive_float, positive_int
from .errors import Sv4dError


def _say(args):
    return (lambda *a: None) if getattr(args, "quiet", False) else (lambda *a: print(*a, file=sys.stderr))


def _cmd_fit(args: argparse.Namespace) -> int:
    from .fit.run import FitOptions, fit_set

    out = Path(args.out) if args.out else Path("outputs") / f"{Path(args.set).resolve().name}_{args.method}"
    schedule = {}
    if args.static_fraction is not None:
        schedule["static_fraction"] = args.static_fraction
    if args.frame_strides is not None:
        schedule["frame_strides"] = tuple(args.frame_strides)
    opts = FitOptions(method=args.method, views=args.views, frames=args.frames, resolution=args.resolution,
                      steps=args.steps, minutes=args.minutes or 0.0, seed=args.seed, device=args.device,
                      settings=key_values(args.set_options, "--set"), schedule=schedule,
                      visibility=args.visibility, reference_views=args.reference_views,
                      orbit_frames=args.orbit_frames, orbit_elevation=args.orbit_elevation, videos=not args.no_videos)
    s = fit_set(args.set, out, opts, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    tv = s["training_views"]
    _say(args)(f"sv4d: {s['method']} fit, {s['steps']} steps in {s['optimisation_seconds']:.0f} s; training views "
               f"PSNR {tv['psnr']:.2f} dB (foreground {tv['fg_psnr']:.2f}), SSIM {tv['ssim']:.3f}, mask IoU "
               f"{tv['iou']:.3f}; {s['render_seconds_per_frame']:.3f} s per frame")
    print(out)
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from .fit.outputs import render_like, render_orbit

    if args.like:
        path = render_like(args.checkpoint, args.like, args.out, resolution=args.resolution,
                           overwrite=args.overwrite, progress=not args.quiet)
    else:
        path = render_orbit(args.checkpoint, args.out, frames=args.frames, elevation=args.elevation,
                            turns=args.turns, time_loops=args.time_loops, time=args.time, azimuth=args.azimuth,
                            resolution=args.resolution, fps=args.fps, distance=args.distance,
                            progress=not args.quiet)
    print(path)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .fit.outputs import export_mesh, export_ply

    if args.mesh == args.ply:
        raise Sv4dError("choose one of --mesh (NeRF fits) or --ply (Gaussian fits)")
    if args.mesh:
        paths = export_mesh(args.checkpoint, args.out, frames=args.frames, fmt=args.format,
                            resolution=args.resolution, threshold=args.threshold, progress=not args.quiet)
    else:
        paths = export_ply(args.checkpoint, args.out, frames=args.frames, progress=not args.quiet)
    _say(args)(f"sv4d: wrote {len(paths)} file(s)")
    print(Path(paths[0]).parent)
    return 0


def add_fit_commands(sub: "argparse._SubParsersAction") -> None:
    from .fit.run import METHODS, VISIBILITY

    f = sub.add_parser(
        "fit", help="fit a dynamic NeRF or 4D Gaussians to a multi-view video set",
        description=(
            "Fit a 4D representation to SET (a multi-view video set: cameras.json + rgba/ or "
            "rgb_white/, from `sv4d generate` or rendered from ground truth). The SV4D 2.0 schedule: "
            "a static stage on the reference frame, then a dynamic stage with progressive frame "
            "sampling (every 4th frame, every 2nd, all). Losses on RGB over white and on alpha; "
            "generated views are down-weighted where the real input view cannot see the surface "
            "(--visibility). Writes OUT/checkpoint.pt (resumable with --resume; Ctrl-C saves it), "
            "OUT/orbit.mp4, OUT/train_views.mp4 (ground truth above, fit below) and OUT/fit.json."),
        epilog="example: sv4d fit examples/fox_walk_96 --views 0,2,3,4,6 --resolution 96 --steps 800 --out out/fox_nerf")
    f.add_argument("set", metavar="SET", help="multi-view video set folder")
    f.add_argument("--method", choices=METHODS, default="nerf",
                   help="nerf: K-Planes dynamic NeRF (default, the paper's choice); gaussians: 4D Gaussians")
    f.add_argument("--out", default=None, help="output folder (default: outputs/<SET name>_<method>)")
    f.add_argument("--views", type=index_list, default=None, help="views to fit, e.g. 0,2,3,4,6 (default: all)")
    f.add_argument("--frames", type=index_list, default=None, help="frames to fit, e.g. 0-20 or 0-20:2 (default: all)")
    f.add_argument("--resolution", type=positive_int, default=128,
                   help="image height to fit at, area-downsampled (default: 128)")
    f.add_argument("--steps", type=positive_int, default=3000, help="optimisation steps (default: 3000)")
    f.add_argument("--minutes", type=positive_float, default=None,
                   help="a wall-clock budget instead of --steps (the schedule follows elapsed time)")
    f.add_argument("--static-fraction", type=float, default=None,
                   help="share of the run in the static stage (default 0.1)")
    f.add_argument("--frame-strides", type=index_list, default=None,
                   help="progressive frame sampling strides, coarse to fine (default 4,2,1)")
    f.add_argument("--visibility", choices=VISIBILITY, default="auto",
                   help="soft visibility weights for generated views (auto: on for sets from sv4d generate)")
    f.add_argument("--reference-views", type=index_list, default=[0],
                   help="views that are real images, for --visibility (default: 0, the input view)")
    f.add_argument("--set", dest="set_options", action="append", default=[], metavar="KEY=VALUE",
                   help="a method setting (NerfConfig / GaussianConfig field), value in JSON; repeatable")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="cpu", help="torch device (cpu, cuda); Gaussians use gsplat on CUDA when installed")
    f.add_argument("--orbit-frames", type=positive_int, default=72, help="frames of OUT/orbit.mp4")
    f.add_argument("--orbit-elevation", type=float, default=10.0, help="elevation of OUT/orbit.mp4 (degrees)")
    f.add_argument("--no-videos", action="store_true", help="skip orbit.mp4 and train_views.mp4")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the fit in OUT (same options)")
    g.add_argument("--overwrite", action="store_true", help="start again even if OUT holds a fit")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=_cmd_fit)

    r = sub.add_parser(
        "render", help="render a fitted 4D representation: orbit videos or a multi-view set",
        description=(
            "Render CHECKPOINT (OUT/checkpoint.pt of `sv4d fit`). Default: an orbit video with "
            "continuous view and time change (time runs 0 -> 1 -> 0 per loop). --time fixes the "
            "time (a 3D turntable), --azimuth fixes the view (the motion from one camera). --like "
            "SET renders SET's cameras at SET's frame times and writes a multi-view set (for "
            "evaluation against ground truth)."),
        epilog="example: sv4d render outputs/fox_nerf/checkpoint.pt --elevation 20 --out orbit20.mp4")
    r.add_argument("checkpoint", metavar="CHECKPOINT")
    r.add_argument("--out", default=None, help="output .mp4 (orbit) or folder (--like); default beside CHECKPOINT")
    r.add_argument("--orbit", action="store_true", help="render an orbit video (the default)")
    r.add_argument("--frames", type=positive_int, default=72, help="orbit frames (default 72)")
    r.add_argument("--elevation", type=float, default=10.0, help="orbit elevation in degrees (default 10)")
    r.add_argument("--turns", type=float, default=1.0, help="orbit turns (default 1)")
    r.add_argument("--time-loops", type=float, default=1.0, help="passes through the motion (default 1)")
    r.add_argument("--time", type=float, default=None, help="fixed time in [0, 1]")
    r.add_argument("--azimuth", type=float, default=None, help="fixed azimuth in degrees (no orbit)")
    r.add_argument("--distance", type=positive_float, default=None, help="camera distance (default: as fitted)")
    r.add_argument("--resolution", type=positive_int, default=None, help="image height (default: as fitted)")
    r.add_argument("--fps", type=positive_float, default=24.0)
    r.add_argument("--like", metavar="SET", default=None, help="render SET's cameras and times into a set folder")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --like output folder")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_render)

    e = sub.add_parser(
        "export", help="export per-frame meshes (NeRF) or Gaussian PLY files",
        description=(
            "--mesh: marching cubes on the NeRF density at each fitted frame, vertex colours from "
            "the field; OBJ files, or GLB files plus sequence.glb (all frames as a flip-book "
            "animation at the frames' times). --ply: the Gaussians at each frame in the usual 3D "
            "Gaussian Splatting PLY layout."),
        epilog="example: sv4d export outputs/fox_nerf/checkpoint.pt --mesh --format glb")
    e.add_argument("checkpoint", metavar="CHECKPOINT")
    e.add_argument("--mesh", action="store_true", help="meshes from a NeRF fit")
    e.add_argument("--ply", action="store_true", help="PLY files from a Gaussian fit")
    e.add_argument("--out", default=None, help="output folder (default: CHECKPOINT's folder/mesh or /ply)")
    e.add_argument("--frames", type=index_list, default=None, help="positions among the fitted frames (default: all)")
    e.add_argument("--format", choices=("glb", "obj"), default="glb", help="mesh format (default glb)")
    e.add_argument("--resolution", type=positive_int, default=192, help="marching-cubes grid (default 192)")
    e.add_argument("--threshold", type=positive_float, default=None,
                   help="density level of the surface (default: one step through it is 50%% opaque)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_cmd_export)

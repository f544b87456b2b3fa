"""``sv4d render``: orbit videos of a fit, or a multi-view set at another set's cameras."""

from __future__ import annotations

import argparse

from .common import (
    LegacyCount,
    add_device,
    add_out,
    add_overwrite,
    add_quiet,
    finite_float,
    frames_or_count,
    positive_float,
    positive_int,
    take_legacy_count,
)


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..errors import Sv4dError
    from ..fit.outputs import render_like, render_orbit

    device = resolve_device(args.device)
    if args.like:
        frames = [int(args.frames)] if isinstance(args.frames, LegacyCount) else args.frames
        path = render_like(
            args.checkpoint,
            args.like,
            args.out,
            frames=frames,
            resolution=args.resolution,
            device=device,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    else:
        take_legacy_count(args, "orbit_frames", "--orbit-frames")
        if args.frames is not None:
            raise Sv4dError("--frames selects frames of the --like SET; the orbit's length is --orbit-frames")
        path = render_orbit(
            args.checkpoint,
            args.out,
            frames=args.orbit_frames,
            elevation=args.elevation,
            turns=args.turns,
            time_loops=args.time_loops,
            time=args.time,
            azimuth=args.azimuth,
            resolution=args.resolution,
            fps=args.fps,
            distance=args.distance,
            device=device,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "render",
        help="render a fitted 4D representation: orbit videos or a multi-view set",
        description=(
            "Render CHECKPOINT (OUT/checkpoint.pt of `sv4d fit`). Default: an orbit video with "
            "continuous view and time change (time runs 0 -> 1 -> 0 per loop). --time fixes the "
            "time (a 3D turntable), --azimuth fixes the view (the motion from one camera). --like "
            "SET renders SET's cameras at SET's frame times and writes a multi-view set (for "
            "evaluation against ground truth)."
        ),
        epilog="example: sv4d render outputs/fox_nerf/checkpoint.pt --elevation 20 -o orbit20.mp4",
    )
    r.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt written by sv4d fit")
    add_out(r, "output .mp4 (orbit) or folder (--like); default beside CHECKPOINT")
    add_overwrite(r, "--out")
    add_quiet(r)
    add_device(r)
    r.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        metavar="H",
        help="image height (default: as fitted for the orbit, SET's for --like)",
    )
    o = r.add_argument_group("orbit video")
    o.add_argument("--orbit", action="store_true", help="render an orbit video (the default)")
    o.add_argument("--orbit-frames", type=positive_int, default=72, metavar="N", help="video frames (default 72)")
    o.add_argument("--elevation", type=finite_float, default=10.0, help="orbit elevation in degrees (default 10)")
    o.add_argument("--turns", type=finite_float, default=1.0, help="orbit turns (default 1)")
    o.add_argument("--time-loops", type=finite_float, default=1.0, help="passes through the motion (default 1)")
    o.add_argument("--time", type=finite_float, default=None, help="fixed time in [0, 1]")
    o.add_argument("--azimuth", type=finite_float, default=None, help="fixed azimuth in degrees (no orbit)")
    o.add_argument("--distance", type=positive_float, default=None, help="camera distance (default: as fitted)")
    o.add_argument("--fps", type=positive_float, default=24.0, help="video frame rate (default 24)")
    like = r.add_argument_group("another set's cameras")
    like.add_argument("--like", metavar="SET", default=None, help="render SET's cameras and times into a set folder")
    like.add_argument(
        "--frames",
        type=frames_or_count,
        default=None,
        metavar="SEL",
        help="with --like: which of SET's frames, e.g. 0-20:2 (default: all). Without --like a "
        "bare number N is the old spelling of --orbit-frames N",
    )
    r.set_defaults(func=run)

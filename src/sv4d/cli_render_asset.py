"""The ``sv4d render-asset`` sub-command: argument parsing only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_args import non_negative_float, positive_float, positive_int
from .errors import Sv4dError


def _distance(text: str) -> float | None:
    if text == "auto":
        return None
    return positive_float(text)


def _cmd_render_asset(args: argparse.Namespace) -> int:
    from .data.cameras import dynamic_orbit, parse_views, static_orbit
    from .data.render_asset import AssetRenderOptions, render_asset

    if args.list_clips:
        from .data.gltf import GltfAsset

        asset = GltfAsset.load(args.asset)
        if not asset.clips:
            print(f"{args.asset}: no animation (renders static)")
        for c in asset.clips:
            print(f"{c.index}: {c.name!r} {c.end - c.start:.3f} s")
        return 0
    chosen = [args.views is not None, args.like is not None]
    if sum(chosen) > 1:
        raise Sv4dError("choose one of --views and --like")
    if args.views is not None:
        views = parse_views(args.views)
    elif args.orbit == "dynamic":
        views = dynamic_orbit(args.num_views, args.elevation, args.amplitude)
    else:
        views = static_orbit(args.num_views, args.elevation)
    out = Path(args.out) if args.out else Path("outputs") / Path(args.asset).stem
    opts = AssetRenderOptions(clip=args.clip, frames=args.frames, adaptive_motion=args.adaptive,
                              max_frames=args.max_frames, views=views, distance=args.distance, size=args.size,
                              fov_deg=args.fov, ssaa=args.ssaa, yaw_deg=args.yaw, depth=args.depth,
                              light_scale=args.light_scale,
                              geometry=not args.no_geometry, rectify=args.rectify, like=args.like,
                              overwrite=args.overwrite)
    meta = render_asset(args.asset, out, opts, progress=not args.quiet)
    if not args.quiet:
        for n in meta["notices"]:
            print(f"note: {n}", file=sys.stderr)
        anim = meta["animation"]
        print(f"sv4d: {len(meta['views'])} views x {len(meta['frames'])} frames"
              + (f" of clip {anim['name']!r}" if anim else " (static)")
              + f" in {meta['seconds']:.1f} s ({meta['timing_s']['per_image_ms']:.0f} ms per image)", file=sys.stderr)
    print(out)
    return 0


def add_render_asset_command(sub: "argparse._SubParsersAction") -> None:
    r = sub.add_parser(
        "render-asset", help="render an animated glTF/GLB asset into a multi-view video set",
        description=(
            "Pose an animated glTF 2.0 asset (node animation, skinning, morph targets; any clip) at each "
            "frame time, normalise the clip into the unit cube (the object's glTF front, +Z, turned "
            "to +X by --yaw 90, so view 0 at azimuth 0 sees its side), and rasterise it with pyrender "
            "on a headless EGL context from every camera: lit by world-fixed lights, RGBA with "
            "anti-aliased alpha, optional depth. Writes a multi-view set (cameras.json, rgba/, "
            "rgb_white/, geometry.npz with the posed vertices) in the conventions of "
            "shared/data/multiview. An asset without animation is rendered static (one frame)."),
        epilog=("examples: sv4d render-asset Fox.glb --clip Walk --out sets/fox_walk; "
                "sv4d render-asset Fox.glb --clip Walk --like ../shared/data/multiview/fox_walk --out fox_copy; "
                "sv4d render-asset Fox.glb --list-clips"))
    r.add_argument("asset", metavar="ASSET", help=".glb or .gltf file")
    r.add_argument("--out", default=None, help="output set folder (default: outputs/<asset name>)")
    r.add_argument("--clip", default=None, help="animation clip name or index (default: the first)")
    r.add_argument("--list-clips", action="store_true", help="list the asset's clips and exit")
    r.add_argument("--frames", type=positive_int, default=21, help="frames over the clip, end excluded (default 21)")
    r.add_argument("--adaptive", type=positive_float, default=None, metavar="MOTION",
                   help="adaptive time step instead: next frame once the mean vertex motion reaches MOTION "
                        "x the object's size (e.g. 0.02)")
    r.add_argument("--max-frames", type=positive_int, default=64, help="time resolution / cap of --adaptive (default 64)")
    r.add_argument("--orbit", choices=("static", "dynamic"), default="static",
                   help="static: one elevation; dynamic: elevation varies with azimuth (default static)")
    r.add_argument("--num-views", type=positive_int, default=8, help="views on the orbit (default 8)")
    r.add_argument("--elevation", type=float, default=0.0, help="orbit elevation, degrees (default 0)")
    r.add_argument("--amplitude", type=float, default=20.0, help="dynamic orbit: elevation swing, degrees (default 20)")
    r.add_argument("--views", default=None, metavar="EL:AZ,...", help="explicit views, e.g. 0:0,0:90,20:45")
    r.add_argument("--like", default=None, metavar="SET", help="the cameras, image size and frame times of SET")
    r.add_argument("--distance", type=_distance, default=2.0,
                   help="camera distance, or auto: the closest that keeps the object inside every view (default 2)")
    r.add_argument("--fov", type=positive_float, default=33.8, help="field of view, degrees (default 33.8)")
    r.add_argument("--size", type=positive_int, default=256, help="image size in pixels (default 256)")
    r.add_argument("--ssaa", type=positive_int, default=2, help="supersampling factor (default 2)")
    r.add_argument("--yaw", type=float, default=90.0, help="turn about +Y before normalising, degrees (default 90)")
    r.add_argument("--light-scale", type=non_negative_float, default=1.0,
                   help="multiply the ambient term and every light (e.g. 0.1 for a dark render; default 1)")
    r.add_argument("--depth", action="store_true", help="also write depth/ (uint16, camera z x 10000)")
    r.add_argument("--no-geometry", action="store_true", help="skip geometry.npz")
    r.add_argument("--rectify", action="store_true",
                   help="re-centre every frame on the most static part of the object (removes locomotion drift)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_render_asset)

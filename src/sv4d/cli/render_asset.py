"""``sv4d render-asset``: an animated glTF/GLB asset rendered into a multi-view video set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cameras import SV4D_FOV_DEG
from .common import (
    add_out,
    add_overwrite,
    add_quiet,
    finite_float,
    frames_or_count,
    non_negative_float,
    positive_float,
    positive_int,
    take_legacy_count,
)


def _distance(text: str) -> float | None:
    if text == "auto":
        return None
    return positive_float(text)


def run(args: argparse.Namespace) -> int:
    from ..cameras import dynamic_orbit, parse_views, static_orbit
    from ..data.render_asset import AssetRenderOptions, render_asset
    from ..errors import Sv4dError

    if args.list_clips:
        from ..data.gltf import GltfAsset

        asset = GltfAsset.load(args.asset)
        if not asset.clips:
            print(f"{args.asset}: no animation (renders static)")
        for c in asset.clips:
            print(f"{c.index}: {c.name!r} {c.end - c.start:.3f} s")
        return 0
    take_legacy_count(args, "num_frames", "--num-frames")
    if args.views is not None and args.like is not None:
        raise Sv4dError("choose one of --views and --like")
    if args.views is not None:
        views = parse_views(args.views)
    elif args.orbit == "dynamic":
        views = dynamic_orbit(args.num_views, args.elevation, args.amplitude)
    else:
        views = static_orbit(args.num_views, args.elevation)
    out = Path(args.out) if args.out else Path("outputs") / Path(args.asset).stem
    opts = AssetRenderOptions(
        clip=args.clip,
        num_frames=args.num_frames,
        frames=args.frames,
        adaptive_motion=args.adaptive,
        max_frames=args.max_frames,
        views=views,
        distance=args.distance,
        size=args.size,
        fov_deg=args.fov,
        ssaa=args.ssaa,
        yaw_deg=args.yaw,
        depth=args.depth,
        light_scale=args.light_scale,
        geometry=not args.no_geometry,
        rectify=args.rectify,
        like=args.like,
        overwrite=args.overwrite,
    )
    meta = render_asset(args.asset, out, opts, progress=not args.quiet)
    if not args.quiet:
        for n in meta["notices"]:
            print(f"note: {n}", file=sys.stderr)
        anim = meta["animation"]
        print(
            f"sv4d: {len(meta['views'])} views x {len(meta['frames'])} frames"
            + (f" of clip {anim['name']!r}" if anim else " (static)")
            + f" in {meta['seconds']:.1f} s ({meta['timing_s']['per_image_ms']:.0f} ms per image)",
            file=sys.stderr,
        )
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "render-asset",
        help="render an animated glTF/GLB asset into a multi-view video set",
        description=(
            "Pose an animated glTF 2.0 asset (node animation, skinning, morph targets; any clip) at each "
            "frame time, normalise the clip into the unit cube (the object's glTF front, +Z, turned "
            "to +X by --yaw 90, so view 0 at azimuth 0 sees its side), and rasterise it with pyrender "
            "on a headless EGL context from every camera: lit by world-fixed lights, RGBA with "
            "anti-aliased alpha, optional depth. Writes a multi-view set (cameras.json, rgba/, "
            "rgb_white/, geometry.npz with the posed vertices) in the conventions of "
            "shared/data/multiview. An asset without animation is rendered static (one frame)."
        ),
        epilog=(
            "examples: sv4d render-asset Fox.glb --clip Walk -o sets/fox_walk; "
            "sv4d render-asset Fox.glb --clip Walk --like ../shared/data/multiview/fox_walk -o fox_copy; "
            "sv4d render-asset Fox.glb --list-clips"
        ),
    )
    r.add_argument("asset", metavar="ASSET", help=".glb or .gltf file")
    add_out(r, "output set folder (default: outputs/<asset name>)")
    add_overwrite(r, "the output folder")
    add_quiet(r)
    r.add_argument("--clip", default=None, help="animation clip name or index (default: the first)")
    r.add_argument("--list-clips", action="store_true", help="list the asset's clips and exit")
    t = r.add_argument_group("frames")
    t.add_argument(
        "--num-frames",
        type=positive_int,
        default=21,
        metavar="N",
        help="frames over the clip, end excluded (default 21)",
    )
    t.add_argument(
        "--frames",
        type=frames_or_count,
        default=None,
        metavar="SEL",
        help="keep only these of the frames, e.g. 0-20:2 (default: all). A bare number N is the "
        "old spelling of --num-frames N",
    )
    t.add_argument(
        "--adaptive",
        type=positive_float,
        default=None,
        metavar="MOTION",
        help="adaptive time step instead: next frame once the mean vertex motion reaches MOTION "
        "x the object's size (e.g. 0.02)",
    )
    t.add_argument(
        "--max-frames",
        type=positive_int,
        default=64,
        metavar="N",
        help="time resolution / cap of --adaptive (default 64)",
    )
    c = r.add_argument_group("cameras")
    c.add_argument(
        "--orbit",
        choices=("static", "dynamic"),
        default="static",
        help="static: one elevation; dynamic: elevation varies with azimuth (default static)",
    )
    c.add_argument("--num-views", type=positive_int, default=8, help="views on the orbit (default 8)")
    c.add_argument("--elevation", type=finite_float, default=0.0, help="orbit elevation, degrees (default 0)")
    c.add_argument(
        "--amplitude", type=finite_float, default=20.0, help="dynamic orbit: elevation swing, degrees (default 20)"
    )
    c.add_argument("--views", default=None, metavar="EL:AZ,...", help="explicit views, e.g. 0:0,0:90,20:45")
    c.add_argument("--like", default=None, metavar="SET", help="the cameras, image size and frame times of SET")
    c.add_argument(
        "--distance",
        type=_distance,
        default=2.0,
        help="camera distance, or auto: the closest that keeps the object inside every view (default 2)",
    )
    c.add_argument(
        "--fov",
        type=positive_float,
        default=SV4D_FOV_DEG,
        help=f"field of view, degrees (default {SV4D_FOV_DEG:g}, as SV3D/SV4D renders)",
    )
    i = r.add_argument_group("images")
    i.add_argument("--size", type=positive_int, default=256, help="image size in pixels (default 256)")
    i.add_argument("--ssaa", type=positive_int, default=2, help="supersampling factor (default 2)")
    i.add_argument(
        "--yaw", type=finite_float, default=90.0, help="turn about +Y before normalising, degrees (default 90)"
    )
    i.add_argument(
        "--light-scale",
        type=non_negative_float,
        default=1.0,
        help="multiply the ambient term and every light (e.g. 0.1 for a dark render; default 1)",
    )
    i.add_argument("--depth", action="store_true", help="also write depth/ (uint16, camera z x 10000)")
    i.add_argument("--no-geometry", action="store_true", help="skip geometry.npz")
    i.add_argument(
        "--rectify",
        action="store_true",
        help="re-centre every frame on the most static part of the object (removes locomotion drift)",
    )
    r.set_defaults(func=run)

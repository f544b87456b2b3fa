"""``sv4d export``: per-frame meshes of a NeRF fit, or Gaussian PLY files."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_device,
    add_out,
    add_overwrite,
    add_quiet,
    add_renamed,
    index_list,
    positive_float,
    positive_int,
    say,
)


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..errors import Sv4dError
    from ..fit.outputs import export_mesh, export_ply

    if args.mesh == args.ply:
        raise Sv4dError("choose one of --mesh (NeRF fits) or --ply (Gaussian fits)")
    if args.mesh and args.sh_degree:
        raise Sv4dError("--sh-degree is for --ply (Gaussian fits)")
    device = resolve_device(args.device)
    if args.mesh:
        paths = export_mesh(
            args.checkpoint,
            args.out,
            frames=args.frames,
            fmt=args.format,
            grid=args.grid,
            threshold=args.threshold,
            device=device,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    else:
        paths = export_ply(
            args.checkpoint,
            args.out,
            frames=args.frames,
            sh_degree=args.sh_degree,
            device=device,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    say(args)(f"sv4d: wrote {len(paths)} file(s)")
    print(Path(paths[0]).parent)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export",
        help="export per-frame meshes (NeRF) or Gaussian PLY files",
        description=(
            "--mesh: marching cubes on the NeRF density at each fitted frame, vertex colours from "
            "the field; OBJ files, or GLB files plus sequence.glb (all frames as a flip-book "
            "animation at the frames' times). --ply: the Gaussians at each frame in the usual 3D "
            "Gaussian Splatting PLY layout."
        ),
        epilog="example: sv4d export outputs/fox_nerf/checkpoint.pt --mesh --format glb",
    )
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt written by sv4d fit")
    e.add_argument("--mesh", action="store_true", help="meshes from a NeRF fit")
    e.add_argument("--ply", action="store_true", help="PLY files from a Gaussian fit")
    add_out(e, "output folder (default: CHECKPOINT's folder/mesh or /ply)")
    add_overwrite(e, "--out")
    add_quiet(e)
    add_device(e)
    e.add_argument(
        "--frames",
        type=index_list,
        default=None,
        metavar="SEL",
        help="frames of the fitted set to export, e.g. 0-20:2 (default: every fitted frame)",
    )
    e.add_argument("--format", choices=("glb", "obj"), default="glb", help="mesh format (default glb)")
    e.add_argument(
        "--grid",
        type=positive_int,
        default=192,
        metavar="N",
        help="marching-cubes grid: N^3 density samples (default 192)",
    )
    add_renamed(e, "--resolution", "--grid", "grid", type=positive_int)
    e.add_argument(
        "--threshold",
        type=positive_float,
        default=None,
        help="density level of the surface (default: one step through it is 50%% opaque)",
    )
    e.add_argument(
        "--sh-degree",
        type=int,
        choices=(0, 1, 2, 3),
        default=0,
        help="with --ply: write the f_rest_* fields of this spherical-harmonics degree (zeros: the fit's colour "
        "is view-independent) for loaders that expect them; 3 is the reference 3DGS layout (default 0: f_dc only)",
    )
    e.set_defaults(func=run)

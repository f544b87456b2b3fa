"""``sv4d export``: the animated mesh of a fit (or per-frame meshes), or Gaussian PLY files."""

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
    tracked_only = [
        f
        for f, v in (
            ("--faces", args.faces),
            ("--reference-frame", args.reference_frame),
            ("--texture", args.texture),
            ("--texture-frames", args.texture_frames),
            ("--texture-format", args.texture_format),
        )
        if v is not None
    ]
    if args.ply and (args.flipbook or tracked_only):
        raise Sv4dError(f"{' '.join(tracked_only) or '--flipbook'} is for --mesh")
    if args.flipbook and tracked_only:
        raise Sv4dError(f"{' '.join(tracked_only)} is for the tracked mesh, not --flipbook")
    device = resolve_device(args.device)
    if args.mesh:
        paths = export_mesh(
            args.checkpoint,
            args.out,
            frames=args.frames,
            fmt=args.format,
            grid=args.grid,
            threshold=args.threshold,
            flipbook=args.flipbook,
            faces=20000 if args.faces is None else args.faces,
            reference_frame=args.reference_frame,
            texture=1024 if args.texture is None else args.texture,
            texture_frames=args.texture_frames or "reference",
            texture_format=args.texture_format or "jpeg",
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
        help="export the animated mesh of a fit, or Gaussian PLY files",
        description=(
            "--mesh: one mesh that moves. A template (the surface at the reference frame, cleaned,\n"
            "decimated to --faces triangles, UV-unwrapped, colour baked into a texture) is carried\n"
            "through every frame with the same vertices and faces: tracked onto the surface of each\n"
            "frame for a NeRF fit, moved by the deformation field for a Gaussian fit. Writes\n"
            "  animated.glb      a morph target per frame, animated at the frames' times (Blender\n"
            "                    shape keys, three.js, model-viewer)\n"
            "  tracked_mesh.npz  per-frame vertex positions, faces, UVs\n"
            "  report.json       how well each frame follows the field's surface\n"
            "--flipbook: marching cubes at every frame instead (one mesh per frame plus sequence.glb).\n"
            "--ply: the Gaussians at each frame in the 3D Gaussian Splatting PLY layout."
        ),
        epilog=(
            "examples:\n  sv4d export outputs/fox/checkpoint.pt --mesh\n"
            "  sv4d export outputs/fox/checkpoint.pt --mesh --faces 50000 --texture 2048\n"
            "  sv4d export outputs/fox/checkpoint.pt --mesh --flipbook --format obj\n"
            "  sv4d export outputs/fox_gs/checkpoint.pt --ply --sh-degree 3"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt written by sv4d fit")
    e.add_argument("--mesh", action="store_true", help="the animated mesh (NeRF or Gaussian fits)")
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
    e.add_argument(
        "--format",
        choices=("glb", "obj"),
        default="glb",
        help="glb (default); obj: with --flipbook OBJ files, else one OBJ per frame besides animated.glb",
    )
    e.add_argument(
        "--faces",
        type=positive_int,
        default=None,
        metavar="N",
        help="triangles of the tracked mesh (default 20000)",
    )
    e.add_argument(
        "--reference-frame",
        type=int,
        default=None,
        metavar="F",
        help="fitted frame whose surface becomes the template (default: the first exported frame; NeRF fits)",
    )
    e.add_argument(
        "--texture",
        type=int,
        default=None,
        metavar="N",
        help="texture size in texels (default 1024); 0: 8-bit vertex colours instead of a texture",
    )
    e.add_argument(
        "--texture-frames",
        choices=("reference", "all"),
        default=None,
        help="bake colour at the reference frame (default) or average it over the exported frames",
    )
    e.add_argument(
        "--texture-format",
        choices=("jpeg", "png"),
        default=None,
        help="texture encoding in the GLB: jpeg (default; quality 92, no chroma subsampling) or png (lossless)",
    )
    e.add_argument(
        "--flipbook",
        action="store_true",
        help="marching cubes at every frame (a different mesh per frame) instead of one tracked mesh",
    )
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
        help="density level of the surface (default: NeRF, where one step through it is 29%% opaque, which matches "
        "the rendered silhouettes; Gaussians, 0.5)",
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

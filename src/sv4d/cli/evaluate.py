"""``sv4d evaluate``: score a multi-view video set against the ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_device, add_out, add_overwrite, add_quiet, add_renamed, index_list, positive_int


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..evaluate.run import EvalOptions, evaluate

    device = resolve_device(args.device)
    report = Path(args.out) if args.out else Path(f"{Path(args.pred).resolve()}_eval")
    opts = EvalOptions(
        views=args.views,
        frames=args.frames,
        weights=args.weights,
        lpips=args.lpips,
        clip=args.clip,
        i3d=args.i3d,
        fvd=not args.no_fvd,
        clip_length=args.clip_length,
        clip_stride=args.clip_stride,
        mesh=args.mesh,
        chamfer_samples=args.chamfer_samples,
        ignore_cameras=args.ignore_cameras,
        resize=args.resize,
        device=str(device),
        batch=args.batch,
        thumb=args.thumb,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    m = evaluate(args.pred, args.gt, report, opts)
    if not args.quiet:
        parts = [f"{k} {v['mean']:.4g}" for k, v in m["images"].items()]
        for k, v in ((m["fvd"] or {}).get("variants") or {}).items():
            parts.append(f"{k} {'-' if v['fvd'] is None else format(v['fvd'], '.4g')}")
        if m["geometry"]:
            parts.append(f"chamfer_l1 {m['geometry']['mean']['chamfer_l1']:.4g}")
        print("sv4d: " + ", ".join(parts), file=sys.stderr)
    print(report / "index.html")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..evaluate.run import WEIGHTS_ENV

    e = sub.add_parser(
        "evaluate",
        help="score a multi-view video set against the ground truth (PSNR, SSIM, LPIPS, CLIP-S, FVD)",
        description=(
            "Compare PRED with GT, two multi-view video sets of the same cameras and frames (from "
            "sv4d generate, sv4d render --like, or renders), image by image over the views x frames "
            "grid, on white. Image metrics: PSNR, SSIM, MSE (scikit-image), mask IoU (when both sets "
            "have alpha), LPIPS (VGG) and CLIP-S (ViT-B/32). Video metrics: FVD-F (each view along "
            "time), FVD-V (each frame along views), FVD-Diag (view and time advancing together) and "
            "FV4D (the whole grid in serpentine order), from I3D features of clips of --clip-length "
            "images. Geometry: Chamfer distance per frame with --mesh when GT has geometry.npz. "
            "LPIPS, CLIP-S and FVD need pretrained weights you supply (no downloads): pass the files, "
            f"or a folder with --weights or ${WEIGHTS_ENV}; without them those metrics are skipped "
            "with a notice. Writes OUT/metrics.json and OUT/index.html."
        ),
        epilog=(
            "example: sv4d evaluate outputs/fox_render ../shared/data/multiview/fox_walk "
            "--weights ~/weights --mesh outputs/fox_nerf/mesh -o outputs/fox_eval"
        ),
    )
    e.add_argument("pred", metavar="PRED", help="predicted multi-view set folder (or D-NeRF folder of fixed cameras)")
    e.add_argument("gt", metavar="GT", help="ground-truth multi-view set folder (or D-NeRF folder of fixed cameras)")
    add_out(e, "report folder (default: PRED_eval)")
    add_renamed(e, "--report", "-o/--out", "out")
    add_overwrite(e, "the report folder")
    add_quiet(e)
    add_device(e, " (the metric networks)")
    e.add_argument(
        "--views", type=index_list, default=None, metavar="SEL", help="views to score, e.g. 1-8 (default: all)"
    )
    e.add_argument(
        "--frames", type=index_list, default=None, metavar="SEL", help="frames to score, e.g. 0-20:2 (default: all)"
    )
    e.add_argument(
        "--ignore-cameras", action="store_true", help="compare sets whose cameras or times differ, position by position"
    )
    e.add_argument("--resize", action="store_true", help="resize the prediction to the ground truth's image size")
    w = e.add_argument_group("metric networks")
    w.add_argument(
        "--weights",
        default=None,
        metavar="DIR",
        help=f"folder holding metric weights (default: ${WEIGHTS_ENV}): LPIPS vgg.pth + "
        "vgg16-397923af.pth, CLIP ViT-B-32.pt, i3d_pretrained_400.pt",
    )
    w.add_argument("--lpips", default=None, metavar="PATH", help="LPIPS weights: a folder or a combined file")
    w.add_argument("--clip", default=None, metavar="FILE", help="CLIP ViT-B/32 weights (OpenAI, open_clip or HF)")
    w.add_argument("--i3d", default=None, metavar="FILE", help="I3D Kinetics-400 weights (i3d_pretrained_400.pt)")
    w.add_argument("--batch", type=positive_int, default=8, help="images per network batch (default 8)")
    v = e.add_argument_group("video and geometry metrics")
    v.add_argument("--no-fvd", action="store_true", help="skip the FVD variants")
    v.add_argument("--clip-length", type=positive_int, default=16, help="images per FVD clip (default 16)")
    v.add_argument(
        "--clip-stride",
        type=positive_int,
        default=None,
        help="step between FVD clip starts (default: the clip length, no overlap)",
    )
    v.add_argument("--mesh", default=None, metavar="DIR", help="meshes from sv4d export --mesh, for Chamfer distance")
    v.add_argument(
        "--chamfer-samples", type=positive_int, default=20000, help="surface points per mesh (default 20000)"
    )
    e.add_argument("--thumb", type=positive_int, default=96, help="thumbnail size in the report (default 96)")
    e.set_defaults(func=run)

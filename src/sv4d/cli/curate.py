"""``sv4d curate``: keep or drop multi-view sets of animated assets, as SV4D 2.0 curates its data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_out, add_overwrite, add_quiet, add_renamed, non_negative_float

_FLAGS = ("max_drift", "max_scale_ratio", "min_motion", "min_luminance", "max_touches_border", "max_empty_images")


def _at_least_one(text: str) -> float:
    v = non_negative_float(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return v


def run(args: argparse.Namespace) -> int:
    from ..data.curate import Thresholds, curate
    from ..errors import Sv4dError

    if args.out is None:
        raise Sv4dError("give the report folder with -o/--out")
    thresholds = Thresholds(**{k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None})
    report = Path(args.out)
    r = curate(args.sets, report, thresholds, progress=not args.quiet, overwrite=args.overwrite)
    c = r["counts"]
    if not args.quiet:
        extra = f"; {c['not_sets']} not multi-view sets" if c["not_sets"] else ""
        print(f"sv4d: kept {c['kept']} of {c['paths']}{extra}", file=sys.stderr)
    print(report / "index.html")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..data.curate import Thresholds

    d = Thresholds()
    c = sub.add_parser(
        "curate",
        help="filter multi-view video sets of animated assets (drift, scaling, motion, lighting)",
        description=(
            "Measure each SET (a multi-view video set, e.g. from sv4d render-asset) as SV4D 2.0 "
            "curates its training data and keep or drop it: drift of the object's most static part "
            "(from geometry.npz, in object sizes), inconsistent scaling (projected size max/min over "
            "frames), minimal motion (largest mean RGB difference between keyframes, 0..1), dark "
            "lighting (mean foreground Rec. 709 luminance, 0..1), images cut by the border, empty "
            "images. Paths that are not sets are reported as dropped. Writes OUT/curation.json "
            "(every measure, verdict and reason) and OUT/index.html (thumbnails, kept first)."
        ),
        epilog="example: sv4d curate renders/* -o outputs/curation --min-luminance 0.2",
    )
    c.add_argument("sets", nargs="+", metavar="SETS", help="multi-view set folders")
    add_out(c, "report folder to write (required)")
    add_renamed(c, "--report", "-o/--out", "out")
    add_overwrite(c, "the report folder")
    add_quiet(c)
    t = c.add_argument_group("thresholds")
    t.add_argument(
        "--max-drift",
        type=non_negative_float,
        default=None,
        help=f"largest drift of the static part, in object sizes (default {d.max_drift})",
    )
    t.add_argument(
        "--max-scale-ratio",
        type=_at_least_one,
        default=None,
        help=f"largest projected size max/min over frames (default {d.max_scale_ratio})",
    )
    t.add_argument(
        "--min-motion",
        type=non_negative_float,
        default=None,
        help=f"smallest keyframe difference, 0..1 (default {d.min_motion})",
    )
    t.add_argument(
        "--min-luminance",
        type=non_negative_float,
        default=None,
        help=f"smallest mean foreground luminance, 0..1 (default {d.min_luminance})",
    )
    t.add_argument(
        "--max-touches-border",
        type=non_negative_float,
        default=None,
        help=f"largest fraction of images cut by the border (default {d.max_touches_border})",
    )
    t.add_argument(
        "--max-empty-images",
        type=non_negative_float,
        default=None,
        help=f"largest fraction of images without foreground (default {d.max_empty_images})",
    )
    c.set_defaults(func=run)

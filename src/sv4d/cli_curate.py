"""The ``sv4d curate`` sub-command: argument parsing only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_args import non_negative_float


def _at_least_one(text: str) -> float:
    v = non_negative_float(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return v


_FLAGS = ("max_drift", "max_scale_ratio", "min_motion", "min_luminance", "max_touches_border", "max_empty_images")


def _cmd_curate(args: argparse.Namespace) -> int:
    from .data.curate import Thresholds, curate

    thresholds = Thresholds(**{k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None})
    report = Path(args.report)
    r = curate(args.sets, report, thresholds, progress=not args.quiet, overwrite=args.overwrite)
    c = r["counts"]
    if not args.quiet:
        extra = f"; {c['not_sets']} not multi-view sets" if c["not_sets"] else ""
        print(f"sv4d: kept {c['kept']} of {c['paths']}{extra}", file=sys.stderr)
    print(report / "index.html")
    return 0


def add_curate_command(sub: "argparse._SubParsersAction") -> None:
    from .data.curate import Thresholds

    d = Thresholds()
    c = sub.add_parser(
        "curate", help="filter multi-view video sets of animated assets (drift, scaling, motion, lighting)",
        description=(
            "Measure each SET (a multi-view video set, e.g. from sv4d render-asset) as SV4D 2.0 "
            "curates its training data and keep or drop it: drift of the object's most static part "
            "(from geometry.npz, in object sizes), inconsistent scaling (projected size max/min over "
            "frames), minimal motion (largest mean RGB difference between keyframes, 0..1), dark "
            "lighting (mean foreground Rec. 709 luminance, 0..1), images cut by the border, empty "
            "images. Paths that are not sets are reported as dropped. Writes REPORT/curation.json "
            "(every measure, verdict and reason) and REPORT/index.html (thumbnails, kept first)."),
        epilog="example: sv4d curate renders/* --report outputs/curation --min-luminance 0.2")
    c.add_argument("sets", nargs="+", metavar="SETS", help="multi-view set folders")
    c.add_argument("--report", required=True, metavar="DIR", help="report folder to write")
    c.add_argument("--max-drift", type=non_negative_float, default=None,
                   help=f"largest drift of the static part, in object sizes (default {d.max_drift})")
    c.add_argument("--max-scale-ratio", type=_at_least_one, default=None,
                   help=f"largest projected size max/min over frames (default {d.max_scale_ratio})")
    c.add_argument("--min-motion", type=non_negative_float, default=None,
                   help=f"smallest keyframe difference, 0..1 (default {d.min_motion})")
    c.add_argument("--min-luminance", type=non_negative_float, default=None,
                   help=f"smallest mean foreground luminance, 0..1 (default {d.min_luminance})")
    c.add_argument("--max-touches-border", type=non_negative_float, default=None,
                   help=f"largest fraction of images cut by the border (default {d.max_touches_border})")
    c.add_argument("--max-empty-images", type=non_negative_float, default=None,
                   help=f"largest fraction of images without foreground (default {d.max_empty_images})")
    c.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    c.set_defaults(func=_cmd_curate)

"""``sv4d verify-golden`` and ``sv4d check``: the model against recorded vectors, a checkpoint against the model."""

from __future__ import annotations

import argparse

from ..config import PRESETS
from .common import add_device, add_dtype, add_quiet


def run_verify_golden(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..verify import verify_golden

    device = resolve_device(args.device)
    ok = verify_golden(args.directory, device=device, echo=(lambda *a: None) if args.quiet else print)
    if args.quiet:
        print("ok" if ok else "FAILED")
    return 0 if ok else 1


def run_check(args: argparse.Namespace) -> int:
    from ..checkpoint import check_checkpoint

    report = check_checkpoint(args.checkpoint, preset=args.preset, load=args.load, dtype=args.dtype)
    print(report.splitlines()[0] if args.quiet else report)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser(
        "verify-golden",
        help="check the model against golden vectors recorded from the reference implementation",
        description=(
            "Build the model described by DIR/tiny_config.json, load DIR/tiny_unet.safetensors and "
            "DIR/tiny_vae.safetensors, run every vector in DIR (unet_*.safetensors: one UNet call "
            "with per-block traces; sampling_*.safetensors: conditioner, every sampler step and the "
            "decoded images) and print, per tensor, the max abs error and the tolerance. Exits 0 "
            "only if every tensor is within tolerance, 1 if any is not."
        ),
    )
    v.add_argument("directory", metavar="DIR", help="golden directory (format of shared/reference/golden)")
    add_device(v)
    add_quiet(v)
    v.set_defaults(func=run_verify_golden)

    c = sub.add_parser(
        "check",
        help="check a checkpoint's keys and shapes against the model (official or sv4d-written)",
        description=(
            "Read the checkpoint's header and compare every key and shape with the model the "
            "preset (or the config stored in the file) describes. Lists missing, unexpected and "
            "wrongly shaped keys. With --load, also load every tensor and check it is finite."
        ),
    )
    c.add_argument(
        "checkpoint",
        help="a .safetensors file, e.g. sv4d2.safetensors, a Hub name (sv4d2, sv4d2_8views: downloaded once into "
        "the Hub cache) or hf://OWNER/REPO[@REVISION]/FILE.safetensors",
    )
    c.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="model preset for official files (default: from the file name, as the official script)",
    )
    c.add_argument("--load", action="store_true", help="also load all tensors (needs memory for the weights)")
    add_dtype(c, "fp32", "precision for --load (default fp32)")
    add_quiet(c)
    c.set_defaults(func=run_check)

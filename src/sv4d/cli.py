"""The ``sv4d`` command: argument parsing and nothing else."""

from __future__ import annotations

import argparse
import sys

from .errors import Sv4dError


def _cmd_verify_golden(args: argparse.Namespace) -> int:
    from .verify import verify_golden

    ok = verify_golden(args.directory, device=args.device)
    return 0 if ok else 1


def _cmd_check(args: argparse.Namespace) -> int:
    from .io.checkpoint import check_checkpoint

    print(check_checkpoint(args.checkpoint, preset=args.preset, load=args.load, dtype=args.dtype))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sv4d",
        description="Stable Video 4D 2.0: multi-view video generation, 4D fitting, training and evaluation.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

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
    v.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    v.set_defaults(func=_cmd_verify_golden)

    c = sub.add_parser(
        "check",
        help="check a checkpoint's keys and shapes against the model (official or sv4d-written)",
        description=(
            "Read the checkpoint's header and compare every key and shape with the model the "
            "preset (or the config stored in the file) describes. Lists missing, unexpected and "
            "wrongly shaped keys. With --load, also load every tensor and check it is finite."
        ),
    )
    c.add_argument("checkpoint", help="a .safetensors file, e.g. sv4d2.safetensors")
    c.add_argument("--preset", choices=["sv4d2", "sv4d2_8views"], default=None,
                   help="model preset for official files (default: from the file name, as the official script)")
    c.add_argument("--load", action="store_true", help="also load all tensors (needs memory for the weights)")
    c.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="dtype for --load")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Sv4dError as e:
        print(f"sv4d: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sv4d: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

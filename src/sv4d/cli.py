"""The ``sv4d`` command: argument parsing and nothing else."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_args import positive_int, ratio
from .cli_curate import add_curate_command
from .cli_evaluate import add_evaluate_command
from .cli_fit import add_fit_commands
from .cli_render_asset import add_render_asset_command
from .config import PRESETS
from .errors import Sv4dError


def _cmd_verify_golden(args: argparse.Namespace) -> int:
    from .verify import verify_golden

    ok = verify_golden(args.directory, device=args.device)
    return 0 if ok else 1


def _cmd_check(args: argparse.Namespace) -> int:
    from .io.checkpoint import check_checkpoint

    print(check_checkpoint(args.checkpoint, preset=args.preset, load=args.load, dtype=args.dtype))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .generate.output import check_output_dir
    from .generate.pipeline import GenerationPipeline
    from .generate.preprocess import check_mask_available
    from .generate.cameras import view_angles
    from .io.checkpoint import resolve_config
    from .io.video import read_clip

    out = Path(args.out) if args.out else Path("outputs") / _stem(args.input)
    check_output_dir(out, args.overwrite)
    cfg = resolve_config(args.checkpoint, args.preset)  # also refuses anything but safetensors
    elevations = args.elevations[0] if args.elevations and len(args.elevations) == 1 else (args.elevations or 0.0)
    view_angles(cfg.num_views, cfg.azimuths_deg, args.azimuths, elevations, args.input_elevation)
    check_mask_available(args.mask)
    clip = read_clip(args.input, max_frames=args.frames, fps=args.fps, spread=args.spread, start=args.start)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    say(f"sv4d: {clip.source}: {len(clip.frames)} frames of {clip.size[0]}x{clip.size[1]} at {clip.fps:g} fps")
    pipe = GenerationPipeline.from_checkpoint(
        args.checkpoint, preset=args.preset, device=args.device, dtype=args.dtype, offload=args.offload,
        encode_chunk=args.encode_chunk, decode_chunk=args.decode_chunk,
    )
    result = pipe(
        clip, mask=args.mask, crop=args.crop, frame_ratio=args.frame_ratio, box=args.box,
        azimuths=args.azimuths, elevations=elevations, input_elevation=args.input_elevation,
        steps=args.steps, seed=args.seed, guider=args.guider, min_scale=args.min_cfg,
        max_scale=args.max_cfg, progress=not args.quiet,
    )
    path = result.save(out, overwrite=args.overwrite, videos=not args.no_videos,
                       preview=not args.no_preview, progress=not args.quiet)
    s = result.settings
    say(f"sv4d: windows {s['windows']}, {s['steps']} steps, "
        f"{sum(s['seconds_per_window']) / max(1, len(s['seconds_per_window'])):.1f} s per window")
    print(path)
    return 0


def _loss_ends(losses: list[float]) -> tuple[int, float, float]:
    """(k, mean of the first k, mean of the last k) with k a tenth of the run (at least 1)."""
    k = max(1, len(losses) // 10)
    return k, sum(losses[:k]) / k, sum(losses[-k:]) / k


def _train_config(args: argparse.Namespace):
    from .train.config import load_train_config

    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `sv4d train steps=10`: no config file, only overrides
        config = None
    if args.out:
        overrides.append(f"out={args.out}")
    if args.steps:
        overrides.append(f"steps={args.steps}")
    return load_train_config(config, overrides)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """The arguments `sv4d train` and `sv4d train-autoencoder` share (read by _train_config)."""
    p.add_argument("config", nargs="?", default=None, help="TOML or JSON training config (default: all defaults)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config fields, values in JSON")
    p.add_argument("--out", default=None, help="output folder (overrides the config's out)")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (overrides the config)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _cmd_train_autoencoder(args: argparse.Namespace) -> int:
    from .train.autoencoder import train_autoencoder

    cfg = _train_config(args)
    if cfg.init is None and cfg.model != "tiny":
        raise Sv4dError(f"model {cfg.model!r} comes with the official VAE: give init = the official "
                        "checkpoint to fine-tune its VAE, or use model = 'tiny'")
    s = train_autoencoder(cfg, progress=not args.quiet)
    k, first, last = _loss_ends(s["losses"])
    print(f"sv4d: autoencoder {s['steps']} steps on {s['images']} images, loss {first:.4f} -> "
          f"{last:.4f}, reconstruction PSNR {s['recon_psnr']:.2f} dB, scale_factor "
          f"{s['scale_factor']:.4f}, {s['seconds']:.0f} s", file=sys.stderr)
    print(s["model"])
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.loop import Trainer

    cfg = _train_config(args)
    summary = Trainer(cfg, progress=not args.quiet).run()
    if summary["losses"]:
        k, first, last = _loss_ends(summary["losses"])
        print(f"sv4d: {summary['steps']} steps ({'resumed' if summary['resumed'] else 'new run'}), "
              f"loss {first:.4f} (first {k}) -> {last:.4f} (last {k}), "
              f"{summary['seconds']:.0f} s", file=sys.stderr)
    print(summary["model"])
    return 0


def _stem(source: str) -> str:
    p = Path(source.split("*")[0].rstrip("/")) if "*" in source else Path(source)
    return (p.stem if p.suffix else p.name) or "clip"


def _add_generate(sub: "argparse._SubParsersAction") -> None:
    from .diffusion.guiders import GUIDERS
    from .generate.preprocess import CROP_MODES, MASK_MODES

    g = sub.add_parser(
        "generate",
        help="one video in, consistent novel-view videos out (a multi-view video set)",
        description=(
            "Preprocess a clip (foreground, square crop, white background), generate V novel "
            "views of every frame with SV4D 2.0 in windows of T frames (sv4d2: 12 frames x 4 "
            "views; sv4d2_8views: 5 x 8), and write OUT/: cameras.json, rgba/ and rgb_white/ "
            "view_XX/frame_YYY.png (view 0 = the preprocessed input), transforms.json "
            "(D-NeRF style), videos/view_XX.mp4, preview.png, preview.mp4 and generation.json. "
            "Cameras orbit the origin at a 33.8 degree field of view and a distance of "
            "0.5 / (frame_ratio * tan(16.9 deg)), the object taken to fit [-0.5, 0.5]^3. "
            "Any number of frames works: a short clip is padded, a long one gets more windows."
        ),
        epilog="example: sv4d generate camel.gif --checkpoint sv4d2.safetensors --out out/camel",
    )
    g.add_argument("input", help="a video (mp4, webm, gif, ...), a folder of frames, or a quoted glob pattern")
    g.add_argument("-c", "--checkpoint", required=True,
                   help="sv4d2.safetensors, sv4d2_8views.safetensors, or one written by sv4d")
    g.add_argument("-o", "--out", default=None, help="output folder (default: outputs/<input name>)")
    g.add_argument("--overwrite", action="store_true", help="replace --out if it exists (only once the new one is complete)")
    g.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="model of an official file (default: from its name; sv4d files store it)")
    a = g.add_argument_group("input frames")
    a.add_argument("--frames", type=positive_int, default=None, metavar="N", help="keep this many frames (default: all)")
    a.add_argument("--spread", action="store_true", help="with --frames: spread them evenly over the clip instead of taking the first ones")
    a.add_argument("--fps", type=float, default=None, metavar="FPS", help="resample the clip to this frame rate first (default: as read)")
    a.add_argument("--start", type=float, default=0.0, metavar="SEC", help="skip this many seconds at the start (default 0)")
    p = g.add_argument_group("preprocessing")
    p.add_argument("--mask", choices=MASK_MODES, default="auto",
                   help="foreground: auto = the alpha channel when it is not fully opaque, else the official "
                        "white-background threshold (mean RGB <= 250); alpha = alpha > 0 (the official rule "
                        "for RGBA, also for opaque GIFs); grabcut = OpenCV GrabCut from --box for footage "
                        "without a plain background; rembg = the rembg package, if installed with its model (default: auto)")
    p.add_argument("--box", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), default=None,
                   help="object box in input pixels for --mask grabcut (default: the frame inset by 5%%)")
    p.add_argument("--crop", choices=CROP_MODES, default="union",
                   help="crop around the union box of all frames (official) or each frame's own box "
                        "(objects that travel across the frame); default: union")
    p.add_argument("--frame-ratio", type=ratio, default=0.9, metavar="R",
                   help="fraction of the square the object fills (default 0.9, as the official script)")
    c = g.add_argument_group("cameras")
    c.add_argument("--azimuths", type=float, nargs="+", default=None, metavar="DEG",
                   help="V novel-view azimuths in degrees relative to the input view "
                        "(default: sv4d2 60 120 180 240; sv4d2_8views 30 75 120 165 210 255 300 330)")
    c.add_argument("--elevations", type=float, nargs="+", default=None, metavar="DEG",
                   help="one elevation in degrees for every view (official, default 0), or V values for the novel views")
    c.add_argument("--input-elevation", type=float, default=None, metavar="DEG",
                   help="elevation of the input view when --elevations gives V values (default 0)")
    s = g.add_argument_group("sampling")
    s.add_argument("--steps", type=positive_int, default=None, metavar="N", help="sampling steps (default: the model's, 50)")
    s.add_argument("--seed", type=int, default=23, metavar="N", help="random seed; the same seed gives the same output (default 23, as the official script)")
    s.add_argument("--guider", choices=GUIDERS, default=None,
                   help="classifier-free guidance schedule (default: the model's)")
    s.add_argument("--min-cfg", type=float, default=None, metavar="S", help="smallest guidance scale (default: the model's)")
    s.add_argument("--max-cfg", type=float, default=None, metavar="S", help="largest guidance scale (default: the model's)")
    m = g.add_argument_group("memory and speed")
    m.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    m.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                   help="weights and compute precision (default: fp16 on CUDA, fp32 on CPU; the decoder always runs in fp32)")
    m.add_argument("--offload", action="store_true",
                   help="keep idle sub-models on the CPU and move each to --device only while it runs")
    m.add_argument("--encode-chunk", type=positive_int, default=8, metavar="N", help="images per VAE encoder call (default 8)")
    m.add_argument("--decode-chunk", type=positive_int, default=4, metavar="N", help="latents per VAE decoder call (default 4)")
    o = g.add_argument_group("output")
    o.add_argument("--no-videos", action="store_true", help="skip videos/view_XX.mp4")
    o.add_argument("--no-preview", action="store_true", help="skip preview.png and preview.mp4")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=_cmd_generate)


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
    c.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="model preset for official files (default: from the file name, as the official script)")
    c.add_argument("--load", action="store_true", help="also load all tensors (needs memory for the weights)")
    c.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="dtype for --load")
    c.set_defaults(func=_cmd_check)
    _add_generate(sub)
    t = sub.add_parser(
        "train",
        help="train or fine-tune SV4D 2.0 on multi-view video sets",
        description=(
            "Train with the SV4D 2.0 recipe (EDM objective, reference-view masking, condition "
            "dropout, progressive 3D-to-4D stages) on Hugging Face accelerate: one process on a "
            "CPU, or many GPUs with `accelerate launch -m sv4d.cli train CONFIG`. CONFIG is a "
            "TOML or JSON file of sv4d.train.config.TrainConfig fields (see configs/tiny_fox.toml); "
            "KEY=VALUE overrides any field (objective.uncond_prob=0.2). VAE latents and image "
            "embeddings are cached in OUT/cache (cache_dir=...) before the first step. A run resumes "
            "from OUT/state when it exists; OUT/model.safetensors is a checkpoint `sv4d generate` "
            "loads. A model from scratch (model=\"tiny\") needs its VAE trained first: see "
            "`sv4d train-autoencoder --help`."
        ),
        epilog="example: sv4d train configs/tiny_fox.toml steps=50 out=runs/try",
    )
    _add_train_args(t)
    t.set_defaults(func=_cmd_train)
    a = sub.add_parser(
        "train-autoencoder",
        help="train a small model's VAE before its UNet (for training from scratch)",
        description=(
            "Train the VAE of a from-scratch model (model = 'tiny') on the config's data: the "
            "conditioning encoder and the decoder as a KL autoencoder (L1 + kl_weight * KL). The "
            "three conditioning encoders get the trained weights and scale_factor becomes 1/std "
            "of the latents. Writes OUT/model.safetensors; then run `sv4d train CONFIG "
            "init=OUT/model.safetensors` to train the UNet with this VAE frozen. Takes the same "
            "CONFIG and KEY=VALUE overrides as `sv4d train` (lr, steps, batch_size, views, ...)."
        ),
        epilog="example: sv4d train-autoencoder configs/tiny_fox.toml steps=300 out=runs/fox_vae",
    )
    _add_train_args(a)
    a.set_defaults(func=_cmd_train_autoencoder)
    add_fit_commands(sub)
    add_evaluate_command(sub)
    add_render_asset_command(sub)
    add_curate_command(sub)
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

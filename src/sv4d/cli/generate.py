"""``sv4d generate``: one clip in, a multi-view video set out."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cameras import SV4D_FOV_DEG
from ..config import PRESETS
from .common import (
    add_device,
    add_dtype,
    add_out,
    add_overwrite,
    add_quiet,
    add_seed,
    finite_float,
    frames_or_count,
    input_stem,
    non_negative_float,
    one_or_each,
    positive_float,
    positive_int,
    ratio,
    say,
    take_legacy_count,
)


def run(args: argparse.Namespace) -> int:
    from ..cameras import model_views
    from ..checkpoint import resolve_config
    from ..devices import parse_dtype, resolve_device
    from ..generate.output import check_output_dir
    from ..generate.pipeline import GenerationPipeline
    from ..generate.preprocess import check_mask_available
    from ..generate.windows import plan_windows
    from ..io.hub import resolve_checkpoint
    from ..io.video import check_clip_source, read_clip

    take_legacy_count(args, "num_frames", "--num-frames")
    out = Path(args.out) if args.out else Path("outputs") / input_stem(args.input)
    # 1. Check everything the user gave before any expensive work.
    device = resolve_device(args.device)
    check_clip_source(args.input)
    check_output_dir(out, args.overwrite)
    dtype = None if args.dtype is None else parse_dtype(args.dtype)
    ckpt = resolve_checkpoint(args.checkpoint, progress=not args.quiet)  # a Hub name: downloaded once, then cached
    cfg = resolve_config(ckpt, args.preset)  # also refuses anything but safetensors
    elevations = one_or_each(args.elevations, 0.0)
    model_views(cfg.num_views, cfg.azimuths_deg, args.azimuths, elevations, args.input_elevation)
    check_mask_available(args.mask)
    # 2. Read the clip and pick its frames.
    clip = read_clip(args.input, max_frames=args.num_frames, fps=args.fps, spread=args.spread, start=args.start)
    if args.frames is not None:
        clip = clip.select(args.frames)
    plan_windows(len(clip.frames), cfg.num_frames, args.windows, views=cfg.num_views)  # before loading the model
    tell = say(args)
    tell(f"sv4d: {clip.source}: {len(clip.frames)} frames of {clip.size[0]}x{clip.size[1]} at {clip.fps:g} fps")
    # 3. Load the model and generate.
    pipe = GenerationPipeline.from_checkpoint(
        ckpt,
        preset=args.preset,
        device=device,
        dtype=dtype,
        offload=args.offload,
        encode_chunk=args.encode_chunk,
        decode_chunk=args.decode_chunk,
    )
    pipe.checkpoint = str(args.checkpoint)  # generation.json names the checkpoint as given (e.g. sv4d2)
    result = pipe(
        clip,
        mask=args.mask,
        crop=args.crop,
        frame_ratio=args.frame_ratio,
        box=args.box,
        azimuths=args.azimuths,
        elevations=elevations,
        input_elevation=args.input_elevation,
        steps=args.steps,
        seed=args.seed,
        guider=args.guider,
        min_scale=args.min_cfg,
        max_scale=args.max_cfg,
        windows=args.windows,
        progress=not args.quiet,
    )
    # 4. Write the set.
    path = result.save(
        out, overwrite=args.overwrite, videos=not args.no_videos, preview=not args.no_preview, progress=not args.quiet
    )
    s = result.settings
    tell(
        f"sv4d: windows {s['windows']}, {s['steps']} steps on {s['device']} ({s['dtype']}), "
        f"{sum(s['seconds_per_window']) / max(1, len(s['seconds_per_window'])):.1f} s per window"
    )
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..diffusion.guiders import GUIDERS
    from ..generate.preprocess import CROP_MODES, MASK_MODES
    from ..generate.windows import SCHEDULES

    g = sub.add_parser(
        "generate",
        help="one video in, consistent novel-view videos out (a multi-view video set)",
        description=(
            "Preprocess a clip (foreground, square crop, white background), generate V novel "
            "views of every frame with SV4D 2.0 in windows of T frames (sv4d2: 12 frames x 4 "
            "views; sv4d2_8views: 5 x 8), and write OUT/: cameras.json, rgba/ and rgb_white/ "
            "view_XX/frame_YYY.png (view 0 = the preprocessed input), transforms.json "
            "(D-NeRF style), videos/view_XX.mp4, preview.png, preview.mp4 and generation.json. "
            f"Cameras orbit the origin at a {SV4D_FOV_DEG:g} degree field of view and a distance of "
            f"0.5 / (frame_ratio * tan({SV4D_FOV_DEG / 2:g} deg)), the object taken to fit [-0.5, 0.5]^3. "
            "Any number of frames works: a short clip is padded, a long one gets more windows. "
            "Runs on the GPU when there is one (--device)."
        ),
        epilog="example: sv4d generate camel.gif --checkpoint sv4d2.safetensors -o out/camel",
    )
    g.add_argument("input", help="a video (mp4, webm, gif, ...), a folder of frames, or a quoted glob pattern")
    g.add_argument(
        "-c",
        "--checkpoint",
        default="sv4d2",
        metavar="SPEC",
        help="the model: sv4d2 (default) or sv4d2_8views, the official files of stabilityai/sv4d2.0 on the Hugging "
        "Face Hub, downloaded once into the Hub cache (HF_HOME; the repository is gated: accept its licence on its "
        "page and log in with `hf auth login` or set HF_TOKEN; HF_HUB_OFFLINE=1 uses the cache only); "
        "hf://OWNER/REPO/FILE.safetensors or hf://OWNER/REPO@REVISION/FILE.safetensors; or a local .safetensors "
        "file (official, or written by sv4d)",
    )
    add_out(g, "output folder (default: outputs/<input name>)")
    add_overwrite(g, "--out")
    g.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="model of an official file (default: from its name; sv4d files store it)",
    )
    add_quiet(g)
    a = g.add_argument_group("input frames")
    a.add_argument(
        "--frames",
        type=frames_or_count,
        default=None,
        metavar="SEL",
        help="which frames of the clip (after --start, --fps and --num-frames) to keep, e.g. 0-20 "
        "or 0-40:2 (default: all). A bare number N is the old count (= --num-frames N)",
    )
    a.add_argument(
        "--num-frames", type=positive_int, default=None, metavar="N", help="keep this many frames (default: all)"
    )
    a.add_argument(
        "--spread",
        action="store_true",
        help="with --num-frames: spread them evenly over the clip instead of taking the first ones",
    )
    a.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        metavar="FPS",
        help="resample the clip to this frame rate first (default: as read)",
    )
    a.add_argument(
        "--start",
        type=non_negative_float,
        default=0.0,
        metavar="SEC",
        help="skip this many seconds at the start (default 0)",
    )
    p = g.add_argument_group("preprocessing")
    p.add_argument(
        "--mask",
        choices=MASK_MODES,
        default="auto",
        help="foreground: auto = the alpha channel when it is not fully opaque, else the official "
        "white-background threshold (mean RGB <= 250); alpha = alpha > 0 (the official rule "
        "for RGBA, also for opaque GIFs); grabcut = OpenCV GrabCut from --box for footage "
        "without a plain background; rembg = the rembg package, if installed with its model "
        "(default: auto)",
    )
    p.add_argument(
        "--box",
        type=int,
        nargs=4,
        metavar=("X0", "Y0", "X1", "Y1"),
        default=None,
        help="object box in input pixels for --mask grabcut (default: the frame inset by 5%%)",
    )
    p.add_argument(
        "--crop",
        choices=CROP_MODES,
        default="union",
        help="crop around the union box of all frames (official) or each frame's own box "
        "(objects that travel across the frame); default: union",
    )
    p.add_argument(
        "--frame-ratio",
        type=ratio,
        default=0.9,
        metavar="R",
        help="fraction of the square the object fills (default 0.9, as the official script)",
    )
    c = g.add_argument_group("cameras")
    c.add_argument(
        "--azimuths",
        type=finite_float,
        nargs="+",
        default=None,
        metavar="DEG",
        help="V novel-view azimuths in degrees relative to the input view "
        "(default: sv4d2 60 120 180 240; sv4d2_8views 30 75 120 165 210 255 300 330)",
    )
    c.add_argument(
        "--elevations",
        type=finite_float,
        nargs="+",
        default=None,
        metavar="DEG",
        help="one elevation in degrees for every view (official, default 0), or V values for the "
        "novel views; strictly between -90 and 90",
    )
    c.add_argument(
        "--input-elevation",
        type=finite_float,
        default=None,
        metavar="DEG",
        help="elevation of the input view when --elevations gives V values (default 0)",
    )
    s = g.add_argument_group("sampling")
    s.add_argument(
        "--steps", type=positive_int, default=None, metavar="N", help="sampling steps (default: the model's, 50)"
    )
    add_seed(s, 23, " on any device; 23 as the official script")
    s.add_argument(
        "--guider", choices=GUIDERS, default=None, help="classifier-free guidance schedule (default: the model's)"
    )
    s.add_argument(
        "--min-cfg", type=finite_float, default=None, metavar="S", help="smallest guidance scale (default: the model's)"
    )
    s.add_argument(
        "--max-cfg", type=finite_float, default=None, metavar="S", help="largest guidance scale (default: the model's)"
    )
    s.add_argument(
        "--windows",
        choices=SCHEDULES,
        default="even",
        help="window schedule: even = the fewest windows of T frames, spread evenly, each run once; official = "
        "the current official script's rule: a window starts every T-1 frames (sv4d2: up to the last frame, "
        "the last window pulled back to end on it, so a window may run twice; sv4d2_8views: only windows that "
        "fit, so unless (N - 5) %% 4 == 0 the last frames are left ungenerated and the run is refused). "
        "Both give the same windows for 21 frames (default: even)",
    )
    m = g.add_argument_group("memory and speed")
    add_device(m, " (the 3-billion-parameter model wants a GPU)")
    add_dtype(
        m, None, "weights and compute precision (default: fp16 on CUDA, fp32 on CPU; the decoder always runs in fp32)"
    )
    m.add_argument(
        "--offload",
        action="store_true",
        help="keep idle sub-models on the CPU and move each to --device only while it runs",
    )
    m.add_argument(
        "--encode-chunk", type=positive_int, default=8, metavar="N", help="images per VAE encoder call (default 8)"
    )
    m.add_argument(
        "--decode-chunk", type=positive_int, default=4, metavar="N", help="latents per VAE decoder call (default 4)"
    )
    o = g.add_argument_group("output")
    o.add_argument("--no-videos", action="store_true", help="skip videos/view_XX.mp4")
    o.add_argument("--no-preview", action="store_true", help="skip preview.png and preview.mp4")
    g.set_defaults(func=run)

"""``sv4d run``: one clip in, a 4D asset out (generate, fit, export, a page), in one folder."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from .common import (
    add_device,
    add_dtype,
    add_out,
    add_overwrite,
    add_quiet,
    add_seed,
    finite_float,
    frames_or_count,
    index_list,
    input_stem,
    key_values,
    non_negative_float,
    one_or_each,
    positive_float,
    positive_int,
    say,
    take_legacy_count,
)


def run(args: argparse.Namespace) -> int:
    from ..workflow import RunOptions, run_clip, summary_table

    take_legacy_count(args, "num_frames", "--num-frames")
    out = Path(args.out) if args.out else Path("outputs") / f"{input_stem(args.input)}_run"
    opts = RunOptions(
        checkpoint=args.checkpoint,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        num_frames=args.num_frames,
        frames=args.frames,
        azimuths=args.azimuths,
        elevations=one_or_each(args.elevations, 0.0),
        mask=args.mask,
        steps=args.steps,
        windows=args.windows,
        offload=args.offload,
        generate=key_values(args.generate_options, "--gen"),
        method=args.method,
        fit_steps=args.fit_steps,
        minutes=args.minutes or 0.0,
        resolution=args.resolution,
        views=args.views,
        settings=key_values(args.set_options, "--set"),
        fit=key_values(args.fit_options, "--fit"),
        grid=args.grid,
        page_size=args.page_size,
        page_azimuths=args.page_azimuths,
        page_elevations=tuple(args.page_elevations),
        page_fps=args.page_fps,
    )
    state = run_clip(
        args.input, out, opts, overwrite=args.overwrite, redo=args.redo, until=args.until, progress=not args.quiet
    )
    tell = say(args)
    tell(summary_table(state))
    if state["complete"]:
        tell(f"sv4d: open {out / 'index.html'} to look at the result")
    else:
        tell(f"sv4d: stopped after {args.until}; the same command without --until goes on from there")
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..generate.preprocess import MASK_MODES
    from ..workflow.run import DEVICE_DEFAULTS, METHODS, STAGES

    def dflt(name: str) -> str:
        gpu, cpu = DEVICE_DEFAULTS[name]
        return f"default {gpu} on a GPU, {cpu} on the CPU"

    r = sub.add_parser(
        "run",
        help="one clip to a 4D asset: generate the views, fit, export and a page to look at it",
        description=textwrap.fill(
            "Preprocess and generate novel-view videos of INPUT with SV4D 2.0 (`sv4d generate`), fit a dynamic "
            "NeRF or 4D Gaussians to them (`sv4d fit`), export meshes or PLY files (`sv4d export`) and write "
            "OUT/index.html: the input, the generated views and the 4D asset to turn around and play through "
            "time (it works from the file, offline). Every stage's output is kept: rerunning the same command "
            "after an interruption skips the finished stages and resumes the fit. The weights come from the "
            "Hugging Face Hub by default (-c sv4d2; accept the licence at "
            "https://huggingface.co/stabilityai/sv4d2.0 and log in first). Defaults give a good result on a GPU "
            "and a useful one on the CPU; the model itself is slow on a CPU (lower --steps).",
            88,
        ),
        epilog=(
            "examples:\n  sv4d run camel.mp4 -o out/camel\n"
            "  sv4d run camel.mp4 -o out/camel --method gaussians --minutes 10\n"
            "  sv4d run camel.mp4 -c sv4d2_8views --num-frames 21 --fit-steps 2000 --set rays=8192"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("input", help="a video (mp4, webm, gif, ...), a folder of frames, or a quoted glob pattern")
    r.add_argument(
        "-c",
        "--checkpoint",
        default="sv4d2",
        help="the model: sv4d2 (default) or sv4d2_8views from the Hugging Face Hub, hf://OWNER/REPO/FILE, "
        "or a local .safetensors file",
    )
    add_out(r, "output folder (default: outputs/<input name>_run)")
    add_overwrite(r, "an existing OUT (starting again from scratch)")
    r.add_argument(
        "--redo",
        choices=STAGES,
        default=None,
        metavar="STAGE",
        help="run STAGE and the later ones again with the options given, keeping the earlier stages: e.g. "
        "--redo fit --method gaussians refits the same generated views (stages: %(choices)s)",
    )
    r.add_argument(
        "--until",
        choices=STAGES,
        default=STAGES[-1],
        metavar="STAGE",
        help="stop after STAGE, e.g. --until generate to look at the views before fitting (default: all)",
    )
    add_quiet(r)
    add_device(r, " (every stage)")
    add_dtype(r, None, "the generator's precision (default fp16 on CUDA, fp32 on the CPU)")
    add_seed(r, 23, " (generation and fit)")
    g = r.add_argument_group("generate")
    g.add_argument(
        "--frames", type=frames_or_count, default=None, metavar="SEL", help="which frames of the clip, e.g. 0-20:2"
    )
    g.add_argument("--num-frames", type=positive_int, default=None, metavar="N", help="keep this many frames")
    g.add_argument(
        "--azimuths", type=finite_float, nargs="+", default=None, metavar="DEG", help="the novel views' azimuths"
    )
    g.add_argument(
        "--elevations",
        type=finite_float,
        nargs="+",
        default=None,
        metavar="DEG",
        help="one elevation for every view, or one per view (default 0)",
    )
    g.add_argument("--mask", choices=MASK_MODES, default="auto", help="how the object is separated (default auto)")
    g.add_argument(
        "--steps", type=positive_int, default=None, metavar="N", help="sampling steps (default: the model's, 50)"
    )
    g.add_argument(
        "--windows",
        choices=("even", "official"),
        default="even",
        help="window schedule: even (ours) or official (the upstream script's)",
    )
    g.add_argument("--offload", action="store_true", help="keep idle sub-models on the CPU (less GPU memory)")
    g.add_argument(
        "--gen",
        dest="generate_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other `sv4d generate` option by its Python name, e.g. --gen guider=linear --gen min_scale=1.5",
    )
    f = r.add_argument_group("fit")
    f.add_argument("--method", choices=METHODS, default="nerf", help="dynamic NeRF (default) or 4D Gaussians")
    f.add_argument("--fit-steps", type=positive_int, default=None, metavar="N", help=f"fit steps ({dflt('fit_steps')})")
    f.add_argument(
        "--minutes",
        type=non_negative_float,
        default=None,
        metavar="M",
        help="a wall-clock budget for the fit instead of steps",
    )
    f.add_argument(
        "--resolution", type=positive_int, default=None, metavar="H", help=f"fit image height ({dflt('resolution')})"
    )
    f.add_argument("--views", type=index_list, default=None, metavar="SEL", help="views to fit (default: all)")
    f.add_argument(
        "--set",
        dest="set_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method setting, as in `sv4d fit --set`",
    )
    f.add_argument(
        "--fit",
        dest="fit_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other fit option by name, e.g. --fit visibility=off --fit orbit_frames=48",
    )
    e = r.add_argument_group("export and page")
    e.add_argument("--grid", type=positive_int, default=None, metavar="N", help=f"marching-cubes grid ({dflt('grid')})")
    e.add_argument(
        "--page-size", type=positive_int, default=None, metavar="PX", help=f"viewer image size ({dflt('page_size')})"
    )
    e.add_argument(
        "--page-azimuths",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"viewer azimuths around the asset ({dflt('page_azimuths')})",
    )
    e.add_argument(
        "--page-elevations",
        type=finite_float,
        nargs="+",
        default=[0.0, 20.0],
        metavar="DEG",
        help="viewer elevations (default 0 20)",
    )
    e.add_argument(
        "--page-fps", type=positive_float, default=None, metavar="FPS", help="viewer frame rate (default: the clip's)"
    )
    r.set_defaults(func=run)

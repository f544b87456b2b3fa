"""``sv4d demo``: the web page (gradio, the optional extra ``sv4d[demo]``) over :class:`service.Demo`.

Served on 127.0.0.1 unless told otherwise, with no share link unless asked, no analytics and
nothing fetched from the internet by the page (gradio's front end and fonts are in the wheel).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import Sv4dError
from .service import METHODS, Demo, DemoOptions, demo_models, example_clips, parse_angles

log = logging.getLogger("sv4d.demo")

INSTALL = "pip install 'sv4d[demo]'"
INTRO = """# sv4d demo: Stable Video 4D 2.0
Upload a short clip of one moving object (or pick an example), look at what the model will see, then
**1. generate** novel-view videos of it and **2. fit** a 4D asset you can turn around and download.
"""


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry
    try:
        import gradio as gr
    except ImportError:
        raise Sv4dError(f"the demo needs gradio, which is not installed: {INSTALL}") from None
    return gr


@contextmanager
def shown_in_page(gr) -> Iterator[None]:
    """Errors become a message in the page; the server goes on serving."""
    try:
        yield
    except Sv4dError as e:
        raise gr.Error(str(e), print_exception=False) from None
    except gr.Error:
        raise
    except Exception as e:  # a bug, not the user's doing: logged in full, one line in the page
        log.exception("a demo job failed")
        raise gr.Error(f"the job failed ({type(e).__name__}: {e}); the server's log has the details") from None


def _files(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [getattr(v, "name", v) for v in items if v]


def build_page(demo: Demo):
    """The gradio Blocks of the demo."""
    gr = _gradio()
    from ..generate.preprocess import CROP_MODES, MASK_MODES
    from ..io.video import VIDEO_SUFFIXES

    base = demo.options.base
    models = demo_models(demo.options)
    keep_s = int(demo.options.keep_hours * 3600)
    with gr.Blocks(title="sv4d demo", analytics_enabled=False, delete_cache=(min(keep_s, 3600), keep_s)) as page:
        job = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab("video"):
                        video_in = gr.File(
                            label="a video (mp4, webm, gif, ...)", file_types=sorted(VIDEO_SUFFIXES), elem_id="video-in"
                        )
                    with gr.Tab("frames"):
                        frames_in = gr.File(label="a folder of frames", file_count="directory", elem_id="frames-in")
                clips = example_clips(demo.options.examples)
                if clips:
                    gr.Examples([[str(c)] for c in clips], inputs=[video_in], label="examples")
                preview = gr.Video(label="what the model sees", autoplay=True, loop=True, height=320, elem_id="preview")
                about = gr.Markdown(elem_id="about")
            with gr.Column():
                with gr.Accordion("options", open=True):
                    model = gr.Radio(models, value=models[0][1], label="model")
                    with gr.Row():
                        azimuths = gr.Textbox(
                            label="azimuths in degrees (blank: the model's)", placeholder="e.g. 90 180 270"
                        )
                        elevation = gr.Slider(-20, 60, value=float(_first(base.elevations)), step=1, label="elevation")
                    with gr.Row():
                        mask = gr.Dropdown(list(MASK_MODES), value=base.mask, label="mask")
                        crop = gr.Dropdown(list(CROP_MODES), value=base.generate.get("crop", "union"), label="crop")
                    with gr.Row():
                        num_frames = gr.Number(
                            value=base.num_frames or 21, precision=0, minimum=1, label="frames of the clip"
                        )
                        steps = gr.Number(value=base.steps or 50, precision=0, minimum=1, label="sampling steps")
                        seed = gr.Number(value=base.seed, precision=0, label="seed")
                    with gr.Row():
                        method = gr.Radio(
                            list(METHODS), value=base.method, label="4D fit: dynamic NeRF or 4D Gaussians"
                        )
                        fit_steps = gr.Number(value=demo.defaults.fit_steps, precision=0, minimum=1, label="fit steps")
                        minutes = gr.Number(value=base.minutes, minimum=0, label="or minutes (0: use steps)")
        with gr.Row():
            generate_btn = gr.Button("1. generate the views", variant="primary", elem_id="generate")
            fit_btn = gr.Button("2. fit the 4D asset", variant="primary", interactive=False, elem_id="fit")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            grid = gr.Video(label="generated views (input first)", autoplay=True, loop=True, elem_id="grid")
            views = gr.Gallery(label="each view", columns=3, elem_id="views")
        with gr.Row():
            orbit = gr.Video(label="the 4D asset, orbiting", autoplay=True, loop=True, elem_id="orbit")
            mesh = gr.Model3D(label="animated mesh (GLB): drag to turn", elem_id="mesh")
            splats = gr.Model3D(label="4D Gaussians (PLY, first frame)", visible=False, elem_id="splats")
        download = gr.File(label="download: the views, the 3D files and the report page (zip)", elem_id="download")

        # ---------------------------------------------------------------------------- handlers
        results = [grid, views, orbit, mesh, splats, download, fit_btn]
        cleared = [None, None, None, None, gr.update(value=None, visible=False), None, gr.update(interactive=False)]

        def on_upload(files, mask_mode, crop_mode, frames):
            if not _files(files):
                return [None, None, "", "", *cleared]
            with shown_in_page(gr):
                j = demo.prepare(_files(files), mask_mode, crop_mode, frames)
            return [j, j["preview"], j["about"], "the input is ready: generate the views", *cleared]

        def on_options(j, mask_mode, crop_mode, frames):
            if not j:
                return [j, None, ""]
            with shown_in_page(gr):
                j = demo.preview_again(j, mask_mode, crop_mode, frames)
            return [j, j["preview"], j["about"]]

        def on_generate(j, model_, az, el, mask_, crop_, frames, steps_, seed_, progress=gr.Progress()):
            with shown_in_page(gr):
                opts = demo.run_options(
                    checkpoint=model_, azimuths=parse_angles(az), elevations=float(el), mask=mask_, crop=crop_,
                    num_frames=_whole(frames), steps=_whole(steps_), seed=int(seed_ or 0),
                )  # fmt: skip
                j = demo.generate(j, opts, lambda f, m: progress(f, desc=m))
            captions = [(v, Path(v).stem.replace("_", " ")) for v in j["views"]]
            done = f"generated {len(j['views'])} views: now fit the 4D asset"
            return [j, j["grid"], captions, None, None, gr.update(value=None, visible=False), None,
                    gr.update(interactive=True), done]  # fmt: skip

        def on_fit(j, method_, fit_steps_, minutes_, progress=gr.Progress(track_tqdm=True)):
            with shown_in_page(gr):
                j = demo.fit(j, method_, _whole(fit_steps_), float(minutes_ or 0), lambda f, m: progress(f, desc=m))
            f = j["fitted"]
            note = f"; {f['note'].splitlines()[0].rstrip(':')}" if f.get("note") else ""
            done = f"done in {f['seconds']:.0f} s: turn the asset around, or download it{note}"
            return [j, f["orbit"], f["model"], gr.update(value=f["ply"], visible=bool(f["ply"])), f["zip"], done]

        prepared = [job, preview, about, status, *results]
        video_in.change(on_upload, [video_in, mask, crop, num_frames], prepared)
        frames_in.change(on_upload, [frames_in, mask, crop, num_frames], prepared)
        for widget in (mask, crop, num_frames):
            widget.change(on_options, [job, mask, crop, num_frames], [job, preview, about])
        generate_btn.click(
            on_generate,
            [job, model, azimuths, elevation, mask, crop, num_frames, steps, seed],
            [job, grid, views, orbit, mesh, splats, download, fit_btn, status],
        )
        fit_btn.click(on_fit, [job, method, fit_steps, minutes], [job, orbit, mesh, splats, download, status])
    return page


def _whole(v: Any) -> int | None:
    return int(v) if v not in (None, "") else None


def _first(v: Any) -> float:
    return v if isinstance(v, int | float) else (list(v) or [0.0])[0]


def serve(
    options: DemoOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    quiet: bool = False,
    block: bool = True,
):
    """Build the page and serve it; returns the gradio app when ``block`` is False."""
    gr = _gradio()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own requests to itself
    demo = Demo(options)
    os.environ["GRADIO_TEMP_DIR"] = str(demo.store.root / "uploads")  # uploads beside the jobs, cleaned alike
    page = build_page(demo)
    # Every handler may start at once; the device part of each waits its turn in demo.queue.
    page.queue(default_concurrency_limit=options.max_waiting + 1, max_size=4 * options.max_waiting)
    demo.store.start_cleaner(every_s=min(600.0, demo.store.keep_s / 4))
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=share,
            ssr_mode=False,
            max_file_size=int(options.limits.max_upload_mb * 2**20),
            allowed_paths=[str(demo.store.root)],
            prevent_thread_lock=not block,
            quiet=quiet,
            show_error=True,
            footer_links=[],
            theme=gr.themes.Default(),
        )
    except OSError as e:
        demo.store.stop()
        raise Sv4dError(f"cannot serve on {host}:{port} ({e}); choose another --port") from None
    if not block:
        return page
    demo.store.stop()
    return None


__all__ = ["build_page", "serve", "INSTALL"]

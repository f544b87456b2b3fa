"""The work behind ``sv4d demo``'s page (``page.py``), without gradio.

The page calls :class:`Demo`, whose methods do the work in a job folder (``jobs.JobStore``): the
upload is checked and copied, its preprocessed frames shown (``prepare``); the views are generated
(``generate``) and the 4D asset fitted, exported and zipped (``fit``) by ``sv4d run``'s stages
(``workflow.run_clip``), one job at a time on the device (``jobs.DeviceQueue``). Errors a user can
cause are shown in the page; the server keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Sv4dError
from ..io.atomic import atomic_file
from ..workflow.run import METHODS, ModelCache, RunOptions, check_options, run_clip
from .jobs import DemoLimits, DeviceQueue, JobStore, check_upload

log = logging.getLogger("sv4d.demo")

#: the model choices by Hub name: what a user sees
KNOWN_MODELS = {"sv4d2": "4 views x 12 frames (sv4d2)", "sv4d2_8views": "8 views x 5 frames (sv4d2_8views)"}
EXAMPLES = Path(__file__).with_name("examples")
PREVIEW_SIZE = 256  # pixels: the preprocessed input shown before generating


def example_clips(folder: Path = EXAMPLES) -> list[Path]:
    """The shipped example clips (videos), sorted by name."""
    from ..io.video import VIDEO_SUFFIXES

    return sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []


@dataclass
class DemoOptions:
    """How ``sv4d demo`` serves. ``base`` holds the run options the page does not show (fit
    resolution, grid, method settings, ...); the page sets the others per job."""

    checkpoints: Sequence[str] = ("sv4d2", "sv4d2_8views")
    device: str = "auto"
    jobs_dir: Path | None = None  # default: <temp>/sv4d-demo
    keep_hours: float = 6.0
    limits: DemoLimits = field(default_factory=DemoLimits)
    max_waiting: int = 16
    base: RunOptions = field(default_factory=RunOptions)
    examples: Path = EXAMPLES


def model_label(checkpoint: str) -> str:
    return KNOWN_MODELS.get(checkpoint, Path(checkpoint).name if checkpoint.endswith(".safetensors") else checkpoint)


def parse_angles(text: str | None) -> list[float] | None:
    """``"45 135, 225"`` -> [45.0, 135.0, 225.0]; blank -> None (the model's own)."""
    parts = (text or "").replace(",", " ").split()
    if not parts:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise Sv4dError(f"azimuths must be numbers in degrees separated by spaces, got {text!r}") from None
    if not all(abs(v) < float("inf") for v in values):
        raise Sv4dError(f"azimuths must be finite numbers, got {text!r}")
    return values


class Demo:
    """The work behind the page; each method takes the job (a dict kept per browser session) and
    returns what the page shows. Raises :class:`Sv4dError` for what the user can fix."""

    def __init__(self, options: DemoOptions) -> None:
        from ..devices import resolve_device

        self.options = options
        self.device = resolve_device(options.device)
        root = options.jobs_dir or Path(tempfile.gettempdir()) / "sv4d-demo"
        self.store = JobStore(root, options.keep_hours * 3600.0)
        self.queue = DeviceQueue(options.max_waiting)
        self.models = ModelCache()
        if not options.checkpoints:
            raise Sv4dError("the demo needs at least one checkpoint")
        check_options(options.base)
        self.defaults = options.base.resolved(self.device.type == "cuda")

    # -------------------------------------------------------------------------------------- input

    def prepare(self, files: Sequence[str] | None, mask: str, crop: str, num_frames: int | None) -> dict[str, Any]:
        """Check and copy an upload into a new job folder and preprocess it (crop, mask) for a look.
        Returns the job: {"folder", "source", "upload", "about", "preview"}."""
        folder = self.store.new()
        try:
            with self.store.using(folder):
                upload = check_upload(files or [], folder / "input", self.options.limits)
                job = {"folder": str(folder), "source": str(upload.source), "upload": upload.describe()}
                return {**job, **self._preview(folder, job, mask, crop, num_frames)}
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing behind
            raise

    def preview_again(self, job: dict | None, mask: str, crop: str, num_frames: int | None) -> dict[str, Any] | None:
        """The preview of the same upload with other mask, crop or frame count."""
        folder = self._folder(job)
        with self.store.using(folder):
            return {**job, **self._preview(folder, job, mask, crop, num_frames)}

    def _preview(self, folder: Path, job: dict, mask: str, crop: str, num_frames: int | None) -> dict[str, str]:
        """What the model will see of the job's clip, as FOLDER/preview.mp4: {"preview", "about"}."""
        from ..generate.preprocess import preprocess_frames
        from ..io.video import read_clip, write_video

        clip = read_clip(job["source"], max_frames=_count(num_frames))
        pre = preprocess_frames(clip.frames, PREVIEW_SIZE, mask=mask, crop=crop)
        preview = write_video(folder / "preview.mp4", pre.images, clip.fps)
        about = f"{job['upload']}; using {len(clip.frames)} at {clip.fps:g} fps; mask: {pre.mask}"
        notes = "; ".join(pre.notes)
        return {"preview": str(preview), "about": about + (f" ({notes})" if notes else "")}

    def _folder(self, job: dict | None) -> Path:
        if not job or not self.store.owns(job.get("folder")):
            raise Sv4dError("upload a clip (or pick an example) first")
        return Path(job["folder"])

    # ------------------------------------------------------------------------------------ generate

    def run_options(self, **page: Any) -> RunOptions:
        """The job's options: the server's base options with what the page sets."""
        generate = dict(self.options.base.generate)
        if "crop" in page:
            generate["crop"] = page.pop("crop")
        opts = dataclasses.replace(self.options.base, device=str(self.device), generate=generate, **page)
        check_options(opts)
        return opts

    def generate(
        self,
        job: dict | None,
        opts: RunOptions,
        report: Callable[[float, str], None] = lambda f, m: None,
    ) -> dict[str, Any]:
        """Generate the views of the job's clip; returns the job with {"generated": options, "grid",
        "views": [per-view videos]}."""
        folder = self._folder(job)
        run = folder / "run"

        def step(i: int, info: dict) -> None:
            n, w, s = info["num_windows"], info["window_index"], info["num_steps"]
            total, done = n * s, w * s + i + 1
            text = f"generating: window {w + 1} of {n}, step {i + 1} of {s}"
            report(done / total, text if done < total else "decoding and writing the views")

        with self.store.using(folder), self.queue.turn(lambda ahead: report(0.0, _waiting(ahead))):
            report(0.0, "loading the model")
            run_clip(
                job["source"], run, opts, overwrite=True, until="generate", progress=True, log=log.info,
                models=self.models, callback=step,
            )  # fmt: skip
        views = sorted((run / "views" / "videos").glob("view_*.mp4"))
        return {
            **job,
            "generated": dataclasses.asdict(opts),
            "grid": str(run / "views" / "preview.mp4"),
            "views": [str(v) for v in views],
            "fitted": None,
        }

    # ----------------------------------------------------------------------------------------- fit

    def fit(
        self,
        job: dict | None,
        method: str,
        fit_steps: int | None,
        minutes: float,
        report: Callable[[float, str], None] = lambda f, m: None,
    ) -> dict[str, Any]:
        """Fit the job's generated views, export and zip; returns the job with {"fitted": {"orbit",
        "model", "ply", "zip", "note"}}."""
        folder = self._folder(job)
        if not job.get("generated"):
            raise Sv4dError("generate the views first")
        run = folder / "run"
        gen = dict(job["generated"])
        if method != self.options.base.method:  # the server's method settings are for its default method
            gen["settings"] = {}
        opts = RunOptions(**{**gen, "method": method, "fit_steps": fit_steps, "minutes": float(minutes or 0.0)})
        check_options(opts)
        with self.store.using(folder), self.queue.turn(lambda ahead: report(0.0, _waiting(ahead))):
            report(0.0, "fitting")
            state = run_clip(job["source"], run, opts, redo="fit", progress=True, log=log.info, models=self.models)
            report(1.0, "packing the download")
            archive = write_zip(run, folder / f"sv4d_{Path(job['source']).stem}.zip")
        export = state["stages"].get("export", {})
        files = [run / f for f in export.get("files", [])]
        glbs = [f for f in files if f.suffix == ".glb"]
        plys = sorted(f for f in files if f.suffix == ".ply")
        model = next((f for f in glbs if f.name == "animated.glb"), glbs[0] if glbs else None)
        orbit = run / "fit" / "orbit.mp4"
        fitted = {
            "orbit": str(orbit) if orbit.is_file() else None,
            "model": str(model) if model else None,
            "ply": str(plys[0]) if plys else None,
            "zip": str(archive),
            "note": export.get("note"),
            "seconds": state.get("seconds"),
        }
        return {**job, "fitted": fitted}


def _count(n: int | float | None) -> int | None:
    return int(n) if n else None


def _waiting(ahead: int) -> str:
    return f"waiting for the device: {ahead} job{'s' * (ahead != 1)} ahead"


def write_zip(run: Path, path: Path) -> Path:
    """The download: the multi-view set, the exported files and the report page of a run folder,
    as one zip (written to a temporary name, then renamed)."""
    parts = [run / "views", run / "export", run / "page", run / "index.html", run / "run.json"]
    with atomic_file(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for part in parts:
            items = sorted(part.rglob("*")) if part.is_dir() else [part] if part.is_file() else []
            for f in items:
                if f.is_file() and not f.name.startswith("."):
                    z.write(f, f.relative_to(run).as_posix())
    return path


def demo_models(options: DemoOptions) -> list[tuple[str, str]]:
    """(label, checkpoint) for the page's model choice."""
    return [(model_label(c), c) for c in options.checkpoints]


__all__ = ["Demo", "DemoOptions", "METHODS", "example_clips", "parse_angles", "write_zip"]

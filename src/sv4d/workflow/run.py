"""`sv4d run`: one clip in, a 4D asset out — generate, fit, export and a page, in one folder.

OUT/
    run.json         the options of every stage, which stages are done, seconds per stage
    views/           the multi-view video set (`sv4d generate`; view 0 = the preprocessed input)
    fit/             the fitted 4D representation (`sv4d fit`: checkpoint.pt, fit.json, videos)
    export/          mesh/animated.glb (or per-frame meshes) and, for Gaussian fits, ply/*.ply (`sv4d export`)
    page/            the viewer's images (renders of the fit over azimuths, elevations and time)
    index.html       the page: the input, the generated views, the turnable 4D asset, links, settings

Each stage's output appears only when complete, so a rerun of the same command after an
interruption skips the finished stages and resumes the fit from its last checkpoint. A rerun with
other options is refused (the stages that would change are named) unless ``overwrite``, which
starts again from scratch and keeps the old folder until the new run is complete, or ``redo``,
which runs one stage and the later ones again with the new options and keeps the earlier ones
(``redo="fit"``: another fit of the same generated views). ``until`` stops after a stage (the demo
generates, shows the views, then fits).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..devices import resolve_device
from ..errors import Sv4dError
from ..io.atomic import atomic_file
from ..io.video import check_clip_source

STAGES = ("generate", "fit", "export", "page")
RUN_JSON = "run.json"
METHODS = ("nerf", "gaussians")

#: defaults that depend on where the work runs: (on a GPU, on the CPU)
DEVICE_DEFAULTS = {
    "fit_steps": (3000, 600),
    "resolution": (128, 96),
    "page_size": (192, 128),
    "page_azimuths": (36, 24),
    "grid": (192, 128),
}


@dataclass
class RunOptions:
    """Everything ``sv4d run`` does, by stage. ``None`` means the default for the device
    (:data:`DEVICE_DEFAULTS`) or the stage's own default."""

    checkpoint: str = "sv4d2"
    device: str = "auto"
    dtype: str | None = None
    seed: int = 23
    # generate
    num_frames: int | None = None
    frames: Sequence[int] | None = None
    azimuths: Sequence[float] | None = None
    elevations: float | Sequence[float] = 0.0
    mask: str = "auto"
    steps: int | None = None
    windows: str = "even"
    offload: bool = False
    generate: dict[str, Any] = field(default_factory=dict)  # more GenerationPipeline.__call__ options by name
    # fit
    method: str = "nerf"
    fit_steps: int | None = None
    minutes: float = 0.0
    resolution: int | None = None
    views: Sequence[int] | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # method settings (as `sv4d fit --set`)
    fit: dict[str, Any] = field(default_factory=dict)  # more FitOptions fields by name
    # export
    grid: int | None = None
    # page
    page_size: int | None = None
    page_azimuths: int | None = None
    page_elevations: Sequence[float] = (0.0, 20.0)
    page_fps: float | None = None

    def resolved(self, on_gpu: bool) -> RunOptions:
        """A copy with the device-dependent defaults filled in."""
        out = RunOptions(**asdict(self))
        for name, (gpu, cpu) in DEVICE_DEFAULTS.items():
            if getattr(out, name) is None:
                setattr(out, name, gpu if on_gpu else cpu)
        return out

    def stage_options(self) -> dict[str, dict[str, Any]]:
        """The options each stage depends on (what a rerun must match to reuse a stage)."""
        d = json.loads(json.dumps(asdict(self)))  # tuples -> lists, as stored in run.json
        gen = [
            "checkpoint",
            "seed",
            "num_frames",
            "frames",
            "azimuths",
            "elevations",
            "mask",
            "steps",
            "windows",
            "generate",
        ]
        fit = ["method", "fit_steps", "minutes", "resolution", "views", "settings", "fit"]
        return {
            "generate": {k: d[k] for k in gen},
            "fit": {k: d[k] for k in fit},
            "export": {"grid": d["grid"]},
            "page": {k: d[k] for k in ("page_size", "page_azimuths", "page_elevations", "page_fps")},
        }


def check_options(opts: RunOptions) -> None:
    """Refuse bad options before any work (names the option)."""
    from ..fit.run import FitOptions
    from ..generate.pipeline import GenerationPipeline

    if opts.method not in METHODS:
        raise Sv4dError(f"unknown method {opts.method!r}; use one of {METHODS}")
    for name in ("fit_steps", "resolution", "page_size", "page_azimuths", "grid", "steps", "num_frames"):
        v = getattr(opts, name)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise Sv4dError(f"{name} must be a whole number >= 1, got {v!r}")
    if not (opts.minutes >= 0 and opts.minutes < float("inf")):
        raise Sv4dError(f"minutes must be a finite number >= 0, got {opts.minutes!r}")
    if opts.page_azimuths is not None and opts.page_azimuths < 2:
        raise Sv4dError("page_azimuths must be at least 2 (the page turns between them)")
    els = list(opts.page_elevations)
    if not els or not all(-90 < float(e) < 90 for e in els):
        raise Sv4dError(f"page elevations must be one or more angles strictly between -90 and 90, got {els}")
    direct = {"num_frames", "frames", "mask", "azimuths", "elevations", "steps", "seed", "progress", "windows"}
    allowed = set(inspect.signature(GenerationPipeline.__call__).parameters) - {"self", "source"} - direct
    bad = sorted(set(opts.generate) - allowed)
    if bad:
        raise Sv4dError(f"unknown generate option(s) {bad}; by name you can set {sorted(allowed)}")
    fit_direct = {"method", "views", "resolution", "steps", "minutes", "seed", "device", "settings"}
    allowed = {f.name for f in fields(FitOptions)} - fit_direct
    bad = sorted(set(opts.fit) - allowed)
    if bad:
        raise Sv4dError(f"unknown fit option(s) {bad}; by name you can set {sorted(allowed)}")


# ---------------------------------------------------------------------------------------------- state


def _read_state(out: Path) -> dict[str, Any] | None:
    p = out / RUN_JSON
    if not p.is_file():
        return None
    try:
        state = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise Sv4dError(f"{p} cannot be read ({e}); pass --overwrite to start again") from None
    if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
        raise Sv4dError(f"{p} is not an sv4d run record; pass --overwrite to start again")
    return state


def _write_state(out: Path, state: dict[str, Any]) -> None:
    with atomic_file(out / RUN_JSON) as tmp:
        tmp.write_text(json.dumps(state, indent=1) + "\n")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _started(out: Path, state: dict[str, Any]) -> bool:
    """Whether a run folder holds any work: a finished stage, or any output besides run.json."""
    made = [p for p in out.iterdir() if p.name != RUN_JSON and not p.name.startswith(".")]
    return bool(made) or any(s.get("done") for s in state["stages"].values())


def _prepare_folder(
    out: Path,
    source: str,
    stage_opts: dict[str, Any],
    overwrite: bool,
    redo: str | None,
    say: Callable[[str], None],
) -> tuple[dict, Path | None]:
    """The run record to continue (or a new one) and where the old outputs were moved (``overwrite``:
    the whole run; ``redo``: the outputs of that stage and the later ones), to delete when complete."""
    backup = None
    if out.exists() and not out.is_dir():
        raise Sv4dError(f"{out} exists and is not a folder")
    state = _read_state(out) if out.is_dir() else None
    if out.is_dir() and any(out.iterdir()) and state is None and not overwrite:
        raise Sv4dError(f"{out} already exists and is not an sv4d run; pass --overwrite to replace it (or another -o)")
    fresh = {"input": source, "options": stage_opts, "stages": {}}
    if state is not None and not _started(out, state):
        return fresh, None  # only a record, nothing made yet (e.g. the model could not be fetched): start anew
    if state is not None and not overwrite:
        kept = STAGES[: STAGES.index(redo)] if redo else STAGES
        changed, first = [], None
        if state.get("input") != source:
            changed, first = [f"input: {state.get('input')!r} -> {source!r}"], STAGES[0]
        for stage in kept:
            diff = _differences(state["options"].get(stage, {}), stage_opts[stage])
            if diff:
                changed.append(f"{stage} ({'; '.join(diff)})")
                first = first or stage
        if changed:
            again = "" if first == STAGES[0] else f"--redo {first} to run it and the later stages again, "
            raise Sv4dError(
                f"{out} holds a run made with other options: {', '.join(changed)}. Rerun with the same options "
                f"to continue it, pass {again}--overwrite to start again, or choose another -o"
            )
        if redo:
            redone = STAGES[len(kept) :]
            backup = _set_aside(out, redone)
            for stage in redone:
                state["stages"].pop(stage, None)
            state.pop("complete", None)
            if backup is not None:
                say(f"sv4d: the old {redo} and later outputs are kept at {backup} until the new ones are complete")
        return state, backup
    if out.exists() and overwrite:
        backup = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, backup)
        say(f"sv4d: the old {out} is kept at {backup} until the new run is complete")
    out.mkdir(parents=True, exist_ok=True)
    return fresh, backup


#: what each stage writes in the run folder
OUTPUTS = {"generate": ("views",), "fit": ("fit",), "export": ("export",), "page": ("page", "index.html")}


def _set_aside(out: Path, stages: Sequence[str]) -> Path | None:
    """Move the outputs of ``stages`` into a hidden folder of ``out`` (None when there are none)."""
    found = [out / name for stage in stages for name in OUTPUTS[stage] if (out / name).exists()]
    if not found:
        return None
    backup = out / f".old-{uuid.uuid4().hex[:8]}"
    backup.mkdir()
    for p in found:
        os.replace(p, backup / p.name)
    return backup


# ---------------------------------------------------------------------------------------------- stages


class ModelCache:
    """The last generator loaded, kept for the next run with the same checkpoint, device, precision
    and offloading (the demo serves many clips with one model; ``sv4d.run`` in a loop can too)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._pipe = None

    def get(self, checkpoint: str, device, dtype: str | None, offload: bool, progress: bool = True):
        from ..generate.pipeline import GenerationPipeline
        from ..io.hub import resolve_checkpoint

        ckpt = resolve_checkpoint(checkpoint, progress=progress)  # the Hub only when there is work for it
        key = (str(ckpt), str(device), dtype, offload)
        if key != self._key:
            self._key, self._pipe = None, None  # free the old model before loading the next one
            self._pipe = GenerationPipeline.from_checkpoint(ckpt, device=device, dtype=dtype, offload=offload)
            self._key = key
        return self._pipe


def _generate(
    source: str, out: Path, opts: RunOptions, device, progress: bool, models: ModelCache | None, callback
) -> dict[str, Any]:
    pipe = (models or ModelCache()).get(opts.checkpoint, device, opts.dtype, opts.offload, progress)
    result = pipe(
        source,
        num_frames=opts.num_frames,
        frames=list(opts.frames) if opts.frames is not None else None,
        mask=opts.mask,
        azimuths=opts.azimuths,
        elevations=opts.elevations,
        steps=opts.steps,
        seed=opts.seed,
        windows=opts.windows,
        progress=progress,
        callback=callback,
        **opts.generate,
    )
    result.save(out / "views", progress=progress)
    s = result.settings
    return {"windows": s.get("windows"), "steps": s.get("steps"), "device": s.get("device")}


def _fit(out: Path, opts: RunOptions, device, progress: bool) -> dict[str, Any]:
    from ..fit.run import CHECKPOINT, FitOptions, fit_set

    fopts = FitOptions(
        method=opts.method,
        views=opts.views,
        resolution=opts.resolution,
        steps=opts.fit_steps,
        minutes=opts.minutes,
        seed=opts.seed,
        device=str(device),
        settings=dict(opts.settings),
        **opts.fit,
    )
    resume = (out / "fit" / CHECKPOINT).is_file()
    summary = fit_set(out / "views", out / "fit", fopts, resume=resume, progress=progress)
    tv = summary["training_views"]
    return {"resumed": resume, "steps": summary["steps"], "training_views": tv}


def _export(out: Path, opts: RunOptions, device, progress: bool) -> dict[str, Any]:
    """The animated mesh of either fit (per-frame meshes where one mesh cannot follow the surface),
    and the Gaussians as PLY files for a Gaussian fit. What cannot be exported is a note."""
    from ..fit.animate import TrackingRefused
    from ..fit.outputs import export_mesh, export_ply

    ck = out / "fit" / "checkpoint.pt"
    folder = out / "export"
    files: list[Path] = []
    notes: list[str] = []
    if opts.method == "gaussians":
        try:
            files += export_ply(ck, folder / "ply", device=device, progress=progress)
        except Sv4dError as e:
            notes.append(f"no PLY files: {e}")
    try:
        try:
            files += export_mesh(ck, folder / "mesh", grid=opts.grid, device=device, progress=progress)
        except TrackingRefused as e:  # a surface one mesh cannot follow: one mesh per frame instead
            files += export_mesh(ck, folder / "mesh", grid=opts.grid, flipbook=True, device=device, progress=progress)
            notes.append(f"per-frame meshes (--flipbook): {e}")
    except Sv4dError as e:  # e.g. a fit with no surface: the page is still worth having
        notes.append(f"no mesh: {e}")
    folder.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"files": [str(p.relative_to(out)) for p in files]}
    if notes:
        result["note"] = "; ".join(notes)
    return result


def _page(out: Path, opts: RunOptions, device, progress: bool, state: dict[str, Any]) -> dict[str, Any]:
    from .page import write_page

    return write_page(
        out,
        state,
        size=opts.page_size,
        azimuths=opts.page_azimuths,
        elevations=list(opts.page_elevations),
        fps=opts.page_fps,
        device=device,
        progress=progress,
    )


def _stage_done(out: Path, opts: RunOptions, stage: str, state: dict[str, Any]) -> bool:
    marker = {
        "generate": out / "views" / "generation.json",
        "fit": out / "fit" / "fit.json",
        "export": out / "export",
        "page": out / "index.html",
    }[stage]
    return bool(state["stages"].get(stage, {}).get("done")) and marker.exists()


def run_clip(
    source: str | os.PathLike,
    out: str | os.PathLike,
    opts: RunOptions | None = None,
    *,
    overwrite: bool = False,
    redo: str | None = None,
    until: str = STAGES[-1],
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    models: ModelCache | None = None,
    callback: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Run the stages of ``sv4d run`` (see the module docstring) up to ``until``; returns the run
    record (run.json). ``redo``: run this stage and the later ones again with ``opts``. ``models``:
    a :class:`ModelCache` to take the generator from. ``callback(step, info)``: after every sampling
    step (the pipeline's callback: ``info`` has ``window_index`` and ``num_windows``)."""
    opts = opts or RunOptions()
    say = log or ((lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None))
    for name, stage in (("redo", redo), ("until", until)):
        if stage is not None and stage not in STAGES:
            raise Sv4dError(f"{name} must be one of the stages {', '.join(STAGES)}, got {stage!r}")
    if redo and STAGES.index(redo) > STAGES.index(until):
        raise Sv4dError(f"redo {redo} comes after until {until}: nothing would be redone")
    device = resolve_device(opts.device)
    check_clip_source(source)
    check_options(opts)
    opts = opts.resolved(device.type == "cuda")
    out = Path(out)
    stage_opts = opts.stage_options()
    state, backup = _prepare_folder(out, str(source), stage_opts, overwrite, redo, say)
    state.update(device=str(device), input=str(source), options=stage_opts)
    state.setdefault("stages", {})
    _write_state(out, state)
    runners = {
        "generate": lambda: _generate(str(source), out, opts, device, progress, models, callback),
        "fit": lambda: _fit(out, opts, device, progress),
        "export": lambda: _export(out, opts, device, progress),
        "page": lambda: _page(out, opts, device, progress, state),
    }
    for i, stage in enumerate(STAGES[: STAGES.index(until) + 1], 1):
        if _stage_done(out, opts, stage, state):
            say(f"sv4d run [{i}/{len(STAGES)}] {stage}: done before, kept")
            continue
        say(f"sv4d run [{i}/{len(STAGES)}] {stage} ...")
        t0 = time.perf_counter()
        info = runners[stage]()
        seconds = time.perf_counter() - t0
        state["stages"][stage] = {"done": True, "seconds": round(seconds, 2), **info}
        if info.get("note"):
            say(f"sv4d: note: {info['note']}")
        _write_state(out, state)
    state["complete"] = all(state["stages"].get(stage, {}).get("done") for stage in STAGES)
    state["seconds"] = round(sum(s.get("seconds", 0.0) for s in state["stages"].values()), 2)
    _write_state(out, state)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return state


def summary_table(state: dict[str, Any]) -> str:
    """Seconds per stage, one line each, and the total."""
    rows = [f"  {s:<9}{state['stages'].get(s, {}).get('seconds', 0.0):>9.1f} s" for s in STAGES]
    return "\n".join(["time per stage:", *rows, f"  {'total':<9}{state.get('seconds', 0.0):>9.1f} s"])


def run(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    redo: str | None = None,
    until: str = STAGES[-1],
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """``sv4d.run(CLIP, OUT, method="gaussians", fit_steps=2000, ...)``: ``sv4d run`` as a function;
    ``options`` are :class:`RunOptions` fields; ``redo`` and ``until`` as in :func:`run_clip`.
    Returns the run record (OUT/run.json)."""
    known = {f.name for f in fields(RunOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise Sv4dError(f"unknown run option(s) {unknown}; use {sorted(known)}")
    opts = RunOptions(**options)
    return run_clip(source, out, opts, overwrite=overwrite, redo=redo, until=until, progress=progress)

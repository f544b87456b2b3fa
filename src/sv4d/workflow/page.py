"""The page of a run: ``OUT/index.html``, self-contained (it works from a file, offline; no CDN).

It shows the input clip, the generated views side by side, and the fitted 4D asset in a small
viewer of our own: drag to turn around it (up and down changes the elevation), a time slider with
play/pause. The viewer plays back renders of the fit made here: for every elevation and fitted
frame, one strip image ``page/e{E}_f{FFF}.jpg`` holding the frame rendered at every azimuth. The
page links the exported GLB/PLY files and lists the settings and the time each stage took.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..cameras import orbit_c2w
from ..errors import Sv4dError
from ..io.atomic import atomic_file, atomic_folder
from ..io.multiview import read_multiview

VIDEO_SUFFIXES = {".mp4", ".webm", ".m4v", ".mov", ".ogv"}
IMAGE_SUFFIXES = {".gif", ".png", ".jpg", ".jpeg", ".webp"}
JPEG_QUALITY = 88


def render_strips(
    checkpoint: Path,
    folder: Path,
    *,
    size: int,
    azimuths: int,
    elevations: list[float],
    device,
    progress: bool,
) -> dict[str, Any]:
    """Render the fit at ``azimuths`` evenly spaced azimuths x ``elevations`` x every fitted frame into
    strip images in ``folder``; returns what the viewer needs to know about them."""
    from ..fit.render import render_grid
    from ..fit.run import load_fitted

    model, record = load_fitted(checkpoint, device)
    intr = record.intrinsics(size)
    az = [360.0 * i / azimuths for i in range(azimuths)]
    times = [float(t) for t in record.unit_times()]
    strips = []
    for ei, el in enumerate(elevations):
        c2w = torch.from_numpy(np.stack([orbit_c2w(el, a, record.camera_distance) for a in az])).float()
        with torch.no_grad():
            rgb, _ = render_grid(model, c2w, intr, times, progress=progress)  # (A, F, H, W, 3) over white
        img = (rgb.numpy() * 255 + 0.5).astype(np.uint8)
        row = []
        for fi in range(len(times)):
            name = f"e{ei}_f{fi:03d}.jpg"
            Image.fromarray(np.concatenate(list(img[:, fi]), axis=1)).save(folder / name, quality=JPEG_QUALITY)
            row.append(f"page/{name}")
        strips.append(row)
    seconds = np.asarray(record.rig.times, dtype=float)
    return {
        "tile": int(intr.height),
        "width": int(intr.width),
        "azimuths": [round(a, 2) for a in az],
        "elevations": [float(e) for e in elevations],
        "frames": len(times),
        "times": [round(float(t - seconds[0]), 4) for t in seconds],
        "strips": strips,
        "method": record.method,
    }


def _fps(times: list[float]) -> float:
    d = np.diff(np.asarray(times, dtype=float))
    d = d[d > 0]
    return float(np.clip(1.0 / np.median(d), 1.0, 60.0)) if len(d) else 10.0


def _media(src: str, label: str) -> str:
    tag = (
        f'<video src="{html.escape(src)}" autoplay loop muted playsinline controls></video>'
        if Path(src).suffix.lower() in VIDEO_SUFFIXES
        else f'<img src="{html.escape(src)}" alt="{html.escape(label)}">'
    )
    return f"<figure>{tag}<figcaption>{html.escape(label)}</figcaption></figure>"


def _input_media(folder: Path, source: str) -> str:
    """The input clip as given, copied into the page's ``folder``, when a browser can show it."""
    p = Path(source)
    if not (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES):
        return ""
    name = f"input{p.suffix.lower()}"
    shutil.copyfile(p, folder / name)
    return _media(f"page/{name}", f"input: {p.name}")


def write_page(
    out: Path,
    state: dict[str, Any],
    *,
    size: int,
    azimuths: int,
    elevations: list[float],
    fps: float | None,
    device,
    progress: bool,
) -> dict[str, Any]:
    """Render the viewer's strips into ``out/page`` and write ``out/index.html``."""
    ck = out / "fit" / "checkpoint.pt"
    if not ck.is_file():
        raise Sv4dError(f"{ck} is missing: the page needs the fit")
    with atomic_folder(out / "page") as tmp:
        viewer = render_strips(
            ck, tmp, size=size, azimuths=azimuths, elevations=elevations, device=device, progress=progress
        )
        input_html = _input_media(tmp, state.get("input", ""))
    viewer["fps"] = round(fps or _fps(viewer["times"]), 3)
    with atomic_file(out / "index.html") as f:
        f.write_text(page_html(out, state, viewer, input_html))
    return {"azimuths": azimuths, "elevations": elevations, "size": size, "images": sum(map(len, viewer["strips"]))}


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 16px; color: #222; }
h1 { font-size: 22px; margin: 4px 0 12px; } h2 { font-size: 18px; margin: 24px 0 8px; }
.row { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; text-align: center; } figcaption { font-size: 12px; color: #555; }
figure video, figure img { width: 176px; height: 176px; object-fit: contain; background: #fff; border: 1px solid #ddd; }
.wide video { width: auto; max-width: 100%; height: auto; }
#viewer { width: 448px; height: 448px; max-width: 100%; border: 1px solid #ccc; cursor: grab; touch-action: none;
  background: #fff; }
#viewer:active { cursor: grabbing; } .controls { display: flex; gap: 10px; align-items: center; margin: 8px 0; }
#time { flex: 1; max-width: 320px; } #viewer-label { font-size: 13px; color: #444; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
"""

#: the viewer: draws one tile of a strip image per (elevation, frame) on a canvas; our own, small
SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sv4d-data").textContent);
  var canvas = document.getElementById("viewer"), ctx = canvas.getContext("2d");
  var slider = document.getElementById("time"), play = document.getElementById("play");
  var label = document.getElementById("viewer-label");
  var A = data.azimuths.length, E = data.elevations.length;
  var state = { az: 0, el: Math.min(1, E - 1), frame: 0, playing: true, loaded: 0, total: 0, ready: false, draws: 0 };
  window.sv4dViewer = state;
  canvas.width = data.width; canvas.height = data.tile;
  var images = data.strips.map(function (row) {
    return row.map(function (src) {
      var im = new Image();
      state.total += 1;
      im.onload = function () { state.loaded += 1; state.ready = state.loaded === state.total; draw(); };
      im.src = src;
      return im;
    });
  });
  function draw() {
    var im = images[state.el][state.frame];
    if (!im.complete || !im.naturalWidth) { return; }
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(im, state.az * data.width, 0, data.width, data.tile, 0, 0, canvas.width, canvas.height);
    state.draws += 1;
    label.textContent = "azimuth " + data.azimuths[state.az] + "\\u00b0, elevation " + data.elevations[state.el] +
      "\\u00b0, t = " + data.times[state.frame].toFixed(2) + " s (frame " + (state.frame + 1) + " of " +
      data.frames + ")";
    canvas.dataset.az = state.az; canvas.dataset.el = state.el; canvas.dataset.frame = state.frame;
  }
  function setFrame(f) {
    state.frame = ((f % data.frames) + data.frames) % data.frames;
    slider.value = state.frame;
    draw();
  }
  function setPlaying(p) { state.playing = p; play.textContent = p ? "pause" : "play"; }
  var drag = null;
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY, az: state.az, el: state.el };
    if (canvas.setPointerCapture) { canvas.setPointerCapture(e.pointerId); }
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drag) { return; }
    var perStep = canvas.clientWidth / A;  // one drag across the viewer turns the object once
    var az = drag.az - Math.round((e.clientX - drag.x) / perStep);
    var el = drag.el + Math.round((e.clientY - drag.y) / 60);
    state.az = ((az % A) + A) % A;
    state.el = Math.max(0, Math.min(E - 1, el));
    draw();
  });
  function end() { drag = null; }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") { state.az = (state.az + 1) % A; }
    else if (e.key === "ArrowRight") { state.az = (state.az + A - 1) % A; }
    else if (e.key === "ArrowUp") { state.el = Math.min(E - 1, state.el + 1); }
    else if (e.key === "ArrowDown") { state.el = Math.max(0, state.el - 1); }
    else { return; }
    e.preventDefault(); draw();
  });
  slider.max = data.frames - 1;
  slider.addEventListener("input", function () { setPlaying(false); setFrame(parseInt(slider.value, 10)); });
  play.addEventListener("click", function () { setPlaying(!state.playing); });
  setInterval(function () { if (state.playing && state.ready) { setFrame(state.frame + 1); } }, 1000 / data.fps);
  setPlaying(true);
})();
"""


def _rel(out: Path, p: Path) -> str:
    return p.relative_to(out).as_posix()


def page_html(out: Path, state: dict[str, Any], viewer: dict[str, Any], input_html: str) -> str:
    """The page's HTML (every path relative to ``out``)."""
    views = out / "views"
    s = read_multiview(views)
    figures = [input_html] if input_html else []
    for v, view in enumerate(s.rig.views):
        label = "view 0: the preprocessed input" if v == 0 else f"view {v}"
        label += f" ({view.azimuth_deg:g}\u00b0, {view.elevation_deg:g}\u00b0)"
        shown = [
            views / "videos" / f"view_{v:02d}.mp4",
            views / "rgb_white" / f"view_{v:02d}" / "frame_000.png",
            views / "rgba" / f"view_{v:02d}" / "frame_000.png",
        ]
        first = next((p for p in shown if p.is_file()), None)
        if first is not None:
            figures.append(_media(_rel(out, first), label))
    fit_dir = out / "fit"
    fit = json.loads((fit_dir / "fit.json").read_text()) if (fit_dir / "fit.json").is_file() else {}
    fit_media = [
        _media(_rel(out, p), cap)
        for p, cap in (
            (fit_dir / "orbit.mp4", "orbit"),
            (fit_dir / "train_views.mp4", "fitted views: input above, fit below"),
        )
        if p.is_file()
    ]
    exported = state.get("stages", {}).get("export", {})
    links = "".join(
        f'<li><a href="{html.escape(f)}" download>{html.escape(f)}</a></li>' for f in exported.get("files", [])
    )
    links = links or f"<li>{html.escape(exported.get('note', 'no exported files'))}</li>"
    tv = fit.get("training_views", {})
    metrics = ", ".join(f"{k} {v}" for k, v in tv.items())
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v.get('seconds', 0):.1f} s</td></tr>"
        for k, v in state.get("stages", {}).items()
    )
    data = json.dumps(viewer).replace("</", "<\\/")
    title = html.escape(Path(state.get("input", "clip")).name)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sv4d: {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>sv4d: {title}</h1>
<h2>The 4D asset</h2>
<p>Drag to turn around it (up and down changes the elevation); the slider moves through time.
A {html.escape(viewer["method"])} fit, {viewer["frames"]} frames, {len(viewer["azimuths"])} azimuths,
elevations {", ".join(f"{e:g}" for e in viewer["elevations"])}&deg;.</p>
<canvas id="viewer" tabindex="0" aria-label="the fitted 4D asset; drag to turn"></canvas>
<div class="controls"><button id="play" type="button">pause</button>
<input id="time" type="range" min="0" max="0" step="1" value="0" aria-label="time">
<span id="viewer-label"></span></div>
<h2>Downloads</h2><ul>{links}</ul>
<p>The multi-view video set: <a href="views/cameras.json">views/</a> (cameras.json, transforms*.json,
rgba/, rgb_white/). The fit: <a href="fit/fit.json">fit/</a>.</p>
<h2>Input and generated views</h2><div class="row">{"".join(figures)}</div>
<h2>The fit</h2><p>{html.escape(metrics) or "no figures"}</p><div class="row wide">{"".join(fit_media)}</div>
<h2>Settings and timings</h2>
<table><tr><th>stage</th><th>time</th></tr>{rows}</table>
<details><summary>every option</summary>
<pre>{html.escape(json.dumps(state.get("options", {}), indent=1))}</pre></details>
<script id="sv4d-data" type="application/json">{data}</script>
<script>{SCRIPT}</script>
</body></html>
"""

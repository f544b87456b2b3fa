"""Data curation (sv4d.data.curate, sv4d curate): each criterion separates a good synthetic clip
from one spoilt on purpose; the static part and rectification; the report; the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sv4d import cli
from sv4d.cameras import Intrinsics, Rig
from sv4d.data.curate import Thresholds, curate, measure, rectify_offsets, static_track, verdict
from sv4d.errors import Sv4dError
from sv4d.io.multiview import write_multiview

SIZE, FRAMES, AZIMUTHS = 48, 8, (0.0, 120.0, 240.0)


def _sphere(n: int, radius: float) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5**0.5) * i
    return radius * np.stack([np.cos(theta) * np.sin(phi), np.cos(phi), np.sin(theta) * np.sin(phi)], -1)


def _creature(
    frames: int,
    translation: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    n_body: int = 200,
    n_limb: int = 40,
) -> np.ndarray:
    """(F, n_body + n_limb, 3): a ball of radius 0.3 and a limb hinged below it swinging +-0.6 rad."""
    s = np.arange(frames) / frames
    body = _sphere(n_body, 0.3)
    angle = 0.6 * np.sin(2 * np.pi * s)  # (F,)
    along = np.linspace(0.0, 0.3, n_limb)
    limb = np.stack(
        [np.sin(angle)[:, None] * along, -0.3 - np.cos(angle)[:, None] * along, np.zeros((frames, n_limb))], -1
    )  # (F, n_limb, 3)
    v = np.concatenate([np.broadcast_to(body, (frames, n_body, 3)), limb], axis=1)
    if scale is not None:
        v = v * scale[:, None, None]
    if translation is not None:
        v = v + translation[:, None, :]
    return v


def _draw(cx: float, cy: float, r: float, angle: float, phase: float) -> np.ndarray:
    """(H, W, 4) uint8 straight-alpha RGBA: a shaded, striped disc with a swinging limb below."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    d = np.hypot(x - cx, y - cy)
    a_body = np.clip(r - d + 0.5, 0, 1)
    lx, ly = cx + 1.3 * r * np.sin(angle), cy + 1.3 * r * np.cos(angle)
    a_limb = np.clip(0.4 * r - np.hypot(x - lx, y - ly) + 0.5, 0, 1)
    nz = np.sqrt(np.clip(1 - (d / r) ** 2, 0, 1))
    shade = 0.45 + 0.55 * np.clip(nz * 0.8 - (x - cx) / r * 0.3 - (y - cy) / r * 0.4, 0, 1)
    stripes = 0.8 + 0.2 * np.sin(1.2 * ((x - cx) * np.cos(phase) + (y - cy) * np.sin(phase)))
    body = np.array([0.95, 0.72, 0.45]) * (shade * stripes)[..., None]
    limb = np.broadcast_to(np.array([0.55, 0.75, 0.9]), body.shape)
    rgb = np.where((a_limb > a_body)[..., None], limb, body)
    alpha = np.maximum(a_body, a_limb)
    return np.concatenate([np.round(rgb * 255), np.round(alpha * 255)[..., None]], -1).astype(np.uint8)


def _write(root, kind: str = "good"):
    """A 3-view, 8-frame set and its geometry.npz. kind: good | dark | frozen | walkoff | scaling."""
    s = np.arange(FRAMES) / FRAMES
    frames = np.zeros(FRAMES, int) if kind == "frozen" else np.arange(FRAMES)
    shift = 28.0 * (s - 0.5) if kind == "walkoff" else np.zeros(FRAMES)  # pixels, view 0
    grow = 1.0 + s * (1.0 / s[-1]) if kind == "scaling" else np.ones(FRAMES)  # 1 -> 2
    images = np.stack(
        [
            np.stack(
                [
                    _draw(
                        24 + shift[i] * np.cos(np.radians(az)),
                        20,
                        5.0 * grow[i],
                        0.6 * np.sin(2 * np.pi * s[i]),
                        2 * np.pi * s[i] + np.radians(az),
                    )
                    for i in frames
                ]
            )
            for az in AZIMUTHS
        ]
    )
    if kind == "dark":
        images[..., :3] = np.round(images[..., :3] * 0.1).astype(np.uint8)
    translation = np.stack([1.5 * (s - 0.5), 0 * s, 0 * s], -1) if kind == "walkoff" else None
    vertices = _creature(FRAMES, translation, grow if kind == "scaling" else None)[frames]
    rig = Rig.orbit([(0.0, az) for az in AZIMUTHS], 2.0, Intrinsics.from_fov(33.8, SIZE), s)
    write_multiview(root, rig, rgba=images, compress_level=1)
    np.savez(root / "geometry.npz", vertices=vertices.astype(np.float32), faces=np.zeros((0, 3), np.int32), times=s)
    return root


KINDS = ("good", "dark", "frozen", "walkoff", "scaling")
REASON = {
    "dark": "dark lighting:",
    "frozen": "minimal motion:",
    "walkoff": "drift:",
    "scaling": "inconsistent scaling:",
}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    return {k: _write(root / k, k) for k in KINDS}


@pytest.fixture(scope="module")
def report(sets, tmp_path_factory):
    root = tmp_path_factory.mktemp("curation")
    twin = root / "elsewhere" / "good"  # same name as sets["good"]: thumbnails must not collide
    shutil.copytree(sets["good"], twin)
    (root / "notes").mkdir()
    paths = [sets[k] for k in KINDS] + [twin, root / "notes"]
    return curate(paths, root / "report", progress=False), root / "report"


def test_static_track_picks_the_body_and_follows_the_translation():
    f = 12
    t = np.linspace(0, 1, f)
    translation = np.stack([2.0 * t, 0.1 * np.sin(6 * t), -0.5 * t], -1)
    v = _creature(f, translation, n_body=300, n_limb=60)
    track, mask = static_track(v, fraction=0.3)
    assert track.shape == (f, 3) and mask.shape == (360,) and mask.dtype == bool
    assert mask.sum() == 108 and not mask[300:].any()  # only the body, never the swinging limb
    np.testing.assert_allclose(track - track.mean(0), translation - translation.mean(0), atol=1e-9)
    body = (v + rectify_offsets(v)[:, None])[:, :300]
    assert np.ptp(body, axis=0).max() < 1e-9  # rectified: the body stands still
    np.testing.assert_allclose(body.mean((0, 1)), v[:, :300].mean((0, 1)), atol=1e-9)  # where it was on average
    with pytest.raises(Sv4dError, match="fraction"):
        static_track(v, fraction=0.0)
    with pytest.raises(Sv4dError, match="shape"):
        static_track(v[0])


def test_each_criterion_separates_the_good_clip_from_its_spoilt_copy(sets):
    m = {k: measure(sets[k]) for k in KINDS}
    g = m["good"]
    assert g["drift"] < 0.02 and g["scale_ratio"] < 1.1 and g["motion"] > 0.1 and g["luminance"] > 0.4
    assert g["touches_border"] == 0 and g["empty_images"] == 0 and g["rectified"] is None
    assert m["dark"]["luminance"] < 0.07
    assert m["frozen"]["motion"] == 0.0
    assert m["walkoff"]["drift"] > 0.25 and m["walkoff"]["drift_after"] < 0.05  # rectification removes it
    assert 1.9 < m["scaling"]["scale_ratio"] < 2.1
    assert verdict(g) == (True, [])
    for k in REASON:
        keep, reasons = verdict(m[k], Thresholds())
        assert not keep and len(reasons) == 1 and reasons[0].startswith(REASON[k]), (k, reasons)
    assert "< 0.15" in verdict(m["dark"])[1][0]
    # a check switched off keeps the clip
    assert verdict(m["dark"], Thresholds(min_luminance=None))[0]
    with pytest.raises(Sv4dError, match="max_scale_ratio"):
        Thresholds(max_scale_ratio=0.5)


def test_curate_writes_the_report_with_both_verdicts(report, sets):
    r, folder = report
    assert r["counts"] == {"paths": 7, "sets": 6, "kept": 2, "dropped": 5, "not_sets": 1}
    by_path = {e["path"]: e for e in r["sets"]}
    assert by_path[str(sets["good"])]["keep"]
    for k, prefix in REASON.items():
        e = by_path[str(sets[k])]
        assert not e["keep"] and len(e["reasons"]) == 1 and e["reasons"][0].startswith(prefix)
    other = r["sets"][-1]
    assert not other["keep"] and other["measures"] is None
    assert other["reasons"][0].startswith("not a multi-view set: ")
    saved = json.loads((folder / "curation.json").read_text())
    assert saved == r and saved["thresholds"]["min_luminance"] == Thresholds().min_luminance
    thumbs = [e["thumbnail"] for e in r["sets"] if e["thumbnail"]]
    assert len(thumbs) == 6 == len(set(thumbs)) and all((folder / t).is_file() for t in thumbs)
    page = (folder / "index.html").read_text()
    assert page.index("Kept (2)") < page.index("Dropped (5)") < page.index("dark lighting:")
    assert "not a multi-view set" in page
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # atomic: no leftovers


def test_curate_refuses_when_no_path_is_a_set_or_the_report_exists(tmp_path, sets):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Sv4dError, match="none of the 1 path"):
        curate([tmp_path / "empty"], tmp_path / "rep", progress=False)
    assert not (tmp_path / "rep").exists()
    (tmp_path / "rep").mkdir()
    with pytest.raises(Sv4dError, match="already exists"):
        curate([sets["good"]], tmp_path / "rep", progress=False)
    with pytest.raises(Sv4dError, match="would replace the set"):
        curate([sets["good"]], sets["good"], progress=False, overwrite=True)


def test_cli_curate(sets, tmp_path, capsys):
    out = tmp_path / "rep"
    assert cli.main(["curate", str(sets["good"]), str(sets["dark"]), "-o", str(out), "--min-motion", "0.05"]) == 0
    captured = capsys.readouterr()
    assert "kept 1 of 2" in captured.err and captured.out.strip() == str(out / "index.html")
    r = json.loads((out / "curation.json").read_text())
    assert r["thresholds"]["min_motion"] == 0.05
    # a lower luminance threshold keeps the dark clip too; --overwrite replaces the report
    assert (
        cli.main(
            [
                "curate",
                str(sets["good"]),
                str(sets["dark"]),
                "-o",
                str(out),
                "--min-luminance",
                "0.01",
                "--overwrite",
                "-q",
            ]
        )
        == 0
    )
    assert json.loads((out / "curation.json").read_text())["counts"]["kept"] == 2
    bad = tmp_path / "file.txt"
    bad.write_text("x")
    assert cli.main(["curate", str(sets["good"]), "-o", str(bad), "-q"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert bad.read_text() == "x"

"""Generation: windows, cameras, preprocessing, the pipeline end to end, CLI errors."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, tiny_generation_checkpoint
from sv4d.cameras import framing_distance
from sv4d.cli import main
from sv4d.errors import Sv4dError
from sv4d.generate.pipeline import GenerationPipeline
from sv4d.generate.preprocess import crop_square, preprocess_frames
from sv4d.generate.windows import plan_windows
from sv4d.io.multiview import read_multiview
from sv4d.io.video import read_clip

VIDEOS = DATA / "videos"
MP4 = VIDEOS / "test_video1.mp4"  # 21 frames, 576 x 576, 10 fps: the official example input


@pytest.fixture(scope="module")
def ckpt12(tmp_path_factory) -> Path:
    """sv4d2-shaped tiny model (12 frames x 4 views per window), official key names."""
    return tiny_generation_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny12.safetensors", 12, 4)


@pytest.fixture(scope="module")
def ckpt5(tmp_path_factory) -> Path:
    """sv4d2_8views-shaped tiny model (5 frames x 8 views)."""
    return tiny_generation_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny5.safetensors", 5, 8)


@pytest.fixture(scope="module")
def pipe12(ckpt12) -> GenerationPipeline:
    return GenerationPipeline.from_checkpoint(ckpt12)


# ----------------------------------------------------------------------------- windows
@pytest.mark.parametrize(
    "n,T,expected",
    [
        (21, 12, [(0, 11), (9, 20)]),  # official sv4d2
        (21, 5, [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20)]),  # official sv4d2_8views
        (12, 12, [(0, 11)]),
        (24, 12, [(0, 11), (6, 17), (12, 23)]),
        (5, 12, [(0, 11)]),  # padded to one window
    ],
)
def test_window_schedule(n, T, expected):
    windows, padded = plan_windows(n, T)
    assert [(w.start, w.start + w.length - 1) for w in windows] == expected
    assert padded == max(n, T)
    assert [w.conditioned for w in windows] == [False] + [True] * (len(windows) - 1)


@pytest.mark.parametrize("n", range(1, 80))
@pytest.mark.parametrize("T", [5, 12])
def test_windows_cover_every_frame_and_overlap(n, T):
    windows, padded = plan_windows(n, T)
    covered = set()
    for prev, w in zip([None] + windows[:-1], windows):
        covered.update(w.frames)
        if prev is not None:  # a later window starts on a frame already generated
            assert prev.start < w.start <= prev.start + T - 1
    assert covered == set(range(padded))


# ----------------------------------------------------------------------------- preprocessing
def _scene(h=100, w=100, box=(30, 20, 60, 50), color=(200, 30, 40)):
    """White frame with a coloured rectangle at rows box[0]:box[2], cols box[1]:box[3]."""
    f = np.full((h, w, 3), 255, np.uint8)
    f[box[0] : box[2], box[1] : box[3]] = color
    return f


def test_official_crop_arithmetic():
    # centre (50, 50); box rows 30..60, cols 20..50 -> largest distance 30 (to col 20)
    f = _scene()
    rgba = np.concatenate([f, np.full((100, 100, 1), 255, np.uint8)], -1)
    canvas, (r0, c0, bs, side) = crop_square(rgba, (30, 20, 60, 50), 0.9)
    assert (r0, c0, bs, side) == (20, 20, 30, int(60 / 0.9))  # top-left of the 60 px square
    # the image centre lands on the canvas centre, so pixel (50, 50) -> (side//2, side//2)
    assert (canvas[side // 2, side // 2, :3] == f[50, 50]).all()
    assert canvas[side // 2 - 30, side // 2 - 30, 3] == 255 and canvas[2, 2, 3] == 0


def test_preprocess_threshold_centres_and_whitens():
    frames = np.stack([_scene(), _scene()])
    p = preprocess_frames(frames, 64, frame_ratio=0.9)
    assert p.images.shape == (2, 64, 64, 3) and p.alpha.shape == (2, 64, 64)
    assert p.mask == "threshold"
    # padding is white, the object keeps its colour, alpha follows the object
    assert (p.images[:, 0, 0] == 255).all()
    assert p.alpha[0, 0, 0] == 0 and p.alpha[0].max() == 255
    ys, xs = np.nonzero(p.alpha[0] > 127)
    # object 30 px of a 66.67 px canvas -> about 29 px of 64
    assert 26 <= xs.max() - xs.min() + 1 <= 31
    # the truncating composite of the official script: opaque pixels keep their colour
    assert tuple(p.images[0, ys[len(ys) // 2], xs[len(xs) // 2]]) == (200, 30, 40)


def test_preprocess_alpha_modes():
    f = _scene()
    a = np.zeros((100, 100, 1), np.uint8)
    a[40:50, 40:50] = 255  # alpha smaller than the painted rectangle
    frames = np.concatenate([f, a], -1)[None]
    auto = preprocess_frames(frames, 32)
    assert auto.mask == "alpha"
    assert auto.crops[0][2] == 10  # box from the alpha, not from the colours
    opaque = frames.copy()
    opaque[..., 3] = 255  # like a GIF: an alpha channel that says nothing
    assert preprocess_frames(opaque, 32).mask == "threshold"
    official = preprocess_frames(opaque, 32, mask="alpha")  # the official rule: whole frame
    assert official.crops[0][2] == 50
    with pytest.raises(Sv4dError, match="alpha channel"):
        preprocess_frames(frames[..., :3], 32, mask="alpha")


def test_preprocess_per_frame_crop_follows_a_travelling_object():
    left = _scene(box=(40, 5, 60, 25))
    right = _scene(box=(40, 75, 60, 95))
    frames = np.stack([left, right])
    union = preprocess_frames(frames, 64, crop="union")
    per = preprocess_frames(frames, 64, crop="per-frame")
    # per-frame crops are centred on the object and tighter, so it is bigger and in the middle
    assert (per.alpha[0] > 127).sum() > 1.5 * (union.alpha[0] > 127).sum()
    assert per.crops[0] != per.crops[1] and union.crops[0] == union.crops[1]
    for a in per.alpha:
        ys, xs = np.nonzero(a > 127)
        assert abs(xs.mean() - 31.5) < 1.5 and abs(ys.mean() - 31.5) < 1.5


def test_preprocess_grabcut_finds_an_object_on_a_textured_background():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    f = (rng.random((120, 120, 3)) * 60 + 40).astype(np.uint8)  # dark noisy background
    f[40:90, 30:80] = (230, 200, 40)
    p = preprocess_frames(f[None], 120, mask="grabcut", frame_ratio=1.0)
    truth = np.zeros((120, 120), bool)
    truth[40:90, 30:80] = True
    # the crop is centred, so compare in the crop's frame: the object's share of pixels
    fg = p.alpha[0] > 127
    assert abs(fg.sum() - truth.sum() * (120 / (2 * p.crops[0][2])) ** 2) < 0.15 * fg.sum()
    assert (p.images[0][p.alpha[0] == 0] == 255).all()  # the background became white


def test_rembg_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(Sv4dError, match="rembg"):
        preprocess_frames(_scene()[None], 32, mask="rembg")


# ----------------------------------------------------------------------------- pipeline
def test_cli_frame_selection_and_the_old_count_spelling(ckpt5, tmp_path, capsys):
    """--frames picks frames of the clip (timed from the first kept); a bare --frames N is the old count."""
    out = tmp_path / "sel"
    rc = main(["generate", str(MP4), "-c", str(ckpt5), "-o", str(out), "--steps", "1", "--frames", "2-10:4", "-q"])
    assert rc == 0
    mv = read_multiview(out)
    assert mv.num_frames == 3 and np.allclose(mv.times, [0.0, 0.4, 0.8])
    pre = preprocess_frames(read_clip(MP4).frames[[2, 6, 10]], 48)
    assert np.array_equal(mv.load_view(0, "rgb_white"), pre.images)
    rc = main(["generate", str(MP4), "-c", str(ckpt5), "-o", str(tmp_path / "n"), "--steps", "1", "--frames", "4"])
    assert rc == 0 and read_multiview(tmp_path / "n").num_frames == 4
    assert "--frames 4 as a number of frames is now --num-frames 4" in capsys.readouterr().err
    assert main(["generate", str(MP4), "-c", str(ckpt5), "-o", str(tmp_path / "x"), "--frames", "30-31", "-q"]) == 2
    assert "do not exist" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_end_to_end_cli_on_a_real_clip(ckpt12, tmp_path):
    out = tmp_path / "camel"
    rc = main(["generate", str(MP4), "-c", str(ckpt12), "--out", str(out), "--steps", "2", "-q"])
    assert rc == 0
    mv = read_multiview(out)
    assert (mv.num_views, mv.num_frames) == (5, 21)
    assert np.allclose(mv.times, np.arange(21) * 0.1)
    assert [v.azimuth_deg for v in mv.views] == [0, 60, 120, 180, 240]
    assert mv.intrinsics.fov_x_deg == pytest.approx(33.8)
    assert mv.camera_distance == pytest.approx(framing_distance(0.9))
    for v in mv.views:  # every camera looks at the origin from the orbit
        pos = v.c2w[:3, 3]
        assert np.linalg.norm(pos) == pytest.approx(mv.camera_distance)
        assert np.allclose(-v.c2w[:3, 2], -pos / np.linalg.norm(pos))
    for kind in ("rgba", "rgb_white"):
        for v in range(5):
            assert len(list((out / kind / f"view_{v:02d}").glob("frame_*.png"))) == 21
    assert mv.load_image(0, 0).shape == (48, 48, 4)
    for v in range(5):
        clip = read_clip(out / "videos" / f"view_{v:02d}.mp4")
        assert clip.frames.shape[:3] == (21, 48, 48)
    assert read_clip(out / "preview.mp4").frames.shape[0] == 21
    assert (out / "preview.png").is_file()
    tr = json.loads((out / "transforms.json").read_text())
    assert len(tr["frames"]) == 105 and tr["camera_angle_x"] == pytest.approx(math.radians(33.8))
    gen = json.loads((out / "generation.json").read_text())
    assert gen["windows"] == [[0, 11], [9, 20]]  # the official schedule for 21 frames
    assert gen["seed"] == 23 and gen["steps"] == 2
    # view 0 is the preprocessed input: the model's own input, bit for bit
    pre = preprocess_frames(read_clip(MP4).frames, 48)
    assert np.array_equal(mv.load_view(0, "rgb_white"), pre.images)


class _Spy:
    """Records the conditioner's window inputs and the decoder's outputs."""

    def __init__(self, pipe):
        self.calls, self.decoded = [], []
        cond, dec = pipe.model.conditioner.forward, pipe.model.decode

        def cond_spy(*a, **k):
            self.calls.append({"cond_view": a[2].clone(), "cond_mv": k["cond_mv"], "frames": a[0].clone()})
            return cond(*a, **k)

        def dec_spy(z, chunk=None):
            x = dec(z, chunk)
            self.decoded.append(x.clone())
            return x

        self.patches = [(pipe.model.conditioner, "forward", cond_spy), (pipe.model, "decode", dec_spy)]


def test_later_windows_are_conditioned_on_generated_views(pipe12, monkeypatch):
    spy = _Spy(pipe12)
    for obj, name, fn in spy.patches:
        monkeypatch.setattr(obj, name, fn)
    clip = read_clip(MP4)
    res = pipe12(clip, steps=2, progress=False)
    assert [c["cond_mv"] for c in spy.calls] == [False, True]
    assert spy.calls[0]["cond_view"].abs().max() == 0  # the first window sees no reference views
    # window 2 starts at frame 9: its reference views are window 1's views of frame 9
    first = torch.clamp((spy.decoded[0] + 1) / 2, 0, 1) * 2 - 1
    first = first.reshape(12, 4, 3, 48, 48)
    assert torch.equal(spy.calls[1]["cond_view"], first[9])
    # its motion frames are input frames 9..20
    inp = torch.from_numpy(res.preprocessed.images).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    assert torch.equal(spy.calls[1]["frames"], inp[9:21])
    # overlapping frames 9-11 are replaced by the second window's views
    second = ((torch.clamp((spy.decoded[1] + 1) / 2, 0, 1) * 2 - 1 + 1) / 2 * 255).to(torch.uint8)
    second = second.reshape(12, 4, 3, 48, 48).permute(1, 0, 3, 4, 2).numpy()
    assert np.array_equal(res.images[1:, 9:21], second)


def test_same_seed_same_output_and_short_clip_padding(pipe12):
    clip = read_clip(VIDEOS / "camel_96.gif", max_frames=5)
    a = pipe12(clip, steps=2, seed=7, progress=False)
    b = pipe12(clip, steps=2, seed=7, progress=False)
    c = pipe12(clip, steps=2, seed=8, progress=False)
    assert a.images.shape == (5, 5, 48, 48, 3)  # 5 frames padded to one window of 12, trimmed
    assert [[w.start, w.start + w.length - 1] for w in a.windows] == [[0, 11]]
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images[1:], c.images[1:])


def test_eight_view_model_windows_and_custom_cameras(ckpt5, tmp_path):
    pipe = GenerationPipeline.from_checkpoint(ckpt5)
    folder = VIDEOS / "blue_jay_64"  # 8 RGBA frames
    az = [20, 60, 100, 140, 180, 220, 260, 300]
    res = pipe(str(folder), steps=1, azimuths=az, elevations=[10] * 8, progress=False)
    # view 0's RGBA keeps the input's straight colours; composited on white it is the model input
    pre = res.preprocessed
    a = pre.alpha[..., None] / 255.0
    assert np.abs(pre.colors * a + 255 * (1 - a) - pre.images).max() <= 1.0 + 1e-9
    assert [[w.start, w.start + 4] for w in res.windows] == [[0, 4], [3, 7]]
    assert res.images.shape == (9, 8, 48, 48, 3)
    assert res.preprocessed.mask == "alpha"
    assert res.elevations_deg == [0.0] + [10.0] * 8
    out = res.save(tmp_path / "jay", progress=False)
    mv = read_multiview(out)
    assert np.array_equal(mv.load_view(0)[..., :3], pre.colors)
    assert [v.azimuth_deg for v in mv.views] == [0.0, *az]
    assert mv.views[3].c2w[1, 3] == pytest.approx(mv.camera_distance * math.sin(math.radians(10)))


# ----------------------------------------------------------------------------- bad input
def _run(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def _mixed_folder(tmp_path):
    from PIL import Image

    d = tmp_path / "mixed"
    d.mkdir()
    Image.new("RGB", (64, 64), "white").save(d / "000.png")
    Image.new("RGB", (80, 64), "white").save(d / "001.png")
    return d


def _wrong_model(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "other.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 8, 3, 3)}, str(p))
    return p


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "no such file"),
        ("not_video", "decode"),
        ("empty_folder", "no (frames|image files)"),
        ("tiny_frames", "too small"),
        ("mixed_sizes", "size"),
        ("wrong_model", "missing"),
        ("azimuths", "azimuths"),
        ("elevations", "elevations"),
        ("exists", "already exists"),
        ("device", "device"),
    ],
)
def test_bad_input_is_a_clear_error_with_nothing_written(case, message, ckpt12, tmp_path, capsys):
    from PIL import Image

    src, ck, extra = str(MP4), str(ckpt12), []
    out = tmp_path / "out"
    if case == "missing":
        src = str(tmp_path / "nope.mp4")
    elif case == "not_video":
        p = tmp_path / "notes.mp4"
        p.write_text("this is not a video")
        src = str(p)
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        src = str(tmp_path / "empty")
    elif case == "tiny_frames":
        p = tmp_path / "small.png"
        Image.new("RGB", (16, 16), "white").save(p)
        src = str(p)
    elif case == "mixed_sizes":
        src = str(_mixed_folder(tmp_path))
    elif case == "wrong_model":
        ck = str(_wrong_model(tmp_path))
    elif case == "azimuths":
        extra = ["--azimuths", "10", "20"]
    elif case == "elevations":
        extra = ["--elevations", "1", "2", "3"]
    elif case == "device":
        extra = ["--device", "warp-drive"]
    elif case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    rc, err = _run(["generate", src, "-c", ck, "--out", str(out), "--steps", "1", "-q", *extra], capsys)
    assert rc == 2
    assert err.startswith("sv4d: error:") and re.search(message, err.lower()) and "Traceback" not in err
    if case == "exists":
        assert (out / "keep.txt").read_text() == "mine"
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folders


def test_cli_exit_status_and_help():
    both = [["generate", "missing.gif", "-c", "x.safetensors"], ["generate", "--help"]]
    pipe = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [subprocess.Popen([sys.executable, "-m", "sv4d", *a], **pipe) for a in both]  # both at once
    (_, r_err), (h_out, _) = (p.communicate(timeout=120) for p in procs)
    assert procs[0].returncode == 2 and "Traceback" not in r_err and "sv4d: error:" in r_err
    assert procs[1].returncode == 0
    for opt in (
        "--frames",
        "--fps",
        "--mask",
        "--crop",
        "--frame-ratio",
        "--azimuths",
        "--elevations",
        "--steps",
        "--seed",
        "--device",
        "--dtype",
        "--offload",
        "--encode-chunk",
        "--decode-chunk",
    ):
        assert opt in h_out


def test_every_generate_option_has_help():
    from sv4d.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for action in sub.choices["generate"]._actions:
        assert action.help, action.dest


def test_offload_moves_each_sub_model_only_while_it_runs(pipe12, monkeypatch):
    """With --offload, a window runs conditioner, UNet and decoder one after the other, each
    moved to the device for its stage and back to the CPU after (checked on CPU by recording
    the moves; the device itself is only available on a GPU machine)."""
    moves = []
    parts = {
        "conditioner": pipe12.model.conditioner,
        "unet": pipe12.model.model,
        "decoder": pipe12.model.first_stage_model,
    }
    for name, mod in parts.items():
        orig = mod.to

        def rec(*a, _name=name, _orig=orig, **k):
            moves.append((_name, str(a[0]) if a else str(k.get("device"))))
            return _orig(*a, **k)

        monkeypatch.setattr(mod, "to", rec)
    monkeypatch.setattr(pipe12, "offload", True)
    pipe12(read_clip(VIDEOS / "camel_96.gif", max_frames=3), steps=1, progress=False)
    one = [
        ("conditioner", "cpu"),
        ("conditioner", "cpu"),
        ("unet", "cpu"),
        ("unet", "cpu"),
        ("decoder", "cpu"),
        ("decoder", "cpu"),
    ]
    assert moves == one  # one window: in and out, in stage order


def test_a_missing_clip_is_refused_before_the_model_is_fetched(monkeypatch, tmp_path, capsys):
    import sv4d.io.hub

    def fetch(*a, **k):
        raise AssertionError("the model was fetched for a clip that does not exist")

    monkeypatch.setattr(sv4d.io.hub, "resolve_checkpoint", fetch)
    assert main(["generate", str(tmp_path / "nope.mp4"), "-c", "sv4d2", "-o", str(tmp_path / "o")]) == 2
    assert "nope.mp4: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

"""Reading input clips (video, GIF, image folder, glob, single image) and writing mp4/GIF."""

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from sv4d.errors import Sv4dError
from sv4d.io import video
from sv4d.io.video import Clip, list_frame_files, read_clip, write_gif, write_video

VIDEOS = DATA / "videos"
MP4 = VIDEOS / "test_video1.mp4"
GIF = VIDEOS / "camel_96.gif"
JAY = VIDEOS / "blue_jay_64"


@pytest.fixture(scope="module")
def mp4() -> Clip:
    return read_clip(MP4)


def _gradient(n: int, h: int, w: int) -> np.ndarray:
    """Smooth, moving RGB content (n, h, w, 3) uint8."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([x * 200 // w + 5 * i, y * 200 // h, np.full_like(x, 100 + 10 * i)], -1) for i in range(n)]
    return np.asarray(frames, dtype=np.uint8)


# ---------------------------------------------------------------- each input kind


def test_mp4_reads_all_frames_as_rgb_with_pts_times(mp4):
    assert mp4.frames.shape == (21, 576, 576, 3) and mp4.frames.dtype == np.uint8
    assert mp4.size == (576, 576) and not mp4.has_alpha and not mp4.alpha_is_opaque
    np.testing.assert_allclose(mp4.times, np.arange(21) / 10)
    assert mp4.fps == 10.0 and mp4.source == str(MP4)
    assert mp4.frames[:, :8, :8].min() > 240  # white background


def test_gif_decodes_with_alpha_channel_and_100ms_frames():
    clip = read_clip(GIF)
    assert clip.frames.shape == (21, 96, 96, 4)
    assert clip.has_alpha and clip.alpha_is_opaque
    np.testing.assert_allclose(clip.times, np.arange(21) / 10)
    assert clip.fps == 10.0


@pytest.mark.parametrize("source", [JAY, str(JAY / "*.png"), str(JAY / "00[0-7].png")])
def test_image_folder_and_glob_read_all_frames_as_rgba_at_10fps(source):
    clip = read_clip(source)
    assert clip.frames.shape == (8, 64, 64, 4)
    assert clip.has_alpha and not clip.alpha_is_opaque
    np.testing.assert_allclose(clip.times, np.arange(8) / video.IMAGE_FPS)
    assert clip.fps == video.IMAGE_FPS
    np.testing.assert_array_equal(clip.frames[3], np.asarray(Image.open(JAY / "003.png")))


def test_single_image_is_one_frame():
    clip = read_clip(JAY / "005.png")
    assert clip.frames.shape == (1, 64, 64, 4) and clip.times.tolist() == [0.0]


def test_frame_files_sort_naturally_and_skip_non_images(tmp_path):
    for i in (10, 2, 1):
        Image.new("RGB", (32, 32), (i, i, i)).save(tmp_path / f"frame_{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    assert [p.name for p in list_frame_files(tmp_path)] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    clip = read_clip(tmp_path)
    assert clip.frames[:, 0, 0, 0].tolist() == [1, 2, 10] and not clip.has_alpha


def test_sequence_where_some_images_have_alpha_reads_all_as_rgba(tmp_path):
    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "0.png")
    Image.new("LA", (40, 40), (9, 100)).save(tmp_path / "1.png")
    palette = Image.new("P", (40, 40), 0)
    palette.save(tmp_path / "2.png", transparency=0)
    clip = read_clip(tmp_path)
    assert clip.frames.shape == (3, 40, 40, 4)
    assert clip.frames[0, 0, 0].tolist() == [1, 2, 3, 255]
    assert clip.frames[1, 0, 0].tolist() == [9, 9, 9, 100]
    assert clip.frames[2, 0, 0, 3] == 0


def test_webm_with_alpha_keeps_the_alpha_plane(tmp_path):
    path = tmp_path / "alpha.webm"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=10, options={"deadline": "realtime", "cpu-used": "8"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuva420p"
        rgba = np.zeros((48, 64, 4), np.uint8)
        rgba[..., 0], rgba[8:40, 16:48, 3] = 200, 255
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")))
        container.mux(stream.encode(None))
    clip = read_clip(path)
    assert clip.frames.shape == (3, 48, 64, 4)
    assert clip.frames[:, 20, 30, 3].min() == 255 and clip.frames[:, 2, 2, 3].max() == 0


# ---------------------------------------------------------------- options


def test_fps_resampling_to_half_rate_takes_every_second_frame(mp4):
    clip = read_clip(MP4, fps=5)
    assert len(clip) == 11 and clip.fps == 5.0
    np.testing.assert_allclose(clip.times, np.arange(11) / 5)
    np.testing.assert_array_equal(clip.frames, mp4.frames[::2])


def test_fps_upsampling_repeats_each_frame_until_the_next():
    clip = read_clip(GIF, fps=20)
    full = read_clip(GIF)
    assert len(clip) == 42  # the last frame lasts until 2.1 s
    np.testing.assert_array_equal(clip.frames, np.repeat(full.frames, 2, axis=0))


def test_max_frames_keeps_the_first_n(mp4):
    clip = read_clip(MP4, max_frames=4)
    np.testing.assert_array_equal(clip.frames, mp4.frames[:4])
    np.testing.assert_allclose(clip.times, [0, 0.1, 0.2, 0.3])


def test_max_frames_spread_spans_the_whole_clip_including_the_last_frame(mp4):
    clip = read_clip(MP4, max_frames=5, spread=True)
    np.testing.assert_array_equal(clip.frames, mp4.frames[[0, 5, 10, 15, 20]])
    np.testing.assert_allclose(clip.times, [0, 0.5, 1.0, 1.5, 2.0])
    assert len(read_clip(JAY, max_frames=100, spread=True)) == 8  # never more frames than there are


def test_start_skips_seconds_and_restarts_the_clock(mp4):
    clip = read_clip(MP4, start=0.5)
    assert len(clip) == 16
    np.testing.assert_array_equal(clip.frames, mp4.frames[5:])
    np.testing.assert_allclose(clip.times, np.arange(16) / 10)


def test_options_apply_in_order_start_then_fps_then_max_frames():
    clip = read_clip(JAY, start=0.1, fps=5, max_frames=2)
    full = read_clip(JAY)
    np.testing.assert_array_equal(clip.frames, full.frames[[1, 3]])
    np.testing.assert_allclose(clip.times, [0.0, 0.2])


def test_max_frames_without_spread_stops_reading_early():
    pulled = []

    def entries():
        for i in range(1000):
            pulled.append(i)
            yield i / 10, i

    chosen = video._choose(entries(), start=0.0, fps=None, max_frames=3, spread=False, default_dt=0.1, source="x")
    assert [h for _, h in chosen] == [0, 1, 2] and len(pulled) <= 4


# ---------------------------------------------------------------- user errors


def _text_as_mp4(d: Path) -> Path:
    (d / "clip.mp4").write_text("this is not a video")
    return d / "clip.mp4"


def _text_as_png(d: Path) -> Path:
    (d / "frame.png").write_text("this is not an image")
    return d / "frame.png"


def _unknown_suffix(d: Path) -> Path:
    (d / "notes.txt").write_text("hello")
    return d / "notes.txt"


def _empty_folder(d: Path) -> Path:
    (d / "frames").mkdir()
    return d / "frames"


def _mixed_sizes(d: Path) -> Path:
    Image.new("RGB", (40, 40)).save(d / "a.png")
    Image.new("RGB", (48, 40)).save(d / "b.png")
    return d


def _tiny_image(d: Path) -> Path:
    Image.new("RGB", (16, 16)).save(d / "tiny.png")
    return d / "tiny.png"


def _no_frames(d: Path, name: str, codec: str) -> Path:
    with av.open(str(d / name), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return d / name


def _audio_only(d: Path) -> Path:
    with av.open(str(d / "sound.mkv"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return d / "sound.mkv"


@pytest.mark.parametrize(
    "make, options, words",
    [
        (lambda d: d / "missing.mp4", {}, "no such file"),
        (_text_as_mp4, {}, "could not decode"),
        (_text_as_png, {}, "not a readable image"),
        (_unknown_suffix, {}, "not a video or image"),
        (_empty_folder, {}, "no image files"),
        (lambda d: str(d / "nothing_*.png"), {}, "no image files"),
        (_mixed_sizes, {}, "a.png is 40x40 but b.png is 48x40"),
        (_tiny_image, {}, "16x16 is too small; the smaller side must be at least 32"),
        (lambda d: _no_frames(d, "empty.mp4", "libx264"), {}, "no video stream"),  # mp4 drops the empty track
        (lambda d: _no_frames(d, "empty.avi", "mpeg4"), {}, "no frames"),  # avi keeps it: zero frames
        (_audio_only, {}, "no video stream"),
        (lambda d: MP4, {"start": 2.5}, "beyond the end"),
        (lambda d: JAY, {"start": 0.9}, "beyond the end"),
        (lambda d: MP4, {"max_frames": 0}, "max_frames"),
        (lambda d: MP4, {"fps": 0}, "fps must be positive"),
        (lambda d: MP4, {"start": -1}, "start must be"),
        (lambda d: MP4, {"min_size": 600}, "576x576 is too small"),
    ],
)
def test_user_errors_raise_sv4d_error_naming_the_cause(tmp_path, make, options, words):
    with pytest.raises(Sv4dError, match=words):
        read_clip(make(tmp_path), **options)


# ---------------------------------------------------------------- writing


def test_write_video_round_trips_frames_and_times(tmp_path, mp4):
    frames = mp4.frames[:, ::2, ::2]  # 288x288 keeps the test fast
    out = write_video(tmp_path / "out.mp4", frames, mp4.fps)
    assert out == tmp_path / "out.mp4" and list(tmp_path.iterdir()) == [out]  # no temporary file left
    back = read_clip(out)
    assert back.frames.shape == frames.shape and back.fps == 10.0
    np.testing.assert_allclose(back.times, mp4.times)
    assert np.abs(back.frames.astype(int) - frames).mean() < 3


def test_write_video_pads_odd_sizes_with_white(tmp_path):
    frames = _gradient(4, 45, 61)
    back = read_clip(write_video(tmp_path / "odd.mp4", frames, 7.5), min_size=8)
    assert back.size == (62, 46) and len(back) == 4
    np.testing.assert_allclose(back.times, np.arange(4) / 7.5, atol=1e-3)
    assert np.abs(back.frames[:, :45, :61].astype(int) - frames).mean() < 3
    luma = back.frames.astype(float) @ [0.299, 0.587, 0.114]  # chroma is shared with the last real row
    for pad in (luma[:, 45, :], luma[:, :, 61]):
        assert pad.min() > 200 and pad.mean() > 240


def test_write_video_composites_rgba_over_white(tmp_path):
    rgba = np.zeros((2, 32, 32, 4), np.uint8)
    rgba[..., 0], rgba[:, :, 16:, 3] = 255, 255  # left half transparent, right half opaque red
    back = read_clip(write_video(tmp_path / "a.mp4", rgba, 10))
    assert back.frames[:, 16, 4].min() > 240  # white
    assert back.frames[:, 16, 28, 0].min() > 230 and back.frames[:, 16, 28, 1:].max() < 30  # red


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")

    real = av.VideoFrame

    class Failing:
        calls, partial = 0, []

        @staticmethod
        def from_ndarray(array, format):
            Failing.calls += 1
            if Failing.calls == 60:  # late enough that libx264 has emitted packets
                Failing.partial = [p.name for p in tmp_path.glob(".out.mp4.*.part") if p.stat().st_size > 0]
                raise RuntimeError("disk on fire")
            return real.from_ndarray(array, format=format)

    monkeypatch.setattr(av, "VideoFrame", Failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_video(target, _gradient(64, 32, 32), 10)
    monkeypatch.undo()
    assert Failing.partial  # a half-written temporary file existed ...
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"old"  # ... and is gone


def test_write_into_an_impossible_folder_raises_sv4d_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(Sv4dError, match="could not write"):
        write_video(tmp_path / "file" / "out.mp4", _gradient(2, 32, 32), 10)


def test_write_gif_loops_forever_at_the_given_rate(tmp_path):
    frames = read_clip(JAY).frames
    out = write_gif(tmp_path / "preview.gif", frames, 10)
    with Image.open(out) as im:
        assert im.n_frames == 8 and im.info["loop"] == 0 and im.info["duration"] == 100
    back = read_clip(out)
    np.testing.assert_allclose(back.times, np.arange(8) / 10)
    assert back.frames[0, 0, 0, :3].tolist() == [255, 255, 255]  # transparent corner over white

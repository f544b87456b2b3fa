"""Reading an input clip (video file, image, folder or glob of images) and writing mp4/gif.

Frames are ``(n, H, W, C)`` uint8 arrays, ``C = 3`` (RGB) or ``C = 4`` (RGBA, straight alpha);
times are seconds. Videos are decoded with PyAV, still images with Pillow. Image sequences have
no clock of their own: they are timed at :data:`IMAGE_FPS` = 10 frames per second, the rate of
the official SV4D example clips (21 frames, 100 ms apart).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

from sv4d.errors import Sv4dError
from sv4d.io.atomic import atomic_file

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts", ".flv", ".ogv", ".wmv", ".3gp"}
)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
MIN_FRAME_SIZE = 32  # pixels, smaller side
IMAGE_FPS = 10.0  # frame rate given to image sequences (the official example clips' rate)

_EPS = 1e-6  # seconds; tolerance when comparing frame times
_GLOB_CHARS = re.compile(r"[*?\[]")
# FFmpeg's native VP8/VP9 decoders drop the alpha plane of WebM files; libvpx keeps it.
_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


@dataclass
class Clip:
    """A decoded clip.

    frames: (n, H, W, C) uint8, C = 3 (RGB) or 4 (RGBA, straight alpha).
    times:  (n,) float64 seconds, the first kept frame at 0.
    fps:    nominal frame rate (the resampling rate when ``read_clip(fps=...)`` was given).
    """

    frames: np.ndarray
    times: np.ndarray
    fps: float
    source: str

    @property
    def has_alpha(self) -> bool:
        return self.frames.shape[-1] == 4

    @property
    def alpha_is_opaque(self) -> bool:
        return self.has_alpha and bool((self.frames[..., 3] == 255).all())

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) in pixels."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    def select(self, indices: Sequence[int]) -> Clip:
        """The clip made of frames ``indices`` (in that order), timed from the first of them."""
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < len(self.frames)]
        if not idx or bad:
            raise Sv4dError(
                f"frame(s) {bad or idx} do not exist: {self.source} has {len(self.frames)} frames "
                f"(0..{len(self.frames) - 1}) after the reading options"
            )
        times = self.times[idx]
        return Clip(self.frames[idx], times - times[0], self.fps, self.source)

    def __len__(self) -> int:
        return len(self.frames)


def natural_key(text: str | os.PathLike) -> list:
    """A sort key that orders numbers by value: ``frame_2`` before ``frame_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", os.fspath(text))]


def list_frame_files(source: str | os.PathLike) -> list[Path]:
    """Image files of a folder or a glob pattern, naturally sorted (``frame_2`` before ``frame_10``)."""
    text = os.path.expanduser(os.fspath(source))
    if os.path.isdir(text):
        candidates = [p for p in Path(text).iterdir() if p.is_file()]
    elif _GLOB_CHARS.search(text):
        candidates = [Path(p) for p in glob.glob(text) if os.path.isfile(p)]
    else:
        raise Sv4dError(f"{source}: not a folder or a glob pattern of image files")
    return sorted((p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


def _check_size(width: int, height: int, what: str, min_size: int) -> None:
    if min(width, height) < min_size:
        raise Sv4dError(
            f"{what}: frame size {width}x{height} is too small; the smaller side must be at least "
            f"{min_size} pixels; use a larger input"
        )


# ---------------------------------------------------------------- choosing frames from a time axis


def _skip_start(entries: Iterable[tuple[float, object]], start: float, source: str) -> Iterator[tuple[float, object]]:
    """Drop frames before ``start`` seconds and shift times so the first kept frame is at 0."""
    seen, origin, last = 0, None, 0.0
    for t, handle in entries:
        seen, last = seen + 1, t
        if t < start - _EPS:
            continue
        if origin is None:
            origin = t
        yield t - origin, handle
    if seen == 0:
        raise Sv4dError(f"{source}: no frames could be read; check that it is a non-empty video or image sequence")
    if origin is None:
        raise Sv4dError(
            f"{source}: start={start:g} s is beyond the end of the clip (last frame at {last:.3f} s); "
            "use a smaller start"
        )


def _resample(entries: Iterable[tuple[float, object]], fps: float, default_dt: float) -> Iterator[tuple[float, object]]:
    """Sample times k/fps, each taking the latest frame at or before it, up to the end of the last frame
    (its time plus the last gap between frames, or ``default_dt`` for a single frame)."""
    k, prev, gap = 0, None, default_dt
    for t, handle in entries:
        if prev is not None:
            if t > prev[0]:
                gap = t - prev[0]
            while k / fps < t - _EPS:
                yield k / fps, prev[1]
                k += 1
        prev = (t, handle)
    if prev is not None:
        while k / fps < prev[0] + gap - _EPS:
            yield k / fps, prev[1]
            k += 1


def kept_indices(total: int, n: int, spread: bool) -> list[int]:
    """Which of ``total`` frames ``max_frames=n`` keeps: the first ``n``, or with ``spread`` ``n``
    evenly spaced over all of them (first and last included)."""
    if not spread:
        return list(range(min(n, total)))
    return [int(i) for i in np.round(np.linspace(0, total - 1, min(n, total))).astype(int)]


def _choose(entries, *, start, fps, max_frames, spread, default_dt, source) -> list[tuple[float, object]]:
    """Apply start, then fps resampling, then max_frames (first N, or N spread over the clip)."""
    planned = _skip_start(entries, start, source)
    if fps is not None:
        planned = _resample(planned, fps, default_dt)
    if max_frames is None:
        return list(planned)
    if not spread:
        return list(islice(planned, max_frames))  # stops decoding after N frames
    every = list(planned)
    return [every[i] for i in kept_indices(len(every), max_frames, spread=True)]


# ---------------------------------------------------------------- videos (PyAV)


@contextmanager
def _open_video(path: Path, min_size: int):
    """Yield (iterator of (seconds from first frame, av.VideoFrame), nominal fps)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise Sv4dError(f"{path}: the file has no video stream (or an empty one); give a video with frames")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        nominal = float(rate) if rate else IMAGE_FPS
        tb = stream.time_base or Fraction(1, 1)
        alpha_decoder = (
            _ALPHA_DECODERS.get(stream.codec_context.name) if stream.metadata.get("alpha_mode") == "1" else None
        )
        decoder = av.CodecContext.create(alpha_decoder, "r") if alpha_decoder in av.codecs_available else None

        def decoded():
            if decoder is None:
                yield from container.decode(stream)
            else:
                for packet in container.demux(stream):  # the last (empty) packet flushes the decoder
                    yield from decoder.decode(packet)

        def frames():
            first_pts, t = None, -1.0 / nominal
            for i, frame in enumerate(decoded()):
                if i == 0:
                    _check_size(frame.width, frame.height, str(path), min_size)
                if frame.pts is None:
                    t += 1.0 / nominal
                else:
                    first_pts = frame.pts if first_pts is None else first_pts
                    t = float((frame.pts - first_pts) * tb)
                yield t, frame

        yield frames(), nominal


def _read_video(path: Path, opts: dict, min_size: int) -> tuple[list[tuple[float, np.ndarray]], float]:
    if opts["spread"] and opts["max_frames"] is not None:
        # Pass 1 keeps only times, pass 2 converts the chosen frames: memory stays O(max_frames).
        with _open_video(path, min_size) as (frames, nominal):
            chosen = _choose(
                ((t, i) for i, (t, _) in enumerate(frames)), default_dt=1 / nominal, source=str(path), **opts
            )
        wanted, got = {i for _, i in chosen}, {}
        with _open_video(path, min_size) as (frames, _):
            for i, (_, frame) in enumerate(frames):
                if i in wanted:
                    got[i] = frame
                    if len(got) == len(wanted):
                        break
        chosen = [(t, got[i]) for t, i in chosen]
    else:
        with _open_video(path, min_size) as (frames, nominal):
            chosen = _choose(frames, default_dt=1 / nominal, source=str(path), **opts)
    first = chosen[0][1]
    fmt = "rgba" if any(c.is_alpha for c in first.format.components) else "rgb24"
    cache: dict[int, np.ndarray] = {}
    out = []
    for t, frame in chosen:  # repeated frames (fps upsampling) are converted once
        if id(frame) not in cache:
            cache[id(frame)] = frame.to_ndarray(format=fmt, width=first.width, height=first.height)
        out.append((t, cache[id(frame)]))
    return out, nominal


# ---------------------------------------------------------------- still images (Pillow)


def _image(path: Path, mode: str | None = None):
    """Header facts ((W, H) after EXIF rotation, has alpha) or, given a mode, the pixels (H, W, C)."""
    try:
        with Image.open(path) as im:
            if mode is not None:
                return np.asarray(ImageOps.exif_transpose(im).convert(mode), dtype=np.uint8)
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation turns it by 90 degrees
                w, h = h, w
            return (w, h), "A" in im.getbands() or "transparency" in im.info
    except Exception as exc:  # Pillow raises several types for unreadable files
        raise Sv4dError(f"{path}: not a readable image ({exc}); remove or replace the file") from exc


def _read_images(files: list[Path], opts: dict, min_size: int, source: str) -> list[tuple[float, np.ndarray]]:
    headers = [_image(path) for path in files]  # headers only: sizes and alpha of every file, no pixels yet
    (w0, h0), _ = headers[0]
    for path, ((w, h), _) in zip(files, headers):
        if (w, h) != (w0, h0):
            raise Sv4dError(
                f"{source}: images differ in size: {files[0].name} is {w0}x{h0} but {path.name} is "
                f"{w}x{h}; resize them to one size"
            )
    _check_size(w0, h0, source, min_size)
    mode = "RGBA" if any(alpha for _, alpha in headers) else "RGB"
    chosen = _choose(((i / IMAGE_FPS, p) for i, p in enumerate(files)), default_dt=1 / IMAGE_FPS, source=source, **opts)
    loaded = {p: _image(p, mode) for p in dict.fromkeys(p for _, p in chosen)}
    return [(t, loaded[p]) for t, p in chosen]


# ---------------------------------------------------------------- reading


def check_clip_source(source: str | os.PathLike) -> None:
    """Refuse a clip path that does not exist (a glob pattern is checked when read), before any
    long work such as downloading the model."""
    name = os.fspath(source)
    text = os.path.expanduser(name)
    if not Path(text).exists() and not _GLOB_CHARS.search(text):
        raise Sv4dError(f"{name}: no such file or folder; check the path")


def read_clip(
    source: str | os.PathLike,
    *,
    max_frames: int | None = None,
    fps: float | None = None,
    spread: bool = False,
    start: float = 0.0,
    min_size: int = MIN_FRAME_SIZE,
) -> Clip:
    """Read a video file, a single image, a folder of images or a glob pattern of images.

    Options apply in this order: ``start`` seconds are skipped; ``fps`` resamples the time axis
    (each time k/fps takes the latest frame at or before it); ``max_frames`` keeps the first N
    frames, or with ``spread=True`` N frames evenly spaced over the whole clip (first and last
    included; their times are kept, so they are not 1/fps apart). Any number of frames is fine.

    Videos keep an alpha channel when their pixel format has one (GIFs decode as BGRA and so
    always come back RGBA; WebM VP8/VP9 with alpha is decoded with libvpx). Images with alpha
    (RGBA, LA, palette with transparency) give RGBA; a sequence where any image has alpha is
    read as RGBA throughout. Image sequences are timed at :data:`IMAGE_FPS`; EXIF rotation is
    applied. Every problem the user can fix raises :class:`~sv4d.errors.Sv4dError`.
    """
    if max_frames is not None and max_frames < 1:
        raise Sv4dError(f"max_frames must be at least 1 (got {max_frames})")
    if fps is not None and not fps > 0:
        raise Sv4dError(f"fps must be positive (got {fps})")
    if not start >= 0:
        raise Sv4dError(f"start must be >= 0 seconds (got {start})")
    name = os.fspath(source)
    text = os.path.expanduser(name)
    path, nominal = Path(text), IMAGE_FPS
    opts = dict(start=float(start), fps=fps, max_frames=max_frames, spread=spread)
    if path.is_dir() or (not path.exists() and _GLOB_CHARS.search(text)):
        files = list_frame_files(text)
        if not files:
            kinds = ", ".join(sorted(IMAGE_SUFFIXES))
            raise Sv4dError(f"{name}: no image files found (looked for {kinds}); check the folder or pattern")
        chosen = _read_images(files, opts, min_size, name)
    elif not path.exists():
        raise Sv4dError(f"{name}: no such file or folder; check the path")
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        chosen = _read_images([path], opts, min_size, name)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            chosen, nominal = _read_video(path, opts, min_size)
        except (av.error.FFmpegError, OSError) as exc:
            raise Sv4dError(f"{name}: could not decode the video ({exc}); check that it is a valid video file") from exc
    else:
        raise Sv4dError(
            f"{name}: not a video or image file (suffix {path.suffix or 'missing'!r}); give one of "
            f"{', '.join(sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES))}, a folder of images or a glob pattern"
        )
    times = np.array([t for t, _ in chosen], dtype=np.float64)
    return Clip(np.stack([a for _, a in chosen]), times, float(fps) if fps is not None else nominal, name)


# ---------------------------------------------------------------- writing


def _to_rgb(frames: np.ndarray, fps: float) -> np.ndarray:
    """(n, H, W, 3|4) uint8 -> (n, H, W, 3); RGBA is composited over white."""
    if not fps > 0:
        raise Sv4dError(f"fps must be positive (got {fps})")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty (n, H, W, 3|4) uint8 array, got {frames.shape} {frames.dtype}")
    if frames.shape[-1] == 3:
        return frames
    rgb, alpha = frames[..., :3].astype(np.uint32), frames[..., 3:].astype(np.uint32)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """Write (n, H, W, 3) RGB uint8 frames as an H.264 (libx264, yuv420p) mp4.

    RGBA frames are composited over white first. An odd width or height gets one white pixel
    column/row so it is even (yuv420p needs that). The file appears only when complete.
    """
    rgb = _to_rgb(frames, fps)
    _, h, w, _ = rgb.shape
    rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
    rate = Fraction(fps).limit_denominator(1001)
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            with av.open(str(tmp), "w", format="mp4") as container:
                stream = container.add_stream("libx264", rate=rate, options={"crf": str(int(crf))})
                stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
                for i, image in enumerate(rgb):
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts, frame.time_base = i, 1 / rate
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
    except (av.error.FFmpegError, OSError) as exc:
        raise Sv4dError(f"{path}: could not write the video ({exc}); check the folder and free space") from exc
    return path


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Write frames as a looping GIF preview (RGBA composited over white; 10 ms time steps)."""
    images = [Image.fromarray(a) for a in _to_rgb(frames, fps)]
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            images[0].save(tmp, "GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    except OSError as exc:
        raise Sv4dError(f"{path}: could not write the GIF ({exc}); check the folder and free space") from exc
    return path

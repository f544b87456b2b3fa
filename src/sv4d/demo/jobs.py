"""The demo's service parts, without the web page: upload checks, job folders and their clean-up,
and the queue that lets one job at a time use the device.

Nothing here imports gradio, so the rules are tested on their own (``tests/demo/test_jobs.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import Sv4dError
from ..io.atomic import atomic_file
from ..io.video import IMAGE_SUFFIXES, MIN_FRAME_SIZE, VIDEO_SUFFIXES, natural_key


@dataclass(frozen=True)
class DemoLimits:
    """What one upload may be. The frame count and the frame size are read from the file headers
    (a video's packets are counted, not decoded), so an upload over a limit costs no memory."""

    max_upload_mb: float = 100.0  # the whole upload (all files)
    max_frames: int = 600  # frames in a clip (the model uses a window of them; longer clips are cut)
    max_pixels: int = 4096 * 4096  # one frame's width x height
    min_frames: int = 2  # a 4D asset needs motion: one image is not a clip

    def __post_init__(self) -> None:
        if not (self.max_upload_mb > 0 and self.max_upload_mb < float("inf")):
            raise Sv4dError(f"the upload limit must be a positive number of MB, got {self.max_upload_mb}")
        if self.max_frames < self.min_frames or self.min_frames < 1:
            raise Sv4dError(f"the frame limit must be at least {self.min_frames}, got {self.max_frames}")
        if self.max_pixels < MIN_FRAME_SIZE**2:
            raise Sv4dError(f"the pixel limit must be at least {MIN_FRAME_SIZE**2}, got {self.max_pixels}")


@dataclass(frozen=True)
class Upload:
    """A checked upload: the clip to read (a video file or a folder of frames) and its header facts."""

    source: Path
    kind: str  # "video" or "frames"
    frames: int
    width: int
    height: int

    def describe(self) -> str:
        return f"{self.kind}: {self.frames} frames of {self.width} x {self.height}"


def _video_facts(path: Path, limits: DemoLimits) -> tuple[int, int, int]:
    """(frames, width, height) from a video's header and packets; nothing is decoded."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise Sv4dError(f"{path.name} has no video stream; upload a video or the frames of a clip")
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            if w * h > limits.max_pixels:
                raise Sv4dError(
                    f"{path.name}: frames of {w} x {h} are larger than this demo takes "
                    f"({limits.max_pixels:,} pixels); scale the video down"
                )
            count = 0
            for packet in container.demux(stream):
                count += packet.size > 0
                if count > limits.max_frames:
                    break
    except av.error.FFmpegError as e:
        raise Sv4dError(
            f"{path.name} is not a video that can be read ({e.strerror or e}); upload an mp4, webm or gif"
        ) from None
    return count, w, h


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:  # reads the header only
            return im.size
    except Image.DecompressionBombError:  # Pillow's own refusal, far over our limit too
        raise Sv4dError(f"{path.name}: the frame is larger than this demo takes; scale the frames down") from None
    except Exception as e:  # Pillow raises several types for unreadable files
        raise Sv4dError(f"{path.name} is not an image that can be read ({e})") from None


def _safe_name(name: str) -> str:
    """A file name for the job folder: the last part of an uploaded name, plain characters only."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "clip"
    return base[-80:]


def check_upload(files: Sequence[str | os.PathLike], folder: str | os.PathLike, limits: DemoLimits) -> Upload:
    """Check an upload and copy it into ``folder`` (which must not exist yet).

    files: one video (mp4, webm, gif, ...) or the image files of a clip's frames (any order: they
    are sorted by name). Everything is checked from the headers before anything is copied:
    kind, total size, frame count, frame size. Raises :class:`Sv4dError` saying what to change.
    """
    paths = [Path(f) for f in files if f]
    if not paths:
        raise Sv4dError("nothing was uploaded; choose a video or the frames of a clip")
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise Sv4dError(f"the upload is incomplete ({', '.join(missing[:3])} did not arrive); upload it again")
    size_mb = sum(p.stat().st_size for p in paths) / 2**20
    if size_mb > limits.max_upload_mb:
        raise Sv4dError(f"the upload is {size_mb:.0f} MB; this demo takes up to {limits.max_upload_mb:g} MB")
    suffixes = {p.suffix.lower() for p in paths}
    folder = Path(folder)
    if len(paths) == 1 and suffixes <= VIDEO_SUFFIXES:
        frames, w, h = _video_facts(paths[0], limits)
        kind = "video"
    elif suffixes <= IMAGE_SUFFIXES:
        if len(paths) > limits.max_frames:
            raise Sv4dError(f"{len(paths)} frames were uploaded; this demo takes up to {limits.max_frames}")
        sizes = {_image_size(p) for p in paths}
        w, h = max(sizes, key=lambda s: s[0] * s[1])
        if len(sizes) > 1:
            raise Sv4dError("the frames differ in size; upload frames of one size")
        frames, kind = len(paths), "frames"
    else:
        kinds = ", ".join(sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES))
        what = ", ".join(sorted(s or "(none)" for s in suffixes - VIDEO_SUFFIXES - IMAGE_SUFFIXES)) or "several videos"
        raise Sv4dError(f"not a clip: {what}; upload one video or the frames of a clip ({kinds})")
    if frames < limits.min_frames:
        raise Sv4dError(
            f"the {kind} has {frames} frame{'s' * (frames != 1)}; a 4D asset needs motion: upload a clip of "
            f"at least {limits.min_frames} frames"
        )
    if frames > limits.max_frames:
        raise Sv4dError(f"the {kind} has more than {limits.max_frames} frames; cut it shorter for this demo")
    if w * h > limits.max_pixels:
        raise Sv4dError(f"frames of {w} x {h} are larger than this demo takes ({limits.max_pixels:,} pixels)")
    if min(w, h) < MIN_FRAME_SIZE:
        raise Sv4dError(f"frames of {w} x {h} are too small; the smaller side must be at least {MIN_FRAME_SIZE}")
    folder.mkdir(parents=True)
    if kind == "video":
        source = folder / _safe_name(paths[0].name)
        with atomic_file(source) as tmp:
            shutil.copyfile(paths[0], tmp)
    else:
        source = folder / "frames"
        staging = folder / ".frames.part"
        staging.mkdir()
        # by file name: each uploaded file may sit in a folder of its own
        for i, p in enumerate(sorted(paths, key=lambda p: natural_key(p.name))):
            shutil.copyfile(p, staging / f"{i:05d}{p.suffix.lower()}")
        os.replace(staging, source)
    return Upload(source, kind, frames, w, h)


# ---------------------------------------------------------------------------------------------- jobs


class JobStore:
    """One folder per job under ``root``, removed once unused for ``keep_s`` seconds.

    A job in use (inside :meth:`using`) is never removed; each use counts as activity."""

    def __init__(self, root: str | os.PathLike, keep_s: float = 6 * 3600.0) -> None:
        if not keep_s > 0:
            raise Sv4dError(f"jobs must be kept for a positive time, got {keep_s} s")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_s = float(keep_s)
        self._busy: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def new(self) -> Path:
        """A new, empty job folder."""
        folder = self.root / f"job-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        return folder

    def owns(self, folder: str | os.PathLike | None) -> bool:
        """Whether ``folder`` is one of this store's job folders, still there."""
        if not folder:
            return False
        p = Path(folder)
        return p.parent == self.root and p.name.startswith("job-") and p.is_dir()

    @contextmanager
    def using(self, folder: Path) -> Iterator[Path]:
        """Mark ``folder`` in use (clean-up leaves it alone) and record the activity."""
        folder = Path(folder)
        with self._lock:
            if not folder.is_dir():
                raise Sv4dError("this job's files were cleaned up after a long pause; upload the clip again")
            self._busy[folder] = self._busy.get(folder, 0) + 1
        try:
            os.utime(folder)
            yield folder
        finally:
            with self._lock:
                self._busy[folder] -= 1
                if not self._busy[folder]:
                    del self._busy[folder]
            if folder.is_dir():
                os.utime(folder)

    def cleanup(self, now: float | None = None) -> list[Path]:
        """Remove the job folders unused for longer than ``keep_s``; returns what was removed."""
        now = time.time() if now is None else now
        removed = []
        for folder in sorted(self.root.glob("job-*")):
            with self._lock:
                if folder in self._busy or not folder.is_dir():
                    continue
                try:
                    idle = now - folder.stat().st_mtime
                except FileNotFoundError:
                    continue
                if idle <= self.keep_s:
                    continue
                gone = folder.with_name(f".gone-{folder.name}")  # out of sight at once, then deleted
                os.replace(folder, gone)
            shutil.rmtree(gone, ignore_errors=True)
            removed.append(folder)
        return removed

    def start_cleaner(self, every_s: float = 600.0) -> None:
        """Run :meth:`cleanup` every ``every_s`` seconds in a background thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.cleanup()

        self._thread = threading.Thread(target=loop, name="sv4d-demo-cleanup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---------------------------------------------------------------------------------------------- queue


class DeviceQueue:
    """First come, first served: one job at a time uses the device, the others wait in order and
    are told how many jobs are ahead of them. ``max_waiting`` jobs may wait; one more is refused."""

    def __init__(self, max_waiting: int = 16) -> None:
        self.max_waiting = max_waiting
        self._line: deque[object] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._line)

    @contextmanager
    def turn(self, on_wait: Callable[[int], None] | None = None, poll_s: float = 0.5) -> Iterator[None]:
        """Wait for the device, then hold it for the block. ``on_wait(ahead)`` is called when the
        number of jobs ahead changes (and first with the starting number), while waiting."""
        ticket = object()
        with self._cond:
            if len(self._line) > self.max_waiting:
                raise Sv4dError(f"the demo is busy ({len(self._line) - 1} jobs are waiting); try again in a while")
            self._line.append(ticket)
        try:
            told = None
            with self._cond:
                while self._line[0] is not ticket:
                    ahead = self._line.index(ticket)
                    if ahead != told and on_wait is not None:
                        told = ahead
                        self._cond.release()  # tell without holding the lock
                        try:
                            on_wait(ahead)
                        finally:
                            self._cond.acquire()
                        continue
                    self._cond.wait(poll_s)
            yield
        finally:
            with self._cond:
                self._line.remove(ticket)
                self._cond.notify_all()

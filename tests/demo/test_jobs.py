"""The demo's service rules without a browser: upload checks (kind, size, frame count, frame size,
read from headers), job folders and their clean-up, and the device queue (one job at a time, in
order, the others told their place)."""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from sv4d.demo.jobs import DemoLimits, DeviceQueue, JobStore, check_upload
from sv4d.errors import Sv4dError

CLIP = DATA / "videos" / "camel_96.gif"  # 21 frames of 96 x 96
FRAMES = DATA / "videos" / "blue_jay_64"  # 8 PNG frames of 64 x 64


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height but holds one row of data: a decompression bomb to a
    reader that decodes before it checks."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" + b"\x00" * 3 * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------------- uploads


def test_a_video_upload_is_checked_and_copied(tmp_path):
    up = check_upload([CLIP], tmp_path / "job" / "input", DemoLimits())
    assert (up.kind, up.frames, up.width, up.height) == ("video", 21, 96, 96)
    assert up.source == tmp_path / "job" / "input" / "camel_96.gif"
    assert up.source.read_bytes() == CLIP.read_bytes()


def test_frames_are_sorted_by_number_and_copied_as_a_folder(tmp_path):
    files = sorted(FRAMES.glob("*.png"), reverse=True)  # any order, as a browser may send them
    renamed = []
    for i, f in enumerate(sorted(files)):  # names that sort wrongly as text: 1, 10, 2, ...
        target = tmp_path / "upload" / f"frame{i + 1}.png"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(f.read_bytes())
        renamed.append(target)
    up = check_upload(list(reversed(renamed)), tmp_path / "job", DemoLimits())
    assert (up.kind, up.frames, up.width, up.height) == ("frames", 8, 64, 64)
    copied = sorted(up.source.iterdir())
    assert [p.read_bytes() for p in copied] == [p.read_bytes() for p in sorted(FRAMES.glob("*.png"))]


@pytest.mark.parametrize(
    "make, limits, message",
    [
        (lambda d: [d / "notes.mp4"], DemoLimits(), "not a video that can be read"),
        (lambda d: [d / "a.txt"], DemoLimits(), "not a clip: .txt"),
        (lambda d: [d / "one.png"], DemoLimits(), "has 1 frame; a 4D asset needs motion"),
        (lambda d: [_png_header_only(d / "a.png", 100_000, 100_000), d / "one.png"], DemoLimits(), "larger than"),
        (lambda d: [CLIP], DemoLimits(max_frames=10), "more than 10 frames"),
        (lambda d: [CLIP], DemoLimits(max_pixels=64 * 64), "96 x 96 are larger than"),
        (lambda d: [CLIP], DemoLimits(max_upload_mb=0.01), "this demo takes up to 0.01 MB"),
        (lambda d: [CLIP, CLIP], DemoLimits(), "several videos"),
        (lambda d: [], DemoLimits(), "nothing was uploaded"),
    ],
    ids=["not-a-video", "not-a-clip", "one-frame", "huge-frame", "too-long", "too-large", "too-big", "two", "none"],
)
def test_a_bad_upload_is_refused_with_a_reason_and_nothing_copied(tmp_path, make, limits, message):
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video")
    (tmp_path / "a.txt").write_text("text")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(Sv4dError, match=message):
        check_upload(make(tmp_path), tmp_path / "job", limits)
    assert not (tmp_path / "job").exists()


def test_limits_are_checked_when_made():
    with pytest.raises(Sv4dError, match="upload limit"):
        DemoLimits(max_upload_mb=float("nan"))
    with pytest.raises(Sv4dError, match="frame limit"):
        DemoLimits(max_frames=1)


# ---------------------------------------------------------------------------------------------- jobs


def test_cleanup_removes_jobs_unused_for_longer_than_kept_and_spares_jobs_in_use(tmp_path):
    store = JobStore(tmp_path / "jobs", keep_s=3600)
    old, busy, fresh = store.new(), store.new(), store.new()
    for f in (old, busy, fresh):
        (f / "input.mp4").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    with store.using(busy):
        os.utime(busy, (two_hours_ago, two_hours_ago))
        assert store.cleanup() == [old]  # busy is as old, but in use
        assert busy.is_dir()
    assert not old.exists() and fresh.is_dir()
    assert store.cleanup() == []  # using it counted as activity
    assert store.cleanup(now=time.time() + 3601) == sorted([busy, fresh])
    assert list(store.root.iterdir()) == []
    with pytest.raises(Sv4dError, match="cleaned up"):
        with store.using(busy):
            pass


def test_only_the_store_s_own_job_folders_are_accepted(tmp_path):
    store = JobStore(tmp_path / "jobs")
    job = store.new()
    assert store.owns(job) and store.owns(str(job))
    assert not store.owns(tmp_path) and not store.owns(None) and not store.owns(job / "..")
    assert not store.owns(store.root / "job-missing")


def test_the_cleaner_thread_runs_until_stopped(tmp_path):
    store = JobStore(tmp_path / "jobs", keep_s=0.05)
    job = store.new()
    store.start_cleaner(every_s=0.05)
    try:
        deadline = time.time() + 5
        while job.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert not job.exists()
    finally:
        store.stop()


# --------------------------------------------------------------------------------------------- queue


def test_one_job_at_a_time_in_order_and_the_waiting_know_their_place():
    queue = DeviceQueue()
    running, overlap, order = [0], [], []
    told: dict[int, list[int]] = {}
    first_in = threading.Event()
    release = threading.Event()

    def job(i: int) -> None:
        def on_wait(ahead: int) -> None:
            told.setdefault(i, []).append(ahead)

        with queue.turn(on_wait, poll_s=0.01):
            running[0] += 1
            overlap.append(running[0])
            order.append(i)
            if i == 0:
                first_in.set()
                release.wait(5)
            time.sleep(0.01)
            running[0] -= 1

    threads = [threading.Thread(target=job, args=(0,))]
    threads[0].start()
    assert first_in.wait(5)
    for i in (1, 2, 3):  # they queue up behind job 0, in this order
        threads.append(threading.Thread(target=job, args=(i,)))
        threads[-1].start()
        deadline = time.time() + 5
        while len(queue) < i + 1 and time.time() < deadline:
            time.sleep(0.005)
    assert len(queue) == 4
    release.set()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3] and max(overlap) == 1
    assert told[1] == [1] and told[2][0] == 2 and told[3][0] == 3  # first told how many are ahead
    assert told[3] == sorted(told[3], reverse=True) and told[3][-1] == 1  # then each move up
    assert 0 not in told and len(queue) == 0


def test_a_full_queue_refuses_one_more_and_a_failed_job_frees_the_device():
    queue = DeviceQueue(max_waiting=1)
    hold, inside = threading.Event(), threading.Event()

    def holder() -> None:
        with queue.turn():
            inside.set()
            hold.wait(5)

    def waiter() -> None:
        with queue.turn(poll_s=0.01):
            pass

    a = threading.Thread(target=holder)
    a.start()
    assert inside.wait(5)
    b = threading.Thread(target=waiter)
    b.start()
    deadline = time.time() + 5
    while len(queue) < 2 and time.time() < deadline:
        time.sleep(0.005)
    with pytest.raises(Sv4dError, match="busy"):
        with queue.turn():
            pass
    hold.set()
    a.join(5)
    b.join(5)
    with pytest.raises(RuntimeError):
        with queue.turn():
            raise RuntimeError("the job failed")
    with queue.turn():  # the device is free again
        assert len(queue) == 1

"""Window schedules: ``even`` (ours, the default) and ``official`` (the current official script's rule).

The official expectations below are written out by hand from the rule (starts ``range(0, n, T - 1)``
for the 4-view model, ``range(0, n - T + 1, T - 1)`` for the 8-view one, a window with
``t0 + T > n`` pulled back to ``n - T``), not computed by the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import DATA
from sv4d.checkpoint import save_model
from sv4d.cli import main
from sv4d.config import tiny_config
from sv4d.errors import Sv4dError
from sv4d.generate.pipeline import GenerationPipeline
from sv4d.generate.windows import SCHEDULES, describe, official_variant, plan_windows
from sv4d.io.multiview import read_multiview
from sv4d.io.video import read_clip
from sv4d.models.sv4d import SV4DModel

CAMEL = DATA / "videos" / "camel_96.gif"  # 21 frames, 96 x 96, RGBA


def _starts(n, T, V, schedule="official"):
    windows, _ = plan_windows(n, T, schedule, views=V)
    return [w.start for w in windows]


# ----------------------------------------------------------------------------- the literal tables
@pytest.mark.parametrize(
    "n,expected",
    [
        (5, [0, 0]),  # padded to 12 frames, then as n = 12
        (12, [0, 0]),  # 0, 11 -> 0: window 0 twice
        (13, [0, 1]),  # 0, 11 -> 1
        (21, [0, 9]),  # 0, 11 -> 9: the release's 21 frames, as our even schedule
        (23, [0, 11, 11]),  # 0, 11, 22 -> 11: window 11 twice
        (24, [0, 11, 12]),  # 0, 11, 22 -> 12
        (32, [0, 11, 20]),  # 0, 11, 22 -> 20
        (33, [0, 11, 21]),  # 0, 11, 22 -> 21
        (34, [0, 11, 22, 22]),  # 0, 11, 22, 33 -> 22: window 22 twice
        (48, [0, 11, 22, 33, 36]),  # 0, 11, 22, 33, 44 -> 36
    ],
)
def test_official_sv4d2_table(n, expected):
    windows, padded = plan_windows(n, 12, "official", views=4)
    assert [w.start for w in windows] == expected
    assert [w.index for w in windows] == list(range(len(expected)))
    assert padded == max(n, 12)
    assert [w.conditioned for w in windows] == [s != 0 for s in expected]


@pytest.mark.parametrize(
    "n,expected",
    [
        (3, [0]),  # padded to 5 frames: one window
        (5, [0]),
        (9, [0, 4]),
        (21, [0, 4, 8, 12, 16]),  # the release's 21 frames, as our even schedule
        (25, [0, 4, 8, 12, 16, 20]),
        (45, [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]),
    ],
)
def test_official_8views_table(n, expected):
    windows, _ = plan_windows(n, 5, "official", views=8)
    assert [w.start for w in windows] == expected
    assert [w.conditioned for w in windows] == [s != 0 for s in expected]


@pytest.mark.parametrize(
    "n,gap,counts",
    [
        (6, "frame 5 of 6", "e.g. 5 or 9"),  # 0 covers 0-4
        (22, "frame 21 of 22", "e.g. 21 or 25"),  # 0, 4, 8, 12, 16 cover 0-20
        (24, "frames 21-23 of 24", "e.g. 21 or 25"),
        (48, "frames 45-47 of 48", "e.g. 45 or 49"),  # 0, 4, ..., 40 cover 0-44
    ],
)
def test_official_8views_gap_is_refused_naming_the_frames(n, gap, counts):
    with pytest.raises(Sv4dError, match="official") as e:
        plan_windows(n, 5, "official", views=8)
    msg = str(e.value)
    assert gap in msg and counts in msg and "--windows even" in msg


def test_even_and_official_agree_for_21_frames():
    assert _starts(21, 12, 4, "even") == _starts(21, 12, 4) == [0, 9]
    assert _starts(21, 5, 8, "even") == _starts(21, 5, 8) == [0, 4, 8, 12, 16]


# ----------------------------------------------------------------------------- properties, 12..48 frames
@pytest.mark.parametrize("n", range(12, 49))
def test_official_sv4d2_properties(n):
    T = 12
    windows, padded = plan_windows(n, T, "official", views=4)
    starts = [w.start for w in windows]
    assert padded == n and len(windows) == -(-n // (T - 1))  # one per start of range(0, n, T - 1)
    assert starts[:-1] == [k * (T - 1) for k in range(len(windows) - 1)]
    assert starts[-1] == n - T  # the last one is always pulled back to end on the last frame
    assert [w.conditioned for w in windows] == [s != 0 for s in starts]
    generated: set[int] = set()
    for w in windows:  # a conditioned window starts on a frame already generated
        assert not w.conditioned or w.start in generated
        generated.update(w.frames)
    assert generated == set(range(n))
    repeats = len(starts) - len(set(starts))
    assert repeats == (1 if n % (T - 1) == 1 else 0)  # n = 12, 23, 34, 45


@pytest.mark.parametrize("n", range(12, 49))
def test_official_8views_properties(n):
    T = 5
    raw = list(range(0, n - T + 1, T - 1))  # the script's loop; it never pulls back
    leaves_gap = raw[-1] + T < n
    assert leaves_gap == ((n - T) % (T - 1) != 0)
    if leaves_gap:
        with pytest.raises(Sv4dError, match=f"frames? {raw[-1] + T}"):
            plan_windows(n, T, "official", views=8)
        return
    windows, _ = plan_windows(n, T, "official", views=8)
    assert [w.start for w in windows] == raw
    assert [w.conditioned for w in windows] == [s != 0 for s in raw]
    assert set().union(*(set(w.frames) for w in windows)) == set(range(n))
    assert windows == plan_windows(n, T, "even")[0]  # where the official rule covers all, it is ours


@pytest.mark.parametrize("n", range(1, 60))
@pytest.mark.parametrize("T", [5, 12])
def test_even_is_the_default_and_conditioned_means_not_first(n, T):
    windows, padded = plan_windows(n, T)
    assert (windows, padded) == plan_windows(n, T, "even", views=4) == plan_windows(n, T, "even", views=8)
    assert [w.conditioned for w in windows] == [w.index > 0 for w in windows]


# ----------------------------------------------------------------------------- parameters
def test_schedule_and_model_parameters():
    assert SCHEDULES == ("even", "official")
    assert official_variant(4) == "sv4d2" and official_variant(8) == "sv4d2_8views"
    assert _starts(23, 12, 6) == [0, 11]  # any other V follows the 8-view rule: 0, 11 cover 0-22
    with pytest.raises(Sv4dError, match="unknown window schedule 'uneven'"):
        plan_windows(21, 12, "uneven", views=4)
    with pytest.raises(Sv4dError, match="number of views"):
        plan_windows(21, 12, "official")
    with pytest.raises(Sv4dError, match=">= 2 frames"):
        plan_windows(4, 1, "official", views=4)


def test_describe_marks_repeats():
    assert describe(plan_windows(23, 12, "official", views=4)[0]) == "0-11, 11-22, 11-22 (again)"
    assert describe(plan_windows(12, 12, "official", views=4)[0]) == "0-11, 0-11 (again)"
    assert describe(plan_windows(21, 12)[0]) == "0-11, 9-20"


# ----------------------------------------------------------------------------- end to end, tiny models
def _tiny_model(V: int) -> SV4DModel:
    """A random tiny model with windows of 3 frames, so that 7 frames already differ: official
    (4 views) 0, 2, 4, 6 -> 4, i.e. window 4-6 twice; even 0, 2, 4."""
    torch.manual_seed(0)
    return SV4DModel(tiny_config("tiny_win", num_frames=3, num_views=V, with_clip=True), include_unused=True)


class _Spy:
    """Records the conditioner's reference views and cond_mv, and the decoder's outputs."""

    def __init__(self, pipe, monkeypatch):
        self.calls, self.decoded = [], []
        cond, dec = pipe.model.conditioner.forward, pipe.model.decode

        def cond_spy(*a, **k):
            self.calls.append((a[2].clone(), k["cond_mv"]))
            return cond(*a, **k)

        def dec_spy(z, chunk=None):
            x = dec(z, chunk)
            self.decoded.append(x.clone())
            return x

        monkeypatch.setattr(pipe.model.conditioner, "forward", cond_spy)
        monkeypatch.setattr(pipe.model, "decode", dec_spy)

    def views(self, i: int) -> torch.Tensor:
        """Window i's generated views (T, V, 3, S, S) in [-1, 1], as the pipeline keeps them."""
        x = torch.clamp((self.decoded[i] + 1) / 2, 0, 1) * 2 - 1
        return x.reshape(3, -1, *x.shape[1:])


def test_official_windows_end_to_end_with_a_repeated_window(monkeypatch, tmp_path):
    pipe = GenerationPipeline(_tiny_model(4), device="cpu")
    spy = _Spy(pipe, monkeypatch)
    clip = read_clip(CAMEL, max_frames=7)
    res = pipe(clip, steps=1, windows="official", progress=False)
    assert res.settings["window_schedule"] == "official"
    assert res.settings["windows"] == [[0, 2], [2, 4], [4, 6], [4, 6]]
    assert [c[1] for c in spy.calls] == [False, True, True, True]
    assert spy.calls[0][0].abs().max() == 0
    # each reference is the latest generated view at the window's start: the repeat of window 4
    # is conditioned on the first pass's own views of frame 4, not on window 2's
    assert torch.equal(spy.calls[1][0], spy.views(0)[2])
    assert torch.equal(spy.calls[2][0], spy.views(1)[2])
    assert torch.equal(spy.calls[3][0], spy.views(2)[0])
    assert not torch.equal(spy.views(2)[0], spy.views(1)[2])
    # the frames hold the last window that generated them
    last = ((spy.views(3) + 1) / 2 * 255).to(torch.uint8).permute(1, 0, 3, 4, 2).numpy()
    assert np.array_equal(res.images[1:, 4:7], last)
    assert res.images.shape == (5, 7, 48, 48, 3)
    out = res.save(tmp_path / "camel", videos=False, preview=False, progress=False)
    assert json.loads((out / "generation.json").read_text())["windows"] == [[0, 2], [2, 4], [4, 6], [4, 6]]
    mv = read_multiview(out)
    assert (mv.num_views, mv.num_frames) == (5, 7)
    for v in range(5):
        assert len(list((out / "rgba" / f"view_{v:02d}").glob("frame_*.png"))) == 7
    # the default is our schedule, recorded as such
    even = pipe(clip, steps=1, progress=False)
    assert even.settings["window_schedule"] == "even"
    assert even.settings["windows"] == [[0, 2], [2, 4], [4, 6]]


def test_official_short_clip_runs_window_zero_twice_unconditioned(monkeypatch):
    pipe = GenerationPipeline(_tiny_model(4), device="cpu")
    spy = _Spy(pipe, monkeypatch)
    res = pipe(read_clip(CAMEL, max_frames=2), steps=1, windows="official", progress=False)
    assert res.settings["windows"] == [[0, 2], [0, 2]] and res.settings["padded_frames"] == 3
    assert [c[1] for c in spy.calls] == [False, False]
    assert all(c[0].abs().max() == 0 for c in spy.calls)
    assert res.images.shape[1] == 2


def test_cli_windows_flag_refuses_a_gap_before_loading(tmp_path, capsys):
    ckpt = save_model(_tiny_model(8), tmp_path / "tiny8.safetensors")
    out = tmp_path / "out"
    argv = ["generate", str(CAMEL), "-c", str(ckpt), "-o", str(out), "--num-frames", "6", "-q", "--steps", "1"]
    assert main([*argv, "--windows", "official"]) == 2  # 8-view rule, windows of 3: 0, 2 cover 0-4
    err = capsys.readouterr().err
    assert "sv4d: error:" in err and "frame 5 of 6" in err and "e.g. 5 or 7" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as e:  # argparse's own refusal
        main([*argv, "--windows", "sideways"])
    assert e.value.code == 2 and "invalid choice: 'sideways'" in capsys.readouterr().err

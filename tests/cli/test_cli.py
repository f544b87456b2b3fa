"""The ``sv4d`` command line: shared flags with one meaning on every command, the device chosen by
one function (the GPU by default), old flag spellings kept with a note, clear errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import DATA
from sv4d import __version__
from sv4d.cli import build_parser, main
from sv4d.cli.common import LegacyCount, frames_or_count, index_list, take_legacy_count
from sv4d.devices import default_dtype, parse_dtype, resolve_device
from sv4d.errors import Sv4dError

FOX_SMALL = DATA / "multiview" / "fox_small"

#: commands that compute with PyTorch (they take --device)
COMPUTE = {
    "run", "demo", "verify-golden", "generate", "train", "train-autoencoder", "fit", "render", "export", "evaluate"
}  # fmt: skip
#: commands that write an output (they take -o/--out)
WRITERS = {
    "run",
    "generate",
    "train",
    "train-autoencoder",
    "fit",
    "render",
    "export",
    "evaluate",
    "render-asset",
    "curate",
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return dict(sub.choices)


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_every_command_takes_the_shared_flags_with_one_meaning():
    commands = _commands()
    assert set(commands) == COMPUTE | WRITERS | {"check"}
    for name, p in commands.items():
        q = _option(p, "-q")
        assert q is not None and "--quiet" in q.option_strings, name
        device = _option(p, "--device")
        assert (device is not None) == (name in COMPUTE), name
        if device is not None:
            assert device.default == "auto", name
        out = _option(p, "--out")
        assert (out is not None) == (name in WRITERS), name
        if out is not None:
            assert "-o" in out.option_strings, name
        frames = _option(p, "--frames")
        if frames is not None:  # a selection everywhere
            assert frames.type in (index_list, frames_or_count), name
            assert frames.type("0-4:2") == [0, 2, 4] and frames.type("1,3") == [1, 3], name
        dtype = _option(p, "--dtype")
        if dtype is not None:
            assert list(dtype.choices) == ["fp32", "fp16", "bf16"], name
        for action in p._actions:  # every option explains itself
            assert action.help, (name, action.dest)
    assert _option(commands["fit"], "--resolution").metavar == "H"  # an image height
    assert _option(commands["export"], "--grid") is not None  # the marching-cubes grid is not --resolution


def test_device_auto_is_the_gpu_when_there_is_one(monkeypatch):
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") and resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert default_dtype(torch.device("cuda")) == torch.float16 and default_dtype(torch.device("cpu")) == torch.float32
    assert parse_dtype("bf16") == torch.bfloat16 and parse_dtype(None) == torch.float32
    for bad in ("gpu0", "tpu", "cuda:x"):
        with pytest.raises(Sv4dError, match="device"):
            resolve_device(bad)
    with pytest.raises(Sv4dError, match="dtype"):
        parse_dtype("int8")


def test_fit_runs_on_the_gpu_by_default(monkeypatch, tmp_path):
    """A GPU user who gives no --device gets the GPU (checked by faking one: the fit is not run)."""
    import sv4d.fit.run as fit_run

    seen = {}

    def fake_fit_set(source, out, opts, **kw):
        seen["device"] = opts.device
        raise Sv4dError("stop here")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fit_run, "fit_set", fake_fit_set)
    assert main(["fit", str(FOX_SMALL), "-o", str(tmp_path / "f"), "-q"]) == 2
    assert seen["device"] == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "argv",
    [
        ["fit", str(FOX_SMALL)],
        ["evaluate", str(FOX_SMALL), str(FOX_SMALL)],
        ["render", "missing.pt"],
        ["export", "missing.pt", "--mesh"],
        ["verify-golden", "missing"],
        ["train", "steps=1"],
        ["generate", "missing.gif", "-c", "missing.safetensors"],
        ["run", "missing.gif", "-c", "missing.safetensors"],
    ],
)
def test_asking_for_a_gpu_that_is_not_there_is_one_clear_error(argv, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ["-o", str(out)] if argv[0] not in ("verify-golden",) else []
    assert main([*argv, *extra, "--device", "cuda", "-q"]) == 2
    err = capsys.readouterr().err
    assert "sees no CUDA GPU" in err and "Traceback" not in err
    assert not out.exists()


def test_old_spellings_still_work_with_a_note(capsys):
    p = build_parser()
    a = p.parse_args(["export", "ck.pt", "--mesh", "--resolution", "40"])
    assert a.grid == 40 and "--resolution is now --grid" in capsys.readouterr().err
    a = p.parse_args(["evaluate", "p", "g", "--report", "r"])
    assert a.out == "r" and "--report is now -o/--out" in capsys.readouterr().err
    a = p.parse_args(["curate", "s", "--report", "r"])
    assert a.out == "r" and "--report is now -o/--out" in capsys.readouterr().err
    # --frames N used to be a count on generate, render and render-asset
    for argv, dest, flag in (
        (["generate", "c.mp4", "-c", "x", "--frames", "21"], "num_frames", "--num-frames"),
        (["render-asset", "a.glb", "--frames", "12"], "num_frames", "--num-frames"),
        (["render", "ck.pt", "--frames", "30"], "orbit_frames", "--orbit-frames"),
    ):
        a = p.parse_args(argv)
        assert isinstance(a.frames, LegacyCount)
        take_legacy_count(a, dest, flag)
        assert a.frames is None and getattr(a, dest) == int(argv[-1])
        assert f"is now {flag} {argv[-1]}" in capsys.readouterr().err
    a = p.parse_args(["render-asset", "a.glb", "--frames", "0-20:2"])
    assert a.frames == list(range(0, 21, 2)) and a.num_frames == 21


def test_frame_selections_parse_and_refuse_nonsense():
    assert index_list("0-20:5") == [0, 5, 10, 15, 20] and index_list("2,5-6") == [2, 5, 6]
    assert frames_or_count("7-7") == [7] and frames_or_count("7") == LegacyCount(7)
    for bad in ("a", "3-1", "0-4:0", "", "-2"):
        with pytest.raises(argparse.ArgumentTypeError):
            index_list(bad)


def test_numbers_that_are_not_finite_are_refused_before_any_work(capsys):
    for argv in (
        ["generate", "c.mp4", "-c", "x", "--min-cfg", "nan"],
        ["fit", "s", "--static-fraction", "inf"],
        ["render", "ck.pt", "--elevation", "nan"],
    ):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 2
        assert "finite" in capsys.readouterr().err


def test_version_help_and_python_m_entry_points():
    args = {"version": ["-m", "sv4d", "--version"], "help": ["-m", "sv4d.cli", "fit", "--help"]}
    procs = {k: subprocess.Popen([sys.executable, *a], stdout=subprocess.PIPE, text=True) for k, a in args.items()}
    out = {k: (p.communicate(timeout=120)[0], p.returncode) for k, p in procs.items()}  # both at once
    text, code = out["version"]
    assert code == 0 and text.strip() == f"sv4d {__version__}"
    text, code = out["help"]
    assert code == 0 and "--device" in text and "-o OUT" not in text and "-o PATH" in text


def test_clip_select_keeps_the_chosen_frames_timed_from_the_first():
    from sv4d.io.video import Clip

    frames = np.arange(5, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(4, 2).repeat(3, 3)
    clip = Clip(frames, np.arange(5) * 0.1, 10.0, "x")
    sub = clip.select([1, 3])
    assert sub.frames[:, 0, 0, 0].tolist() == [1, 3] and np.allclose(sub.times, [0.0, 0.2])
    with pytest.raises(Sv4dError, match="do not exist"):
        clip.select([5])

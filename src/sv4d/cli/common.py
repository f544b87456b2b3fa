"""What every ``sv4d`` sub-command shares: argument types and the shared flags, defined once.

Shared flags have one meaning on every command that takes them:

- ``--device``: ``auto`` (default: CUDA when PyTorch sees a GPU, else the CPU), ``cpu``, ``cuda``,
  ``cuda:N``; resolved by :func:`sv4d.devices.resolve_device` before any work starts;
- ``--dtype``: ``fp32`` / ``fp16`` / ``bf16``;
- ``--seed``: the random seed (the same seed gives the same output);
- ``-o/--out``: where the output goes (a folder, or a file where the command writes one file);
- ``--overwrite``: replace an existing output, and only once the new one is complete;
- ``-q/--quiet``: no progress bars or summaries (the output path is still printed);
- ``--frames``: a frame selection (``0,2,3``, ``0-20``, ``0-20:2``); a *number* of frames has its
  own flag (``--num-frames``, ``--orbit-frames``).

Old spellings keep working with a one-line note naming the new one (:func:`add_renamed`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..devices import DEVICE_CHOICES, DTYPE_CHOICES
from ..errors import Sv4dError

# ---------------------------------------------------------------------------------------------
# argument types


def _number(text: str, cast: type, ok: Callable[[Any], bool], rule: str) -> float | int:
    """``cast(text)`` if ``ok`` holds for it, else an argparse error saying ``rule`` and echoing ``text``."""
    try:
        v = cast(text)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"{rule}, got {text}")
    return v


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "must be at least 1")


def ratio(text: str) -> float:
    return _number(text, float, lambda v: 0.05 <= v <= 1.0, "must be between 0.05 and 1")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(text, float, lambda v: 0 < v < float("inf"), "must be a finite number > 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(text, float, lambda v: 0 <= v < float("inf"), "must be a finite number >= 0")


def finite_float(text: str) -> float:
    """Any finite number (NaN and infinities are refused)."""
    return _number(text, float, lambda v: abs(v) < float("inf"), "must be a finite number")


def index_list(text: str) -> list[int]:
    """'0,2,3' / '0-20' / '0-20:2' / '1,5-8' -> indices (ranges inclusive, optional step)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            rng, _, step = part.partition(":")
            if "-" in rng[1:]:
                a, b = rng.split("-", 1) if not rng.startswith("-") else (rng, "")
                lo, hi, st = int(a), int(b), int(step or 1)
                if hi < lo or st < 1:
                    raise ValueError
                out.extend(range(lo, hi + 1, st))
            else:
                out.append(int(rng))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected indices like 0,2,3 or 0-20 or 0-20:2, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"no indices in {text!r}")
    if min(out) < 0:
        raise argparse.ArgumentTypeError(f"indices must be >= 0, got {text!r}")
    return out


class LegacyCount(int):
    """``--frames N`` where the command's ``--frames`` used to be a count (see :func:`frames_or_count`)."""


def frames_or_count(text: str) -> list[int] | LegacyCount:
    """A frame selection; on commands where ``--frames`` used to be a count, a bare number ``N`` is
    read as that old count (:class:`LegacyCount`) and the command says so (write ``N-N`` for the
    single frame N)."""
    if re.fullmatch(r"\s*\d+\s*", text):
        return LegacyCount(_number(text.strip(), int, lambda v: v >= 1, "must be at least 1"))
    return index_list(text)


def key_values(items: list[str], what: str) -> dict:
    """``["a=1", "b=[2,3]"]`` -> ``{"a": 1, "b": [2, 3]}`` (values in JSON, else strings)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Sv4dError(f"{what} must look like KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def input_stem(source: str) -> str:
    """A name for the output of a clip: its file or folder name (the folder of a glob pattern)."""
    p = Path(source.split("*")[0].rstrip("/")) if "*" in source else Path(source)
    return (p.stem if p.suffix else p.name) or "clip"


def one_or_each(values: list[float] | None, default: float) -> float | list[float]:
    """A ``nargs="+"`` angle flag as the pipelines take it: one value for every view, a list of one
    per view, or ``default`` when the flag was not given."""
    if not values:
        return default
    return values[0] if len(values) == 1 else values


# ---------------------------------------------------------------------------------------------
# shared flags


def add_device(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "") -> None:
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"where to compute{what}: {DEVICE_CHOICES} (default auto: CUDA when available, else CPU)",
    )


def add_dtype(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None, what: str) -> None:
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default=default, help=what)


def add_seed(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: int, what: str = "") -> None:
    p.add_argument(
        "--seed",
        type=int,
        default=default,
        metavar="N",
        help=f"random seed; the same seed gives the same output{what} (default {default})",
    )


def add_out(p: argparse.ArgumentParser | argparse._ArgumentGroup, help: str, required: bool = False) -> None:
    p.add_argument("-o", "--out", default=None, required=required, metavar="PATH", help=help)


def add_overwrite(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "the output") -> None:
    p.add_argument(
        "--overwrite", action="store_true", help=f"replace {what} if it exists (only once the new one is complete)"
    )


def add_quiet(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")


def note(text: str) -> None:
    """A one-line note on standard error (renamed flags, choices made for the user)."""
    print(f"sv4d: note: {text}", file=sys.stderr)


class _Renamed(argparse.Action):
    """Stores into the new flag's destination and prints a one-line note naming the new flag."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        note(f"{option_string} is now {self.new}; the old spelling still works")
        setattr(namespace, self.dest, values)


def add_renamed(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """Keep ``old`` working as a hidden alias of the flag ``new`` (stored in ``dest``)."""
    p.add_argument(
        old, dest=dest, action=_Renamed, new=new, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs
    )


def take_legacy_count(args: argparse.Namespace, count_dest: str, count_flag: str) -> None:
    """When ``args.frames`` is an old-style count, move it to ``count_dest`` with a note."""
    if isinstance(args.frames, LegacyCount):
        note(
            f"--frames {int(args.frames)} as a number of frames is now {count_flag} {int(args.frames)} "
            f"(--frames selects frames, e.g. 0-20:2; the single frame N is N-N)"
        )
        setattr(args, count_dest, int(args.frames))
        args.frames = None


def say(args: argparse.Namespace) -> Callable[..., None]:
    """``print`` to standard error unless ``-q``."""
    return (lambda *a: None) if getattr(args, "quiet", False) else (lambda *a: print(*a, file=sys.stderr))

"""Argument types and small parsers the ``sv4d`` sub-commands share (argparse only)."""

from __future__ import annotations

import argparse
import json

from .errors import Sv4dError


def _number(text: str, cast: type, ok, rule: str) -> float | int:
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
    return _number(text, float, lambda v: v > 0, "must be positive")


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(text, float, lambda v: 0 <= v < float("inf"), "must be a finite number >= 0")


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
    return out


def key_values(items: list[str], what: str) -> dict:
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

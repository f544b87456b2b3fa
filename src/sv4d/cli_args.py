"""Argument types and small parsers the ``sv4d`` sub-commands share (argparse only)."""

from __future__ import annotations

import argparse
import json

from .errors import Sv4dError


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def ratio(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.05 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0.05 and 1, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


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

"""Plain JSON values from nested results (NumPy scalars unwrapped, non-finite floats as null)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """``x`` with dict keys as strings, tuples as lists, NumPy scalars as Python numbers and
    NaN / infinities as None, so ``json.dumps`` writes standard JSON."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x

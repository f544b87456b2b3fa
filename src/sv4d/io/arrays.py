"""Array inputs of the file writers: a numpy array from an array-like or a torch tensor."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..errors import Sv4dError

__all__ = ["as_numpy"]


def as_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy copy-or-view of an array-like or a (possibly GPU, possibly grad) torch tensor.

    ``name`` names the argument in the :class:`Sv4dError` raised for something that is not an
    array. torch is not imported here: a tensor can only exist once torch has been imported.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().to("cpu").numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise Sv4dError(f"{name}: cannot be read as an array ({e})") from e

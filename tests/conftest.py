import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository
DATA = Path(__file__).parent / "fixtures"  # small data the tests use (tests/<package>/ mirror src/sv4d/)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def data_dir() -> Path:
    return DATA


def read_manifest(name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    with open(DATA / name) as f:
        next(f)
        for line in f:
            key, shape, _ = line.rstrip("\n").split("\t")
            rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else ()))
    return rows

import os
import socket
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository
DATA = Path(__file__).parent / "fixtures"  # small data the tests use (tests/<package>/ mirror src/sv4d/)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="module")
def one_thread():
    """The tiny models run in a second on one thread; on a busy machine two threads can take ten times longer."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*a, **k):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def read_manifest(name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    with open(DATA / name) as f:
        next(f)
        for line in f:
            key, shape, _ = line.rstrip("\n").split("\t")
            rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else ()))
    return rows


def tiny_generation_checkpoint(path: Path, frames: int = 12, views: int = 4, **config) -> Path:
    """A random tiny model that can generate (it has the CLIP tower), saved as a safetensors
    checkpoint: ``frames`` x ``views`` per window, the default azimuths of the official preset
    with that many views (4: sv4d2, 8: sv4d2_8views; else tiny_config's); ``config`` goes to
    ``tiny_config`` (e.g. image_size=32, vae_downsample=4 for a smaller, faster model)."""
    from sv4d.checkpoint import save_model
    from sv4d.config import PRESETS, tiny_config
    from sv4d.models.sv4d import SV4DModel

    torch.manual_seed(0)
    preset = {4: PRESETS["sv4d2"], 8: PRESETS["sv4d2_8views"]}.get(views)
    cfg = tiny_config("tiny_gen", num_frames=frames, num_views=views, with_clip=True, **config)
    cfg = cfg.replace(azimuths_deg=preset.azimuths_deg) if preset else cfg
    return save_model(SV4DModel(cfg, include_unused=True), path)


def fill_hub_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str | None = None) -> Path:
    """Lay ``files`` (path in the repository -> local file) out in the Hub cache folder ``cache``
    (HF_HOME/hub) as huggingface_hub does: ``models--OWNER--NAME/blobs/<sha256>``,
    ``snapshots/<commit>/<path>`` a relative symlink to the blob, ``refs/main`` holding the
    commit hash. Returns the snapshot folder."""
    import hashlib

    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, src in files.items():
        data = Path(src).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # no newline, as the Hub client writes it
    return snapshot

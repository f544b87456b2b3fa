"""VAE latents and image embeddings cached on disk, so that an epoch does not re-encode.

The image encoder and the three conditioning VAE encoders are frozen during training, so
every image a :class:`~sv4d.train.data.MultiViewWindows` can show (its allowed views x all
frames of every set) is encoded once. One safetensors file per set holds

* ``embed``: (views, frames, D) image embeddings (embedder 0, the CLIP image tower);
* ``latent_<j>``: (views, frames, 4, h, w) unscaled posterior means of each *distinct*
  conditioning encoder ``j`` among embedders 1, 4 and 5 (the official file may carry three
  copies; identical weights are stored once).

The file name carries a digest of everything the numbers depend on (the encoder weights,
the image size, the views, the set's location, size and ``cameras.json`` time stamp), so one
cache folder can be shared between runs and a stale file is never read. Files are written to
a temporary name and renamed when complete.

The inference conditioner adds ``cond_noise_sigma`` (1e-5) pixel noise before encoding;
the cache encodes the clean images. That changes latents by about 1e-5 of their scale,
far below anything training can notice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import Sv4dError
from ..models.sv4d import SV4DModel
from .data import MultiViewWindows, WindowSpec, images_to_tensor

FORMAT = 1
SLOTS = (1, 4, 5)  # the conditioner's VAE embedders: concat (and targets), reference views, motion


def module_digest(module: torch.nn.Module) -> str:
    """A digest of a module's parameters and buffers (names, shapes, dtypes and values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class LatentCache:
    """Encodes (or finds) every image of ``dataset`` with ``model``'s frozen encoders.

    ``conditioning(specs)`` then returns ``(x0, c, uc)`` for a batch of windows exactly as
    :func:`sv4d.train.loop.window_conditioning` builds them from pixels.
    """

    def __init__(
        self,
        model: SV4DModel,
        dataset: MultiViewWindows,
        cache_dir: str | os.PathLike,
        *,
        batch_size: int = 16,
        progress: bool = True,
        build: bool = True,
    ) -> None:
        if not isinstance(dataset, MultiViewWindows):
            raise Sv4dError("latent caching needs a MultiViewWindows dataset")
        if model.cfg.clip is None:
            raise Sv4dError("latent caching needs a model with an image encoder (clip)")
        self.model, self.dataset = model, dataset
        self.dir = Path(cache_dir)
        self.batch_size = max(1, int(batch_size))
        emb = model.conditioner.embedders
        digests = {j: module_digest(emb[j]) for j in SLOTS}
        self.slot_key = {}  # embedder index -> tensor name in the files
        for j in SLOTS:
            first = next(i for i in SLOTS if digests[i] == digests[j])
            self.slot_key[j] = f"latent_{first}"
        self.weights = hashlib.blake2b(
            json.dumps([FORMAT, module_digest(emb[0]), [digests[j] for j in SLOTS]]).encode(), digest_size=8
        ).hexdigest()
        self.paths = [self._path(k) for k in range(len(dataset.sets))]
        self._files: dict[int, object] = {}
        self._pos = [{v: i for i, v in enumerate(dataset.allowed_views(k))} for k in range(len(dataset.sets))]
        if build:
            self.build(progress)

    # ------------------------------------------------------------------ files
    def _path(self, k: int) -> Path:
        s = self.dataset.sets[k]
        index = s.root / "cameras.json"
        stamp = index.stat().st_mtime_ns if index.exists() else 0
        key = json.dumps(
            [
                self.weights,
                self.dataset.S,
                str(Path(s.root).resolve()),
                s.num_views,
                s.num_frames,
                stamp,
                self.dataset.allowed_views(k),
            ]
        )
        digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        return self.dir / f"{Path(s.root).name}-{digest}.safetensors"

    def build(self, progress: bool = True) -> list[Path]:
        """Encode the sets whose file is missing; returns the paths of the new files."""
        todo = [k for k, p in enumerate(self.paths) if not p.is_file()]
        if not todo:
            return []
        total = sum(len(self.dataset.allowed_views(k)) * self.dataset.sets[k].num_frames for k in todo)
        bar = tqdm(total=total, desc="caching latents", unit="img", disable=not progress)
        written = []
        try:
            for k in todo:
                written.append(self._encode_set(k, bar))
        finally:
            bar.close()
        return written

    @torch.no_grad()
    def _encode_set(self, k: int, bar: tqdm) -> Path:
        from safetensors.torch import save_file

        ds, emb = self.dataset, self.model.conditioner.embedders
        dev = self.model.device
        views, nf = ds.allowed_views(k), ds.sets[k].num_frames
        pairs = [(v, f) for v in views for f in range(nf)]
        embeds, lats = [], {key: [] for key in set(self.slot_key.values())}
        for i in range(0, len(pairs), self.batch_size):
            chunk = pairs[i : i + self.batch_size]
            x = images_to_tensor(np.stack([ds._image(k, v, f) for v, f in chunk])).to(dev)
            embeds.append(self.model.conditioner.embed_images(x)[0].float().cpu())
            for key in lats:
                lats[key].append(emb[int(key.split("_")[1])](x).float().cpu())
            bar.update(len(chunk))
        tensors = {"embed": torch.cat(embeds).reshape(len(views), nf, -1).contiguous()}
        for key, parts in lats.items():
            z = torch.cat(parts)
            tensors[key] = z.reshape(len(views), nf, *z.shape[1:]).contiguous()
        path = self.paths[k]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        meta = {
            "sv4d_latent_cache": str(FORMAT),
            "set": str(ds.sets[k].root),
            "views": json.dumps(views),
            "image_size": str(ds.S),
        }
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    def _file(self, k: int):
        f = self._files.get(k)
        if f is None:
            from safetensors import safe_open

            if not self.paths[k].is_file():
                raise Sv4dError(f"latent cache file missing: {self.paths[k]} (call build())")
            f = safe_open(str(self.paths[k]), framework="pt")
            self._files[k] = f
        return f

    # ------------------------------------------------------------------ reads
    def _rows(self, name: str, k: int, views: Sequence[int], frames: Sequence[int]) -> torch.Tensor:
        """Rows frame-major (row t*len(views) + v) of tensor ``name`` of set ``k``."""
        sl = self._file(k).get_slice(name)
        pos = self._pos[k]
        try:
            return torch.stack([sl[pos[v] : pos[v] + 1, f : f + 1][0, 0] for f in frames for v in views])
        except KeyError as e:
            raise Sv4dError(f"view {e.args[0]} is not in the latent cache of set {k}") from None

    def latents(self, embedder: int, k: int, views: Sequence[int], frames: Sequence[int]) -> torch.Tensor:
        """Unscaled latents of embedder 1, 4 or 5: (len(frames)*len(views), 4, h, w), frame-major."""
        return self._rows(self.slot_key[embedder], k, views, frames)

    def embeddings(self, k: int, view: int, frames: Sequence[int]) -> torch.Tensor:
        """(len(frames), D) image embeddings of one view."""
        return self._rows("embed", k, [view], frames)

    @torch.no_grad()
    def conditioning(
        self, specs: Sequence[WindowSpec], device: torch.device | str
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """x0 (b*N, 4, h, w) scaled target latents and (c, uc) of ``b`` windows, rows ordered
        (window, frame, view), reference views kept (masking comes later)."""
        V = self.model.cfg.num_views
        cs, ucs, x0 = [], [], []
        for w in specs:
            k, inp, tv, fr = w.set_index, w.input_view, w.target_views, w.frames
            cond = self.latents(1, k, [inp], fr).to(device)
            c, uc = self.model.conditioner.assemble(
                self.embeddings(k, inp, fr)[None].to(device),
                cond.repeat_interleave(V, 0),
                self.latents(4, k, tv, fr[:1]).to(device),
                self.latents(5, k, [inp], fr).to(device),
                w.polar,
                w.azimuth,
                cond_mv=True,
            )
            cs.append(c)
            ucs.append(uc)
            x0.append(self.latents(1, k, tv, fr))
        cat = lambda ds: {key: torch.cat([d[key] for d in ds]) for key in ds[0]}  # noqa: E731
        return torch.cat(x0).to(device) * self.model.cfg.scale_factor, cat(cs), cat(ucs)

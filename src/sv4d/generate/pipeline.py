"""The generation pipeline: one clip in, V + 1 views x n frames out (spec section 5).

Build it once (``GenerationPipeline.from_checkpoint``) and call it on many clips::

    pipe = GenerationPipeline.from_checkpoint("sv4d2.safetensors", device="cuda", dtype="fp16")
    result = pipe("camel.gif", seed=23)
    result.save("out/camel")
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from einops import rearrange
from tqdm.auto import tqdm

from ..cameras import SV4D_FOV_DEG, Intrinsics, Rig, framing_distance, model_views, relative_angles
from ..checkpoint import load_model
from ..devices import default_dtype, parse_dtype, resolve_device
from ..diffusion.sampling import guidance, sample
from ..errors import Sv4dError
from ..io.video import Clip, read_clip
from ..models.sv4d import SV4DModel
from .preprocess import Preprocessed, preprocess_frames, threshold_mask
from .windows import Window, describe, plan_windows


@dataclass
class GenerationResult:
    """A generated multi-view video.

    images: (V + 1, n, S, S, 3) uint8 on white, view 0 = the preprocessed input;
    alpha: (V + 1, n, S, S) uint8 (view 0 from the input's alpha or mask, generated views
    from the white-background threshold); times: (n,) seconds; azimuths_deg,
    elevations_deg: V + 1 values; camera_distance and fov_deg: the orbit (``rig`` puts them
    together: the cameras of the multi-view set this result is written as).
    """

    images: np.ndarray
    alpha: np.ndarray
    times: np.ndarray
    fps: float
    azimuths_deg: list[float]
    elevations_deg: list[float]
    camera_distance: float
    fov_deg: float
    windows: list[Window]
    preprocessed: Preprocessed
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    @property
    def num_frames(self) -> int:
        return self.images.shape[1]

    @property
    def rig(self) -> Rig:
        """The set's cameras: every view on one orbit at ``camera_distance``, square images with the
        ``fov_deg`` field of view, and the frames' times."""
        return Rig.orbit(
            list(zip(self.elevations_deg, self.azimuths_deg)),
            self.camera_distance,
            Intrinsics.from_fov(self.fov_deg, self.images.shape[2]),
            self.times,
        )

    def save(
        self,
        out: str | os.PathLike,
        *,
        overwrite: bool = False,
        videos: bool = True,
        preview: bool = True,
        progress: bool = True,
    ) -> os.PathLike:
        """Write the output folder (see ``output.write_generation``); returns its path."""
        from .output import write_generation

        return write_generation(self, out, overwrite=overwrite, videos=videos, preview=preview, progress=progress)


def _for_window(callback: Callable[[int, dict], None] | None, index: int, count: int) -> Callable | None:
    """The sampler's step callback for window ``index`` of ``count``: adds the window to the step info."""
    if callback is None:
        return None
    return lambda step, info: callback(step, {**info, "window_index": index, "num_windows": count})


class GenerationPipeline:
    """SV4D 2.0 multi-view video generation with memory switches.

    device / dtype: where and in what precision the UNet, conditioner and CLIP run (the
    first-stage decoder always runs in float32, as the official script disables autocast
    for it). offload: keep sub-models on the CPU and move each to ``device`` only while
    it works. encode_chunk / decode_chunk: images per VAE call (the official 8 and 4).
    """

    def __init__(
        self,
        model: SV4DModel,
        *,
        device: str | torch.device = "auto",
        offload: bool = False,
        encode_chunk: int | None = 8,
        decode_chunk: int | None = 4,
        checkpoint: str | None = None,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.cfg = model.cfg
        self.device = resolve_device(device)
        self.offload = offload and self.device.type != "cpu"
        self.encode_chunk = encode_chunk
        self.decode_chunk = decode_chunk
        self.checkpoint = checkpoint
        self.model.first_stage_model.float()
        self.model.to("cpu" if self.offload else self.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        preset: str | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        offload: bool = False,
        encode_chunk: int | None = 8,
        decode_chunk: int | None = 4,
    ) -> GenerationPipeline:
        """Load an official (``sv4d2.safetensors``, ``sv4d2_8views.safetensors``) or
        sv4d-written checkpoint. device defaults to CUDA when available, else the CPU
        (``devices.resolve_device``); dtype to ``devices.default_dtype`` (fp16 on CUDA, fp32 elsewhere)."""
        dev = resolve_device(device)
        dt = default_dtype(dev) if dtype is None else parse_dtype(dtype)
        load_dev = "cpu" if offload else dev
        # the decoder runs in float32 (as the reference does): read its weights as float32, not
        # rounded to ``dt`` and converted back
        model = load_model(path, preset=preset, device=load_dev, dtype=dt, float32_prefixes=("first_stage_model.",))
        if model.cfg.clip is None:
            raise Sv4dError(
                f"{path} has no image encoder (it takes precomputed embeddings); generation "
                "needs a checkpoint with the CLIP image tower"
            )
        return cls(
            model,
            device=dev,
            offload=offload,
            encode_chunk=encode_chunk,
            decode_chunk=decode_chunk,
            checkpoint=str(path),
        )

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _on_device(self, module: torch.nn.Module) -> Iterator[None]:
        if not self.offload:
            yield
            return
        module.to(self.device)
        try:
            yield
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def read(
        self,
        source: str | os.PathLike | Clip,
        *,
        num_frames: int | None = None,
        frames: Sequence[int] | None = None,
        fps: float | None = None,
        spread: bool = False,
        start: float = 0.0,
    ) -> Clip:
        """The clip to generate from: read with ``read_clip``'s options (``num_frames`` is its
        ``max_frames``), then the frame selection ``frames`` (indices) when given."""
        if isinstance(frames, int):  # the old meaning of ``frames``: a count
            warnings.warn(
                "frames=N as a count is now num_frames=N; frames selects frames", DeprecationWarning, stacklevel=3
            )
            num_frames, frames = frames, None
        clip = (
            source
            if isinstance(source, Clip)
            else read_clip(source, max_frames=num_frames, fps=fps, spread=spread, start=start)
        )
        return clip if frames is None else clip.select(frames)

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _window(
        self,
        frames: torch.Tensor,
        cond_view: torch.Tensor,
        conditioned: bool,
        polar: torch.Tensor,
        azim: torch.Tensor,
        scales: torch.Tensor | None,
        steps: int,
        gen: torch.Generator,
        progress: bool,
        callback: Callable[[int, dict], None] | None = None,
    ) -> tuple[torch.Tensor, list[float]]:
        """One sampling pass.

        frames: (T, 3, S, S) input-view frames; cond_view: (V, 3, S, S) reference views
        (zeros and ``conditioned=False`` for the first window); images in [-1, 1].
        Returns the generated views (T, V, 3, S, S) in [-1, 1] (CPU, float32) and the
        seconds spent conditioning, sampling and decoding.
        """
        T, V, h = self.cfg.num_frames, self.cfg.num_views, self.cfg.latent_size
        dev = self.device
        noise = torch.randn((T * V, 4, h, h), generator=gen)  # CPU generator: same on any device
        t0 = self._sync()
        with self._on_device(self.model.conditioner):
            f = frames.to(dev)
            c, uc = self.model.conditioner(
                f,
                f,
                cond_view.to(dev),
                f,
                polar,
                azim,
                cond_mv=conditioned,
                generator=gen,
                encode_chunk=self.encode_chunk,
                frames_repeat=V,  # each input frame is encoded once, not V times
            )
        t1 = self._sync()
        with self._on_device(self.model.model):
            z = sample(self.model, c, uc, noise, num_steps=steps, scales=scales, callback=callback, progress=progress)
        del c, uc
        t2 = self._sync()
        with self._on_device(self.model.first_stage_model):
            x = self.model.decode(z, self.decode_chunk).cpu()
        t3 = self._sync()
        x = torch.clamp((x + 1.0) / 2.0, 0.0, 1.0) * 2.0 - 1.0  # official: samples * 2 - 1
        return rearrange(x, "(t v) c h w -> t v c h w", t=T, v=V), [t1 - t0, t2 - t1, t3 - t2]

    # ------------------------------------------------------------------ main entry
    @torch.no_grad()
    def __call__(
        self,
        source: str | os.PathLike | Clip,
        *,
        num_frames: int | None = None,
        frames: Sequence[int] | None = None,
        fps: float | None = None,
        spread: bool = False,
        start: float = 0.0,
        mask: str = "auto",
        crop: str = "union",
        frame_ratio: float = 0.9,
        box: tuple[int, int, int, int] | None = None,
        azimuths: Sequence[float] | None = None,
        elevations: float | Sequence[float] = 0.0,
        input_elevation: float | None = None,
        steps: int | None = None,
        seed: int = 23,
        generator: torch.Generator | None = None,
        guider: str | None = None,
        min_scale: float | None = None,
        max_scale: float | None = None,
        windows: str = "even",
        progress: bool = True,
        callback: Callable[[int, dict], None] | None = None,
    ) -> GenerationResult:
        """Generate the V novel-view videos of a clip.

        source: a video file, a folder of frames, a glob pattern, or a ``Clip``. Reading
        options (num_frames, fps, spread, start) are those of ``read_clip``, then ``frames``
        selects frames by index (see :meth:`read`); preprocessing
        options (mask, crop, frame_ratio, box) those of ``preprocess_frames``. azimuths:
        V degrees relative to the input view; elevations: one value or V values. windows:
        the window schedule, ``"even"`` or ``"official"`` (see ``windows.py``). generator: a CPU
        ``torch.Generator`` that supplies all noise, in place of one seeded with ``seed``.
        callback(step, info): after every sampler step of every window, info holding the
        sampler's ``x``, ``denoised``, ``sigma`` and ``num_steps`` plus ``window_index`` and ``num_windows``.
        """
        # 1. Check inputs: the views and the sampling options, before any work.
        cfg = self.cfg
        T, V, S = cfg.num_frames, cfg.num_views, cfg.image_size
        views = model_views(V, cfg.azimuths_deg, azimuths, elevations, input_elevation)
        el, az = [v.elevation_deg for v in views], [v.azimuth_deg for v in views]
        if steps is not None and steps < 1:
            raise Sv4dError(f"steps must be >= 1, got {steps}")
        if generator is not None and generator.device.type != "cpu":
            raise Sv4dError(f"generator must be a CPU torch.Generator (noise is drawn on the CPU): {generator.device}")
        schedule = windows  # the name ``windows`` holds the planned windows below
        # 2. Read the clip and plan its windows of T frames (a short clip is padded with its last
        #    frame), before preprocessing, so that a schedule that cannot work fails first.
        t_start = time.perf_counter()
        clip = self.read(source, num_frames=num_frames, frames=frames, fps=fps, spread=spread, start=start)
        n = len(clip.frames)
        windows, padded = plan_windows(n, T, schedule, views=V)
        # 3. Preprocess it (foreground, square crop, white background); the frame count stays n.
        pre = preprocess_frames(
            clip.frames, S, mask=mask, crop=crop, frame_ratio=frame_ratio, box=box, progress=progress
        )
        t_pre = time.perf_counter() - t_start

        # 4. Prepare the conditioning shared by every window: camera angles, guidance, noise generator.
        images = pre.to_tensor()  # (n, 3, S, S) in [-1, 1]
        if padded > n:
            images = torch.cat([images, images[-1:].expand(padded - n, -1, -1, -1)], 0)
        out = np.zeros((padded, V, S, S, 3), np.uint8)
        # Generated views kept in float for frames that later windows start at.
        # needed[i]: the starts of conditioned windows after the i-th (a start may repeat)
        needed = [{v.start for v in windows[i + 1 :] if v.conditioned} for i in range(len(windows))]
        refs: dict[int, torch.Tensor] = {}
        polar, azim = relative_angles(elevations_deg=el, azimuths_deg=az, num_frames=T)
        scales = guidance(self.model, T, V, guider, min_scale, max_scale)
        n_steps = steps or cfg.sampler.num_steps
        gen = torch.Generator().manual_seed(seed) if generator is None else generator
        dev = self.device
        stage_times = []
        # 5. Denoise window by window; later windows are conditioned on views already generated.
        bar = tqdm(windows, desc=f"windows ({describe(windows)})", unit="window", disable=not progress)
        for i, w in enumerate(bar):
            cond_view = refs[w.start] if w.conditioned else torch.zeros(V, 3, S, S)
            step_cb, frames_w = _for_window(callback, i, len(windows)), images[w.start : w.start + T]
            x, stages = self._window(
                frames_w, cond_view, w.conditioned, polar, azim, scales, n_steps, gen, progress, step_cb
            )
            out[w.start : w.start + T] = (((x + 1.0) / 2.0) * 255.0).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
            refs = {s: r for s, r in refs.items() if s in needed[i]}
            for s in needed[i]:  # keep the latest views later windows will be conditioned on
                if w.start <= s < w.start + T:
                    refs[s] = x[s - w.start].clone()
            stage_times.append(stages)
        bar.close()

        # 6. Assemble the output: the input view first, masks of the generated views, the settings.
        gen_imgs = out[:n].transpose(1, 0, 2, 3, 4)  # (V, n, S, S, 3)
        all_imgs = np.concatenate([pre.images[None], gen_imgs], 0)
        gen_alpha = threshold_mask(gen_imgs).astype(np.uint8) * 255
        all_alpha = np.concatenate([pre.alpha[None], gen_alpha], 0)
        settings = {
            "source": clip.source,
            "checkpoint": self.checkpoint,
            "model": cfg.name,
            "frames_per_window": T,
            "views_per_window": V,
            "image_size": S,
            "num_frames": n,
            "window_schedule": schedule,
            "windows": [[w.start, w.start + T - 1] for w in windows],
            "padded_frames": padded,
            "azimuths_deg": az,
            "elevations_deg": el,
            "seed": seed if generator is None else None,
            "generator_initial_seed": None if generator is None else generator.initial_seed(),
            "steps": n_steps,
            "guider": guider or cfg.sampler.guider,
            "min_scale": cfg.sampler.min_scale if min_scale is None else min_scale,
            "max_scale": cfg.sampler.max_scale if max_scale is None else max_scale,
            "device": str(dev),
            "dtype": str(self.model.unet.dtype).replace("torch.", ""),
            "offload": self.offload,
            "mask": pre.mask,
            "crop": pre.crop,
            "frame_ratio": pre.frame_ratio,
            "crops_row0_col0_halfside_canvas": [list(c) for c in pre.crops],
            "notes": pre.notes,
            "seconds_preprocess": round(t_pre, 3),
            "seconds_per_window": [round(sum(st), 3) for st in stage_times],
            "seconds_condition_sample_decode": [[round(t, 3) for t in st] for st in stage_times],
        }
        return GenerationResult(
            images=all_imgs,
            alpha=all_alpha,
            times=clip.times.astype(np.float64),
            fps=clip.fps,
            azimuths_deg=az,
            elevations_deg=el,
            camera_distance=framing_distance(frame_ratio),
            fov_deg=SV4D_FOV_DEG,
            windows=windows,
            preprocessed=pre,
            settings=settings,
        )

"""``SV4DPipeline``: generation with the shape of a diffusers pipeline.

    import sv4d, torch
    pipe = sv4d.SV4DPipeline.from_pretrained("stabilityai/sv4d2.0", torch_dtype=torch.float16).to("cuda")
    out = pipe("camel.gif", num_inference_steps=50, generator=torch.Generator().manual_seed(23))
    out.frames                  # (T, V, H, W, 3) float in [0, 1]: the V generated views of every frame
    out.result.save("out/camel")  # the whole multi-view set, as `sv4d generate` writes it

It is a thin front to :class:`~sv4d.generate.pipeline.GenerationPipeline` (which does all the
work) with the conventions of diffusers: ``from_pretrained`` loads on the CPU in float32
unless told otherwise, ``.to(device, dtype)`` moves it, ``generator`` supplies the noise and
``callback_on_step_end(pipe, step_index, timestep, callback_kwargs)`` runs after every step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..devices import parse_dtype, resolve_device
from ..errors import Sv4dError
from ..io.hub import HF_SCHEME, HUB_MODELS, HubFile, is_repo_id, parse_hf_uri
from ..io.video import Clip, kept_indices
from .pipeline import GenerationPipeline, GenerationResult

DEFAULT_REPO = "stabilityai/sv4d2.0"
#: ``variant`` -> the file of a repository laid out as stabilityai/sv4d2.0
VARIANTS: dict[str | None, str] = {None: "sv4d2.safetensors", "8views": "sv4d2_8views.safetensors"}
OUTPUT_TYPES = ("np", "pil", "pt")
#: the tensors ``callback_on_step_end`` may ask for (``callback_on_step_end_tensor_inputs``)
CALLBACK_TENSOR_INPUTS = ("latents", "denoised")

StepEndCallback = Callable[["SV4DPipeline", int, torch.Tensor, dict[str, Any]], "dict[str, Any] | None"]


@dataclass
class SV4DPipelineOutput:
    """frames: the generated views, ``output_type`` "np": (T, V, H, W, 3) float32 in [0, 1];
    "pil": T lists of V PIL images; "pt": a (T, V, 3, H, W) float tensor in [0, 1]. (The input view
    is not among them; ``result.images[0]`` holds it.) result: the full
    :class:`~sv4d.generate.pipeline.GenerationResult` (``result.save(out)`` writes the set)."""

    frames: Any
    result: GenerationResult


def checkpoint_spec(
    name_or_path: str | os.PathLike = DEFAULT_REPO,
    *,
    variant: str | None = None,
    revision: str | None = None,
    weight_name: str | None = None,
) -> str:
    """What ``from_pretrained`` loads, as a spec of :func:`sv4d.io.hub.resolve_checkpoint`.

    A local file is itself; a local folder (a clone of the repository) holds the variant's file;
    a Hub repository id ``OWNER/NAME`` names the variant's file in it (``sv4d2.safetensors``,
    ``variant="8views"``: ``sv4d2_8views.safetensors``; ``weight_name`` names another); a
    known name (``sv4d2``) or an ``hf://`` address is passed on.
    """
    if variant not in VARIANTS:
        raise Sv4dError(f"unknown variant {variant!r}; use one of {[v for v in VARIANTS if v]} or None")
    filename = weight_name or VARIANTS[variant]
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    chosen = variant is not None or weight_name is not None
    if path.is_dir():
        return str(path / filename)
    if path.is_file() or text.startswith(HF_SCHEME):
        if text.startswith(HF_SCHEME):
            parse_hf_uri(text)  # a bad address is refused here, before any work
        if chosen or revision is not None:
            raise Sv4dError(f"{text} names one file: variant=, weight_name= and revision= apply to a repository id")
        return text
    if text in HUB_MODELS:
        repo, default_file = HUB_MODELS[text]
        if not chosen and revision is None:
            return text
        return HubFile(repo, filename if chosen else default_file, revision).uri
    if is_repo_id(text) and not text.endswith(".safetensors"):
        return HubFile(text, filename, revision).uri
    return text  # a local path that does not exist: resolve_checkpoint says so


def _cast(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Convert the weights (parameters and saved buffers) to ``dtype``, as loading in ``dtype`` does,
    except the first-stage decoder, which stays float32. Unsaved constants keep their precision."""
    saved = set(model.state_dict())
    keep = {id(m) for m in model.first_stage_model.modules()}
    for prefix, m in model.named_modules():
        if id(m) in keep:
            continue
        for _, p in m.named_parameters(recurse=False):
            if p.is_floating_point():
                p.data = p.data.to(dtype)
        for name, b in m.named_buffers(recurse=False):
            if b.is_floating_point() and (f"{prefix}.{name}" if prefix else name) in saved:
                setattr(m, name, b.to(dtype))


class SV4DPipeline:
    """SV4D 2.0 multi-view video generation, diffusers-style. ``pipeline`` is the wrapped
    :class:`~sv4d.generate.pipeline.GenerationPipeline`."""

    def __init__(self, pipeline: GenerationPipeline) -> None:
        self.pipeline = pipeline
        self._progress = True

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = DEFAULT_REPO,
        *,
        variant: str | None = None,
        torch_dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
        weight_name: str | None = None,
        **kwargs: Any,
    ) -> SV4DPipeline:
        """Load a pipeline.

        name_or_path: a Hub repository id (default ``stabilityai/sv4d2.0``), a name or
        ``hf://`` address of :func:`~sv4d.io.hub.resolve_checkpoint`, a local .safetensors
        file or a local folder holding the repository's files. variant: None (4 views,
        ``sv4d2.safetensors``) or ``"8views"`` (``sv4d2_8views.safetensors``). As in diffusers,
        the model loads on the CPU in float32 unless ``device`` / ``torch_dtype`` say otherwise.
        Other keywords (``preset``, ``offload``, ``encode_chunk``, ``decode_chunk``) go to
        :meth:`GenerationPipeline.from_checkpoint`.
        """
        spec = checkpoint_spec(name_or_path, variant=variant, revision=revision, weight_name=weight_name)
        dtype = torch.float32 if torch_dtype is None else parse_dtype(torch_dtype)
        inner = GenerationPipeline.from_checkpoint(
            spec, device="cpu" if device is None else device, dtype=dtype, **kwargs
        )
        return cls(inner)

    # ------------------------------------------------------------------ placement
    @property
    def model(self) -> torch.nn.Module:
        return self.pipeline.model

    @property
    def config(self):
        """The model's :class:`~sv4d.config.ModelConfig` (frames and views per window, sizes)."""
        return self.pipeline.cfg

    @property
    def device(self) -> torch.device:
        """Where the model computes (with offload: where each sub-model goes while it runs)."""
        return self.pipeline.device

    @property
    def dtype(self) -> torch.dtype:
        """The precision of the UNet and conditioner (the first-stage decoder is always float32)."""
        return self.pipeline.model.unet.dtype

    def to(self, device: str | torch.device | torch.dtype | None = None, dtype: str | torch.dtype | None = None):
        """Move to ``device`` and/or convert to ``dtype`` (``pipe.to("cuda")``, ``pipe.to(torch.float16)``,
        ``pipe.to("cuda", torch.float16)``); returns self. With model CPU offload on, a new accelerator
        becomes the one sub-models visit; ``"cpu"`` turns offload off."""
        if isinstance(device, torch.dtype):
            if dtype is not None:
                raise Sv4dError("to(): give the device first, then the dtype")
            device, dtype = None, device
        p = self.pipeline
        if dtype is not None:
            dt = parse_dtype(dtype)
            if dt != self.dtype:
                _cast(p.model, dt)
        if device is not None:
            p.device = resolve_device(device)
            p.offload = p.offload and p.device.type != "cpu"
            p.model.to("cpu" if p.offload else p.device)
        return self

    def enable_model_cpu_offload(self, gpu_id: int | None = None, device: str | torch.device | None = None) -> None:
        """Keep the sub-models on the CPU and move each to the accelerator only while it runs
        (``GenerationPipeline(offload=True)``). device: default the pipeline's accelerator, else
        ``cuda``; gpu_id picks its index."""
        p = self.pipeline
        target = device if device is not None else (p.device if p.device.type != "cpu" else "cuda")
        dev = resolve_device(target)
        if gpu_id is not None:
            dev = resolve_device(torch.device(dev.type, gpu_id))
        if dev.type == "cpu":
            raise Sv4dError("model CPU offload moves sub-models to an accelerator while they run; give a GPU device")
        p.device, p.offload = dev, True
        p.model.to("cpu")
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    def set_progress_bar_config(self, disable: bool = False, **_: Any) -> None:
        """Show (default) or hide the progress bars."""
        self._progress = not disable

    # ------------------------------------------------------------------ generation
    def _step_callback(
        self, callback: StepEndCallback | None, tensor_inputs: Sequence[str]
    ) -> Callable[[int, dict], None] | None:
        if callback is None:
            return None
        unknown = [k for k in tensor_inputs if k not in CALLBACK_TENSOR_INPUTS]
        if unknown:
            raise Sv4dError(
                f"callback_on_step_end_tensor_inputs: unknown {unknown}; choose from {CALLBACK_TENSOR_INPUTS}"
            )

        def step(i: int, info: dict) -> None:
            tensors = {"latents": info["x"], "denoised": info["denoised"]}
            kwargs = {k: tensors[k] for k in tensor_inputs}
            kwargs.update(window_index=info["window_index"], num_windows=info["num_windows"])
            out = callback(self, i, info["sigma"], kwargs)
            new = (out or {}).get("latents")
            if new is not None and new is not info["x"]:
                info["x"].copy_(new)  # the sampler goes on from the latents the callback returns

        return step

    def __call__(
        self,
        clip: str | os.PathLike | Clip,
        *,
        num_inference_steps: int | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        azimuths: Sequence[float] | None = None,
        elevations: float | Sequence[float] | None = None,
        num_frames: int | None = None,
        min_guidance_scale: float | None = None,
        max_guidance_scale: float | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        **generation_kwargs: Any,
    ) -> SV4DPipelineOutput | tuple:
        """Generate the novel-view videos of ``clip`` (a video file, folder of frames, glob or ``Clip``).

        num_inference_steps: sampler steps (default the model's, 50). generator: a CPU
        ``torch.Generator`` supplying all noise (default: one seeded with ``seed``, 23).
        callback_on_step_end(pipe, step_index, timestep, callback_kwargs) runs after every step
        of every window: step_index counts the window's steps from 0, timestep is the step's noise
        level sigma, callback_kwargs holds the tensors named by ``callback_on_step_end_tensor_inputs``
        (``latents``, ``denoised``) and ``window_index`` / ``num_windows``; returning
        ``{"latents": x}`` replaces the latents. azimuths / elevations: the novel views' cameras
        (degrees; default the model's azimuths at elevation 0). num_frames: frames of the clip to
        keep (default all; the first ones, or with ``spread=True`` spread over it).
        min/max_guidance_scale: the guidance range (default the model's). Every other keyword of
        :meth:`GenerationPipeline.__call__` (``seed``, ``frames``, ``fps``, ``mask``, ``crop``,
        ``guider``, ...) is passed on. Returns :class:`SV4DPipelineOutput`,
        or ``(frames,)`` when ``return_dict`` is False.
        """
        if output_type not in OUTPUT_TYPES:
            raise Sv4dError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if isinstance(generator, (list, tuple)):
            if len(generator) != 1:
                raise Sv4dError(f"one generator per call (a batch is one clip), got {len(generator)}")
            generator = generator[0]
        if min_guidance_scale is not None:
            generation_kwargs["min_scale"] = min_guidance_scale
        if max_guidance_scale is not None:
            generation_kwargs["max_scale"] = max_guidance_scale
        generation_kwargs.setdefault("progress", self._progress)
        if isinstance(clip, Clip) and num_frames is not None:  # as read_clip does for a file
            clip, num_frames = _keep_frames(clip, num_frames, generation_kwargs.get("spread", False)), None
        result = self.pipeline(
            clip,
            num_frames=num_frames,
            azimuths=azimuths,
            elevations=0.0 if elevations is None else elevations,
            steps=num_inference_steps,
            generator=generator,
            callback=self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs),
            **generation_kwargs,
        )
        frames = _frames(result, output_type)
        return SV4DPipelineOutput(frames=frames, result=result) if return_dict else (frames,)


def _keep_frames(clip: Clip, n: int, spread: bool) -> Clip:
    """The first ``n`` frames of a clip, or with ``spread`` ``n`` spread evenly over it (``read_clip``'s rule)."""
    if n < 1:
        raise Sv4dError(f"num_frames must be at least 1 (got {n})")
    return clip.select(kept_indices(len(clip.frames), n, spread))


def _frames(result: GenerationResult, output_type: str):
    generated = result.images[1:].transpose(1, 0, 2, 3, 4)  # (T, V, H, W, 3) uint8, input view left out
    if output_type == "pil":
        from PIL import Image

        return [[Image.fromarray(view) for view in frame] for frame in generated]
    frames = generated.astype(np.float32) / 255.0
    if output_type == "pt":
        return torch.from_numpy(frames).permute(0, 1, 4, 2, 3)
    return frames

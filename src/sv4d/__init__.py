"""sv4d: Stable Video 4D 2.0 in plain PyTorch.

    import sv4d, torch
    model = sv4d.load("sv4d2.safetensors", device="cuda", dtype=torch.float16)

``load`` returns an :class:`~sv4d.models.sv4d.SV4DModel` ready to condition and decode; the
sampling loop is :mod:`sv4d.diffusion.sampling` (see the README). ``GenerationPipeline`` runs
the whole video-to-multi-view job::

    pipe = sv4d.GenerationPipeline.from_checkpoint("sv4d2.safetensors", device="cuda")
    pipe("camel.gif").save("out/camel")

``SV4DPipeline`` is the same with the shape of a diffusers pipeline (weights from the Hugging
Face Hub)::

    pipe = sv4d.SV4DPipeline.from_pretrained("stabilityai/sv4d2.0", torch_dtype=torch.float16).to("cuda")
    frames = pipe("camel.gif").frames  # (T, V, H, W, 3) in [0, 1]
"""

from __future__ import annotations

from .checkpoint import build_model
from .checkpoint import load_model as load
from .checkpoint import save_model as save
from .config import (
    PRESETS,
    CLIPVisionConfig,
    ModelConfig,
    SamplerConfig,
    UNetConfig,
    VAEConfig,
    get_preset,
    tiny_config,
)
from .errors import Sv4dError
from .models.sv4d import SV4DModel

__all__ = [
    "load",
    "save",
    "build_model",
    "SV4DModel",
    "ModelConfig",
    "UNetConfig",
    "VAEConfig",
    "CLIPVisionConfig",
    "SamplerConfig",
    "PRESETS",
    "get_preset",
    "tiny_config",
    "Sv4dError",
    "GenerationPipeline",
    "SV4DPipeline",
    "read_clip",
    "read_multiview",
    "run",
    "fit",
    "export",
]


def __getattr__(name: str):  # lazy: the video and image libraries load only when used
    if name == "GenerationPipeline":
        from .generate.pipeline import GenerationPipeline

        return GenerationPipeline
    if name == "SV4DPipeline":
        from .generate.api import SV4DPipeline

        return SV4DPipeline
    if name == "run":
        from .workflow.run import run

        return run
    if name == "export":
        from .fit.outputs import export

        return export
    if name == "fit":  # the package, which called is sv4d.fit.fit
        import importlib

        return importlib.import_module(".fit", __name__)
    if name == "read_clip":
        from .io.video import read_clip

        return read_clip
    if name == "read_multiview":
        from .io.multiview import read_multiview

        return read_multiview
    raise AttributeError(f"module 'sv4d' has no attribute {name!r}")


__version__ = "0.1.0"

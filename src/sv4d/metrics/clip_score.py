"""CLIP-S between images: cosine similarity of CLIP ViT-B/32 image embeddings.

The image tower is OpenAI's CLIP ViT-B/32 (224 x 224 input, 32 x 32 patches, width 768,
12 layers, 12 heads, 512-d output, QuickGELU), built from
:class:`sv4d.models.clip.OpenCLIPVisionTransformer`. Images get CLIP's standard
preprocessing: shorter side resized to 224 (bicubic, antialiased), centre crop to
224 x 224, CLIP mean/std normalisation. The embeddings are L2-normalised, so the score of
an image pair is the cosine of its two embeddings, 1 for identical images.

The weights cannot be downloaded here. :func:`load_clip` reads

* OpenAI's ``ViT-B-32.pt`` (a TorchScript archive) or an OpenCLIP ``ViT-B-32`` file
  (``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors``): keys
  ``visual.{class_embedding, positional_embedding, proj, conv1.weight, ln_pre.*,
  transformer.resblocks.{i}.*, ln_post.*}``;
* a Hugging Face ``CLIPModel`` (``model.safetensors`` / ``pytorch_model.bin``): keys
  ``vision_model.*`` and ``visual_projection.weight``, converted to the layout above.

OpenAI's weights (and Hugging Face's ``openai/clip-vit-base-patch32``) use QuickGELU;
OpenCLIP's LAION-trained ViT-B-32 uses the exact GELU. Unless told, :func:`load_clip`
takes the activation from the ``config.json`` (Hugging Face) or ``open_clip_config.json``
(OpenCLIP) beside the weights when there is one, and QuickGELU otherwise.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CLIPVisionConfig
from ..errors import Sv4dError
from ..models.clip import ACTIVATIONS, CLIP_MEAN, CLIP_STD, OpenCLIPVisionTransformer
from .weights import find_weight_file, load_checked, read_state_dict

__all__ = [
    "CLIP_FILES",
    "CLIP_VIT_B32",
    "CLIPScorer",
    "hf_to_open_clip",
    "load_clip",
]

#: The OpenAI CLIP ViT-B/32 image tower (the text-tower fields are unused here).
CLIP_VIT_B32 = CLIPVisionConfig(
    image_size=224, patch_size=32, width=768, layers=12, heads=12, mlp_ratio=4.0, output_dim=512
)

#: File names (glob patterns) looked for, in order, in a directory passed to :func:`load_clip`.
CLIP_FILES: tuple[str, ...] = (
    "ViT-B-32.pt",
    "open_clip_pytorch_model.bin",
    "open_clip_model.safetensors",
    "model.safetensors",
    "pytorch_model.bin",
    "*ViT-B-32*",
    "*vit-b-32*",
    "*clip*.pt",
    "*clip*.bin",
    "*clip*.safetensors",
)


class CLIPScorer(nn.Module):
    """CLIP image embeddings and the CLIP-S similarity of image pairs.

    State dict: ``visual.*`` in the OpenAI / OpenCLIP layout.

    Args:
        cfg: tower sizes (ViT-B/32 unless for tests).
        act: MLP activation, ``"quick_gelu"`` (OpenAI) or ``"gelu"``.
        init: small random initialisation; ``False`` leaves the parameters uninitialised
            (faster, for weights loaded right after).
    """

    def __init__(self, cfg: CLIPVisionConfig = CLIP_VIT_B32, act: str = "quick_gelu", init: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        if init:
            self.visual = OpenCLIPVisionTransformer(cfg, act)
            self.visual.reset_parameters()
        else:
            with torch.device("meta"):
                visual = OpenCLIPVisionTransformer(cfg, act)
            self.visual = visual.to_empty(device="cpu")
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def act(self) -> str:
        return self.visual.act

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP's standard preprocessing of (N, 3, H, W) images in [0, 1], any H, W.

        The shorter side is resized to ``image_size`` (the longer one to
        ``int(image_size * long / short)``) with antialiased bicubic interpolation, the
        centre ``image_size`` square is cropped (offsets rounded as torchvision's
        ``CenterCrop`` does), values are clamped to [0, 1] and normalised with the CLIP
        mean/std. Computed in float32 (float64 stays float64).

        Returns:
            (N, 3, image_size, image_size) on the parameters' device.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise Sv4dError(f"CLIP-S expects (N, 3, H, W) images, got {tuple(images.shape)}")
        x = images.to(self.mean.device)
        if x.dtype != torch.float64:
            x = x.float()
        s = self.cfg.image_size
        h, w = x.shape[-2:]
        if (h, w) != (s, s):
            nh, nw = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
            if (nh, nw) != (h, w):
                x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = int(round((nh - s) / 2.0)), int(round((nw - s) / 2.0))
            x = x[..., top : top + s, left : left + s]
        x = x.clamp(0.0, 1.0)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images in [0, 1] -> (N, output_dim) float32 unit-length embeddings."""
        x = self.preprocess(images)
        z = self.visual(x.to(self.visual.conv1.weight.dtype)).float()
        return F.normalize(z, dim=-1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N,) cosine similarity (CLIP-S) of the embeddings of ``a[i]`` and ``b[i]``.

        ``a`` and ``b`` are (N, 3, H, W) images in [0, 1]; their sizes may differ.
        """
        if a.ndim != 4 or b.ndim != 4 or a.shape[0] != b.shape[0]:
            raise Sv4dError(f"CLIP-S needs two batches of N images, got {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape == b.shape:
            za, zb = self.embed(torch.cat([a, b])).chunk(2)
        else:
            za, zb = self.embed(a), self.embed(b)
        return (za * zb).sum(dim=-1)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

_HF_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)$")
_HF_LAYER_NAMES = {
    "self_attn.out_proj.weight": "attn.out_proj.weight",
    "self_attn.out_proj.bias": "attn.out_proj.bias",
    "layer_norm1.weight": "ln_1.weight",
    "layer_norm1.bias": "ln_1.bias",
    "layer_norm2.weight": "ln_2.weight",
    "layer_norm2.bias": "ln_2.bias",
    "mlp.fc1.weight": "mlp.c_fc.weight",
    "mlp.fc1.bias": "mlp.c_fc.bias",
    "mlp.fc2.weight": "mlp.c_proj.weight",
    "mlp.fc2.bias": "mlp.c_proj.bias",
}
_HF_NAMES = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
}


def hf_to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower of a Hugging Face ``CLIPModel`` state dict in the OpenAI / OpenCLIP
    layout (``visual.*``).

    q, k, v projections are stacked (in that order) into ``attn.in_proj_weight/bias``;
    ``visual_projection.weight`` (output_dim, width) is transposed into ``proj``. Keys
    outside the image tower are dropped; parts that are missing stay missing.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in _HF_NAMES:
            out[f"visual.{_HF_NAMES[key]}"] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t().contiguous()
        else:
            m = _HF_LAYER.match(key)
            if not m:
                continue
            i, rest = m.groups()
            prefix = f"visual.transformer.resblocks.{i}."
            if rest in _HF_LAYER_NAMES:
                out[prefix + _HF_LAYER_NAMES[rest]] = value
            else:
                mq = re.match(r"^self_attn\.([qkv])_proj\.(weight|bias)$", rest)
                if mq:
                    qkv.setdefault((prefix, mq.group(2)), {})[mq.group(1)] = value
    for (prefix, kind), parts in qkv.items():
        if len(parts) == 3:
            out[f"{prefix}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def _visual_state(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], str]:
    """(``visual.*`` state, layout name: "hf" or "openai")."""
    if any(k.startswith("vision_model.") for k in state):
        return hf_to_open_clip(state), "hf"
    if any(k.startswith("visual.") for k in state):
        return {k: v for k, v in state.items() if k.startswith("visual.")}, "openai"
    if "conv1.weight" in state and "class_embedding" in state:  # a bare image tower
        return {f"visual.{k}": v for k, v in state.items()}, "openai"
    raise Sv4dError(f"{source} holds no CLIP image tower (no visual.* or vision_model.* keys)")


def _check_architecture(state: dict[str, torch.Tensor], cfg: CLIPVisionConfig, source: str) -> None:
    """A clear message for a CLIP of another size (ViT-B/16, ViT-L/14 ...)."""
    conv = state.get("visual.conv1.weight")
    if conv is None or conv.ndim != 4:
        return  # load_checked reports it
    width, patch = conv.shape[0], conv.shape[-1]
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    if (width, patch, layers) != (cfg.width, cfg.patch_size, cfg.layers):
        raise Sv4dError(
            f"{source} holds a CLIP image tower of width {width}, patch size {patch} and {layers} "
            f"layers; CLIP-S uses ViT-B/{cfg.patch_size} (width {cfg.width}, {cfg.layers} layers)"
        )


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _activation_beside(file: Path, layout: str) -> str | None:
    """The MLP activation named by a config file beside the weights, if any."""
    if layout == "hf":
        cfg = _read_json(file.parent / "config.json")
        if cfg is None:
            return None
        vision = cfg.get("vision_config", cfg)
        if not isinstance(vision, dict) or cfg.get("model_type", "clip") not in ("clip", "clip_vision_model"):
            return None
        act = vision.get("hidden_act", "quick_gelu")  # transformers' CLIP default
        return act if act in ("quick_gelu", "gelu") else None
    cfg = _read_json(file.parent / "open_clip_config.json")
    model_cfg = cfg.get("model_cfg") if cfg else None
    if not isinstance(model_cfg, dict):
        return None
    return "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"


def load_clip(path: str | os.PathLike, device: str | torch.device = "cpu", act: str | None = None) -> CLIPScorer:
    """The CLIP ViT-B/32 scorer with published weights, in eval mode, gradients off.

    Args:
        path: a weight file, or a directory holding one of :data:`CLIP_FILES`: OpenAI's
            TorchScript ``ViT-B-32.pt``, an OpenCLIP state dict, or a Hugging Face
            ``CLIPModel`` state dict (torch pickle or safetensors).
        device: where to put the network.
        act: ``"quick_gelu"`` or ``"gelu"``; ``None`` takes it from a Hugging Face
            ``config.json`` / OpenCLIP ``open_clip_config.json`` beside the weights, else
            QuickGELU (OpenAI's weights).

    Raises:
        Sv4dError: no or unreadable file, no CLIP image tower in it, a CLIP of another size,
            or wrong shapes.
    """
    if act is not None and act not in ACTIVATIONS:
        raise Sv4dError(f"unknown CLIP activation {act!r}: expected one of {', '.join(ACTIVATIONS)}")
    file = find_weight_file(path, CLIP_FILES, "CLIP ViT-B/32")
    state, layout = _visual_state(read_state_dict(file), str(file))
    _check_architecture(state, CLIP_VIT_B32, str(file))
    if act is None:
        act = _activation_beside(file, layout) or "quick_gelu"
    model = CLIPScorer(CLIP_VIT_B32, act, init=False)
    load_checked(model, state, "CLIP ViT-B/32 image tower", str(file))
    return model.to(device).eval().requires_grad_(False)

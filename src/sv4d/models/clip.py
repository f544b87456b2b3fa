"""The OpenCLIP ViT-H/14 image tower used as SV4D 2.0's conditioner embedder 0.

The reference wraps OpenCLIP's ``VisionTransformer`` in a "frozen image embedder"
that first resizes the [-1, 1] input to 224 x 224 (kornia's antialiased bicubic
resize), maps it to [0, 1] and normalises it with the CLIP mean/std, and then
returns the projected, *not* L2-normalised, class-token embedding.

Parameter names follow the official checkpoint (relative to
``conditioner.embedders.0.``)::

    open_clip.model.visual.{class_embedding, positional_embedding, proj, conv1.weight,
                            ln_pre.*, transformer.resblocks.{i}.*, ln_post.*}

and, with ``include_unused=True``, the text-tower leftovers the official file still
carries (``open_clip.model.{positional_embedding, text_projection, logit_scale,
token_embedding.weight, ln_final.*}``); those are never used.

Everything works with float32, float16 and bfloat16 parameters and can be built on
the ``meta`` device and filled with ``load_state_dict(..., assign=True)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CLIPVisionConfig
from ..errors import Sv4dError

__all__ = [
    "ACTIVATIONS",
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIPImageEmbedder",
    "OpenCLIPVisionTransformer",
    "ResidualAttentionBlock",
    "MultiheadSelfAttention",
    "antialias_sigma",
    "gaussian_kernel1d",
    "gaussian_blur2d",
    "resize_antialiased_bicubic",
]

#: OpenCLIP's image normalisation constants (RGB).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

_LN_EPS = 1e-5


# ---------------------------------------------------------------------------
# Preprocessing: kornia-compatible antialiased bicubic resize
# ---------------------------------------------------------------------------


def antialias_sigma(in_size: int, out_size: int) -> float | None:
    """Gaussian sigma of the antialiasing blur along one axis, or ``None`` for no blur.

    kornia uses ``sigma = max((in/out - 1) / 2, 0.001)`` on *both* axes as soon as
    either axis is downscaled. On an axis that is not downscaled that gives a
    3-tap kernel with sigma 0.001, whose outer weights underflow to exactly 0, i.e. an
    identity; so here such an axis simply gets no blur.
    """
    factor = in_size / out_size
    if factor <= 1.0 or in_size == 1:
        return None
    return max((factor - 1.0) / 2.0, 0.001)


def gaussian_kernel1d(sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel as kornia builds it for its antialiasing.

    Size ``ks = int(max(4 * sigma, 3))`` forced odd; taps at ``arange(ks) - ks // 2``;
    weights ``exp(-x^2 / (2 sigma^2))`` divided by their sum. Computed in float32.

    Returns:
        (ks,) float32 tensor.
    """
    ks = int(max(2.0 * 2 * sigma, 3))
    if ks % 2 == 0:
        ks += 1
    s = torch.tensor(float(sigma), dtype=torch.float32, device=device)
    x = torch.arange(ks, dtype=torch.float32, device=device) - float(ks // 2)
    g = torch.exp(-x.pow(2) / (2 * s.pow(2)))
    return g / g.sum()


def gaussian_blur2d(x: torch.Tensor, sigma_y: float | None, sigma_x: float | None) -> torch.Tensor:
    """Separable Gaussian blur with reflect borders (x first, then y, as kornia does).

    Args:
        x: (B, C, H, W) floating tensor.
        sigma_y: sigma along H, or ``None`` for none.
        sigma_x: sigma along W, or ``None`` for none.

    Returns:
        (B, C, H, W) tensor of the same dtype.
    """
    c = x.shape[1]
    if sigma_x is not None:
        k = gaussian_kernel1d(sigma_x, x.device).to(x.dtype)
        p = k.numel() // 2
        x = F.pad(x, (p, p, 0, 0), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, k.numel()), groups=c)
    if sigma_y is not None:
        k = gaussian_kernel1d(sigma_y, x.device).to(x.dtype)
        p = k.numel() // 2
        x = F.pad(x, (0, 0, p, p), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, k.numel(), 1), groups=c)
    return x


def resize_antialiased_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Reproduce ``kornia.geometry.resize(x, size, "bicubic", align_corners=True, antialias=True)``.

    When either axis is downscaled, a Gaussian blur (see :func:`antialias_sigma` and
    :func:`gaussian_kernel1d`) runs first; then bicubic interpolation with
    ``align_corners=True``. An input already of ``size`` is returned unchanged.

    Args:
        x: (B, C, H, W) floating tensor.
        size: (h, w) output size.

    Returns:
        (B, C, h, w) tensor.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if max(h / size[0], w / size[1]) > 1.0:
        x = gaussian_blur2d(x, antialias_sigma(h, size[0]), antialias_sigma(w, size[1]))
    return F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=True)


# ---------------------------------------------------------------------------
# The vision transformer
# ---------------------------------------------------------------------------


def _layer_norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm computed in float32 (as the reference's fp32 weights under autocast do) and cast
    back to ``x``'s dtype (eps 1e-5)."""
    return F.layer_norm(x.float(), ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps).to(x.dtype)


class MultiheadSelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter layout.

    ``in_proj_weight`` (3*width, width) holds the q, k, v projections stacked in that
    order; head ``h`` uses channels ``h*head_dim : (h+1)*head_dim``; scale
    ``1/sqrt(head_dim)``; then ``out_proj``.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise Sv4dError(f"CLIP width {width} is not divisible by heads {heads}")
        self.width = width
        self.heads = heads
        self.head_dim = width // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.normal_(self.out_proj.weight, std=self.width**-0.5)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, width) -> (B, N, width)."""
        b, n, _ = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(1, 2).reshape(b, n, self.width)
        return self.out_proj(o)


#: MLP activations: ``"gelu"`` (exact erf GELU, OpenCLIP's default and SV4D's tower) and
#: ``"quick_gelu"`` (``x * sigmoid(1.702 x)``, the OpenAI CLIP models).
ACTIVATIONS: tuple[str, ...] = ("gelu", "quick_gelu")


def _check_act(act: str) -> str:
    if act not in ACTIVATIONS:
        raise Sv4dError(f"unknown CLIP activation {act!r}: expected one of {', '.join(ACTIVATIONS)}")
    return act


class _MLP(nn.Module):
    """``c_fc`` -> activation (exact erf GELU by default, or QuickGELU) -> ``c_proj``."""

    def __init__(self, width: int, hidden: int, act: str = "gelu") -> None:
        super().__init__()
        self.act = _check_act(act)
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.c_fc.weight, std=self.c_fc.in_features**-0.5)
        nn.init.zeros_(self.c_fc.bias)
        nn.init.normal_(self.c_proj.weight, std=self.c_proj.in_features**-0.5)
        nn.init.zeros_(self.c_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, width) -> (B, N, width)."""
        h = self.c_fc(x)
        h = F.gelu(h) if self.act == "gelu" else h * torch.sigmoid(1.702 * h)
        return self.c_proj(h)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: str = "gelu") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=_LN_EPS)
        self.attn = MultiheadSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=_LN_EPS)
        self.mlp = _MLP(width, int(width * mlp_ratio), act)

    def reset_parameters(self) -> None:
        for ln in (self.ln_1, self.ln_2):
            nn.init.ones_(ln.weight)
            nn.init.zeros_(ln.bias)
        self.attn.reset_parameters()
        self.mlp.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, width) -> (B, N, width)."""
        x = x + self.attn(_layer_norm(self.ln_1, x))
        x = x + self.mlp(_layer_norm(self.ln_2, x))
        return x


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, act: str = "gelu") -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio, act) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.resblocks:
            x = blk(x)
        return x


class OpenCLIPVisionTransformer(nn.Module):
    """OpenCLIP's ``VisionTransformer`` (class-token pooling, projection, no L2 norm).

    Input (B, 3, image_size, image_size), already normalised; output (B, output_dim).

    Args:
        cfg: tower sizes.
        act: MLP activation, ``"gelu"`` (OpenCLIP, SV4D's tower) or ``"quick_gelu"``
            (OpenAI CLIP). A constructor argument rather than a config field, so that
            checkpoint configs stay as they are.
    """

    def __init__(self, cfg: CLIPVisionConfig, act: str = "gelu") -> None:
        super().__init__()
        self.act = _check_act(act)
        if cfg.image_size % cfg.patch_size:
            raise Sv4dError(f"CLIP image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        self.cfg = cfg
        self.grid = cfg.image_size // cfg.patch_size
        w = cfg.width
        # Parameters first, then submodules: this is the checkpoint's key order.
        self.class_embedding = nn.Parameter(torch.empty(w))
        self.positional_embedding = nn.Parameter(torch.empty(self.grid * self.grid + 1, w))
        self.proj = nn.Parameter(torch.empty(w, cfg.output_dim))
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.ln_pre = nn.LayerNorm(w, eps=_LN_EPS)
        self.transformer = _Transformer(w, cfg.layers, cfg.heads, cfg.mlp_ratio, act)
        self.ln_post = nn.LayerNorm(w, eps=_LN_EPS)

    def reset_parameters(self) -> None:
        scale = self.cfg.width**-0.5
        nn.init.normal_(self.class_embedding, std=scale)
        nn.init.normal_(self.positional_embedding, std=scale)
        nn.init.normal_(self.proj, std=scale)
        fan_in = 3 * self.cfg.patch_size**2
        nn.init.normal_(self.conv1.weight, std=fan_in**-0.5)
        for ln in (self.ln_pre, self.ln_post):
            nn.init.ones_(ln.weight)
            nn.init.zeros_(ln.bias)
        for blk in self.transformer.resblocks:
            blk.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images, S = image_size -> (B, output_dim) embeddings."""
        s = self.cfg.image_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (s, s):
            raise Sv4dError(f"CLIP tower expects (B, 3, {s}, {s}) input, got {tuple(x.shape)}")
        x = x.to(self.conv1.weight.dtype)
        x = self.conv1(x)  # (B, width, grid, grid)
        b = x.shape[0]
        x = x.flatten(2).transpose(1, 2)  # (B, grid*grid, width), row-major patches
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + grid*grid, width)
        x = x + self.positional_embedding.to(x.dtype)
        x = _layer_norm(self.ln_pre, x)
        x = self.transformer(x)
        pooled = _layer_norm(self.ln_post, x[:, 0])  # (B, width)
        return pooled @ self.proj.to(pooled.dtype)  # (B, output_dim)


class _OpenCLIPModel(nn.Module):
    """Holds ``visual`` and, optionally, the never-used text-tower leftovers."""

    def __init__(self, cfg: CLIPVisionConfig, include_unused: bool) -> None:
        super().__init__()
        self.include_unused = include_unused
        if include_unused:
            self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.text_width))
            self.text_projection = nn.Parameter(torch.empty(cfg.text_width, cfg.output_dim))
            self.logit_scale = nn.Parameter(torch.empty(()))
        self.visual = OpenCLIPVisionTransformer(cfg)
        if include_unused:
            self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
            self.ln_final = nn.LayerNorm(cfg.text_width, eps=_LN_EPS)

    def reset_parameters(self) -> None:
        self.visual.reset_parameters()
        if self.include_unused:
            nn.init.normal_(self.positional_embedding, std=0.01)
            nn.init.normal_(self.text_projection, std=self.text_projection.shape[0] ** -0.5)
            nn.init.constant_(self.logit_scale, math.log(1 / 0.07))
            nn.init.normal_(self.token_embedding.weight, std=0.02)
            nn.init.ones_(self.ln_final.weight)
            nn.init.zeros_(self.ln_final.bias)


class _OpenCLIPHolder(nn.Module):
    def __init__(self, cfg: CLIPVisionConfig, include_unused: bool) -> None:
        super().__init__()
        self.model = _OpenCLIPModel(cfg, include_unused)


class CLIPImageEmbedder(nn.Module):
    """SV4D 2.0 conditioner embedder 0: preprocessing + OpenCLIP image tower.

    ``forward(images)``: (B, 3, H, W) images in [-1, 1], any H, W ->
    (B, output_dim) class-token embeddings (1024 for ViT-H/14), not L2-normalised,
    in the parameters' dtype.

    Args:
        cfg: tower sizes.
        include_unused: also create the text-tower leftovers that the official
            checkpoint carries, so that it loads strictly. They are never used.
    """

    def __init__(self, cfg: CLIPVisionConfig, include_unused: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.open_clip = _OpenCLIPHolder(cfg, include_unused)
        # Always real CPU tensors (even under a ``torch.device("meta")`` context), since
        # ``load_state_dict`` never fills non-persistent buffers.
        self.register_buffer(
            "mean",
            torch.tensor(CLIP_MEAN, dtype=torch.float32, device="cpu").view(1, 3, 1, 1),
            persistent=False,
        )
        self.register_buffer(
            "std",
            torch.tensor(CLIP_STD, dtype=torch.float32, device="cpu").view(1, 3, 1, 1),
            persistent=False,
        )
        self.reset_parameters()

    @property
    def visual(self) -> OpenCLIPVisionTransformer:
        """The image tower (``open_clip.model.visual``)."""
        return self.open_clip.model.visual

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the tower's parameters."""
        return self.visual.conv1.weight.dtype

    def reset_parameters(self) -> None:
        """Small random initialisation (works on the ``meta`` device)."""
        self.open_clip.model.reset_parameters()

    def _norm_constants(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.mean, self.std
        if mean.is_meta and not x.is_meta:
            mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return mean.to(x.device, x.dtype), std.to(x.device, x.dtype)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Reference preprocessing.

        Antialiased bicubic resize to (image_size, image_size) (kornia-compatible,
        ``align_corners=True``), then ``(x + 1) / 2`` and CLIP mean/std normalisation.
        float16/bfloat16 inputs are processed in float32.

        Args:
            images: (B, 3, H, W) in [-1, 1].

        Returns:
            (B, 3, image_size, image_size), float32 for half inputs, else input dtype.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise Sv4dError(f"CLIP embedder expects (B, 3, H, W) images, got {tuple(images.shape)}")
        x = images
        if x.dtype in (torch.float16, torch.bfloat16) or not x.is_floating_point():
            x = x.float()
        s = self.cfg.image_size
        x = resize_antialiased_bicubic(x, (s, s))
        x = (x + 1.0) / 2.0
        mean, std = self._norm_constants(x)
        return (x - mean) / std

    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, image_size, image_size) preprocessed images -> (B, output_dim), parameter dtype."""
        return self.visual(x.to(self.dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1] -> (B, output_dim) embeddings."""
        return self.encode_preprocessed(self.preprocess(images))

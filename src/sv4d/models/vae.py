"""The KL autoencoder: encoder (+ quant_conv, posterior mean) and decoder.

Images are (B, 3, H, W) in [-1, 1]; latents (B, z_channels, H/f, W/f) with
f = 2**(len(ch_mult) - 1). Key names follow the reference ``Encoder``/``Decoder``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..config import VAEConfig
from .layers import GroupNorm32


def _norm(c: int) -> nn.GroupNorm:
    return GroupNorm32(32, c, eps=1e-6)  # computed in float32 also when the encoders run in fp16/bf16


class VAEResnetBlock(nn.Module):
    """GN, swish, conv, GN, swish, dropout, conv; 1x1 ``nin_shortcut`` when channels change."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class VAEAttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions (1x1 conv projections)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = _norm(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        hn = self.norm(x)
        q, k, v = (rearrange(m(hn), "b c h w -> b 1 (h w) c") for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(rearrange(out, "b 1 (h w) c -> b c h w", h=h, w=w))


class _Down(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Up(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.block_1 = VAEResnetBlock(c, c)
        self.attn_1 = VAEAttnBlock(c)
        self.block_2 = VAEResnetBlock(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, 2*z_channels, H/f, W/f) moments (mean, logvar)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        in_mult = (1,) + tuple(cfg.ch_mult)
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            level = nn.Module()
            cin, cout = cfg.ch * in_mult[i], cfg.ch * mult
            level.block = nn.ModuleList(
                [VAEResnetBlock(cin if j == 0 else cout, cout) for j in range(cfg.num_res_blocks)]
            )
            level.attn = nn.ModuleList()
            if i != len(cfg.ch_mult) - 1:
                level.downsample = _Down(cout)
            self.down.append(level)
        c = cfg.ch * cfg.ch_mult[-1]
        self.mid = _Mid(c)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, out_ch, h*f, w*f); no post_quant_conv (first stage)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        c = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, c, 3, padding=1)
        self.mid = _Mid(c)
        up = []
        for i in reversed(range(len(cfg.ch_mult))):
            level = nn.Module()
            cout = cfg.ch * cfg.ch_mult[i]
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(VAEResnetBlock(c, cout))
                c = cout
            level.block = nn.ModuleList(blocks)
            level.attn = nn.ModuleList()
            if i != 0:
                level.upsample = _Up(c)
            up.insert(0, level)
        self.up = nn.ModuleList(up)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAEEncoderModeOnly(nn.Module):
    """Conditioning encoder (reference ``AutoencoderKLModeOnly``): Encoder, quant_conv,
    posterior mean. ``include_unused`` also builds the decoder and post_quant_conv that the
    official checkpoint carries but inference never runs.

    encode: (B, 3, H, W) in [-1, 1] -> (B, z_channels, H/f, W/f) unscaled latents.
    """

    def __init__(self, cfg: VAEConfig, include_unused: bool = False) -> None:
        super().__init__()
        self.z_channels = cfg.z_channels
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.z_channels, 1)
        if include_unused:
            self.decoder = Decoder(cfg)
            self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def encode(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        dtype = self.quant_conv.weight.dtype
        outs = []
        step = chunk or x.shape[0]
        for i in range(0, x.shape[0], step):
            moments = self.quant_conv(self.encoder(x[i : i + step].to(dtype)))
            outs.append(moments[:, : self.z_channels])
        return torch.cat(outs, 0)

    forward = encode


class FirstStage(nn.Module):
    """The first-stage model: only a decoder (keys ``decoder.*``)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.decoder = Decoder(cfg)

    def decode(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """z: (B, z_channels, h, w) *already divided by the scale factor*; returns [-1, 1]-ish images."""
        dtype = self.decoder.conv_in.weight.dtype
        step = chunk or z.shape[0]
        return torch.cat([self.decoder(z[i : i + step].to(dtype)) for i in range(0, z.shape[0], step)], 0)

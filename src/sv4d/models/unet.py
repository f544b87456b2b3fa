"""The SV4D 2.0 video UNet (reference: ``SpatialUNetModelWithTime`` with the sv4d2 config).

Batch layout (spec section 0): every per-image tensor has ``b*N`` rows with
``N = T*V`` and row index ``(bi*T + ti)*V + vi`` -- view fastest. In einops terms the
row axis is ``(b t v)``. ``b`` is 2 under classifier-free guidance (uncond first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..config import UNetConfig
from .layers import (
    BasicTransformerBlock,
    MixFactor,
    TimeMixBlock,
    normalization,
    timestep_embedding,
)


class ResBlock(nn.Module):
    """Plain ResBlock; ``dims=2`` (Conv2d 3x3) or ``dims=3`` (Conv3d with ``kernel``).

    Keys ``in_layers.{0,2}``, ``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection``.
    x: (B, Cin, h, w) or (B, Cin, n, h, w); emb_out added after the first conv must be
    broadcastable to the conv output (the caller reshapes it for dims=3).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        dims: int = 2,
        kernel: tuple[int, ...] = (3, 3),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        padding = tuple(k // 2 for k in kernel)
        self.dims = dims
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), conv(channels, out_channels, kernel, padding=padding)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            normalization(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            conv(out_channels, out_channels, kernel, padding=padding),
        )
        self.skip_connection = nn.Identity() if channels == out_channels else conv(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb_out_shape_fn, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + emb_out_shape_fn(self.emb_layers(emb).to(h.dtype))
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class VideoResBlock(ResBlock):
    """2-D ResBlock, then a temporal (Conv3d) ResBlock over the flattened N = T*V axis,
    blended by ``time_mixer``: ``alpha * spatial + (1 - alpha) * temporal``.

    x: (b*N, Cin, h, w), emb: (b*N, E). Returns (b*N, Cout, h, w).
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int, cfg: UNetConfig):
        super().__init__(channels, emb_channels, out_channels, 2, (3, 3), cfg.dropout)
        self.time_mix_blocks = ResBlock(
            out_channels, emb_channels, out_channels, 3, tuple(cfg.time_kernel_size), cfg.dropout
        )
        self.time_mixer = MixFactor(0.0)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_images: int) -> torch.Tensor:  # type: ignore[override]
        xs = super().forward(x, lambda e: e[..., None, None], emb)
        z = rearrange(xs, "(b n) c h w -> b c n h w", n=num_images)
        zt = self.time_mix_blocks(z, lambda e: rearrange(e, "(b n) c -> b c n 1 1", n=num_images), emb)
        out = self.time_mixer(z, zt)
        return rearrange(out, "b c n h w -> (b n) c h w")


class SpatialViewMotionTransformer(nn.Module):
    """One attention layer ("ST3"): spatial, then camera (view), then motion (frame) attention.

    x: (b*T*V, C, h, w) rows ``(b t v)``; emb: (b*T*V, E) the UNet's global embedding;
    context: (b, T, context_dim) per-frame image embeddings;
    cond_view: (b*V, motion_context_dim, h0, w0) latents of the reference views.
    b, T and V are read from ``context`` and ``cond_view`` (as the reference does).
    """

    def __init__(self, channels: int, cfg: UNetConfig) -> None:
        super().__init__()
        c = channels
        heads, dh = c // cfg.num_head_channels, cfg.num_head_channels
        self.view_attention = cfg.view_attention
        self.max_period = cfg.max_period
        self.norm = normalization(c, eps=1e-6)
        self.proj_in = nn.Linear(c, c)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(c, heads, dh, cfg.context_dim, cfg.dropout)])
        self.proj_out = nn.Linear(c, c)
        self.time_mix_blocks = nn.ModuleList([TimeMixBlock(c, heads, dh, cfg.context_dim, cfg.dropout)])
        self.motion_blocks = nn.ModuleList([TimeMixBlock(c, heads, dh, cfg.motion_context_dim, cfg.dropout)])
        self.time_mix_time_embed = nn.Sequential(nn.Linear(cfg.adm_in_channels, 4 * c), nn.SiLU(), nn.Linear(4 * c, c))
        self.time_mix_motion_embed = nn.Sequential(nn.Linear(c, 4 * c), nn.SiLU(), nn.Linear(4 * c, c))
        self.time_mixer = MixFactor(0.0)
        self.time_mixer_motion = MixFactor(0.0)
        # Stage-1 training (static 3-D data) switches the motion stage off: x passes through.
        self.motion_enabled = cfg.motion_attention

    # -- the camera stage in its three token groupings --------------------------------
    def _camera_stage(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: (b, T, V, P, C) with the view embedding already added; returns the block output."""
        b, T, V, P, C = x.shape
        block = self.time_mix_blocks[0]
        if self.view_attention == "grouped":
            # Reference use_3d_attention=True: rows r = (bi*V + vi)*P + p, sequence over
            # frames; the block regroups rows as (g, k), g = r // V, k = r % V, and attends
            # over k -- V consecutive flattened (view, position) tokens of one frame.
            seq = rearrange(x, "b t v p c -> (b v p) t c")
            seq = rearrange(seq, "(g k) t c -> (g t) k c", k=V)
            # Context rows (bi, ti', p): sequence row (g*T + ti) reads frame
            # ((g*T + ti) // P) % T of batch element (g*T + ti) // (T*P).
            ctx = repeat(context, "b t d -> (b t p) 1 d", p=P)
            out = block(seq, ctx)
            out = rearrange(out, "(g t) k c -> (g k) t c", t=T)
            return rearrange(out, "(b v p) t c -> b t v p c", b=b, v=V)
        if self.view_attention == "per_pixel":
            seq = rearrange(x, "b t v p c -> (b t p) v c")
            ctx = repeat(context, "b t d -> (b t p) 1 d", p=P)
            out = block(seq, ctx)
            return rearrange(out, "(b t p) v c -> b t v p c", b=b, t=T)
        # joint: all V*P tokens of a frame attend to each other
        seq = rearrange(x, "b t v p c -> (b t) (v p) c")
        ctx = rearrange(context, "b t d -> (b t) 1 d")
        out = block(seq, ctx)
        return rearrange(out, "(b t) (v p) c -> b t v p c", b=b, v=V)

    def forward(
        self,
        x_in: torch.Tensor,
        emb: torch.Tensor,
        context: torch.Tensor,
        cond_view: torch.Tensor,
    ) -> torch.Tensor:
        b, T = context.shape[:2]
        V = cond_view.shape[0] // b
        _, C, h, w = x_in.shape
        dtype = x_in.dtype

        x = self.norm(x_in)
        x = self.proj_in(rearrange(x, "n c h w -> n (h w) c"))  # (b*T*V, P, C)

        # spatial attention; context[bi, ti] for every view of that frame
        spatial_ctx = repeat(context, "b t d -> (b t v) 1 d", v=V)
        x = self.transformer_blocks[0](x, spatial_ctx)
        x = rearrange(x, "(b t v) p c -> b t v p c", b=b, t=T)

        # camera stage: view embedding from the global embedding of frame 0
        emb0 = rearrange(emb, "(b t v) e -> b t v e", b=b, t=T)[:, 0]
        e_view = self.time_mix_time_embed(emb0.to(dtype))  # (b, V, C)
        y = self._camera_stage(x + e_view[:, None, :, None, :], context)
        x = self.time_mixer(x, y)

        # motion stage: sequences over frames, context = reference-view latent at the pixel
        if self.motion_enabled:
            frames = torch.arange(T, device=x.device)
            e_frame = self.time_mix_motion_embed(timestep_embedding(frames, C, self.max_period).to(dtype))  # (T, C)
            cv = F.interpolate(cond_view.to(dtype), size=(h, w), mode="bilinear", align_corners=False)
            motion_ctx = rearrange(cv, "(b v) c h w -> (b v h w) 1 c", b=b)
            seq = rearrange(x + e_frame[None, :, None, None, :], "b t v p c -> (b v p) t c")
            y = self.motion_blocks[0](seq, motion_ctx)
            y = rearrange(y, "(b v p) t c -> b t v p c", b=b, v=V)
            x = self.time_mixer_motion(x, y)

        x = self.proj_out(rearrange(x, "b t v p c -> (b t v) p c"))
        return x_in + rearrange(x, "n (h w) c -> n c h w", h=h, w=w)


class Downsample(nn.Module):
    """Conv 3x3, stride 2, padding 1 (key ``op``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 then conv 3x3 (key ``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.ModuleList):
    """One input/middle/output block: a list of layers applied in order."""

    def forward(self, h, emb, context, cond_view, num_images, trace=None, name=""):  # type: ignore[override]
        for j, layer in enumerate(self):
            if isinstance(layer, VideoResBlock):
                h = layer(h, emb, num_images)
            elif isinstance(layer, SpatialViewMotionTransformer):
                h = layer(h, emb, context, cond_view)
            else:
                h = layer(h)
            if trace is not None:
                trace[f"{name}.{j}"] = h
        if trace is not None:
            trace[name] = h
        return h


class SV4DUNet(nn.Module):
    """The denoising network ``F`` (keys under ``model.diffusion_model.``).

    forward inputs (b = 1, or 2 under CFG; N = T*V):
      x: (b*N, in_channels, h, w) -- noisy latents (already times c_in) then concat latents
      timesteps: (b*N,) -- c_noise = 0.25 ln(sigma)
      context: (b, T, context_dim)
      y: (b*N, adm_in_channels) -- [sigma_cond | polar | azimuth] embeddings
      cond_view: (b*V, motion_context_dim, h, w)
    returns (b*N, out_channels, h, w).
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        #: training switch: recompute each block's activations in the backward pass instead of
        #: keeping them (the same gradients; full-size training does not fit in memory without it)
        self.gradient_checkpointing = False
        mc = cfg.model_channels
        ted = cfg.time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        self.label_emb = nn.Sequential(
            nn.Sequential(nn.Linear(cfg.adm_in_channels, ted), nn.SiLU(), nn.Linear(ted, ted))
        )

        def attn_layer(ch: int) -> SpatialViewMotionTransformer:
            return SpatialViewMotionTransformer(ch, cfg)

        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(cfg.in_channels, mc, 3, padding=1)])])
        chans = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [VideoResBlock(ch, ted, mult * mc, cfg)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(attn_layer(ch))
                self.input_blocks.append(Stage(layers))
                chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(Stage([Downsample(ch)]))
                chans.append(ch)
                ds *= 2
        self.middle_block = Stage([VideoResBlock(ch, ted, ch, cfg), attn_layer(ch), VideoResBlock(ch, ted, ch, cfg)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [VideoResBlock(ch + chans.pop(), ted, mc * mult, cfg)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(attn_layer(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1))

    @property
    def dtype(self) -> torch.dtype:
        return self.out[2].weight.dtype

    def attention_layers(self) -> list[SpatialViewMotionTransformer]:
        return [m for m in self.modules() if isinstance(m, SpatialViewMotionTransformer)]

    def set_motion_enabled(self, enabled: bool) -> None:
        """Switch every motion (frame) attention stage on or off (off = pass-through).

        ``cfg.motion_attention`` sets the initial state; a trainer switching stages should
        also replace the config (``cfg.replace``) so that checkpoints record the stage.
        """
        for m in self.attention_layers():
            m.motion_enabled = enabled

    def motion_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The parameters of the frame ("motion") attention stages, by state-dict name:
        ``motion_blocks``, ``time_mix_motion_embed`` and ``time_mixer_motion`` of every
        attention layer. Stage 1 of progressive training freezes exactly these."""
        keys = ("motion_blocks.", "time_mix_motion_embed.", "time_mixer_motion.")
        return {n: p for n, p in self.named_parameters() if any(f".{k}" in f".{n}" for k in keys)}

    def bypassed_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The parameters that never reach the output, by state-dict name: every cross-attention
        (``attn2``) here has a one-token context, whose softmax weight is 1, so its query and key
        projections and the LayerNorm before it (``norm2``) are bypassed (their gradient is exactly 0).
        Training freezes them: multi-GPU (DDP) training waits for a gradient of every trainable one."""
        keys = (".attn2.to_q.", ".attn2.to_k.", ".norm2.")
        return {n: p for n, p in self.named_parameters() if any(k in f".{n}" for k in keys)}

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor,
        cond_view: torch.Tensor,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        num_images = x.shape[0] // context.shape[0]
        dtype = self.dtype
        t_emb = timestep_embedding(timesteps, self.cfg.model_channels).to(dtype)
        emb_t = self.time_embed(t_emb)
        emb_y = self.label_emb(y.to(dtype))
        emb = emb_t + emb_y
        if trace is not None:
            trace["time_embed"], trace["label_emb"] = emb_t, emb_y
        context = context.to(dtype)
        cond_view = cond_view.to(dtype)

        h = x.to(dtype)
        skips = []
        recompute = self.gradient_checkpointing and trace is None and torch.is_grad_enabled()

        def run(block: Stage, h: torch.Tensor, name: str) -> torch.Tensor:
            if recompute:  # keep only the block's input; its activations are recomputed in backward
                return torch.utils.checkpoint.checkpoint(
                    block, h, emb, context, cond_view, num_images, use_reentrant=False
                )
            return block(h, emb, context, cond_view, num_images, trace, name)

        for i, block in enumerate(self.input_blocks):
            h = run(block, h, f"input_blocks.{i}")
            skips.append(h)
        h = run(self.middle_block, h, "middle_block")
        for i, block in enumerate(self.output_blocks):
            h = torch.cat([h, skips.pop()], dim=1)
            h = run(block, h, f"output_blocks.{i}")
        return self.out(h).to(x.dtype)

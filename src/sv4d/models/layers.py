"""Shared building blocks: sinusoidal embeddings, normalisation, attention, GEGLU."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding, cosines first.

    t: (n,) any float dtype (cast to float32). Returns (n, dim) float32:
    ``[cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})]`` with ``f_j = exp(-ln(max_period) j / h)``,
    ``h = dim // 2``; an odd ``dim`` gets a trailing zero column.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(
            x.float(),
            self.num_groups,
            self.weight.float() if self.weight is not None else None,
            self.bias.float() if self.bias is not None else None,
            self.eps,
        ).to(x.dtype)


def normalization(channels: int, eps: float = 1e-5) -> GroupNorm32:
    return GroupNorm32(32, channels, eps=eps)


class Attention(nn.Module):
    """Multi-head attention; ``to_q/to_k/to_v`` bias-free, ``to_out.0`` with bias.

    x: (B, L, query_dim); context: (B, S, context_dim) or None (self-attention).
    Heads split the channel axis as ``channel = head * dim_head + d``.
    With exactly one context token the softmax is identically 1, so the output is
    ``to_out(to_v(context))`` broadcast over the queries; this is computed directly
    (exact, and skips the q/k projections).
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None and context.shape[1] == 1:
            out = self.to_out(self.to_v(context))  # (B, 1, query_dim)
            return out.expand(-1, x.shape[1], -1)
        ctx = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(ctx), self.to_v(ctx)
        q, k, v = (rearrange(a, "b l (h d) -> b h l d", h=self.heads) for a in (q, k, v))
        out = sliced_attention(q, k, v)
        return self.to_out(rearrange(out, "b h l d -> b l (h d)"))


#: the most rows (the batch of ``b h l d``) one scaled-dot-product-attention call gets. The fused CUDA
#: kernels (flash, memory-efficient) put the batch in a grid dimension capped at 65 535 and fail
#: with "invalid configuration argument" above it; the full-size camera and motion attention feed
#: up to 124 416 rows. The reference implementation slices at 32 768 for the same reason.
MAX_ATTENTION_ROWS = 32768


def sliced_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` of (B, h, L, d) tensors in slices of at most
    :data:`MAX_ATTENTION_ROWS` along B (each row attends only within itself: the same result)."""
    rows = MAX_ATTENTION_ROWS
    if q.shape[0] <= rows:
        return F.scaled_dot_product_attention(q, k, v)
    parts = [slice(i, i + rows) for i in range(0, len(q), rows)]
    return torch.cat([F.scaled_dot_product_attention(q[s], k[s], v[s]) for s in parts])


class GEGLU(nn.Module):
    """``proj`` to 2*dim_out; the first half is the value, the second the gate (exact GELU)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward: keys ``net.0.proj`` (dim -> 2*mult*dim) and ``net.2`` (mult*dim -> dim_out)."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim_out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Spatial block: self-attn, cross-attn, FF, each pre-LayerNorm and residual.

    x: (B, L, dim); context: (B, S, context_dim).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, dropout: float = 0.0):
        super().__init__()
        self.attn1 = Attention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = Attention(dim, context_dim, heads, dim_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class TimeMixBlock(nn.Module):
    """Camera / motion block (``BasicTransformerTimeMixBlock`` with ``ff_in``, residual).

    x: (B, L, dim) where L is the mixing axis (views or frames); context: (B, S, context_dim).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.ff_in = FeedForward(dim, dim_out=dim, dropout=dropout)
        self.attn1 = Attention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dim_out=dim, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, context_dim, heads, dim_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.ff_in(self.norm_in(x)) + x
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class MixFactor(nn.Module):
    """Learned blend ``alpha * a + (1 - alpha) * b`` with ``alpha = sigmoid(mix_factor)``."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([init]))

    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.mix_factor)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha().float()  # blended in float32 (the reference's alpha is fp32 under autocast)
        return (alpha * a.float() + (1.0 - alpha) * b.float()).to(a.dtype)

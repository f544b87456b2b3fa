"""Inception-v1 I3D (Kinetics-400, RGB), the video network behind FVD.

Written to load, strictly, the ``i3d_pretrained_400.pt`` state dict that the PyTorch FVD code
of VideoGPT (``wilson1yan/VideoGPT``, ``videogpt/fvd/fvd.py``) and of
``JunyaoHu/common_metrics_on_video_quality`` (``fvd/videogpt/fvd.py``) load into their copy of
piergiaj's ``pytorch-i3d`` ``InceptionI3d(400, in_channels=3)``. No code of those projects is
used here; the facts below were read from their sources.

The weight file
    ``songweige/TATS`` ``tats/fvd/convert_tf_pretrained.py`` (the converter carried over from
    VideoGPT) builds it from the TF-Hub module ``deepmind/i3d-kinetics-400/1`` -- the network
    the original TensorFlow FVD uses -- and saves a plain dict of tensors with ``torch.save``:
    conv kernels permuted to (out, in, t, h, w), ``bn.bias`` / ``running_mean`` /
    ``running_var`` from the TF variables and ``bn.weight`` set to ones (the TF batch norm has
    no scale, ``create_scale=False`` in ``deepmind/kinetics-i3d``). So it has no
    ``num_batches_tracked`` entries (PyTorch's BatchNorm loader supplies them for a dict
    without version metadata, which is why those projects' strict load works);
    :func:`load_i3d` accepts files with or without them. (common_metrics' other FVD method,
    "styleganv", uses a different file, ``i3d_torchscript.pt``, which this module does not
    read.)

Layout (``piergiaj/pytorch-i3d`` ``pytorch_i3d.py``; the same in ``VideoGPT``'s copy)
    ``Conv3d_1a_7x7`` 3->64, kernel 7, stride 2; ``MaxPool3d_2a_3x3`` kernel (1, 3, 3) stride
    (1, 2, 2); ``Conv3d_2b_1x1`` 64->64; ``Conv3d_2c_3x3`` 64->192 kernel 3;
    ``MaxPool3d_3a_3x3`` kernel (1, 3, 3) stride (1, 2, 2); ``Mixed_3b``, ``Mixed_3c``;
    ``MaxPool3d_4a_3x3`` kernel 3 stride 2; ``Mixed_4b`` .. ``Mixed_4f``;
    ``MaxPool3d_5a_2x2`` kernel 2 stride 2; ``Mixed_5b``, ``Mixed_5c`` (1024 channels);
    ``AvgPool3d`` kernel (2, 7, 7) stride 1, no padding; dropout; ``logits``: 1x1x1 conv
    1024->400 with a bias and no batch norm. Each conv unit is ``conv3d`` (no bias) +
    ``bn`` (BatchNorm3d) + ReLU. An Inception module has branches ``b0`` (1x1), ``b1a`` (1x1)
    -> ``b1b`` (3x3x3), ``b2a`` (1x1) -> ``b2b`` (3x3x3), ``b3a`` (3x3x3 max pool, stride 1)
    -> ``b3b`` (1x1), concatenated in that order; the channel table is ``_MIXED`` below.
    (The ``padding=`` arguments piergiaj passes to some units are stored but unused: every
    conv and pool is padded in ``forward``.)

"SAME" padding (TensorFlow's rule, computed from the input size in ``forward``)
    per dimension of size s, kernel k, stride st: pad = max(k - st, 0) if s % st == 0 else
    max(k - s % st, 0), i.e. the output has ceil(s / st) positions; front = pad // 2, back =
    the rest. The max pools use the same rule and pad with zeros, which equals TF's
    "padding is ignored" max pool because every pool here follows a ReLU.

Batch-norm epsilon
    piergiaj: ``BatchNorm3d(eps=0.001, momentum=0.01)``, matching Sonnet v1's
    ``snt.BatchNorm`` default eps 1e-3 (the TF-Hub model dates from Sonnet v1; the eps in its
    graph was not checked here). VideoGPT's copy (``videogpt/fvd/pytorch_i3d.py``), which
    computes the VideoGPT and common_metrics FVD numbers with this file, uses
    ``BatchNorm3d(eps=1e-5, momentum=0.001)``. The default here, ``bn_eps=1e-5``, reproduces those numbers; pass
    ``bn_eps=1e-3`` for piergiaj's value. (Momentum only matters in training.)

Input and output as the reference FVD code uses them
    * common_metrics ``fvd/videogpt/fvd.py``: videos in [0, 1] are turned into uint8 with
      ``(x * 255).astype(uint8)`` (truncation), then VideoGPT's ``preprocess``
      (``videogpt/data.py``): /255, the shorter side resized to 224 with
      ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialiasing; the longer
      side is ``ceil(side * 224 / shorter)``), a centre crop of 224 x 224 (start
      ``(size - 224) // 2``), minus 0.5; common_metrics then multiplies by 2, so [-1, 1].
      :func:`preprocess_videos` does this (``quantize=True`` adds the uint8 truncation).
    * VideoGPT's own ``scripts/compute_fvd.py`` feeds the same crop in [-0.5, 0.5] (no
      factor 2); TATS's ``tats/fvd/fvd.py`` and the original TF FVD
      (``google-research/frechet_video_distance``) resize straight to 224 x 224 without
      keeping the aspect ratio and scale to [-1, 1] (``2 * x / 255 - 1``).
    * Feature: the 400 Kinetics logits averaged over the remaining time positions
      (VideoGPT's ``forward`` adds ``logits.mean(dim=2)`` to piergiaj's, which returns them
      per time position; the TF FVD takes
      ``RGB/inception_i3d/Mean:0``, the time-averaged logits). ``features(kind="pool")`` gives
      the 1024-d average-pooled features (piergiaj's ``extract_features`` before the logits),
      also averaged over time.

Minimum clip length
    Only the stride-2 layers shrink time (``Conv3d_1a_7x7``, ``MaxPool3d_4a_3x3``,
    ``MaxPool3d_5a_2x2``), so ``Mixed_5c`` has ceil(ceil(ceil(T/2)/2)/2) = ceil(T/8) time
    positions and the (2, 7, 7) average pool needs at least 2: T >= 9 (``MIN_FRAMES``). The
    spatial size must be 224 x 224 (7 x 7 at ``Mixed_5c``, one position after the pool).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Sv4dError
from .weights import find_weight_file, load_checked, read_state_dict

__all__ = ["InceptionI3d", "I3D_FILES", "MIN_FRAMES", "load_i3d", "preprocess_videos"]

I3D_FILES = ("i3d_pretrained_400.pt", "*i3d*.pt", "*i3d*.pth", "*i3d*.safetensors")
RESOLUTION = 224
NUM_CLASSES = 400
FEATURE_DIM = 1024
# Time positions after Mixed_5c are ceil(T / 8); the (2, 7, 7) average pool needs two.
MIN_FRAMES = 9

# name, input channels, (b0, b1a, b1b, b2a, b2b, b3b) output channels
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (front, back) of one dimension: the output has
    ceil(size / stride) positions; the odd pixel goes to the back."""
    rem = size % stride
    total = max(kernel - (stride if rem == 0 else rem), 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    pads: list[int] = []
    for dim in (2, 1, 0):  # F.pad takes the last dimension first: (w, h, t)
        pads.extend(same_padding(x.shape[2 + dim], kernel[dim], stride[dim]))
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """conv3d (SAME padding, bias only without batch norm) -> BatchNorm3d -> ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        batch_norm: bool = True,
        relu: bool = True,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=not batch_norm)
        self.bn = nn.BatchNorm3d(cout, eps=bn_eps, momentum=0.001) if batch_norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pool with SAME padding; zero padding, valid because its inputs are post-ReLU."""

    def __init__(self, kernel: int | Sequence[int], stride: int | Sequence[int]):
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception module: four branches concatenated along channels."""

    def __init__(self, cin: int, widths: Sequence[int], bn_eps: float = 1e-5):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        self.b0 = Unit3D(cin, c0, 1, bn_eps=bn_eps)
        self.b1a = Unit3D(cin, c1a, 1, bn_eps=bn_eps)
        self.b1b = Unit3D(c1a, c1b, 3, bn_eps=bn_eps)
        self.b2a = Unit3D(cin, c2a, 1, bn_eps=bn_eps)
        self.b2b = Unit3D(c2a, c2b, 3, bn_eps=bn_eps)
        self.b3a = MaxPoolSame(3, 1)
        self.b3b = Unit3D(cin, c3, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """I3D on (B, 3, T, 224, 224) clips in [-1, 1], T >= ``MIN_FRAMES``.

    ``forward(x)`` gives the (B, 400) Kinetics logits averaged over time, the FVD feature;
    ``features(x, kind="pool")`` the (B, 1024) average-pooled features averaged over time.
    Build with :func:`load_i3d` for the pretrained network (in eval mode); a bare instance
    has random weights and is in training mode like any module.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, bn_eps: float = 1e-5):
        super().__init__()
        stages: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", Unit3D(3, 64, 7, 2, bn_eps=bn_eps)),
            ("MaxPool3d_2a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", Unit3D(64, 64, 1, bn_eps=bn_eps)),
            ("Conv3d_2c_3x3", Unit3D(64, 192, 3, bn_eps=bn_eps)),
            ("MaxPool3d_3a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
        ]
        for name in ("Mixed_3b", "Mixed_3c"):
            stages.append((name, Mixed(*_MIXED[name], bn_eps=bn_eps)))
        stages.append(("MaxPool3d_4a_3x3", MaxPoolSame(3, 2)))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            stages.append((name, Mixed(*_MIXED[name], bn_eps=bn_eps)))
        stages.append(("MaxPool3d_5a_2x2", MaxPoolSame(2, 2)))
        for name in ("Mixed_5b", "Mixed_5c"):
            stages.append((name, Mixed(*_MIXED[name], bn_eps=bn_eps)))
        self.stage_names = tuple(name for name, _ in stages)
        for name, module in stages:
            self.add_module(name, module)
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=1)
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(FEATURE_DIM, num_classes, 1, batch_norm=False, relu=False)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Conv3d_1a_7x7 .. Mixed_5c without the input checks: (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))."""
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != 3:
            raise Sv4dError(f"I3D takes (B, 3, T, {RESOLUTION}, {RESOLUTION}) clips, got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != (RESOLUTION, RESOLUTION):
            raise Sv4dError(
                f"I3D takes {RESOLUTION} x {RESOLUTION} frames, got {x.shape[-2]} x {x.shape[-1]} "
                "(resize with preprocess_videos)"
            )
        if x.shape[2] < MIN_FRAMES:
            raise Sv4dError(f"I3D needs clips of at least {MIN_FRAMES} frames, got {x.shape[2]}")

    def features(self, x: torch.Tensor, kind: str = "logits") -> torch.Tensor:
        """(B, 400) time-averaged logits (``kind="logits"``) or (B, 1024) time-averaged
        pooled features (``kind="pool"``)."""
        if kind not in ("logits", "pool"):
            raise Sv4dError(f"I3D feature kind must be 'logits' or 'pool', got {kind!r}")
        self._check(x)
        x = self.avg_pool(self.trunk(x.to(self.logits.conv3d.weight.dtype)))  # (B, 1024, T', 1, 1)
        if kind == "pool":
            return x.mean(dim=(2, 3, 4))
        return self.logits(self.dropout(x)).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x, "logits")


def load_i3d(path: str | os.PathLike, device: str | torch.device = "cpu", bn_eps: float = 1e-5) -> InceptionI3d:
    """The pretrained I3D from a weight file, or from a directory holding one of
    ``I3D_FILES``; in eval mode with gradients off. Raises Sv4dError for a file that is not
    this network's weights."""
    file = find_weight_file(path, I3D_FILES, "I3D")
    state = read_state_dict(file)
    model = InceptionI3d(bn_eps=bn_eps)
    for key, value in model.state_dict().items():
        # the published file has no num_batches_tracked (unused in eval mode): supply it
        if (
            key.endswith(".num_batches_tracked")
            and key not in state
            and key[: -len("num_batches_tracked")] + "running_mean" in state
        ):
            state[key] = torch.zeros_like(value)
    load_checked(model, state, "Kinetics-400 I3D", str(file))
    return model.eval().requires_grad_(False).to(device)


def preprocess_videos(videos: torch.Tensor, quantize: bool = False) -> torch.Tensor:
    """(B, T, 3, H, W) (or 1-channel) videos in [0, 1] -> (B, 3, T, 224, 224) in [-1, 1].

    As common_metrics_on_video_quality's VideoGPT FVD: the shorter side bilinearly resized
    to 224 (``align_corners=False``, no antialiasing), a centre 224 x 224 crop, 2x - 1.
    ``quantize=True`` first truncates to 8 bits as that code does (``floor(255 x) / 255``).
    """
    if videos.ndim != 5 or videos.shape[2] not in (1, 3):
        raise Sv4dError(f"videos must be (B, T, 3, H, W), got {tuple(videos.shape)}")
    x = videos.float()
    if not torch.isfinite(x).all() or x.min() < -0.01 or x.max() > 1.01:
        raise Sv4dError("videos must hold finite values in [0, 1]")
    x = x.clamp(0, 1)
    if quantize:
        x = torch.floor(x * 255) / 255
    if x.shape[2] == 1:
        x = x.expand(-1, -1, 3, -1, -1)
    b, t, c, h, w = x.shape
    scale = RESOLUTION / min(h, w)
    size = (RESOLUTION, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), RESOLUTION)
    frames = F.interpolate(x.reshape(b * t, c, h, w), size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - RESOLUTION) // 2, (size[1] - RESOLUTION) // 2
    frames = frames[:, :, top : top + RESOLUTION, left : left + RESOLUTION]
    frames = (frames - 0.5) * 2
    return frames.reshape(b, t, c, RESOLUTION, RESOLUTION).permute(0, 2, 1, 3, 4).contiguous()

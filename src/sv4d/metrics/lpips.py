"""LPIPS (Zhang et al. 2018), version 0.1 with the VGG16 trunk.

The distance between two images is computed as follows:

1. map [0, 1] images to [-1, 1], then apply the scaling layer
   ``(x - shift) / scale`` with shift (-0.030, -0.088, -0.188) and scale
   (0.458, 0.448, 0.450);
2. run the torchvision VGG16 ``features`` stack and tap relu1_2, relu2_2, relu3_3,
   relu4_3 and relu5_3 (64, 128, 256, 512, 512 channels);
3. unit-normalise each tap over channels, ``x / (sqrt(sum_c x^2) + 1e-10)``;
4. square the difference of the two images' normalised taps, weight the channels with the
   learned 1x1 convolution ``lin{k}`` (no bias), average over space;
5. sum over the five taps.

The weights cannot be downloaded here. Two published files are needed: the LPIPS linear
layers (``vgg.pth`` from the ``lpips`` package's ``weights/v0.1/``, keys
``lin{k}.model.1.weight`` of shape (1, C, 1, 1)) and the torchvision ImageNet VGG16
backbone (``vgg16-397923af.pth``, keys ``features.{i}.weight/bias``). :func:`load_lpips`
takes a directory holding both, or one file holding both: either this module's own
state dict or the ``lpips`` package's full-model state dict (``net.slice{s}.{i}.*``
with ``i`` the torchvision index, ``lin{k}.model.1.weight``; ``scaling_layer.*`` ignored).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import Sv4dError
from .weights import find_weight_file, load_checked, read_state_dict

__all__ = [
    "LPIPS",
    "LPIPS_CHANNELS",
    "LPIPS_LIN_FILES",
    "LPIPS_SHIFT",
    "LPIPS_SCALE",
    "VGG16_FILES",
    "VGG16Features",
    "load_lpips",
]

#: File names (glob patterns) looked for, in order, for the LPIPS linear layers.
LPIPS_LIN_FILES: tuple[str, ...] = ("vgg.pth", "lpips_vgg.pth", "*lpips*vgg*.pth", "*lpips*vgg*.safetensors")
#: File names (glob patterns) looked for, in order, for the torchvision VGG16 backbone.
VGG16_FILES: tuple[str, ...] = ("vgg16-397923af.pth", "vgg16*.pth", "vgg16*.safetensors")

#: The v0.1 scaling layer, applied to [-1, 1] input: ``(x - shift) / scale``.
LPIPS_SHIFT: tuple[float, float, float] = (-0.030, -0.088, -0.188)
LPIPS_SCALE: tuple[float, float, float] = (0.458, 0.448, 0.450)

#: (input channels, output channels) of VGG16's 13 convolutions, in order.
_VGG16_CONVS = (
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
)
#: Convolutions per block; a 2x2 max-pool sits between blocks.
_VGG16_BLOCKS = (2, 2, 3, 3, 3)
#: Channels of the five taps.
LPIPS_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
_NORM_EPS = 1e-10


def _vgg16_layers() -> tuple[list[nn.Module], list[int]]:
    """torchvision's VGG16 ``features`` up to relu5_3, and the indices of the five taps."""
    layers: list[nn.Module] = []
    taps: list[int] = []
    convs = iter(_VGG16_CONVS)
    for b, n in enumerate(_VGG16_BLOCKS):
        if b:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        for _ in range(n):
            cin, cout = next(convs)
            layers += [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU()]
        taps.append(len(layers) - 1)
    return layers, taps


class VGG16Features(nn.Module):
    """torchvision VGG16's convolutional stack, up to relu5_3.

    Parameters are ``features.{i}.weight/bias`` for the convolutions at the torchvision
    indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 (each followed by a ReLU, 2x2
    max-pools at 4, 9, 16, 23), so the ImageNet checkpoint ``vgg16-397923af.pth`` loads
    into it (its ``classifier.*`` keys being ignored).

    ``forward(x)``: (N, 3, H, W) -> the five LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3, of (64, 128, 256, 512, 512) channels at 1, 1/2, 1/4, 1/8, 1/16 the input size.
    H and W must be at least 16.
    """

    def __init__(self) -> None:
        super().__init__()
        layers, taps = _vgg16_layers()
        self.features = nn.Sequential(*layers)
        self.taps = tuple(taps)  # (3, 8, 15, 22, 29)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise Sv4dError(f"VGG16 expects (N, 3, H, W) images, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 16:
            raise Sv4dError(f"LPIPS needs images of at least 16 x 16 pixels, got {tuple(x.shape[-2:])}")
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


class _LinLayer(nn.Module):
    """One LPIPS linear layer: a 1x1 convolution to one channel, no bias.

    Held at ``model.1`` as in the published files, whose ``model.0`` is a parameterless
    dropout (inactive at evaluation).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit_normalise(x: torch.Tensor) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + _NORM_EPS)


class LPIPS(nn.Module):
    """The LPIPS v0.1 VGG distance.

    State dict: ``net.features.{i}.weight/bias`` (:class:`VGG16Features`) and
    ``lin{k}.model.1.weight`` of shape (1, C_k, 1, 1), k = 0..4.

    ``forward(a, b)``: two (N, 3, H, W) images in [0, 1] (H, W >= 16) -> (N,) distances,
    computed in the parameters' dtype on the parameters' device (inputs are moved there);
    returned as float32.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = VGG16Features()
        for k, c in enumerate(LPIPS_CHANNELS):
            self.add_module(f"lin{k}", _LinLayer(c))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    @property
    def lins(self) -> list[_LinLayer]:
        return [getattr(self, f"lin{k}") for k in range(len(LPIPS_CHANNELS))]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise Sv4dError(
                f"LPIPS needs two (N, 3, H, W) images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        w = self.net.features[0].weight
        n = a.shape[0]
        x = torch.cat([a, b]).to(w.device, w.dtype) * 2.0 - 1.0
        x = (x - self.shift.to(x)) / self.scale.to(x)
        total = torch.zeros(n, device=w.device, dtype=torch.float32)
        for feat, lin in zip(self.net(x), self.lins):
            f = _unit_normalise(feat)
            d = (f[:n] - f[n:]).pow(2)
            total = total + lin(d).mean(dim=(1, 2, 3)).float()
        return total


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

_LIN_KEY = re.compile(r"^(?:lin(\d)|lins\.(\d))\.model\.1\.weight$")
_FEATURES_KEY = re.compile(r"^(?:net\.)?features\.(\d+)\.(weight|bias)$")
_SLICE_KEY = re.compile(r"^(?:net\.)?slice[1-5]\.(\d+)\.(weight|bias)$")


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone as ``net.features.{i}.*``, lin layers as ``lin{k}.model.1.weight``) found
    in a state dict of any accepted layout."""
    vgg: dict[str, torch.Tensor] = {}
    lin: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _LIN_KEY.match(key)
        if m:
            lin.setdefault(f"lin{m.group(1) or m.group(2)}.model.1.weight", value)
            continue
        m = _FEATURES_KEY.match(key) or _SLICE_KEY.match(key)
        if m:
            vgg[f"net.features.{m.group(1)}.{m.group(2)}"] = value
    return vgg, lin


def load_lpips(path: str | os.PathLike, device: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS v0.1 VGG metric with published weights, in eval mode, gradients off.

    Args:
        path: a directory holding the LPIPS linear-layer file (one of
            :data:`LPIPS_LIN_FILES`) and the torchvision VGG16 backbone (one of
            :data:`VGG16_FILES`), or one file holding both (this module's state dict, or
            the ``lpips`` package's full-model state dict).
        device: where to put the network.

    Raises:
        Sv4dError: files missing or unreadable, only one of the two parts found, or wrong
            shapes.
    """
    p = Path(path)
    if p.is_dir():
        lin_file = find_weight_file(p, LPIPS_LIN_FILES, "LPIPS linear-layer")
        vgg, lin = _split(read_state_dict(lin_file))
        source = str(lin_file)
        if not vgg:
            vgg_file = find_weight_file(p, VGG16_FILES, "VGG16 backbone")
            vgg, _ = _split(read_state_dict(vgg_file))
            source = f"{lin_file} + {vgg_file}"
            if not vgg:
                raise Sv4dError(f"{vgg_file} is not a VGG16 weight file (no features.* keys)")
        if not lin:
            raise Sv4dError(f"{lin_file} holds no LPIPS linear layers (lin0.model.1.weight ...)")
    else:
        file = find_weight_file(p, (), "LPIPS")
        vgg, lin = _split(read_state_dict(file))
        source = str(file)
        if lin and not vgg:
            raise Sv4dError(
                f"{file} holds only the LPIPS linear layers; the VGG16 backbone is needed too "
                f"({VGG16_FILES[0]}): pass a directory holding both"
            )
        if vgg and not lin:
            raise Sv4dError(
                f"{file} holds a VGG16 backbone but no LPIPS linear layers ({LPIPS_LIN_FILES[0]} "
                f"from the lpips package's weights/v0.1/): pass a directory holding both"
            )
        if not vgg and not lin:
            raise Sv4dError(
                f"{file} is not an LPIPS VGG weight file: it holds neither "
                f"lin0.model.1.weight ... nor VGG16 features.* keys"
            )
    model = LPIPS()
    load_checked(model, {**vgg, **lin}, "LPIPS v0.1 VGG", source)
    return model.to(device).eval().requires_grad_(False)

"""Materials of a glTF asset, reduced to what the renderer uses, and their images.

Following the glTF 2.0 specification: the metallic-roughness model's base colour factor and
texture (its texcoord set and the sampler's wrap modes), metallic and roughness factors,
double-sidedness and alpha mode; images come from a bufferView or a URI (data URIs and files
beside the asset) and decode to RGBA. A missing material is the specification's default.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import Sv4dError
from .reader import AccessorReader, uri_bytes

__all__ = ["Material", "MaterialLibrary"]

_REPEAT = 10497  # the glTF wrap mode REPEAT, the default


@dataclass
class Material:
    """A primitive's material, reduced to what the renderer uses."""

    base_color: np.ndarray  # (4,) float RGBA factor (linear)
    texture: np.ndarray | None  # (H, W, 4) uint8 RGBA base-colour image (sRGB)
    texcoord: int  # which TEXCOORD_n the texture uses
    metallic: float
    roughness: float
    double_sided: bool
    alpha_mode: str  # "OPAQUE" | "MASK" | "BLEND"
    sampler_wrap: tuple[int, int]  # wrapS, wrapT (glTF enums; default 10497 REPEAT)


class MaterialLibrary:
    """The materials and images of one parsed asset, decoded once and cached."""

    def __init__(self, gltf, reader: AccessorReader, path: Path) -> None:
        self._g, self._r, self.path = gltf, reader, path
        self._images: dict[int, np.ndarray | None] = {}
        self._materials: dict[int | None, Material] = {}

    def image(self, index: int | None) -> np.ndarray | None:
        if index is None:
            return None
        if index in self._images:
            return self._images[index]
        from PIL import Image

        try:
            im = self._g.images[index]
        except (IndexError, TypeError) as e:
            raise Sv4dError(f"{self.path}: image {index} does not exist") from e
        if im.bufferView is not None:
            data = self._r.view_bytes(im.bufferView)
        elif im.uri:
            data = uri_bytes(im.uri, self.path.parent, f"{self.path}: image {index}")
        else:
            raise Sv4dError(f"{self.path}: image {index} has neither a uri nor a bufferView")
        try:
            with Image.open(io.BytesIO(data)) as pil:
                arr = np.asarray(pil.convert("RGBA"), np.uint8).copy()
        except Exception as e:  # noqa: BLE001 - PIL raises many types
            raise Sv4dError(f"{self.path}: image {index} cannot be decoded: {e}") from e
        self._images[index] = arr
        return arr

    def get(self, index: int | None) -> Material:
        if index in self._materials:
            return self._materials[index]
        if index is None:
            mat = Material(np.ones(4), None, 0, 1.0, 1.0, False, "OPAQUE", (_REPEAT, _REPEAT))
        else:
            try:
                m = self._g.materials[index]
            except (IndexError, TypeError) as e:
                raise Sv4dError(f"{self.path}: material {index} does not exist") from e
            pbr = m.pbrMetallicRoughness
            color = np.ones(4)
            metallic = roughness = 1.0
            texture, texcoord, wrap = None, 0, (_REPEAT, _REPEAT)
            if pbr is not None:
                if pbr.baseColorFactor is not None:
                    color = np.asarray(pbr.baseColorFactor, np.float64)
                if pbr.metallicFactor is not None:
                    metallic = float(pbr.metallicFactor)
                if pbr.roughnessFactor is not None:
                    roughness = float(pbr.roughnessFactor)
                info = pbr.baseColorTexture
                if info is not None and info.index is not None:
                    try:
                        tex = self._g.textures[info.index]
                    except (IndexError, TypeError) as e:
                        raise Sv4dError(f"{self.path}: texture {info.index} does not exist") from e
                    texture = self.image(tex.source)
                    texcoord = int(info.texCoord or 0)
                    if tex.sampler is not None:
                        smp = self._g.samplers[tex.sampler]
                        wrap = (int(smp.wrapS or _REPEAT), int(smp.wrapT or _REPEAT))
            mat = Material(
                color, texture, texcoord, metallic, roughness, bool(m.doubleSided), str(m.alphaMode or "OPAQUE"), wrap
            )
        self._materials[index] = mat
        return mat

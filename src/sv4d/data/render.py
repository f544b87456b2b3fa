"""Offscreen rasterisation of posed glTF primitives with pyrender on a headless EGL context.

pyrender runs on any OpenGL 3.3 driver; on a machine without a GPU, Mesa's llvmpipe gives EGL
on the CPU (Debian packages ``libegl1 libegl-mesa0 libgl1-mesa-dri``). ``PYOPENGL_PLATFORM``
is set to ``egl`` before pyrender is imported unless the user chose another platform.

Shading is lit with lights fixed in the world frame, so an object point looks the same from
every camera: an ambient term and directional lights, each given as the (elevation, azimuth)
it shines *from* and an intensity. Materials keep their base colour (factor, texture, vertex
colours); metallic is forced to 0 by default (there is no environment map to reflect) and
roughness to 0.8. Images are rendered at ``ssaa`` times the size with pyrender's 4x MSAA,
on a transparent background, and box-averaged down on premultiplied colour, so alpha is
anti-aliased coverage; the result is straight-alpha RGBA. Depth, when asked for, is the
camera-space z (along the viewing axis) averaged over the covered sub-pixels, 0 on background.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..cameras import SV4D_FOV_DEG, Intrinsics, orbit_c2w
from ..errors import Sv4dError

__all__ = ["RenderSettings", "AssetRenderer", "DEFAULT_LIGHTS"]

#: (from elevation deg, from azimuth deg, intensity): key, fill and rim lights (fox_walk's)
DEFAULT_LIGHTS: tuple[tuple[float, float, float], ...] = ((50.0, 30.0, 2.5), (20.0, 150.0, 1.5), (10.0, 260.0, 1.25))


@dataclass
class RenderSettings:
    """How images are rasterised (sizes in output pixels)."""

    size: int = 256
    fov_deg: float = SV4D_FOV_DEG
    ssaa: int = 2
    ambient: float = 0.35
    lights: Sequence[tuple[float, float, float]] = field(default_factory=lambda: DEFAULT_LIGHTS)
    metallic: float | None = 0.0  # None keeps the asset's value
    roughness: float | None = 0.8
    znear: float = 0.01
    zfar: float = 12.0
    depth: bool = False
    light_scale: float = 1.0  # multiplies the ambient term and every light

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.fov_deg, self.size)

    def describe(self) -> dict:
        k = self.light_scale
        return {
            "renderer": f"pyrender {_pyrender().__version__}, PYOPENGL_PLATFORM={os.environ.get('PYOPENGL_PLATFORM')}",
            "ssaa": self.ssaa,
            "msaa": 4,
            "shading": "lit",
            "ambient": self.ambient * k,
            "lights": [
                {"type": "directional", "from_elevation_deg": e, "from_azimuth_deg": a, "intensity": i * k}
                for e, a, i in self.lights
            ],
            "roughness_override": self.roughness,
            "metallic_override": self.metallic,
            "background": "transparent (alpha 0); rgb_white composited over white",
        }


def _pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import pyrender
    except ImportError as e:
        raise Sv4dError(f"rendering assets needs pyrender ({e}); install it with pip install -e '.[data]'") from None
    return pyrender


def _vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = positions[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # area-weighted
    n = np.zeros_like(positions)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 0, n / np.maximum(length, 1e-20), np.array([0.0, 1.0, 0.0]))


def _gl_uv(uv: np.ndarray) -> np.ndarray:
    """glTF texture coordinates (origin at the image's top-left) for pyrender, which uploads
    images with row 0 at the texture's v = 0 and samples them the OpenGL way: v -> 1 - v."""
    out = np.array(uv, dtype=np.float32)
    out[:, 1] = 1.0 - out[:, 1]
    return out


class AssetRenderer:
    """Renders lists of posed primitives (``sv4d.data.gltf.PosedPrimitive``, already in the
    normalised world frame) from OpenGL camera-to-world poses."""

    def __init__(self, settings: RenderSettings) -> None:
        if settings.size < 8 or settings.ssaa < 1:
            raise Sv4dError(f"image size must be at least 8 and ssaa at least 1, got {settings.size}, {settings.ssaa}")
        pr = _pyrender()
        self.settings = settings
        self._pr = pr
        big = settings.size * settings.ssaa
        intr = settings.intrinsics.scaled(big, big)
        if not settings.light_scale >= 0:
            raise Sv4dError(f"the light scale must be >= 0, got {settings.light_scale}")
        self._scene = pr.Scene(
            bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[settings.ambient * settings.light_scale] * 3
        )
        cam = pr.IntrinsicsCamera(intr.fx, intr.fy, intr.cx, intr.cy, znear=settings.znear, zfar=settings.zfar)
        self._cam = self._scene.add(cam, pose=np.eye(4))
        for el, az, intensity in settings.lights:
            self._scene.add(
                pr.DirectionalLight(color=np.ones(3), intensity=intensity * settings.light_scale),
                pose=orbit_c2w(el, az, 1.0),
            )
        self._mesh_nodes: list = []
        self._materials: dict[int, object] = {}
        try:
            self._renderer = pr.OffscreenRenderer(big, big)
        except Exception as e:  # no EGL / OpenGL available
            raise Sv4dError(
                f"cannot open an offscreen OpenGL context ({type(e).__name__}: {e}); on a machine "
                "without a GPU install Mesa's EGL (apt-get install libegl1 libegl-mesa0 "
                "libgl1-mesa-dri) and keep PYOPENGL_PLATFORM=egl"
            ) from None

    def _material(self, m) -> object:
        key = id(m)
        if key not in self._materials:
            pr, s = self._pr, self.settings
            tex = None
            if m.texture is not None:
                tex = pr.Texture(
                    source=m.texture,
                    source_channels="RGBA",
                    sampler=pr.Sampler(wrapS=m.sampler_wrap[0], wrapT=m.sampler_wrap[1]),
                )
            self._materials[key] = pr.MetallicRoughnessMaterial(
                baseColorFactor=np.asarray(m.base_color, np.float64),
                baseColorTexture=tex,
                metallicFactor=m.metallic if s.metallic is None else s.metallic,
                roughnessFactor=m.roughness if s.roughness is None else s.roughness,
                doubleSided=bool(m.double_sided),
                alphaMode=m.alpha_mode,
            )
        return self._materials[key]

    def set_geometry(self, prims: Sequence) -> None:
        """Replace the rendered geometry with these posed primitives."""
        pr = self._pr
        for node in self._mesh_nodes:
            self._scene.remove_node(node)
        self._mesh_nodes = []
        prim_objs = []
        for p in prims:
            if len(p.indices) == 0:
                continue
            normals = p.normals if p.normals is not None else _vertex_normals(p.positions, p.indices)
            uv = p.uv if (p.uv is not None and p.material.texture is not None) else None
            prim_objs.append(
                pr.Primitive(
                    positions=p.positions.astype(np.float32),
                    normals=normals.astype(np.float32),
                    texcoord_0=None if uv is None else _gl_uv(uv),
                    color_0=None if p.colors is None else p.colors.astype(np.float32),
                    indices=p.indices.astype(np.uint32),
                    material=self._material(p.material),
                    mode=4,
                )
            )
        if not prim_objs:
            raise Sv4dError("the asset has no triangles to render")
        self._mesh_nodes.append(self._scene.add(pr.Mesh(primitives=prim_objs)))

    def render(self, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(H, W, 4) uint8 straight-alpha RGBA and (H, W) float32 depth (or None)."""
        pr, s = self._pr, self.settings
        self._scene.set_pose(self._cam, pose=np.asarray(c2w, np.float64))
        color, depth = self._renderer.render(self._scene, flags=pr.RenderFlags.RGBA)
        k, n = s.ssaa, s.size
        pre = color.astype(np.float64) / 255.0  # premultiplied: MSAA resolves against a (0, 0, 0, 0) background
        pre = pre.reshape(n, k, n, k, 4).mean((1, 3))
        a = pre[..., 3:]
        rgb = np.where(a > 1e-6, pre[..., :3] / np.maximum(a, 1e-6), 0.0)
        rgba = np.concatenate([np.clip(rgb, 0, 1), a], -1)
        out = np.round(rgba * 255).astype(np.uint8)
        d = None
        if s.depth:
            dd = depth.astype(np.float64).reshape(n, k, n, k)
            cover = (dd > 0).sum((1, 3))
            d = np.where(cover > 0, dd.sum((1, 3)) / np.maximum(cover, 1), 0.0).astype(np.float32)
        return out, d

    def close(self) -> None:
        self._renderer.delete()

    def __enter__(self) -> AssetRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Animated glTF 2.0 / GLB assets posed in NumPy.

* :mod:`.reader`: files, buffers, accessors, primitive topology, unsupported extensions;
* :mod:`.animation`: quaternions, slerp, TRS matrices, channel sampling, :class:`Clip`;
* :mod:`.asset`: :class:`GltfAsset` (hierarchy, skins, materials, morph targets, posing);
* :mod:`.normalise`: the clip's normalisation into the multi-view unit cube.

The names below are the package's public face (``from sv4d.data import gltf; gltf.GltfAsset``).
"""

from .animation import Clip
from .asset import GltfAsset, Material, PosedPrimitive, merge_primitives
from .normalise import apply_normalisation, normalisation, normalise_clip, yaw_matrix

__all__ = [
    "Material",
    "PosedPrimitive",
    "Clip",
    "GltfAsset",
    "merge_primitives",
    "normalisation",
    "normalise_clip",
    "apply_normalisation",
    "yaw_matrix",
]

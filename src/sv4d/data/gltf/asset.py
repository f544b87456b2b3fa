"""An animated glTF 2.0 / GLB asset posed in NumPy (:class:`GltfAsset`).

Following the glTF 2.0 specification:

* the default scene (``scene``, else scene 0) and its node hierarchy; a node's local matrix is
  its ``matrix`` when given, else ``T * R * S``;
* materials and their images (:mod:`sv4d.data.gltf.materials`);
* animation channels evaluated with their own key range (held before the first and after the
  last key), see :mod:`sv4d.data.gltf.animation`;
* morph targets (positions and normals, weights from the animation, the node, the mesh or
  zeros), applied before skinning;
* linear-blend skinning ``sum_k w_k (jointWorld_k @ inverseBind_k) @ v`` (the skinned mesh
  node's own transform is ignored, as the specification says), normals with the
  inverse-transpose of the blended matrix.

Reading the file and decoding accessors is :mod:`sv4d.data.gltf.reader`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import Sv4dError
from .animation import Clip, load_animations, sample, trs_matrices
from .materials import Material, MaterialLibrary
from .reader import (
    COMPRESSION,
    AccessorReader,
    attributes,
    open_gltf,
    triangles,
)

__all__ = ["Material", "PosedPrimitive", "GltfAsset", "merge_primitives"]


@dataclass
class PosedPrimitive:
    """One primitive posed at a time: world-space geometry with its material."""

    positions: np.ndarray  # (N, 3) float64 world space
    normals: np.ndarray | None  # (N, 3) world space, unit length
    uv: np.ndarray | None  # (N, 2) of the material's texcoord set
    colors: np.ndarray | None  # (N, 4) float COLOR_0 in [0, 1]
    indices: np.ndarray  # (M, 3) int64 triangles
    material: Material
    node: int
    mesh: int


@dataclass
class _Primitive:
    """A primitive as loaded, in its mesh's space, with skinning and morph data."""

    node: int
    mesh: int
    skin: int | None
    positions: np.ndarray  # (N, 3) float64
    normals: np.ndarray | None
    uv: np.ndarray | None
    colors: np.ndarray | None
    indices: np.ndarray  # (M, 3) int64
    material: Material
    joints: np.ndarray | None  # (N, K) int64 indices into the skin's joints
    weights: np.ndarray | None  # (N, K) float64
    target_positions: np.ndarray | None  # (T, N, 3)
    target_normals: np.ndarray | None  # (T, N, 3)
    num_targets: int


def _cofactor(m: np.ndarray) -> np.ndarray:
    """Inverse-transpose of (..., 3, 3) matrices up to a positive factor (for normals)."""
    a, b, c = m[..., :, 0], m[..., :, 1], m[..., :, 2]
    cof = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=-1)
    det = np.einsum("...i,...i->...", a, cof[..., :, 0])
    return cof * np.where(det < 0, -1.0, 1.0)[..., None, None]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


class GltfAsset:
    """A glTF 2.0 / GLB asset whose default scene can be posed at any time of any clip."""

    path: Path
    clips: list[Clip]

    def __init__(self, path: Path, gltf, reader: AccessorReader, raw: dict):
        self.path = path
        # pygltflib drops node.weights; take them from the raw JSON
        raw_nodes = raw.get("nodes") if isinstance(raw.get("nodes"), list) else []
        self._raw_node_weights = {
            i: nd["weights"]
            for i, nd in enumerate(raw_nodes)
            if isinstance(nd, dict) and isinstance(nd.get("weights"), list)
        }
        self._g = gltf
        self._r = reader
        n = len(gltf.nodes)
        self._num_nodes = n
        # rest TRS / matrices
        self._t = np.zeros((n, 3))
        self._q = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
        self._s = np.ones((n, 3))
        self._matrix: dict[int, np.ndarray] = {}
        for i, nd in enumerate(gltf.nodes):
            if nd.matrix is not None and len(nd.matrix) == 16:
                self._matrix[i] = np.asarray(nd.matrix, np.float64).reshape(4, 4).T  # column-major
            if nd.translation is not None:
                self._t[i] = nd.translation
            if nd.rotation is not None:
                self._q[i] = nd.rotation
            if nd.scale is not None:
                self._s[i] = nd.scale
        self._order = self._hierarchy()
        scenes = gltf.scenes or []
        if scenes:
            si = gltf.scene if gltf.scene is not None else 0
            if not 0 <= si < len(scenes):
                raise Sv4dError(f"{path}: the default scene {si} does not exist")
            roots = list(scenes[si].nodes or [])
        else:
            roots = []
        self._scene_nodes = self._descendants(roots)
        self._materials = MaterialLibrary(self._g, self._r, self.path)
        self._skins = self._load_skins()
        self._prims = self._load_primitives()
        self._node_mesh_weights = self._default_weights()
        self._channels, self.clips = load_animations(gltf, reader, n, path)

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, path) -> GltfAsset:
        """Read a .gltf / .glb file (:func:`~sv4d.data.gltf.reader.open_gltf`) and load its default scene."""
        path = Path(path)
        gltf, reader, raw = open_gltf(path)
        return cls(path, gltf, reader, raw)

    def _hierarchy(self) -> list[tuple[int, int]]:
        """(node, parent or -1) in an order with parents first; rejects cycles / two parents."""
        n = self._num_nodes
        parent = [-1] * n
        for i, nd in enumerate(self._g.nodes):
            for c in nd.children or []:
                if not 0 <= c < n:
                    raise Sv4dError(f"{self.path}: node {i} has a child {c} that does not exist")
                if parent[c] != -1 or c == i:
                    raise Sv4dError(f"{self.path}: node {c} has more than one parent")
                parent[c] = i
        order, seen = [], [False] * n
        stack = [i for i in range(n) if parent[i] == -1][::-1]
        while stack:
            i = stack.pop()
            seen[i] = True
            order.append((i, parent[i]))
            stack.extend(reversed(self._g.nodes[i].children or []))
        if not all(seen):
            raise Sv4dError(f"{self.path}: the node hierarchy has a cycle")
        return order

    def _descendants(self, roots: list[int]) -> list[int]:
        out, stack = [], list(reversed(roots))
        while stack:
            i = stack.pop()
            if not 0 <= i < self._num_nodes:
                raise Sv4dError(f"{self.path}: the scene refers to node {i}, which does not exist")
            out.append(i)
            stack.extend(reversed(self._g.nodes[i].children or []))
        return out

    def _load_skins(self) -> list[tuple[np.ndarray, np.ndarray]]:
        skins = []
        for si, sk in enumerate(self._g.skins or []):
            joints = np.asarray(sk.joints or [], np.int64)
            if joints.size and (joints.min() < 0 or joints.max() >= self._num_nodes):
                raise Sv4dError(f"{self.path}: skin {si} refers to nodes that do not exist")
            if sk.inverseBindMatrices is not None:
                ibm = self._r.accessor(sk.inverseBindMatrices)
                if len(ibm) < len(joints) or ibm.shape[1] != 16:
                    raise Sv4dError(f"{self.path}: skin {si} has too few inverse bind matrices")
                ibm = ibm[: len(joints)].reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
            else:
                ibm = np.tile(np.eye(4), (len(joints), 1, 1))
            skins.append((joints, np.ascontiguousarray(ibm)))
        return skins

    def _load_primitives(self) -> list[_Primitive]:
        prims = []
        for ni in self._scene_nodes:
            nd = self._g.nodes[ni]
            if nd.mesh is None:
                continue
            try:
                mesh = self._g.meshes[nd.mesh]
            except (IndexError, TypeError) as e:
                raise Sv4dError(f"{self.path}: node {ni} refers to mesh {nd.mesh}, which does not exist") from e
            if nd.skin is not None and not 0 <= nd.skin < len(self._skins):
                raise Sv4dError(f"{self.path}: node {ni} refers to skin {nd.skin}, which does not exist")
            for p in mesh.primitives:
                prim = self._primitive(ni, nd.mesh, nd.skin, p)
                if prim is not None:
                    prims.append(prim)
        return prims

    def _primitive(self, ni: int, mi: int, skin: int | None, p) -> _Primitive | None:
        if p.extensions and any(e in COMPRESSION for e in p.extensions):
            raise Sv4dError(f"{self.path}: mesh {mi} uses mesh compression, which is not supported")
        mode = 4 if p.mode is None else int(p.mode)
        if mode not in (4, 5, 6):
            return None
        a = attributes(p.attributes)
        if "POSITION" not in a:
            return None
        rd = self._r
        pos = rd.accessor(a["POSITION"])[:, :3]
        n = len(pos)

        def vertex_attr(name, normalise=False, width=None):
            if name not in a:
                return None
            arr = rd.accessor(a[name], normalise)
            if len(arr) != n:
                raise Sv4dError(f"{self.path}: mesh {mi} attribute {name} has {len(arr)} values for {n} vertices")
            return arr if width is None else arr[:, :width]

        normals = vertex_attr("NORMAL", width=3)
        material = self._materials.get(p.material)
        uv = vertex_attr(f"TEXCOORD_{material.texcoord}", True, 2)
        colors = vertex_attr("COLOR_0", True)
        if colors is not None and colors.shape[1] == 3:
            colors = np.concatenate([colors, np.ones((n, 1))], axis=1)
        if p.indices is not None:
            idx = rd.accessor(p.indices)[:, 0].astype(np.int64)
        else:
            idx = np.arange(n, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise Sv4dError(f"{self.path}: mesh {mi} has vertex indices out of range")
        tris = np.ascontiguousarray(triangles(idx, mode), np.int64)
        joints = weights = None
        if skin is not None and "JOINTS_0" in a and "WEIGHTS_0" in a:
            js, ws, k = [], [], 0
            while f"JOINTS_{k}" in a and f"WEIGHTS_{k}" in a:
                js.append(vertex_attr(f"JOINTS_{k}"))
                ws.append(vertex_attr(f"WEIGHTS_{k}", True))
                k += 1
            joints = np.concatenate(js, axis=1).astype(np.int64)
            weights = np.concatenate(ws, axis=1)
            nj = len(self._skins[skin][0])
            bad = (joints < 0) | (joints >= nj)
            if np.any(bad & (weights != 0)):
                raise Sv4dError(f"{self.path}: mesh {mi} has joint indices outside skin {skin}")
            joints = np.where(bad, 0, joints)
        targets = list(p.targets or [])
        tpos = tnor = None
        if targets:
            tpos = np.zeros((len(targets), n, 3))
            tnor = np.zeros((len(targets), n, 3)) if normals is not None else None
            for ti, tg in enumerate(targets):
                ta = attributes(tg)
                if "POSITION" in ta:
                    d = rd.accessor(ta["POSITION"])
                    if len(d) != n:
                        raise Sv4dError(f"{self.path}: mesh {mi} morph target {ti} has the wrong vertex count")
                    tpos[ti] = d[:, :3]
                if tnor is not None and "NORMAL" in ta:
                    d = rd.accessor(ta["NORMAL"])
                    if len(d) == n:
                        tnor[ti] = d[:, :3]
        return _Primitive(
            ni,
            mi,
            skin if joints is not None else None,
            pos,
            normals,
            uv,
            colors,
            tris,
            material,
            joints,
            weights,
            tpos,
            tnor,
            len(targets),
        )

    def _default_weights(self) -> dict[int, np.ndarray]:
        """Rest morph weights per mesh node: node.weights, else mesh.weights, else zeros."""
        out = {}
        for ni in self._scene_nodes:
            nd = self._g.nodes[ni]
            if nd.mesh is None:
                continue
            mesh = self._g.meshes[nd.mesh]
            ntg = max((len(p.targets or []) for p in mesh.primitives), default=0)
            w = np.zeros(ntg)
            src = self._raw_node_weights.get(ni) or mesh.weights or None
            if src:
                m = min(ntg, len(src))
                w[:m] = np.asarray(src[:m], np.float64)
            out[ni] = w
        return out

    # -- clips ---------------------------------------------------------------------------------

    def clip(self, which: str | int | None) -> Clip | None:
        """A clip by name or index; ``None``: the first clip, or ``None`` without animations."""
        if which is None:
            return self.clips[0] if self.clips else None
        names = ", ".join(f"{c.index}: {c.name!r}" for c in self.clips) or "none"
        if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
            if 0 <= which < len(self.clips):
                return self.clips[int(which)]
            raise Sv4dError(f"{self.path.name} has no animation {which}; its clips: {names}")
        for c in self.clips:
            if c.name == which:
                return c
        if isinstance(which, str) and which.strip().isdigit() and int(which) < len(self.clips):
            return self.clips[int(which)]
        raise Sv4dError(f"{self.path.name} has no animation {which!r}; its clips: {names}")

    def keyframe_times(self, clip: Clip) -> np.ndarray:
        """Sorted unique key times of all the clip's channels."""
        chans = self._channels[clip.index]
        if not chans:
            return np.array([clip.start])
        return np.unique(np.concatenate([c.times for c in chans]))

    # -- posing ----------------------------------------------------------------------------------

    def _state(self, t: float, clip: Clip | None):
        """Local TRS arrays and morph weights per node at time t (rest pose for clip None)."""
        tr, rot, sc = self._t.copy(), self._q.copy(), self._s.copy()
        weights = {k: v.copy() for k, v in self._node_mesh_weights.items()}
        animated: set[int] = set()
        if clip is not None:
            if not 0 <= clip.index < len(self._channels):
                raise Sv4dError(f"{self.path.name} has no animation {clip.index}")
            t = min(max(float(t), clip.start), clip.end)
            for ch in self._channels[clip.index]:
                v = sample(ch, t)
                if ch.path == "translation":
                    tr[ch.node] = v
                elif ch.path == "rotation":
                    rot[ch.node] = v
                elif ch.path == "scale":
                    sc[ch.node] = v
                else:
                    w = weights.setdefault(ch.node, np.zeros(len(v)))
                    m = min(len(w), len(v))
                    w[:m] = v[:m]
                    continue
                animated.add(ch.node)
        return tr, rot, sc, weights, animated

    def _world(self, tr, rot, sc, animated) -> np.ndarray:
        local = trs_matrices(tr, rot, sc)
        for i, m in self._matrix.items():
            if i not in animated:  # an animated node is never given as a matrix (spec)
                local[i] = m
        world = np.empty_like(local)
        for i, p in self._order:
            world[i] = local[i] if p < 0 else world[p] @ local[i]
        return world

    def local_trs(self, t: float, clip: Clip | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-node local translation (n, 3), rotation quaternion (n, 4, xyzw) and scale (n, 3)."""
        tr, rot, sc, _, _ = self._state(t, clip)
        return tr, rot, sc

    def node_matrices(self, t: float, clip: Clip | None) -> np.ndarray:
        """(num_nodes, 4, 4) world matrices at time t."""
        tr, rot, sc, _, animated = self._state(t, clip)
        return self._world(tr, rot, sc, animated)

    def pose(self, t: float, clip: Clip | None) -> list[PosedPrimitive]:
        """All primitives of the default scene posed at time t of the clip (None: rest pose)."""
        tr, rot, sc, weights, animated = self._state(t, clip)
        world = self._world(tr, rot, sc, animated)
        joint_mats = {}
        out = []
        for pr in self._prims:
            pos = pr.positions
            nor = pr.normals
            if pr.num_targets:
                w = weights.get(pr.node, np.zeros(0))
                wt = np.zeros(pr.num_targets)
                m = min(len(w), pr.num_targets)
                wt[:m] = w[:m]
                nz = np.nonzero(wt)[0]
                if nz.size:
                    pos = pos + np.tensordot(wt[nz], pr.target_positions[nz], axes=1)
                    if nor is not None and pr.target_normals is not None:
                        nor = nor + np.tensordot(wt[nz], pr.target_normals[nz], axes=1)
            if pr.skin is not None:
                if pr.skin not in joint_mats:
                    joints, ibm = self._skins[pr.skin]
                    joint_mats[pr.skin] = world[joints] @ ibm
                mats = np.einsum("nk,nkij->nij", pr.weights, joint_mats[pr.skin][pr.joints])
                lin = mats[:, :3, :3]
                pos = np.einsum("nij,nj->ni", lin, pos) + mats[:, :3, 3]
                if nor is not None:
                    nor = np.einsum("nij,nj->ni", _cofactor(lin), nor)
            else:
                m = world[pr.node]
                pos = pos @ m[:3, :3].T + m[:3, 3]
                if nor is not None:
                    nor = nor @ _cofactor(m[:3, :3]).T
            out.append(
                PosedPrimitive(
                    positions=np.ascontiguousarray(pos, np.float64),
                    normals=None if nor is None else _unit(nor),
                    uv=None if pr.uv is None else pr.uv.copy(),
                    colors=None if pr.colors is None else pr.colors.copy(),
                    indices=pr.indices.copy(),
                    material=pr.material,
                    node=pr.node,
                    mesh=pr.mesh,
                )
            )
        return out

    def posed_geometry(self, t: float, clip: Clip | None) -> tuple[np.ndarray, np.ndarray]:
        """All primitives' positions concatenated (N, 3) and their triangles re-indexed (M, 3)."""
        return merge_primitives(self.pose(t, clip))


def merge_primitives(prims: list[PosedPrimitive]) -> tuple[np.ndarray, np.ndarray]:
    """Posed primitives' positions concatenated (N, 3) and their triangles re-indexed (M, 3)."""
    if not prims:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    offsets = np.cumsum([0] + [len(p.positions) for p in prims[:-1]])
    verts = np.concatenate([p.positions for p in prims])
    faces = np.concatenate([p.indices + o for p, o in zip(prims, offsets)]).astype(np.int64)
    return verts, faces

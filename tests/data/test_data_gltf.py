"""sv4d.data.gltf: posing animated glTF / GLB assets (hierarchy, samplers, skinning, morphs)."""

import base64
import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from pygltflib import GLTF2
from scipy.spatial.transform import Rotation, Slerp

from conftest import DATA
from sv4d.data.gltf import GltfAsset, apply_normalisation, normalisation
from sv4d.errors import Sv4dError

ASSETS = DATA / "assets"

# SOURCES.md: file -> (vertices, triangles, [(clip name, length s)])
FACTS = {
    "Fox.glb": (1728, 576, [("Survey", 3.42), ("Walk", 0.71), ("Run", 1.16)]),
    "RiggedFigure.glb": (370, 256, [("animation_0", 1.25)]),
    "MorphStressTest.gltf": (1528, 2412, [("Individuals", 9.33), ("Pulse", 6.33), ("TheWave", 1.96)]),
    "BoxAnimated.gltf": (320, 254, [("animation_0", 3.71)]),
    "SimpleSkin.gltf": (10, 8, [("animation_0", 5.50)]),
}

_DT = {5121: "<u1", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_NC = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


@pytest.fixture(scope="module")
def assets():
    return {name: GltfAsset.load(ASSETS / name) for name in FACTS}


@functools.cache
def parsed(path: Path) -> GLTF2:
    return GLTF2().load(str(path))


@functools.cache
def buffer_bytes(path: Path, index: int) -> bytes:
    g = parsed(path)
    uri = g.buffers[index].uri
    return g.binary_blob() if uri is None else base64.b64decode(uri.split(",", 1)[1])


def raw_accessor(path: Path, index: int) -> np.ndarray:
    """An accessor read straight from the file (independent of sv4d; no sparse / normalisation)."""
    g = parsed(path)
    acc = g.accessors[index]
    bv = g.bufferViews[acc.bufferView]
    data = buffer_bytes(path, bv.buffer)
    dt, nc = np.dtype(_DT[acc.componentType]), _NC[acc.type]
    stride = bv.byteStride or dt.itemsize * nc
    start = (bv.byteOffset or 0) + (acc.byteOffset or 0)
    rows = [np.frombuffer(data, dt, count=nc, offset=start + i * stride) for i in range(acc.count)]
    return np.array(rows, np.float64)


def same_quat(a, b, atol=1e-6):
    a = np.asarray(a) / np.linalg.norm(a)
    b = np.asarray(b) / np.linalg.norm(b)
    return min(np.abs(a - b).max(), np.abs(a + b).max()) < atol


# ---------------------------------------------------------------------------------------------
# Facts from SOURCES.md


@pytest.mark.parametrize("name", list(FACTS))
def test_clips_and_counts(assets, name):
    asset = assets[name]
    nv, nt, clips = FACTS[name]
    assert [(c.name, round(c.duration, 2)) for c in asset.clips] == clips
    assert all(c.start == 0.0 for c in asset.clips)
    assert asset.clip(None) is asset.clips[0]
    for i, c in enumerate(asset.clips):
        assert asset.clip(c.name) is c and asset.clip(i) is c
    for clip in (None, asset.clips[-1]):
        v, f = asset.posed_geometry(0.37, clip)
        assert v.shape == (nv, 3) and f.shape == (nt, 3) and f.dtype == np.int64
        assert v.dtype == np.float64 and np.isfinite(v).all()
        assert f.min() == 0 and f.max() == nv - 1
    for p in asset.pose(0.37, asset.clips[0]):
        if p.normals is not None:
            np.testing.assert_allclose(np.linalg.norm(p.normals, axis=1), 1.0, atol=1e-9)


def test_unknown_clip_lists_names(assets):
    with pytest.raises(Sv4dError, match="Survey.*Walk.*Run"):
        assets["Fox.glb"].clip("Gallop")
    with pytest.raises(Sv4dError, match="Survey"):
        assets["Fox.glb"].clip(3)
    assert assets["Fox.glb"].clip("1").name == "Walk"


# ---------------------------------------------------------------------------------------------
# Samplers against the keyframes stored in the files


@pytest.mark.parametrize(
    "name,clip_name",
    [
        ("Fox.glb", "Walk"),
        ("RiggedFigure.glb", "animation_0"),
        ("BoxAnimated.gltf", "animation_0"),
        ("SimpleSkin.gltf", "animation_0"),
    ],
)
def test_local_trs_at_keyframes(assets, name, clip_name):
    asset = assets[name]
    clip = asset.clip(clip_name)
    g = parsed(ASSETS / name)
    anim = g.animations[clip.index]
    keys = {}  # time -> [(node, path, value)]
    for ch in anim.channels:
        smp = anim.samplers[ch.sampler]
        assert smp.interpolation == "LINEAR"
        times = raw_accessor(ASSETS / name, smp.input)[:, 0]
        vals = raw_accessor(ASSETS / name, smp.output)
        for k in range(0, len(times), 3):  # every third key (and the last) keeps it fast
            keys.setdefault(float(times[k]), []).append((ch.target.node, ch.target.path, vals[k]))
        keys.setdefault(float(times[-1]), []).append((ch.target.node, ch.target.path, vals[-1]))
    assert np.allclose(asset.keyframe_times(clip)[[0, -1]], [clip.start, clip.end])
    checked = 0
    for t, items in keys.items():
        tr, rot, sc = asset.local_trs(t, clip)
        for node, path, value in items:
            if path == "rotation":
                assert same_quat(rot[node], value), (t, node)
            else:
                np.testing.assert_allclose((tr if path == "translation" else sc)[node], value, rtol=0, atol=1e-6)
            checked += 1
    assert checked >= len(anim.channels)


def test_linear_rotation_halfway_is_slerp(assets):
    name = "Fox.glb"
    asset = assets[name]
    clip = asset.clip("Walk")
    g = parsed(ASSETS / name)
    anim = g.animations[clip.index]
    n = 0
    for ch in anim.channels:
        if ch.target.path != "rotation":
            continue
        smp = anim.samplers[ch.sampler]
        times = raw_accessor(ASSETS / name, smp.input)[:, 0]
        quats = raw_accessor(ASSETS / name, smp.output)
        for k in (0, len(times) // 2):
            if k + 1 >= len(times):
                continue
            q0, q1 = quats[k], quats[k + 1]
            t_mid = 0.5 * (times[k] + times[k + 1])
            want = Slerp([times[k], times[k + 1]], Rotation.from_quat([q0, q1]))([t_mid]).as_quat()[0]
            _, rot, _ = asset.local_trs(t_mid, clip)
            assert same_quat(rot[ch.target.node], want, atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(rot[ch.target.node]), 1.0, atol=1e-12)
            n += 1
    assert n >= 10


def test_channels_of_different_lengths_hold(assets):
    name = "BoxAnimated.gltf"
    asset = assets[name]
    clip = asset.clip(None)
    g = parsed(ASSETS / name)
    anim = g.animations[0]
    rot_ch = next(c for c in anim.channels if c.target.path == "rotation")
    smp = anim.samplers[rot_ch.sampler]
    times = raw_accessor(ASSETS / name, smp.input)[:, 0]
    quats = raw_accessor(ASSETS / name, smp.output)
    assert times[-1] < clip.end - 0.5 and times[0] > clip.start  # the shorter channel
    for t, want in (
        (times[0] / 2, quats[0]),
        (times[-1] + 0.1, quats[-1]),
        (clip.end, quats[-1]),
        (clip.end + 5.0, quats[-1]),
        (-1.0, quats[0]),
    ):
        assert same_quat(asset.local_trs(t, clip)[1][rot_ch.target.node], want)
    # the longer translation channel keeps moving after the rotation has stopped
    v1 = asset.posed_geometry(times[-1] + 0.2, clip)[0]
    v2 = asset.posed_geometry(clip.end - 0.3, clip)[0]
    assert np.abs(v1 - v2).max() > 1e-3
    # time is clamped into the clip
    np.testing.assert_array_equal(asset.posed_geometry(clip.end + 3, clip)[0], asset.posed_geometry(clip.end, clip)[0])


# ---------------------------------------------------------------------------------------------
# Skinning and morph targets


def test_simple_skin_by_hand(assets):
    name = "SimpleSkin.gltf"
    asset = assets[name]
    clip = asset.clip(None)
    g = parsed(ASSETS / name)
    prim = g.meshes[0].primitives[0]
    pos = raw_accessor(ASSETS / name, prim.attributes.POSITION)
    joints = raw_accessor(ASSETS / name, prim.attributes.JOINTS_0).astype(int)
    weights = raw_accessor(ASSETS / name, prim.attributes.WEIGHTS_0)
    skin = g.skins[0]
    ibm = raw_accessor(ASSETS / name, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    smp = g.animations[0].samplers[0]
    times = raw_accessor(ASSETS / name, smp.input)[:, 0]
    quats = raw_accessor(ASSETS / name, smp.output)
    k = int(np.argmax(np.abs(quats[:, 2])))  # the keyframe where the strip is bent most
    assert abs(quats[k][2]) > 0.5
    # world matrices by hand: node 0 (identity) -> node 1 (translate 0,1,0) -> node 2 (rotation)
    m1 = np.eye(4)
    m1[:3, 3] = g.nodes[1].translation
    m2 = np.eye(4)
    m2[:3, :3] = Rotation.from_quat(quats[k]).as_matrix()
    world = {1: m1, 2: m1 @ m2}
    np.testing.assert_allclose(asset.node_matrices(times[k], clip)[[1, 2]], [world[1], world[2]], atol=1e-9)
    want = []
    for v in range(len(pos)):
        acc = [0.0, 0.0, 0.0]
        p = list(pos[v]) + [1.0]
        for j in range(4):
            w = float(weights[v][j])
            if w == 0.0:
                continue
            node = skin.joints[joints[v][j]]
            m = world[node] @ ibm[joints[v][j]]
            for r in range(3):
                acc[r] += w * sum(m[r][c] * p[c] for c in range(4))
        want.append(acc)
    got, _ = asset.posed_geometry(times[k], clip)
    np.testing.assert_allclose(got, np.array(want), atol=1e-6)
    # rest pose (no clip): joints at rest; this file's inverse bind matrices translate by
    # (-0.5, -1, 0) while the joints sit at (0, 1, 0), so the strip is shifted by -0.5 in x
    np.testing.assert_allclose(asset.posed_geometry(0, None)[0], pos - [0.5, 0, 0], atol=1e-6)


def test_morph_targets(assets, tmp_path):
    name = "MorphStressTest.gltf"
    g = parsed(ASSETS / name)
    prims = g.meshes[0].primitives
    base = [raw_accessor(ASSETS / name, p.attributes.POSITION) for p in prims]
    deltas = [[raw_accessor(ASSETS / name, t["POSITION"]) for t in p.targets] for p in prims]
    asset = assets[name]
    rest = asset.pose(0.0, None)  # mesh.weights are all zero
    for p, b in zip(rest, base):
        np.testing.assert_allclose(p.positions, b, atol=1e-7)
    doc = json.loads((ASSETS / name).read_text())
    for i in (0, 3, 7):
        w = [0.0] * 8
        w[i] = 1.0
        doc["nodes"][0]["weights"] = w  # node weights override mesh weights
        path = tmp_path / f"morph_{i}.gltf"
        path.write_text(json.dumps(doc))
        posed = GltfAsset.load(path).pose(0.0, None)
        for p, b, d in zip(posed, base, deltas):
            np.testing.assert_allclose(p.positions, b + d[i], atol=1e-6)
    # animated weights: at keyframes the weights are the stored ones
    n_multi = 0
    for clip in asset.clips:
        smp = g.animations[clip.index].samplers[0]
        times = raw_accessor(ASSETS / name, smp.input)[:, 0]
        wts = raw_accessor(ASSETS / name, smp.output)[:, 0].reshape(len(times), 8)
        k = int(np.argmax((wts > 0.05).sum(1)))  # the key with most targets active
        n_multi = max(n_multi, int((wts[k] > 0.05).sum()))
        posed = asset.pose(times[k], clip)
        for p, b, d in zip(posed, base, deltas):
            np.testing.assert_allclose(p.positions, b + np.tensordot(wts[k], np.stack(d), axes=1), atol=1e-6)
    assert n_multi >= 2


# ---------------------------------------------------------------------------------------------
# Tiny hand-made glTF files


def _write_gltf(path: Path, doc: dict, arrays: list) -> Path:
    """``arrays``: (ndarray, accessor dict, bufferView extras); adds one buffer with a data URI."""
    blob = b""
    doc.setdefault("bufferViews", [])
    doc.setdefault("accessors", [])
    for arr, acc, view in arrays:
        data = np.ascontiguousarray(arr).tobytes()
        blob += b"\0" * (-len(blob) % 4)
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), **view})
        blob += data
        if acc is not None:
            doc["accessors"].append({"bufferView": len(doc["bufferViews"]) - 1, **acc})
    doc["buffers"] = [
        {"byteLength": len(blob), "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}
    ]
    doc["asset"] = {"version": "2.0"}
    path.write_text(json.dumps(doc))
    return path


def _f(values, typ):
    a = np.asarray(values, np.float32)
    return a, {"componentType": 5126, "count": len(a), "type": typ}, {}


def test_samplers_step_cubicspline_weights(tmp_path):
    h = math.sqrt(0.5)
    arrays = [
        _f([[0], [2]], "SCALAR"),  # 0: times
        # 1: cubic translation: (in, value, out) per key; x: 0 -> 1 with out-tangent 1 at key 0
        _f([[0, 0, 0], [0, 0, 0], [1, 2, 0], [0, 0, 0], [1, 4, 0], [0, 0, 0]], "VEC3"),
        _f([[0, 0, 0], [3, 0, 0]], "VEC3"),  # 2: STEP translation
        _f(
            [
                [0, 0, 0, 0],
                [0, 0, 0, 1],
                [0, 0, 0, 0],  # 3: cubic rotation,
                [0, 0, 0, 0],
                [0, 0, h, h],
                [0, 0, 0, 0],
            ],
            "VEC4",
        ),  #    zero tangents
        _f([[0], [0], [1], [0.5]], "SCALAR"),  # 4: LINEAR weights (2 targets)
        _f([[0, 0, 0], [1, 0, 0], [0, 1, 0]], "VEC3"),  # 5: mesh positions
        _f([[0, 0, 1], [0, 0, 1], [0, 0, 1]], "VEC3"),  # 6: target 0
        _f([[1, 0, 0], [1, 0, 0], [1, 0, 0]], "VEC3"),  # 7: target 1
    ]
    doc = {
        "scene": 0,
        "scenes": [{"nodes": [0, 1, 2, 3]}],
        "nodes": [{}, {}, {}, {"mesh": 0, "weights": [0.25, 0.0]}],
        "meshes": [
            {
                "weights": [1.0, 1.0],
                "primitives": [{"attributes": {"POSITION": 5}, "targets": [{"POSITION": 6}, {"POSITION": 7}]}],
            }
        ],
        "animations": [
            {
                "name": "a",
                "samplers": [
                    {"input": 0, "output": 1, "interpolation": "CUBICSPLINE"},
                    {"input": 0, "output": 2, "interpolation": "STEP"},
                    {"input": 0, "output": 3, "interpolation": "CUBICSPLINE"},
                    {"input": 0, "output": 4},
                ],
                "channels": [
                    {"sampler": 0, "target": {"node": 0, "path": "translation"}},
                    {"sampler": 1, "target": {"node": 1, "path": "translation"}},
                    {"sampler": 2, "target": {"node": 2, "path": "rotation"}},
                    {"sampler": 3, "target": {"node": 3, "path": "weights"}},
                ],
            }
        ],
    }
    asset = GltfAsset.load(_write_gltf(tmp_path / "anim.gltf", doc, arrays))
    clip = asset.clip("a")
    assert (clip.start, clip.end) == (0.0, 2.0)
    tr, rot, _ = asset.local_trs(1.0, clip)
    # Hermite at s = 1/2 with the tangents scaled by the key interval (2 s):
    # x = 0.5*0 + 0.125*2*1 + 0.5*1 - 0.125*2*0 = 0.75; y = 0.5*0 + 0.125*2*2 + 0.5*4 - 0 = 2.5
    np.testing.assert_allclose(tr[0], [0.75, 2.5, 0.0], atol=1e-7)
    # rotation halfway with zero tangents: normalised mean = 45 degrees about z
    np.testing.assert_allclose(rot[2], [0, 0, math.sin(math.pi / 8), math.cos(math.pi / 8)], atol=1e-7)
    # s = 1/4: (s^3 - 2 s^2 + s) * 2 * 1 + (-2 s^3 + 3 s^2) * 1 = 0.28125 + 0.15625
    np.testing.assert_allclose(asset.local_trs(0.5, clip)[0][0][0], 0.4375, atol=1e-7)
    # STEP: the earlier key until the next key time
    assert asset.local_trs(1.99, clip)[0][1][0] == 0.0
    assert asset.local_trs(2.0, clip)[0][1][0] == 3.0
    # morph weights: LINEAR from the animation; rest pose uses node.weights (not mesh.weights)
    v_anim = asset.posed_geometry(1.0, clip)[0]
    np.testing.assert_allclose(v_anim, [[0, 0, 0], [1, 0, 0], [0, 1, 0]] + np.array([0.25, 0, 0.5]), atol=1e-7)
    v_rest = asset.posed_geometry(1.0, None)[0]
    np.testing.assert_allclose(v_rest, [[0, 0, 0.25], [1, 0, 0.25], [0, 1, 0.25]], atol=1e-7)
    assert list(asset.keyframe_times(clip)) == [0.0, 2.0]


def test_static_asset_strides_sparse_modes(tmp_path):
    # interleaved vertices: float32 position, uint16 normalised uv, uint8 normalised RGB colour
    vert = np.zeros(4, dtype=[("p", "<f4", 3), ("uv", "<u2", 2), ("c", "u1", 3), ("pad", "u1", 1)])
    vert["p"] = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]
    vert["uv"] = [[0, 0], [65535, 0], [0, 65535], [65535, 32768]]
    vert["c"] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]
    stride = vert.dtype.itemsize
    assert stride == 20
    strip = np.array([0, 1, 2, 3], np.uint16)
    sparse_idx = np.array([2], np.uint8)
    sparse_val = np.array([[5, 5, 5]], np.float32)
    sparse_idx2 = np.array([1], np.uint16)
    arrays = [
        (vert, None, {"byteStride": stride}),  # view 0
        (strip, {"componentType": 5123, "count": 4, "type": "SCALAR"}, {}),  # view 1 / acc 0
        (sparse_idx, None, {}),  # view 2
        (sparse_val, None, {}),  # view 3
        (sparse_idx2, None, {}),  # view 4
    ]
    doc = {
        "scenes": [{"nodes": [0]}],  # no "scene": scene 0
        "nodes": [
            # column-major matrix: scale 2, translation (1, 2, 3)
            {"mesh": 0, "children": [1], "matrix": [2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 1, 2, 3, 1]},
            {"mesh": 1, "translation": [0, 0, 10]},
            {"mesh": 1},  # not in the scene: not drawn
        ],
        "meshes": [
            {
                "primitives": [
                    {
                        "attributes": {"POSITION": 1, "TEXCOORD_0": 2, "COLOR_0": 3},
                        "indices": 0,
                        "mode": 5,
                        "material": 0,
                    },
                    {"attributes": {"POSITION": 4}, "indices": 0, "mode": 6},
                    {"attributes": {"POSITION": 1}, "indices": 0, "mode": 1},  # lines: skipped
                ]
            },
            {"primitives": [{"attributes": {"POSITION": 5}}]},
        ],
        "materials": [
            {"pbrMetallicRoughness": {"baseColorFactor": [0.5, 0.25, 1, 1], "metallicFactor": 0.0}, "doubleSided": True}
        ],
    }
    doc["accessors"] = []
    arrays_acc = [
        {"bufferView": 0, "byteOffset": 0, "componentType": 5126, "count": 4, "type": "VEC3"},
        {"bufferView": 0, "byteOffset": 12, "componentType": 5123, "normalized": True, "count": 4, "type": "VEC2"},
        {"bufferView": 0, "byteOffset": 16, "componentType": 5121, "normalized": True, "count": 4, "type": "VEC3"},
        # sparse on top of the interleaved positions: vertex 2 -> (5, 5, 5)
        {
            "bufferView": 0,
            "componentType": 5126,
            "count": 4,
            "type": "VEC3",
            "sparse": {"count": 1, "indices": {"bufferView": 2, "componentType": 5121}, "values": {"bufferView": 3}},
        },
        # sparse without a bufferView: zeros, then vertex 1 -> (5, 5, 5)
        {
            "componentType": 5126,
            "count": 3,
            "type": "VEC3",
            "sparse": {"count": 1, "indices": {"bufferView": 4, "componentType": 5123}, "values": {"bufferView": 3}},
        },
    ]
    path = _write_gltf(tmp_path / "static.gltf", doc, arrays)
    doc = json.loads(path.read_text())
    doc["accessors"] += arrays_acc
    path.write_text(json.dumps(doc))

    asset = GltfAsset.load(path)
    assert asset.clips == [] and asset.clip(None) is None
    with pytest.raises(Sv4dError, match="none"):
        asset.clip("walk")
    prims = asset.pose(0.0, None)
    assert [(p.node, p.mesh) for p in prims] == [(0, 0), (0, 0), (1, 1)]
    a, b, c = prims
    p0 = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], float)
    np.testing.assert_allclose(a.positions, 2 * p0 + [1, 2, 3])
    np.testing.assert_array_equal(a.indices, [[0, 1, 2], [1, 3, 2]])  # strip (spec order)
    np.testing.assert_allclose(a.uv, [[0, 0], [1, 0], [0, 1], [1, 32768 / 65535]])
    np.testing.assert_allclose(a.colors, [[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(a.material.base_color, [0.5, 0.25, 1, 1])
    assert (a.material.metallic, a.material.roughness, a.material.double_sided) == (0.0, 1.0, True)
    assert a.material.alpha_mode == "OPAQUE" and a.material.sampler_wrap == (10497, 10497)
    assert a.material.texture is None and a.normals is None
    np.testing.assert_array_equal(b.indices, [[1, 2, 0], [2, 3, 0]])  # fan
    np.testing.assert_allclose(b.positions[2], [11, 12, 13])
    np.testing.assert_allclose(b.positions[[0, 1, 3]], a.positions[[0, 1, 3]])
    np.testing.assert_allclose(c.positions, 2 * np.array([[0, 0, 10], [5, 5, 15], [0, 0, 10]]) + [1, 2, 3])
    assert b.material.metallic == 1.0 and c.uv is None and c.colors is None
    v, f = asset.posed_geometry(0.0, None)
    assert v.shape == (11, 3)
    np.testing.assert_array_equal(f[-1], [8, 9, 10])  # re-indexed
    np.testing.assert_allclose(asset.node_matrices(0.0, None)[1][:3, 3], [1, 2, 23])


# ---------------------------------------------------------------------------------------------
# Errors


def test_load_errors(tmp_path):
    with pytest.raises(Sv4dError, match="not found"):
        GltfAsset.load(tmp_path / "missing.glb")
    text = tmp_path / "notes.gltf"
    text.write_text("hello, not glTF\n")
    with pytest.raises(Sv4dError, match="not a glTF"):
        GltfAsset.load(text)
    other_json = tmp_path / "x.gltf"
    other_json.write_text('{"a": 1}')
    with pytest.raises(Sv4dError):
        GltfAsset.load(other_json)
    data = (ASSETS / "Fox.glb").read_bytes()
    for cut in (10, 5000, len(data) - 1000):
        trunc = tmp_path / f"trunc{cut}.glb"
        trunc.write_bytes(data[:cut])
        with pytest.raises(Sv4dError, match="truncated|damaged"):
            GltfAsset.load(trunc)
    draco = tmp_path / "draco.gltf"
    draco.write_text(
        json.dumps(
            {
                "asset": {"version": "2.0"},
                "extensionsUsed": ["KHR_draco_mesh_compression"],
                "extensionsRequired": ["KHR_draco_mesh_compression"],
            }
        )
    )
    with pytest.raises(Sv4dError, match="Draco"):
        GltfAsset.load(draco)
    v1 = tmp_path / "v1.gltf"
    v1.write_text(json.dumps({"asset": {"version": "1.0"}}))
    with pytest.raises(Sv4dError, match="2.0"):
        GltfAsset.load(v1)


# ---------------------------------------------------------------------------------------------
# Fox: textures, size, speed, and the fox_walk reference renders' normalisation / geometry


def test_fox_texture_size_and_speed(assets):
    asset = assets["Fox.glb"]
    (prim,) = asset.pose(0.0, None)
    tex = prim.material.texture
    assert tex is not None and tex.dtype == np.uint8 and tex.ndim == 3 and tex.shape[2] == 4
    assert tex.shape[0] >= 64 and tex.shape[1] >= 64
    assert prim.uv.shape == (1728, 2) and prim.material.texcoord == 0
    v, _ = asset.posed_geometry(0.0, None)
    extent = v.max(0) - v.min(0)
    assert 140 < extent.max() < 200 and np.argmax(extent) == 2  # ~170 units, along z
    clip = asset.clip("Walk")
    asset.pose(0.0, clip)
    t0 = time.perf_counter()
    for i in range(20):
        asset.pose(i * 0.035, clip)
    per_frame = (time.perf_counter() - t0) / 20
    assert per_frame < 0.05, per_frame


FOX_WALK_NORM = {
    "yaw_deg": 90.0,
    "center": [-13.717038637212973, 37.70042099569576, -0.312450573462578],
    "scale": 0.0059594986828777246,
    "cube_size": 1.0,
    "bbox_min": [-0.5, -0.2355736526724604, -0.07818998954478842],
    "bbox_max": [0.5, 0.23557365267246033, 0.07818998954478842],
}


def test_fox_walk_normalisation_matches_reference(assets):
    asset = assets["Fox.glb"]
    clip = asset.clip("Walk")
    times = np.arange(21) * 0.7083333 / 21
    norm = normalisation(asset, clip, times, yaw_deg=90.0, cube=1.0)
    assert norm["yaw_deg"] == 90.0 and norm["cube_size"] == 1.0
    np.testing.assert_allclose(norm["center"], FOX_WALK_NORM["center"], rtol=1e-3)
    np.testing.assert_allclose(norm["scale"], FOX_WALK_NORM["scale"], rtol=1e-3)
    np.testing.assert_allclose(norm["bbox_min"], FOX_WALK_NORM["bbox_min"], atol=1e-4)
    np.testing.assert_allclose(norm["bbox_max"], FOX_WALK_NORM["bbox_max"], atol=1e-4)
    for f in (0, 5):
        ref = np.load(ASSETS / f"fox_walk_frame{f}_vertices.npy")
        got = apply_normalisation(asset.posed_geometry(times[f], clip)[0], norm)
        np.testing.assert_allclose(got, ref, atol=1e-4)
    all_v = np.concatenate([apply_normalisation(asset.posed_geometry(t, clip)[0], norm) for t in times])
    np.testing.assert_allclose(all_v.min(0), norm["bbox_min"], atol=1e-9)
    assert abs((all_v.max(0) - all_v.min(0)).max() - 1.0) < 1e-9


def test_external_bin_and_png_beside_gltf(tmp_path):
    from PIL import Image

    img = np.zeros((3, 5, 3), np.uint8)
    img[1, 2] = [10, 20, 30]
    Image.fromarray(img).save(tmp_path / "tex.png")
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    uv1 = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    (tmp_path / "geo.bin").write_bytes(pos.tobytes() + uv1.tobytes())
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "buffers": [{"uri": "geo.bin", "byteLength": 60}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 24}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
        ],
        "images": [{"uri": "tex.png"}],
        "samplers": [{"wrapS": 33071, "wrapT": 33648}],
        "textures": [{"source": 0, "sampler": 0}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0, "texCoord": 1}}, "alphaMode": "MASK"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_1": 1}, "material": 0}]}],
    }
    (tmp_path / "ext.gltf").write_text(json.dumps(doc))
    (prim,) = GltfAsset.load(tmp_path / "ext.gltf").pose(0.0, None)
    np.testing.assert_allclose(prim.positions, pos)
    np.testing.assert_allclose(prim.uv, uv1)
    m = prim.material
    assert m.texcoord == 1 and m.sampler_wrap == (33071, 33648) and m.alpha_mode == "MASK"
    assert m.texture.shape == (3, 5, 4) and m.texture.dtype == np.uint8
    assert list(m.texture[1, 2]) == [10, 20, 30, 255]
    (tmp_path / "geo.bin").write_bytes(pos.tobytes())  # too short for its byteLength
    with pytest.raises(Sv4dError, match="truncated"):
        GltfAsset.load(tmp_path / "ext.gltf")

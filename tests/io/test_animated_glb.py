"""write_animated_glb / read_animated_glb: one mesh of fixed topology moving through morph
targets, with a texture, vertex colours or neither; checked by the Khronos glTF validator,
trimesh and pygltflib."""

from __future__ import annotations

import os

import numpy as np
import pygltflib
import pytest
import trimesh

from conftest import assert_valid_gltf, gltf_messages
from sv4d.errors import Sv4dError
from sv4d.io import mesh as io_mesh
from sv4d.io.animated_glb import read_animated_glb, write_animated_glb
from sv4d.io.glb import read_accessor, unpack_glb
from sv4d.io.mesh import Mesh, read_mesh, write_glb


def uv_sphere(rows: int = 6, cols: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (N, 3), faces (M, 3) counter-clockwise seen from outside, uv (N, 2) with v down
    from the north pole) of a unit sphere; the seam column is doubled so uv stay continuous."""
    theta, phi = np.meshgrid(np.linspace(0, np.pi, rows + 1), np.linspace(0, 2 * np.pi, cols + 1), indexing="ij")
    v = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], -1).reshape(-1, 3)
    uv = np.stack([phi / (2 * np.pi), theta / np.pi], -1).reshape(-1, 2)
    idx = np.arange(v.shape[0]).reshape(rows + 1, cols + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    upper = np.stack([a, c, d], -1)[1:].reshape(-1, 3)  # no triangles squeezed into a pole
    lower = np.stack([a, d, b], -1)[:-1].reshape(-1, 3)
    return v, np.concatenate([upper, lower]), uv


def moving(frames: int = 4, **kw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (F, N, 3), faces, uv): the sphere breathing and drifting along +x."""
    v, f, uv = uv_sphere(**kw)
    k = np.arange(frames)[:, None, None]
    verts = v[None] * (1.0 + 0.2 * np.sin(k + 3.0 * v[None, :, 1:2])) + 0.1 * k * np.array([1.0, 0.0, 0.0])
    return verts, f, uv


def gradient(h: int = 16, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([255 * x // (w - 1), 255 * y // (h - 1), 128 + 0 * x], -1).astype(np.uint8)


def test_sphere_is_outward_wound():
    v, f, _ = uv_sphere()
    assert Mesh(v, f).volume > 0


def test_round_trip_at_keyframes(tmp_path):
    verts, faces, uv = moving(5)
    tex = gradient()
    times = [0.0, 0.04, 0.08, 0.125, 0.5]
    path = tmp_path / "anim.glb"
    write_animated_glb(path, verts, faces, times, uv=uv, texture=tex)
    v, f, t, uv2, tex2 = read_animated_glb(path)
    assert v.shape == verts.shape and v.dtype == np.float64
    np.testing.assert_allclose(v, verts, atol=1e-6)
    np.testing.assert_array_equal(f, faces)
    assert f.dtype == np.int64
    np.testing.assert_allclose(t, times, rtol=1e-7)
    np.testing.assert_allclose(uv2, uv, atol=1e-7)
    np.testing.assert_array_equal(tex2, tex)
    # read_mesh sees the base mesh: frame 0
    np.testing.assert_allclose(read_mesh(path)[0], verts[0], atol=1e-6)


def test_layout_morph_targets_and_animation(tmp_path):
    frames = 4
    verts, faces, uv = moving(frames)
    path = tmp_path / "anim.glb"
    write_animated_glb(path, verts, faces, np.arange(frames) / 24, colors=np.clip(uv[:, [0, 1, 1]], 0, 1), name="blob")
    glb = unpack_glb(path.read_bytes())
    doc = glb.doc
    (mesh,) = doc["meshes"]
    (prim,) = mesh["primitives"]
    assert mesh["name"] == "blob" and doc["nodes"] == [{"name": "blob", "mesh": 0}]
    assert mesh["weights"] == [1.0, 0.0, 0.0, 0.0]
    assert mesh["extras"]["targetNames"] == ["frame_000", "frame_001", "frame_002", "frame_003"]
    assert [list(t) for t in prim["targets"]] == [["POSITION"]] * frames  # no per-target normals
    for k, target in enumerate(prim["targets"]):
        acc = doc["accessors"][target["POSITION"]]
        d = read_accessor(glb, target["POSITION"])
        np.testing.assert_allclose(d, verts[k] - verts[0], atol=1e-6)
        assert acc["min"] == d.min(0).tolist() and acc["max"] == d.max(0).tolist()
    assert doc["accessors"][prim["indices"]]["componentType"] == 5123  # UNSIGNED_SHORT: few vertices
    (anim,) = doc["animations"]
    (channel,) = anim["channels"]
    assert channel["target"] == {"node": 0, "path": "weights"}
    sampler = anim["samplers"][channel["sampler"]]
    assert sampler["interpolation"] == "LINEAR"
    np.testing.assert_allclose(read_accessor(glb, sampler["input"])[:, 0], np.arange(frames) / 24)
    weights = read_accessor(glb, sampler["output"]).reshape(frames, frames)
    np.testing.assert_array_equal(weights, np.eye(frames))
    # COLOR_0: the linear value of the sRGB colour in 8 bits, alpha 255
    col = doc["accessors"][prim["attributes"]["COLOR_0"]]
    assert (col["componentType"], col["type"], col["normalized"]) == (5121, "VEC4", True)
    q = read_accessor(glb, prim["attributes"]["COLOR_0"])
    srgb = np.clip(uv[:, [0, 1, 1]], 0, 1)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    np.testing.assert_array_equal(q[:, :3], np.rint(linear * 255))
    assert (q[:, 3] == 255).all()
    np.testing.assert_allclose(read_accessor(glb, prim["attributes"]["COLOR_0"], normalize=True)[:, 0], q[:, 0] / 255)
    assert doc["materials"][0]["extensions"] == {"KHR_materials_unlit": {}}
    assert doc["extensionsUsed"] == ["KHR_materials_unlit"]


def test_end_time_holds_the_last_frame(tmp_path):
    verts, faces, _ = moving(3)
    path = tmp_path / "anim.glb"
    write_animated_glb(path, verts, faces, [0.0, 0.5, 1.0, 2.5])
    glb = unpack_glb(path.read_bytes())
    sampler = glb.doc["animations"][0]["samplers"][0]
    np.testing.assert_array_equal(read_accessor(glb, sampler["input"])[:, 0], [0.0, 0.5, 1.0, 2.5])
    np.testing.assert_array_equal(read_accessor(glb, sampler["output"]).reshape(4, 3)[3], [0, 0, 1])
    v, _, t, _, _ = read_animated_glb(path)
    np.testing.assert_array_equal(t, [0.0, 0.5, 1.0])  # the hold is not a frame of its own
    np.testing.assert_allclose(v, verts, atol=1e-6)


@pytest.mark.parametrize("variant", ["texture", "colors", "plain", "one_frame"])
def test_khronos_validator_finds_no_problem(tmp_path, variant):
    verts, faces, uv = moving(1 if variant == "one_frame" else 3)
    kw = {
        "texture": {"uv": uv, "texture": gradient()},
        "colors": {"colors": np.clip(np.abs(verts[0]), 0, 1)},
        "plain": {},
        "one_frame": {"uv": uv, "texture": gradient()},
    }[variant]
    path = tmp_path / f"{variant}.glb"
    write_animated_glb(path, verts, faces, np.arange(len(verts)) * 0.1, **kw)
    report = assert_valid_gltf(path)
    issues = report["issues"]
    assert issues["numWarnings"] == issues["numInfos"] == issues["numHints"] == 0, gltf_messages(report)
    info = report["info"]
    assert info["hasMorphTargets"] is (variant != "one_frame")
    assert info["animationCount"] == (0 if variant == "one_frame" else 1)
    assert info["hasTextures"] is ("uv" in kw)
    assert info["totalVertexCount"] == verts.shape[1] and info["totalTriangleCount"] == len(faces)


def test_trimesh_and_pygltflib_load_it(tmp_path):
    verts, faces, uv = moving(3)
    path = tmp_path / "anim.glb"
    write_animated_glb(path, verts, faces, [0.0, 0.1, 0.2], uv=uv, texture=gradient())
    scene = trimesh.load(path)
    (geom,) = scene.geometry.values()
    np.testing.assert_allclose(geom.vertices, verts[0], atol=1e-6)
    np.testing.assert_array_equal(geom.faces, faces)
    np.testing.assert_allclose(geom.visual.uv[:, 1], 1.0 - uv[:, 1], atol=1e-6)  # trimesh flips v to OpenGL's
    assert geom.visual.material.baseColorTexture.size == (32, 16)

    g = pygltflib.GLTF2().load(str(path))
    prim = g.meshes[0].primitives[0]
    assert len(prim.targets) == 3 and g.meshes[0].extras["targetNames"][2] == "frame_002"
    assert g.animations[0].channels[0].target.path == "weights"
    assert g.images[0].mimeType == "image/png" and g.textures[0].source == 0
    assert g.samplers[0].wrapS == g.samplers[0].wrapT == 33071  # CLAMP_TO_EDGE
    assert g.materials[0].pbrMetallicRoughness.baseColorTexture.texCoord == 0


def test_21_frames_of_12k_vertices_with_a_1024_texture_fit_in_5_mb(tmp_path):
    verts, faces, uv = moving(21, rows=98, cols=120)
    assert 11000 < verts.shape[1] < 13000
    y, x = np.mgrid[0:1024, 0:1024]
    tex = np.stack([x // 4, y // 4, (x + y) // 8], -1).astype(np.uint8)  # smooth, like a real texture
    path = tmp_path / "big.glb"
    write_animated_glb(path, verts, faces, np.arange(21) / 24, uv=uv, texture=tex)
    assert os.path.getsize(path) < 5_000_000


def test_read_animated_glb_refuses_files_without_morph_animation(tmp_path):
    verts, faces, _ = moving(2)
    write_glb(tmp_path / "static.glb", [Mesh(verts[0], faces)])
    with pytest.raises(Sv4dError, match="no morph-target animation"):
        read_animated_glb(tmp_path / "static.glb")
    write_glb(tmp_path / "flipbook.glb", [Mesh(v, faces) for v in verts], [0.0, 1.0])
    with pytest.raises(Sv4dError, match="no morph-target animation"):
        read_animated_glb(tmp_path / "flipbook.glb")
    (tmp_path / "junk.glb").write_bytes(b"not a glb at all")
    with pytest.raises(Sv4dError, match="not a binary glTF"):
        read_animated_glb(tmp_path / "junk.glb")
    with pytest.raises(Sv4dError, match="cannot read"):
        read_animated_glb(tmp_path / "missing.glb")


def _bad_inputs():
    verts, faces, uv = moving(3)
    tex = gradient()
    nan = verts.copy()
    nan[1, 2, 0] = np.nan
    t = [0.0, 0.1, 0.2]
    return [
        ("vertices must be", (verts[0], faces, t), {}),
        ("NaN", (nan, faces, t), {}),
        ("outside", (verts, faces + 1, t), {}),
        ("faces must be", (verts, faces[:, :2], t), {}),
        ("one start time per frame", (verts, faces, [0.0, 0.1]), {}),
        ("increasing", (verts, faces, [0.0, 0.2, 0.1]), {}),
        (">= 0", (verts, faces, [-0.1, 0.1, 0.2]), {}),
        ("uv must be", (verts, faces, t), {"uv": uv[:-1]}),
        ("uv contain NaN", (verts, faces, t), {"uv": uv * np.nan}),
        ("texture must be", (verts, faces, t), {"uv": uv, "texture": tex.astype(np.float32)}),
        ("texture must be", (verts, faces, t), {"uv": uv, "texture": tex[..., :2]}),
        ("needs uv", (verts, faces, t), {"texture": tex}),
        ("not both", (verts, faces, t), {"uv": uv, "texture": tex, "colors": np.ones((verts.shape[1], 3))}),
        ("colors must be", (verts, faces, t), {"colors": np.ones((4, 3))}),
        ("at least one face", (verts, faces[:0], t), {}),
        ("name must be", (verts, faces, t), {"name": 3}),
    ]


@pytest.mark.parametrize("match, args, kw", _bad_inputs(), ids=lambda x: x if isinstance(x, str) else "")
def test_bad_inputs_raise_and_write_nothing(tmp_path, match, args, kw):
    with pytest.raises(Sv4dError, match=match):
        write_animated_glb(tmp_path / "x.glb", *args, **kw)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    verts, faces, uv = moving(3)

    def boom(path, *parts):
        with open(path, "wb") as f:
            f.write(parts[0][:100])
        raise OSError("disk full (simulated)")

    old = tmp_path / "old.glb"
    old.write_bytes(b"previous contents")
    monkeypatch.setattr(io_mesh, "_write_bytes", boom)
    for path in (tmp_path / "fresh.glb", old):
        with pytest.raises(OSError, match="disk full"):
            write_animated_glb(path, verts, faces, [0.0, 0.1, 0.2], uv=uv, texture=gradient())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.glb"]  # no .part left over
    assert old.read_bytes() == b"previous contents"


def test_a_jpeg_texture_validates_and_reads_back(tmp_path):
    verts, faces, uv = moving()
    tex = gradient(64, 64)
    path = tmp_path / "j.glb"
    write_animated_glb(path, verts, faces, [0.0, 0.1, 0.2, 0.3], uv=uv, texture=tex, image_format="jpeg")
    report = assert_valid_gltf(path)
    assert report["issues"]["numWarnings"] == 0, gltf_messages(report)
    assert unpack_glb(path.read_bytes()).doc["images"][0]["mimeType"] == "image/jpeg"
    back = read_animated_glb(path)[4]
    assert back.shape == tex.shape and np.abs(back.astype(int) - tex).mean() < 2
    with pytest.raises(Sv4dError, match="unknown texture format"):
        write_animated_glb(
            tmp_path / "x.glb", verts, faces, [0.0, 0.1, 0.2, 0.3], uv=uv, texture=tex, image_format="gif"
        )
    assert not (tmp_path / "x.glb").exists()

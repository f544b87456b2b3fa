"""Exports: marching cubes meshes, OBJ, GLB (single and flip-book sequence), Gaussian PLY."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch
import trimesh

from conftest import assert_valid_gltf, gltf_messages
from sv4d.errors import Sv4dError
from sv4d.fit.mesh import marching_cubes_mesh, mesh_from_field
from sv4d.io import mesh as io_mesh
from sv4d.io import ply as io_ply
from sv4d.io.mesh import Mesh, write_glb, write_obj
from sv4d.io.ply import read_gaussian_ply, write_gaussian_ply

RADIUS = 0.6


def sphere_density(res: int = 32, bound: float = 1.0, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(res, res, res) [ix, iy, iz] grid of 1 - |p - centre| at cell corners over [-bound, bound]^3."""
    x = np.linspace(-bound, bound, res)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    c = np.asarray(centre)
    return (1.0 - np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2)).astype(np.float32)


def coloured_sphere(res: int = 24, radius: float = RADIUS) -> Mesh:
    m = marching_cubes_mesh(sphere_density(res), (-1.0, 1.0), 1.0 - radius)
    m.colors = np.clip(m.vertices / (2 * radius) + 0.5, 0, 1).astype(np.float32)
    return m


def glb_json(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    magic, version, total = struct.unpack_from("<III", raw, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(raw))
    jlen, jtype = struct.unpack_from("<II", raw, 12)
    assert jtype == 0x4E4F534A and jlen % 4 == 0
    js = raw[20 : 20 + jlen]
    assert js.rstrip(b" ") == js.rstrip()  # padded with spaces
    blen, btype = struct.unpack_from("<II", raw, 20 + jlen)
    assert btype == 0x004E4942 and blen % 4 == 0
    assert 20 + jlen + 8 + blen == len(raw)
    return json.loads(js), raw[28 + jlen :]


# ---------------------------------------------------------------------------------------------


def test_marching_cubes_sphere_lies_on_radius_with_outward_faces():
    res, bound = 32, 1.0
    centre = np.array([0.1, -0.2, 0.15])
    mesh = marching_cubes_mesh(sphere_density(res, bound, centre), (-bound, bound), 1.0 - RADIUS)
    assert mesh.colors is None
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    cell = 2 * bound / (res - 1)
    r = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert np.abs(r - RADIUS).max() < cell  # world coordinates, not indices
    assert np.abs(r - RADIUS).mean() < 0.1 * cell
    # outward winding: positive volume close to the sphere's, face normals away from the centre
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.03)
    tri = mesh.vertices[mesh.faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", fn, tri.mean(1) - centre) > 0).all()
    vn = mesh.vertex_normals()
    assert (np.einsum("ij,ij->i", vn, mesh.vertices - centre) > 0).all()
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0


def test_marching_cubes_per_axis_bounds():
    # the same unit-cube grid mapped to a box [0,2]x[-1,0]x[5,6]: x stretched by 2
    d = sphere_density(20, 1.0)
    lo, hi = np.array([0.0, -1.0, 5.0]), np.array([2.0, 0.0, 6.0])
    mesh = marching_cubes_mesh(d, (lo, hi), 1.0 - RADIUS)
    local = (mesh.vertices - (lo + hi) / 2) / ((hi - lo) / 2)  # back to [-1, 1]^3
    assert np.abs(np.linalg.norm(local, axis=1) - RADIUS).max() < 2 / 19
    assert mesh.volume > 0


def test_marching_cubes_errors():
    d = sphere_density(16)
    with pytest.raises(Sv4dError, match="lower the threshold"):
        marching_cubes_mesh(d, (-1, 1), 2.0)
    with pytest.raises(Sv4dError, match="above the threshold .* everywhere"):
        marching_cubes_mesh(d, (-1, 1), -5.0)
    with pytest.raises(Sv4dError, match="3-D"):
        marching_cubes_mesh(d[0], (-1, 1), 0.5)
    with pytest.raises(Sv4dError, match="lo < hi"):
        marching_cubes_mesh(d, (1, -1), 0.5)
    bad = d.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(Sv4dError, match="NaN"):
        marching_cubes_mesh(bad, (-1, 1), 0.5)


def test_mesh_from_field_chunks_and_colours():
    calls = []

    def density_fn(p: torch.Tensor) -> torch.Tensor:
        assert p.dtype == torch.float32 and p.shape[1] == 3 and not torch.is_grad_enabled()
        calls.append(len(p))
        return 1.0 - p.norm(dim=1)

    def color_fn(v: torch.Tensor) -> torch.Tensor:
        return torch.stack([v[:, 0] * 0 + 0.25, v[:, 1] * 0 + 2.0, (v[:, 2] > 0).float()], 1)  # 2.0 -> clipped

    res = 24
    mesh = mesh_from_field(density_fn, color_fn, bound=1.0, resolution=res, threshold=1.0 - RADIUS, chunk=5000)
    assert sum(calls) == res**3 and max(calls) == 5000
    # identical to marching cubes of the same analytic grid
    ref = marching_cubes_mesh(sphere_density(res), (-1.0, 1.0), 1.0 - RADIUS)
    np.testing.assert_allclose(mesh.vertices, ref.vertices, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, ref.faces)
    assert mesh.colors.shape == mesh.vertices.shape and mesh.colors.dtype == np.float32
    np.testing.assert_allclose(mesh.colors[:, :2], np.broadcast_to([0.25, 1.0], (len(mesh.colors), 2)))
    np.testing.assert_array_equal(mesh.colors[:, 2], (mesh.vertices[:, 2] > 0).astype(np.float32))
    # no colour function -> no colours; a wrong output shape is reported
    assert mesh_from_field(density_fn, None, 1.0, 12, 1.0 - RADIUS).colors is None
    with pytest.raises(Sv4dError, match="density_fn returned shape"):
        mesh_from_field(lambda p: torch.zeros(len(p), 2), None, 1.0, 8, 0.5)


def test_mesh_validation():
    with pytest.raises(Sv4dError, match=r"\(N, 3\)"):
        Mesh(np.zeros((4, 2)), np.zeros((1, 3), int))
    with pytest.raises(Sv4dError, match="outside"):
        Mesh(np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(Sv4dError, match="colors"):
        Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((2, 3)))
    m = Mesh(torch.zeros(3, 3, dtype=torch.float64), torch.tensor([[0, 1, 2]]))
    assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int32


# ---------------------------------------------------------------------------------------------


def test_obj_round_trip_with_colours(tmp_path):
    mesh = coloured_sphere()
    path = tmp_path / "sphere.obj"
    write_obj(path, mesh)
    tm = trimesh.load(path, process=False)
    assert len(tm.vertices) == len(mesh.vertices) and len(tm.faces) == len(mesh.faces)
    np.testing.assert_allclose(tm.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(tm.faces, mesh.faces)
    np.testing.assert_allclose(tm.visual.vertex_colors[:, :3] / 255.0, mesh.colors, atol=1 / 255 + 1e-6)
    assert tm.volume > 0
    # the faces are 1-based in the text
    first_face = next(line for line in path.read_text().splitlines() if line.startswith("f "))
    assert first_face.split()[1:] == [str(i + 1) for i in mesh.faces[0]]
    # without colours: plain "v x y z"
    write_obj(tmp_path / "plain.obj", Mesh(mesh.vertices, mesh.faces))
    v_line = next(line for line in (tmp_path / "plain.obj").read_text().splitlines() if line.startswith("v "))
    assert len(v_line.split()) == 4


def test_glb_single_mesh(tmp_path):
    mesh = coloured_sphere()
    path = tmp_path / "sphere.glb"
    write_glb(path, [mesh])
    scene = trimesh.load(path)
    assert isinstance(scene, trimesh.Scene) and len(scene.geometry) == 1
    (geom,) = scene.geometry.values()
    assert len(geom.vertices) == len(mesh.vertices) and len(geom.faces) == len(mesh.faces)
    np.testing.assert_allclose(geom.vertices, mesh.vertices, atol=1e-6)
    assert geom.volume > 0

    gltf, bin_chunk = glb_json(path)
    assert gltf["asset"]["version"] == "2.0" and "animations" not in gltf
    assert gltf["scenes"][gltf["scene"]]["nodes"] == [0] and len(gltf["nodes"]) == 1
    mat = gltf["materials"][0]
    assert mat["pbrMetallicRoughness"]["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0] and mat["doubleSided"] is False
    prim = gltf["meshes"][0]["primitives"][0]
    pos = gltf["accessors"][prim["attributes"]["POSITION"]]
    np.testing.assert_array_equal(pos["min"], mesh.vertices.min(0))
    np.testing.assert_array_equal(pos["max"], mesh.vertices.max(0))
    assert gltf["accessors"][prim["indices"]]["componentType"] == 5125  # UNSIGNED_INT
    col = gltf["accessors"][prim["attributes"]["COLOR_0"]]
    assert (col["componentType"], col["type"], col["normalized"]) == (5121, "VEC4", True)  # 8-bit normalised
    for view in gltf["bufferViews"]:
        assert view["byteOffset"] % 4 == 0
    assert gltf["buffers"][0]["byteLength"] == len(bin_chunk)
    # COLOR_0 holds the linear version of the sRGB colours, rounded to 8 bits, alpha 255
    view = gltf["bufferViews"][col["bufferView"]]
    q = np.frombuffer(bin_chunk, np.uint8, col["count"] * 4, view["byteOffset"]).reshape(-1, 4)
    c = mesh.colors.astype(np.float64)
    want = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(q[:, :3] / 255.0, want, atol=0.5 / 255 + 1e-9)
    assert (q[:, 3] == 255).all()
    report = assert_valid_gltf(path)
    assert report["issues"]["numWarnings"] == 0, gltf_messages(report)


def test_glb_sequence_is_a_flip_book(tmp_path):
    meshes = [coloured_sphere(radius=r) for r in (0.4, 0.5, 0.6)]
    meshes[1].colors = None  # mixed colour / no colour is fine
    times = [0.0, 0.5, 1.0]
    path = tmp_path / "seq.glb"
    write_glb(path, meshes, times)
    scene = trimesh.load(path)
    assert isinstance(scene, trimesh.Scene) and len(scene.geometry) == 3
    assert sorted(len(g.vertices) for g in scene.geometry.values()) == sorted(len(m.vertices) for m in meshes)

    gltf, bin_chunk = glb_json(path)
    root = gltf["nodes"][gltf["scenes"][0]["nodes"][0]]
    frames = root["children"]
    assert len(frames) == 3 and [gltf["nodes"][k]["mesh"] for k in frames] == [0, 1, 2]
    (anim,) = gltf["animations"]
    assert len(anim["channels"]) == 3
    assert sorted(ch["target"]["node"] for ch in anim["channels"]) == sorted(frames)

    def read(acc_index: int) -> np.ndarray:
        acc = gltf["accessors"][acc_index]
        view = gltf["bufferViews"][acc["bufferView"]]
        width = {"SCALAR": 1, "VEC3": 3}[acc["type"]]
        return np.frombuffer(bin_chunk, "<f4", acc["count"] * width, view["byteOffset"]).reshape(acc["count"], -1)

    for ch in anim["channels"]:
        assert ch["target"]["path"] == "scale"
        sampler = anim["samplers"][ch["sampler"]]
        assert sampler["interpolation"] == "STEP"
        key_t = read(sampler["input"])[:, 0]
        np.testing.assert_allclose(key_t, [0.0, 0.5, 1.0, 1.5])  # last frame held one interval
        assert gltf["accessors"][sampler["input"]]["min"] == [0.0]
        assert gltf["accessors"][sampler["input"]]["max"] == [1.5]
        k = frames.index(ch["target"]["node"])
        shown = read(sampler["output"])[:, 0]
        want = np.zeros(4)
        want[k] = 1
        if k == 2:
            want[3] = 1
        np.testing.assert_array_equal(shown, want)  # scale 1 exactly during [times[k], times[k+1])

    report = assert_valid_gltf(path)  # the Khronos validator
    assert report["issues"]["numWarnings"] == 0 and report["info"]["animationCount"] == 1, gltf_messages(report)

    # an explicit end time
    write_glb(path, meshes, [0.0, 0.5, 1.0, 3.0])
    gltf, _ = glb_json(path)
    assert gltf["accessors"][gltf["animations"][0]["samplers"][0]["input"]]["max"] == [3.0]


def test_glb_errors(tmp_path):
    m = coloured_sphere(res=12)
    path = tmp_path / "x.glb"
    with pytest.raises(Sv4dError, match="increasing"):
        write_glb(path, [m, m, m], [0.0, 0.5, 0.5])
    with pytest.raises(Sv4dError, match="increasing"):
        write_glb(path, [m, m], [1.0, 0.5])
    with pytest.raises(Sv4dError, match="one time"):
        write_glb(path, [m, m], None)
    with pytest.raises(Sv4dError, match="one start time per mesh"):
        write_glb(path, [m, m, m], [0.0, 1.0])
    with pytest.raises(Sv4dError, match=">= 0"):
        write_glb(path, [m, m], [-1.0, 1.0])
    with pytest.raises(Sv4dError, match="at least one"):
        write_glb(path, [])
    with pytest.raises(Sv4dError, match="empty"):
        write_glb(path, [Mesh(np.zeros((0, 3)), np.zeros((0, 3), int))])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------


def gaussians(n: int = 50, k: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "means": g.normal(size=(n, 3)).astype(np.float32),
        "quats": g.normal(size=(n, 4)).astype(np.float32),
        "log_scales": g.normal(size=(n, 3)).astype(np.float32) - 4,
        "opacity_logits": g.normal(size=(n,)).astype(np.float32),
        "sh_dc": g.normal(size=(n, 3)).astype(np.float32),
        "sh_rest": g.normal(size=(n, k, 3)).astype(np.float32),
    }


def test_gaussian_ply_layout_and_round_trip(tmp_path):
    n, k = 50, 3
    gs = gaussians(n, k)
    path = tmp_path / "g.ply"
    write_gaussian_ply(path, **{key: torch.from_numpy(v) for key, v in gs.items()})  # tensors accepted

    ply = plyfile.PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    (el,) = ply.elements
    assert el.name == "vertex" and el.count == n
    names = [p.name for p in el.properties]
    assert names == (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    assert all(el.data.dtype[p] == np.dtype("<f4") for p in names)
    d = el.data
    np.testing.assert_array_equal(np.stack([d["x"], d["y"], d["z"]], 1), gs["means"])
    assert not np.any(np.stack([d["nx"], d["ny"], d["nz"]]))
    np.testing.assert_array_equal(np.stack([d[f"f_dc_{i}"] for i in range(3)], 1), gs["sh_dc"])
    # channel-major: f_rest_{c*K + j} = sh_rest[:, j, c]
    for c in range(3):
        for j in range(k):
            np.testing.assert_array_equal(d[f"f_rest_{c * k + j}"], gs["sh_rest"][:, j, c])
    np.testing.assert_array_equal(d["opacity"], gs["opacity_logits"])
    np.testing.assert_array_equal(np.stack([d[f"scale_{i}"] for i in range(3)], 1), gs["log_scales"])
    np.testing.assert_array_equal(np.stack([d[f"rot_{i}"] for i in range(4)], 1), gs["quats"])

    back = read_gaussian_ply(path)
    assert set(back) == set(gs)
    for key in gs:
        assert back[key].dtype == np.float32
        np.testing.assert_array_equal(back[key], gs[key], err_msg=key)

    # degree 0: no f_rest at all
    write_gaussian_ply(tmp_path / "g0.ply", *[gs[key] for key in list(gs)[:5]])
    names0 = [p.name for p in plyfile.PlyData.read(str(tmp_path / "g0.ply")).elements[0].properties]
    assert not any(p.startswith("f_rest") for p in names0) and len(names0) == 17
    assert read_gaussian_ply(tmp_path / "g0.ply")["sh_rest"].shape == (n, 0, 3)


def test_read_gaussian_ply_accepts_other_order_and_types(tmp_path):
    # a file written by another tool: double positions, different order, an extra property
    gs = gaussians(7, 0)
    n = 7
    fields = [("opacity", "<f4"), ("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("red", "u1")]
    fields += [(f"f_dc_{i}", "<f4") for i in range(3)] + [(f"scale_{i}", "<f4") for i in range(3)]
    fields += [(f"rot_{i}", "<f4") for i in range(4)]
    arr = np.zeros(n, fields)
    arr["opacity"] = gs["opacity_logits"]
    for i, a in enumerate("xyz"):
        arr[a] = gs["means"][:, i]
    for i in range(3):
        arr[f"f_dc_{i}"] = gs["sh_dc"][:, i]
        arr[f"scale_{i}"] = gs["log_scales"][:, i]
    for i in range(4):
        arr[f"rot_{i}"] = gs["quats"][:, i]
    path = tmp_path / "other.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(arr, "vertex")], byte_order="<").write(str(path))
    back = read_gaussian_ply(path)
    for key in ("means", "quats", "log_scales", "opacity_logits", "sh_dc"):
        np.testing.assert_array_equal(back[key], gs[key], err_msg=key)


def test_gaussian_ply_errors(tmp_path):
    gs = gaussians(5, 3)
    path = tmp_path / "g.ply"
    with pytest.raises(Sv4dError, match="quats"):
        write_gaussian_ply(path, **{**gs, "quats": gs["quats"][:, :3]})
    with pytest.raises(Sv4dError, match="means"):
        write_gaussian_ply(path, **{**gs, "means": gs["means"][None]})
    with pytest.raises(Sv4dError, match="opacity_logits"):
        write_gaussian_ply(path, **{**gs, "opacity_logits": gs["opacity_logits"][:, None]})
    with pytest.raises(Sv4dError, match="K=2"):
        write_gaussian_ply(path, **{**gs, "sh_rest": gs["sh_rest"][:, :2]})
    with pytest.raises(Sv4dError, match="NaN"):
        write_gaussian_ply(path, **{**gs, "means": np.full((5, 3), np.nan)})
    assert not path.exists()

    (tmp_path / "text.txt").write_text("hello\n")
    with pytest.raises(Sv4dError, match="not a Gaussian PLY"):
        read_gaussian_ply(tmp_path / "text.txt")
    ascii_ply = tmp_path / "ascii.ply"
    ascii_ply.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n")
    with pytest.raises(Sv4dError, match="binary_little_endian"):
        read_gaussian_ply(ascii_ply)
    # a mesh PLY (no Gaussian properties)
    verts = np.zeros(3, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    mesh_ply = tmp_path / "mesh.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(verts, "vertex")], byte_order="<").write(str(mesh_ply))
    with pytest.raises(Sv4dError, match="missing properties"):
        read_gaussian_ply(mesh_ply)
    # truncated data
    write_gaussian_ply(path, **gs)
    raw = path.read_bytes()
    (tmp_path / "cut.ply").write_bytes(raw[:-10])
    with pytest.raises(Sv4dError, match="truncated"):
        read_gaussian_ply(tmp_path / "cut.ply")
    with pytest.raises(Sv4dError, match="cannot read"):
        read_gaussian_ply(tmp_path / "missing.ply")


# ---------------------------------------------------------------------------------------------


def _boom_after_first_part():
    def write(path, *parts):
        with open(path, "wb") as f:
            f.write(parts[0][: max(1, len(parts[0]) // 2)])
        raise OSError("disk full (simulated)")

    return write


@pytest.mark.parametrize("kind", ["obj", "glb", "ply"])
def test_failed_write_leaves_no_file_and_keeps_old_one(tmp_path, monkeypatch, kind):
    mesh = coloured_sphere(res=12)
    gs = gaussians(5, 0)
    fresh = tmp_path / f"fresh.{kind}"
    old = tmp_path / f"old.{kind}"
    old.write_bytes(b"previous contents")

    def do(path):
        if kind == "obj":
            write_obj(path, mesh)
        elif kind == "glb":
            write_glb(path, [mesh, mesh], [0.0, 1.0])
        else:
            write_gaussian_ply(path, **gs)

    if kind == "obj":

        def boom(f, fmt, rows):
            f.write(fmt % tuple(rows[0].tolist()))
            raise OSError("disk full (simulated)")

        monkeypatch.setattr(io_mesh, "_write_rows", boom)
    else:
        monkeypatch.setattr(io_mesh if kind == "glb" else io_ply, "_write_bytes", _boom_after_first_part())
    for path in (fresh, old):
        with pytest.raises(OSError, match="disk full"):
            do(path)
    assert not fresh.exists()
    assert old.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name]  # no .part left over
    monkeypatch.undo()
    do(fresh)
    assert fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted([old.name, fresh.name])

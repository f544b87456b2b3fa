"""Does Blender import sv4d's animated mesh as an artist expects? (issue 18)

    python -m venv /tmp/bpyenv && /tmp/bpyenv/bin/pip install "bpy<4.5"     # Blender as a module, ~370 MB
    /tmp/bpyenv/bin/python benchmarks/check_blender.py EXPORT_FOLDER          # animated.glb + tracked_mesh.npz

Imports ``animated.glb`` with Blender's own glTF importer and checks: one mesh object with a shape
key per frame (plus the basis), an action that animates the shape-key values, a material whose
base colour comes from an image texture of the exported size, and — frame by frame — the evaluated
(animated) vertex positions against ``tracked_mesh.npz`` (Blender turns glTF's +Y up into +Z up).
Prints the figures; exits 1 when a check fails. Needs only bpy and NumPy (not sv4d).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy
import numpy as np


def main(folder: Path) -> int:
    glb, npz = folder / "animated.glb", folder / "tracked_mesh.npz"
    z = np.load(npz)
    verts, times = z["vertices"], z["times"]
    uv_vertex = z["uv_vertex"] if "uv_vertex" in z else np.arange(verts.shape[1])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(glb))
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    out: dict = {"blender": bpy.app.version_string, "mesh_objects": len(meshes)}
    ok = len(meshes) == 1
    obj = meshes[0]
    keys = obj.data.shape_keys
    out["shape_keys"] = 0 if keys is None else len(keys.key_blocks)
    ok &= keys is not None and len(keys.key_blocks) == len(verts) + 1  # basis + one per frame
    action = keys.animation_data.action if keys and keys.animation_data else None
    out["action"] = None if action is None else action.name
    fcurves = list(action.fcurves) if action is not None and hasattr(action, "fcurves") else []
    out["shape_key_fcurves"] = len(fcurves)
    ok &= action is not None
    images = [
        n.image for m in obj.data.materials if m and m.use_nodes for n in m.node_tree.nodes if n.type == "TEX_IMAGE"
    ]
    out["texture"] = [list(i.size) for i in images if i is not None]
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    errors = []
    deps = bpy.context.evaluated_depsgraph_get()
    for k, t in enumerate(times):
        f = float(t * fps)
        bpy.context.scene.frame_set(int(np.floor(f)), subframe=f - np.floor(f))
        deps.update()
        ev = obj.evaluated_get(deps)
        co = np.array([v.co[:] for v in ev.data.vertices])
        world = np.array(obj.matrix_world)
        co = co @ world[:3, :3].T + world[:3, 3]
        gltf = np.stack([co[:, 0], co[:, 2], -co[:, 1]], 1)  # Blender +Z up -> glTF +Y up
        want = verts[k][uv_vertex] if len(gltf) == len(uv_vertex) else verts[k]
        if len(gltf) != len(want):
            errors.append(float("inf"))
            continue
        errors.append(float(np.abs(gltf - want).max()))
    out["max_vertex_error_per_frame"] = errors
    ok &= max(errors) < 1e-3
    out["ok"] = bool(ok)
    print(json.dumps(out, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1])))

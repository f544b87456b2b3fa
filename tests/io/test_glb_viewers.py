"""The animated GLB that write_animated_glb writes, opened by web viewers in a real browser
(headless Chromium, WebGL on SwiftShader): three.js's GLTFLoader imports it and an AnimationMixer
plays its morph targets as written, and draws them; Google's <model-viewer> loads it, lists its
animation and draws it.

The pages are tests/io/glb_viewers/*.html, served over HTTP from a thread (ES modules do not load
from file://) next to the npm packages three and @google/model-viewer, which live in the glTF
validator's folder (``gltf_validator_folder()``; .ci/run installs them). Nothing comes from the
network: the browser cannot resolve any host name."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import WEBGL_FLAGS, chromium, element_pixels, gltf_validator_folder, skip_unless_required
from sv4d.io.animated_glb import write_animated_glb

THREE_VERSION = "0.187.0"
MODEL_VIEWER_VERSION = "4.4.0"  # its dist/model-viewer.min.js bundles its own three.js (r183)
PAGES = Path(__file__).parent / "glb_viewers"
NAME = "bending"  # the node, mesh and animation
TIMES = [0.0, 0.25, 0.5, 1.0, 1.25]  # one key per frame, unevenly spaced
MID = 2  # three.js's shape is checked halfway between keys MID and MID + 1
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"  # no other host resolves: a CDN fetch fails


def ellipsoid(rows: int = 8, cols: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (N, 3), faces (M, 3), uv (N, 2)) of an ellipsoid of radii 1, 0.5, 0.5 along its
    x, y, z axes: a latitude-longitude grid from the north pole (+y), faces counter-clockwise
    seen from outside, the seam column doubled so that uv (u along longitude, v down) stay continuous."""
    theta, phi = np.meshgrid(np.linspace(0, np.pi, rows + 1), np.linspace(0, 2 * np.pi, cols + 1), indexing="ij")
    unit = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], -1)
    v = (unit * [1.0, 0.5, 0.5]).reshape(-1, 3)
    uv = np.stack([phi / (2 * np.pi), theta / np.pi], -1).reshape(-1, 2)
    grid = np.arange(v.shape[0]).reshape(rows + 1, cols + 1)
    top_left, top_right, bottom_left, bottom_right = grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]
    left = np.stack([top_left, bottom_left, bottom_right], -1)[:-1]  # none in the south pole's row
    right = np.stack([top_left, bottom_right, top_right], -1)[1:]  # none in the north pole's row
    return v, np.concatenate([left.reshape(-1, 3), right.reshape(-1, 3)]), uv


def bending(frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (F, N, 3), faces, uv): the ellipsoid bending upwards (y += 0.5 s x^2) and drifting
    0.4 along +x as s goes from 0 at the first frame to 1 at the last."""
    v, faces, uv = ellipsoid()
    s = np.linspace(0.0, 1.0, frames)[:, None]
    verts = np.repeat(v[None], frames, 0)
    verts[..., 1] += 0.5 * s * v[:, 0] ** 2
    verts[..., 0] += 0.4 * s
    return verts, faces, uv


def checker(size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8: a red-green gradient over a blue checkerboard of 8 x 8 squares, no white."""
    y, x = np.mgrid[0:size, 0:size]
    squares = ((x // (size // 8) + y // (size // 8)) % 2).astype(float)
    return np.stack([40 + 180 * x / (size - 1), 40 + 180 * y / (size - 1), 60 + 140 * squares], -1).astype(np.uint8)


def test_the_shape_is_outward_wound():
    verts, faces, _ = bending(len(TIMES))
    for v in verts:
        a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
        assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6 > 0  # a positive volume


# ----------------------------------------------------------------------------------- the fixtures


def _viewer_packages() -> Path:
    """The node_modules folder holding three and @google/model-viewer; skipped when they are missing,
    failed instead when SV4D_REQUIRE_VALIDATOR=1 (as in CI, whose .ci/run installs them)."""
    modules = gltf_validator_folder() / "node_modules"
    if not (
        (modules / "three" / "examples" / "jsm" / "loaders" / "GLTFLoader.js").is_file()
        and (modules / "@google" / "model-viewer" / "dist" / "model-viewer.min.js").is_file()
    ):
        why = (
            f"three and @google/model-viewer are not in {modules}: `npm install --legacy-peer-deps --prefix "
            f"~/.cache/sv4d/node three@{THREE_VERSION} @google/model-viewer@{MODEL_VIEWER_VERSION}` "
            "(or SV4D_GLTF_VALIDATOR naming a folder with node_modules/three and node_modules/@google/model-viewer)"
        )
        skip_unless_required(why, "SV4D_REQUIRE_VALIDATOR")
    return modules


class _Site(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; a subclass keeps (status, path) of every request in its ``requests`` list."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",  # module scripts need a JavaScript MIME type
        ".mjs": "text/javascript",
        ".glb": "model/gltf-binary",
    }
    requests: list[tuple[int, str]]

    def log_request(self, code="-", size="-"):
        self.requests.append((int(code), self.path))

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def animation(tmp_path_factory):
    """The served site (pages, node_modules, anim.glb of 5 textured frames): its address, the
    frames' vertices, the server's request log."""
    modules = _viewer_packages()
    site = tmp_path_factory.mktemp("site")
    for page in PAGES.glob("*.html"):
        shutil.copy(page, site)
    (site / "node_modules").symlink_to(modules, target_is_directory=True)
    verts, faces, uv = bending(len(TIMES))
    write_animated_glb(site / "anim.glb", verts, faces, TIMES, uv=uv, texture=checker(), name=NAME)

    class Handler(_Site):
        requests = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "verts": verts, "requests": Handler.requests}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def browser(animation):
    driver = chromium(*WEBGL_FLAGS, OFFLINE)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, animation: dict, page: str, seconds: float = 20.0) -> dict:
    """Open ``page`` on anim.glb and wait for its window.__result; a page that reports an error,
    or none in time, fails the test."""
    driver.get(f"{animation['url']}/{page}")
    end = time.time() + seconds
    while (result := driver.execute_script("return window.__result")) is None:
        assert time.time() < end, f"{page} reported nothing in {seconds:.0f} s"
        time.sleep(0.1)
    assert "error" not in result, f"{page}: {result['error']}"
    return result


def _report(driver, animation: dict):
    """On a failure, print the browser's console and the requests the server saw (pytest shows them)."""
    print("browser console:")
    for entry in driver.get_log("browser"):
        print(f"  {entry['level']} {entry['message']}")
    print("requests:", *(f"  {code} {path}" for code, path in animation["requests"]), sep="\n")


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# ------------------------------------------------------------------------------------ the viewers


def test_three_js_imports_the_glb_and_plays_its_morph_targets(browser, animation):
    verts = animation["verts"]
    frames, n = verts.shape[:2]
    tip = int(verts[0, :, 0].argmax())  # a vertex that bends and drifts
    try:
        r = _open(browser, animation, f"three.html?src=/anim.glb&mid={MID}&vertex={tip}")
        assert r["revision"] == THREE_VERSION.split(".")[1]
        # one mesh with a morph target per frame, named as written
        assert r["meshes"] == 1 and r["vertices"] == n
        assert r["influences"] == r["morphPositions"] == frames and r["morphTargetsRelative"] is True
        assert r["targetNames"] == [f"frame_{k:03d}" for k in range(frames)]
        # unlit (KHR_materials_unlit) with the 64 x 64 texture
        assert r["material"] == "MeshBasicMaterial" and r["map"] == [64, 64]
        # one clip of one LINEAR track on the mesh's morph weights, a key per frame
        assert r["animations"] == [NAME]
        (track,) = r["tracks"]
        assert track["name"] == f"{NAME}.morphTargetInfluences" and track["interpolation"] == "LINEAR"
        np.testing.assert_allclose(track["times"], TIMES, rtol=1e-6)
        assert track["values"] == frames * frames
        assert r["duration"] == pytest.approx(TIMES[-1])
        # played: one-hot k at key k, half and half between two keys
        np.testing.assert_allclose(r["atKeys"], np.eye(frames), atol=1e-6)
        half = np.zeros((frames - 1, frames))
        half[np.arange(frames - 1), np.arange(frames - 1)] = half[np.arange(frames - 1), np.arange(1, frames)] = 0.5
        np.testing.assert_allclose(r["halfway"], half, atol=1e-6)
        # the shape halfway is the average of the two frames, by three.js's morphing and by hand
        expected = (verts[MID] + verts[MID + 1]) / 2
        np.testing.assert_allclose(r["morphed"], expected, atol=1e-5)
        np.testing.assert_allclose(r["byHand"], expected[tip], atol=1e-5)
        # drawn with WebGL (morphing on the GPU), 96 pixels spanning [-2, 2]: textured; at first the
        # ellipsoid (area pi/4 x 2 x 1) centred, at the last frame 0.4 to the right and bent
        # upwards (its area's centroid rises by 0.5 E[x^2] = 0.125)
        first, last = r["drawn"]
        px = 96 / 4  # pixels per unit
        for d in (first, last):
            assert d["covered"] == pytest.approx(np.pi / 4 * 2 / 16, rel=0.1) and d["colours"] > 50, r["drawn"]
        assert (first["cx"], first["cy"]) == pytest.approx((48 - 0.5, 48 - 0.5), abs=1), r["drawn"]
        assert last["cx"] - first["cx"] == pytest.approx(0.4 * px, abs=1.5), r["drawn"]
        assert last["cy"] - first["cy"] == pytest.approx(0.125 * px, abs=1.5), r["drawn"]
        errors = _errors(browser)
        assert not errors, errors
    except BaseException:
        _report(browser, animation)
        raise


def test_model_viewer_loads_the_glb_and_draws_it(browser, animation, tmp_path):
    from selenium.webdriver.common.by import By

    try:
        r = _open(browser, animation, "model_viewer.html?src=/anim.glb")
        assert r["loaded"] is True and r["animations"] == [NAME]
        viewer = browser.find_element(By.ID, "viewer")
        end = time.time() + 10
        while not browser.execute_script("return arguments[0].modelIsVisible", viewer):
            assert time.time() < end, "model-viewer loaded the model but never showed it"
            time.sleep(0.1)
        shots = []
        for t in (0.0, TIMES[-2]):  # the first and the last-but-one frame (it loops: the end is the start)
            # play the clip (it loops), pause it, go to t and let it draw
            duration, now = browser.execute_async_script(
                "const [v, t, done] = arguments; v.play(); v.pause(); v.currentTime = t;"
                "requestAnimationFrame(() => requestAnimationFrame(() => done([v.duration, v.currentTime])));",
                viewer,
                t,
            )
            assert (duration, now) == pytest.approx((TIMES[-1], t))
            shot = element_pixels(viewer)
            Image.fromarray(shot.astype(np.uint8)).save(tmp_path / f"model_viewer_{t:g}s.png")
            # the model was drawn: pixels unlike the white background
            drawn = (np.abs(shot - 255).max(-1) > 24).mean()
            assert drawn > 0.05, f"model-viewer drew nothing at {t} s ({drawn:.1%} of pixels; {tmp_path})"
            shots.append(shot)
        # and the animation moved it
        moved = (np.abs(shots[1] - shots[0]).max(-1) > 24).mean()
        assert moved > 0.01, f"the same picture at 0 and {TIMES[-2]} s ({moved:.1%} of pixels changed; {tmp_path})"
        errors = _errors(browser)
        assert not errors, errors
    except BaseException:
        _report(browser, animation)
        raise

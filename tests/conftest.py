import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository
DATA = Path(__file__).parent / "fixtures"  # small data the tests use (tests/<package>/ mirror src/sv4d/)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="module")
def one_thread():
    """The tiny models run in a second on one thread; on a busy machine two threads can take ten times longer."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*a, **k):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def read_manifest(name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    with open(DATA / name) as f:
        next(f)
        for line in f:
            key, shape, _ = line.rstrip("\n").split("\t")
            rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else ()))
    return rows


def tiny_generation_checkpoint(path: Path, frames: int = 12, views: int = 4, **config) -> Path:
    """A random tiny model that can generate (it has the CLIP tower), saved as a safetensors
    checkpoint: ``frames`` x ``views`` per window, the default azimuths of the official preset
    with that many views (4: sv4d2, 8: sv4d2_8views; else tiny_config's); ``config`` goes to
    ``tiny_config`` (e.g. image_size=32, vae_downsample=4 for a smaller, faster model)."""
    from sv4d.checkpoint import save_model
    from sv4d.config import PRESETS, tiny_config
    from sv4d.models.sv4d import SV4DModel

    torch.manual_seed(0)
    preset = {4: PRESETS["sv4d2"], 8: PRESETS["sv4d2_8views"]}.get(views)
    cfg = tiny_config("tiny_gen", num_frames=frames, num_views=views, with_clip=True, **config)
    cfg = cfg.replace(azimuths_deg=preset.azimuths_deg) if preset else cfg
    return save_model(SV4DModel(cfg, include_unused=True), path)


def fill_hub_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str | None = None) -> Path:
    """Lay ``files`` (path in the repository -> local file) out in the Hub cache folder ``cache``
    (HF_HOME/hub) as huggingface_hub does: ``models--OWNER--NAME/blobs/<sha256>``,
    ``snapshots/<commit>/<path>`` a relative symlink to the blob, ``refs/main`` holding the
    commit hash. Returns the snapshot folder."""
    import hashlib

    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, src in files.items():
        data = Path(src).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # no newline, as the Hub client writes it
    return snapshot


# The Khronos glTF validator: the npm package gltf-validator, run by tests/gltf_validate.mjs under Node.
VALIDATOR_VERSION = "2.0.0-dev.3.10"
_SEVERITY = {0: "error", 1: "warning", 2: "info", 3: "hint"}


def gltf_validator_folder() -> Path:
    """The folder holding node_modules/gltf-validator: $SV4D_GLTF_VALIDATOR, else ~/.cache/sv4d/node."""
    env = os.environ.get("SV4D_GLTF_VALIDATOR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sv4d" / "node"


def skip_unless_required(why: str, require: str) -> None:
    """Skip the test for a missing tool — or fail it when the environment variable ``require`` is
    set (as .ci/run sets SV4D_REQUIRE_VALIDATOR and SV4D_REQUIRE_BROWSER, having installed them)."""
    if os.environ.get(require, "") not in ("", "0"):
        pytest.fail(f"required here ({require}): {why}")
    pytest.skip(why)


def gltf_validate(path: str | os.PathLike) -> dict:
    """The Khronos glTF validator's report on the glTF/GLB file ``path`` (its JSON as a dict:
    ``report["issues"]`` has numErrors, numWarnings, ... and ``messages``).

    The test is skipped when node or the validator is missing — failed instead when
    SV4D_REQUIRE_VALIDATOR=1 (as in CI, whose .ci/run installs both)."""
    node = shutil.which("node")
    folder = gltf_validator_folder()
    missing = None
    if node is None:
        missing = "node (Node.js) is not installed"
    elif not (folder / "node_modules" / "gltf-validator" / "package.json").is_file():
        missing = f"the glTF validator is not in {folder}/node_modules"
    if missing:
        why = (
            f"{missing}: the glTF checks need Node.js and `npm install --prefix ~/.cache/sv4d/node "
            f"gltf-validator@{VALIDATOR_VERSION}` (or SV4D_GLTF_VALIDATOR naming a folder with "
            "node_modules/gltf-validator)"
        )
        skip_unless_required(why, "SV4D_REQUIRE_VALIDATOR")
    script = Path(__file__).parent / "gltf_validate.mjs"
    run = subprocess.run([node, str(script), str(path), str(folder)], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        pytest.fail(f"the glTF validator did not run on {path}: {run.stderr.strip()}")
    return json.loads(run.stdout)


def gltf_messages(report: dict) -> str:
    """The validator's messages, one a line: severity, code, JSON pointer, text."""
    return "\n".join(
        f"{_SEVERITY.get(m.get('severity'), m.get('severity'))} {m.get('code')} at {m.get('pointer', '-')}: "
        f"{m.get('message')}"
        for m in report["issues"]["messages"]
    )


def assert_valid_gltf(path: str | os.PathLike) -> dict:
    """Assert that the Khronos glTF validator finds no error in ``path``; returns the report."""
    report = gltf_validate(path)
    assert report["issues"]["numErrors"] == 0, f"{path} is not valid glTF:\n{gltf_messages(report)}"
    return report


# A real browser: Debian's chromium and chromium-driver, driven by Selenium (the test extras).
#: what a page that draws with WebGL needs: headless Chromium has no GPU, so WebGL runs on
#: SwiftShader (ANGLE's CPU renderer), which Chromium only uses when asked to
WEBGL_FLAGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")


def chromium(*flags: str, network: bool = False):
    """A headless Chromium driven by Selenium, with ``flags`` added to its command line (e.g.
    ``*WEBGL_FLAGS``); its console is kept for ``driver.get_log("browser")`` and, with ``network``,
    the addresses it requested for :func:`requested_urls`. The caller quits it.

    The test is skipped when chromium, chromedriver or selenium is missing — failed instead when
    SV4D_REQUIRE_BROWSER is set (as in CI, whose .ci/run installs them)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing = "no selenium (pip install selenium, in the test extras)"
    if not (browser and driver):
        missing = "no chromium/chromedriver (apt-get install chromium chromium-driver)"
    if missing:
        skip_unless_required(missing, "SV4D_REQUIRE_BROWSER")
    opts = Options()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        opts.add_argument(a)
    for a in flags:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", **({"performance": "ALL"} if network else {})})
    return webdriver.Chrome(service=Service(driver), options=opts)


def wait_for(driver, script: str, seconds: float = 20.0, what: str = ""):
    """The first truthy value of the JavaScript ``script`` in the page, polled every 0.1 s; after
    ``seconds`` a failure (with a screenshot in $TMPDIR/sv4d-browser-timeout.png)."""
    import time

    end = time.time() + seconds
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    driver.save_screenshot(str(Path(os.environ.get("TMPDIR", "/tmp")) / "sv4d-browser-timeout.png"))
    raise AssertionError(f"timed out after {seconds} s waiting for {what or script}")


def element_pixels(element):
    """What the page shows in a Selenium element: (H, W, 3) float RGB from its screenshot."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")).astype(float)


def requested_urls(driver) -> set[str]:
    """Every address the page requested since the last call (a driver made with ``network=True``)."""
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls

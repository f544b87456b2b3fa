"""`sv4d run` end to end: a tiny random model served from a pre-filled Hugging Face cache (offline),
a shipped clip, every stage's output, a rerun after an interruption, and the page in a real browser."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import DATA, chromium, element_pixels, fill_hub_cache, tiny_generation_checkpoint, wait_for
from sv4d.cli import main

CLIP = DATA / "videos" / "camel_96.gif"  # 96 x 96, an animated camel

#: `sv4d run` options for a run of seconds: 4 frames, 2 sampling steps, a 32-px NeRF of 30 steps
TINY_RUN = [
    "--num-frames", "4", "--steps", "2", "--fit-steps", "30", "--resolution", "32", "--grid", "32",
    "--page-size", "32", "--page-azimuths", "6",
    "--set", "resolutions=[16,32]", "--set", "hull_resolution=32", "--set", "rays=1024",
    "--set", "features=8", "--set", "hidden=32", "--fit", "orbit_frames=6", "-q",
]  # fmt: skip


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> Path:
    """HF_HOME whose cache holds stabilityai/sv4d2.0's sv4d2.safetensors (a tiny random model)."""
    home = tmp_path_factory.mktemp("hf_home")
    ckpt = tiny_generation_checkpoint(tmp_path_factory.mktemp("ckpt") / "sv4d2.safetensors")
    fill_hub_cache(home / "hub", "stabilityai/sv4d2.0", {"sv4d2.safetensors": ckpt})
    return home


def _offline(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("HF_HOME", str(home))
    mp.delenv("HF_HUB_CACHE", raising=False)
    mp.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def offline(hub_home, monkeypatch) -> Path:
    _offline(monkeypatch, hub_home)
    return hub_home


@pytest.fixture(scope="module")
def tiny_run(hub_home, tmp_path_factory) -> Path:
    """One complete tiny `sv4d run CLIP` with the default checkpoint (sv4d2, from the cache)."""
    out = tmp_path_factory.mktemp("runs") / "camel"
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, hub_home)
        assert main(["run", str(CLIP), "-o", str(out), *TINY_RUN]) == 0
    return out


def test_run_writes_every_stage_and_the_page(tiny_run):
    out = tiny_run
    state = json.loads((out / "run.json").read_text())
    assert state["complete"] and list(state["stages"]) == ["generate", "fit", "export", "page"]
    assert all(s["done"] and s["seconds"] > 0 for s in state["stages"].values())
    assert state["options"]["generate"]["checkpoint"] == "sv4d2"
    # generate: a multi-view set of 4 frames x 5 views (view 0 = the input)
    gen = json.loads((out / "views" / "generation.json").read_text())
    assert gen["steps"] == 2
    assert len(list((out / "views" / "rgba").glob("view_*/frame_*.png"))) == 4 * 5
    # fit: 30 steps of a NeRF
    fit = json.loads((out / "fit" / "fit.json").read_text())
    assert fit["steps"] == 30 and fit["method"] == "nerf" and (out / "fit" / "checkpoint.pt").is_file()
    # a generated set is recognised as one: visibility weighting on, a hull that forgives one view
    assert fit["visibility_weighting"] is True and fit["settings"]["hull_misses"] == 1 and len(fit["views"]) == 5
    # export: meshes, or a note saying why there are none (a random model's views may hold no surface)
    export = state["stages"]["export"]
    assert (out / "export").is_dir()
    assert export["files"] or export["note"].startswith("no mesh")
    for f in export["files"]:
        assert (out / f).is_file()
    # page: one strip per elevation x frame, each 6 azimuths wide
    strips = sorted((out / "page").glob("e*_f*.jpg"))
    assert len(strips) == 2 * 4
    assert Image.open(strips[0]).size == (6 * 32, 32)
    page = (out / "index.html").read_text()
    for ref in ("page/e0_f000.jpg", "views/videos/view_00.mp4", "fit/orbit.mp4", "page/input.gif"):
        assert ref in page
    assert "http://" not in page and "https://" not in page  # nothing from the network
    assert not [p for p in out.rglob(".*") if p.name != "."]  # no temporary files left


def test_an_interrupted_run_completes_without_redoing_finished_stages(offline, tmp_path, monkeypatch, capsys):
    from sv4d.fit.nerf import NerfFitter

    out = tmp_path / "run"
    real_step = NerfFitter.train_step

    def interrupt_at_12(self, step, *a, **k):
        if step == 12:
            raise KeyboardInterrupt
        return real_step(self, step, *a, **k)

    monkeypatch.setattr(NerfFitter, "train_step", interrupt_at_12)
    assert main(["run", str(CLIP), "-o", str(out), *TINY_RUN]) == 130
    state = json.loads((out / "run.json").read_text())
    assert state["stages"]["generate"]["done"] and "fit" not in state["stages"]
    assert (out / "fit" / "checkpoint.pt").is_file() and not (out / "fit" / "fit.json").exists()
    generated = (out / "views" / "generation.json").stat().st_mtime_ns

    monkeypatch.setattr(NerfFitter, "train_step", real_step)
    capsys.readouterr()
    assert main(["run", str(CLIP), "-o", str(out), *[a for a in TINY_RUN if a != "-q"]]) == 0
    err = capsys.readouterr().err
    assert "[1/4] generate: done before, kept" in err and "time per stage" in err
    assert (out / "views" / "generation.json").stat().st_mtime_ns == generated
    state = json.loads((out / "run.json").read_text())
    assert state["complete"] and state["stages"]["fit"]["resumed"] and state["stages"]["fit"]["steps"] == 30
    assert json.loads((out / "fit" / "fit.json").read_text())["steps"] == 30
    assert (out / "index.html").is_file()


def test_a_rerun_with_other_options_is_refused_redo_refits_and_overwrite_starts_again(
    tiny_run, offline, tmp_path, capsys
):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run, out, symlinks=True)
    before = (out / "run.json").read_text()
    changed = [a if a != "30" else "40" for a in TINY_RUN]  # --fit-steps 40
    assert main(["run", str(CLIP), "-o", str(out), *changed]) == 2
    err = capsys.readouterr().err
    assert "other options" in err and "fit (fit_steps: 30 -> 40)" in err and "Traceback" not in err
    assert "--redo fit" in err  # the way to refit without generating again
    assert (out / "run.json").read_text() == before  # nothing touched
    # the same options: every stage is kept, nothing is redone
    t0 = (out / "index.html").stat().st_mtime_ns
    generated = (out / "views" / "generation.json").stat().st_mtime_ns
    assert main(["run", str(CLIP), "-o", str(out), *TINY_RUN]) == 0
    assert (out / "index.html").stat().st_mtime_ns == t0
    # --redo fit --until fit: the same views fitted again with 40 steps, then a stop; the old fit,
    # export and page are gone once the new fit is complete
    assert main(["run", str(CLIP), "-o", str(out), *changed, "--redo", "fit", "--until", "fit"]) == 0
    state = json.loads((out / "run.json").read_text())
    assert not state["complete"] and list(state["stages"]) == ["generate", "fit"]
    assert state["options"]["fit"]["fit_steps"] == 40 and not state["stages"]["fit"]["resumed"]
    assert json.loads((out / "fit" / "fit.json").read_text())["steps"] == 40
    assert (out / "views" / "generation.json").stat().st_mtime_ns == generated
    assert not (out / "index.html").exists() and not (out / "export").exists() and not list(out.glob(".old-*"))
    # the same command without --until goes on: export and page
    assert main(["run", str(CLIP), "-o", str(out), *changed]) == 0
    state = json.loads((out / "run.json").read_text())
    assert state["complete"] and (out / "index.html").is_file()
    # --overwrite: a new run from scratch (here only up to the views); the old folder is gone once done
    assert main(["run", str(CLIP), "-o", str(out), *changed, "--overwrite", "--until", "generate"]) == 0
    state = json.loads((out / "run.json").read_text())
    assert list(state["stages"]) == ["generate"] and not (out / "fit").exists()
    assert (out / "views" / "generation.json").stat().st_mtime_ns != generated
    assert not list(tmp_path.glob(".copy.old-*"))
    capsys.readouterr()
    assert main(["run", str(CLIP), "-o", str(out), *changed, "--redo", "page", "--until", "fit"]) == 2
    assert "redo page comes after until fit" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gen", "nonsense=1"], "unknown generate option(s) ['nonsense']"),
        (["--fit", "rays=3"], "unknown fit option(s) ['rays']"),
        (["--page-azimuths", "1"], "page_azimuths must be at least 2"),
        (["--page-elevations", "90"], "strictly between -90 and 90"),
        (["-c", "hf://stabilityai/sv4d2.0/missing.safetensors"], "missing.safetensors"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(extra, message, offline, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["run", str(CLIP), "-o", str(out), *TINY_RUN, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() or not (out / "views").exists()


def test_missing_input_and_a_folder_that_is_not_a_run(offline, tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o")]) == 2
    assert "nope.mp4: no such file or folder" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["run", str(CLIP), "-o", str(other), *TINY_RUN]) == 2
    assert "is not an sv4d run" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------ the page


def test_the_page_in_a_real_browser(tiny_run):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = chromium()
    try:
        driver.get((tiny_run / "index.html").as_uri())
        wait_for(driver, "return window.sv4dViewer && window.sv4dViewer.ready")
        state = "return [sv4dViewer.az, sv4dViewer.el, sv4dViewer.frame]"
        driver.find_element(By.ID, "play").click()  # pause, so that only our actions move the view
        assert driver.execute_script("return sv4dViewer.playing") is False
        az0, el0, frame0 = driver.execute_script(state)
        canvas = driver.find_element(By.ID, "viewer")
        # a drag to the right turns the asset: another azimuth, same time
        ActionChains(driver).click_and_hold(canvas).move_by_offset(90, 0).move_by_offset(20, 0).release().perform()
        az1, el1, frame1 = driver.execute_script(state)
        assert az1 != az0 and frame1 == frame0
        # a drag upwards changes the elevation
        ActionChains(driver).click_and_hold(canvas).move_by_offset(0, -70).release().perform()
        assert driver.execute_script(state)[1] != el1
        # the slider changes the time
        slider = driver.find_element(By.ID, "time")
        slider.send_keys(Keys.END)
        assert driver.execute_script(state)[2] == 3
        slider.send_keys(Keys.HOME)
        assert driver.execute_script(state)[2] == 0
        # what is drawn is an image of the asset, not a blank canvas
        shot = element_pixels(canvas)
        assert shot.std() > 3 and (shot < 245).any(axis=-1).mean() > 0.01
        # play moves time on
        driver.find_element(By.ID, "play").click()
        wait_for(driver, "return sv4dViewer.frame !== 0")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_the_python_functions(tiny_run, offline, tmp_path):
    import sv4d
    from sv4d.errors import Sv4dError

    # sv4d.run with the CLI's options by name: the same run, so every stage is kept
    before = (tiny_run / "index.html").stat().st_mtime_ns
    opts = dict(num_frames=4, steps=2, fit_steps=30, resolution=32, grid=32, page_size=32, page_azimuths=6)
    opts.update(settings={"resolutions": [16, 32], "hull_resolution": 32, "rays": 1024, "features": 8, "hidden": 32})
    state = sv4d.run(str(CLIP), tiny_run, fit={"orbit_frames": 6}, progress=False, **opts)
    assert state["complete"] and (tiny_run / "index.html").stat().st_mtime_ns == before
    with pytest.raises(Sv4dError, match="unknown run option"):
        sv4d.run(str(CLIP), tmp_path / "x", fit_step=3)
    # sv4d.fit is the package and, called, a fit
    summary = sv4d.fit(
        tiny_run / "views", tmp_path / "fit", steps=4, resolution=16, settings=opts["settings"], videos=False,
        progress=False,
    )  # fmt: skip
    assert summary["steps"] == 4 and (tmp_path / "fit" / "checkpoint.pt").is_file()
    assert sv4d.fit.run.fit_set  # the package's modules are still there
    with pytest.raises(Sv4dError, match="unknown fit option"):
        sv4d.fit(tiny_run / "views", tmp_path / "fit2", step=4)
    # sv4d.export picks meshes for a NeRF fit
    exported = state["stages"]["export"]["files"]
    with contextlib.nullcontext() if exported else pytest.raises(Sv4dError, match="empty mesh"):
        files = sv4d.export(tiny_run / "fit" / "checkpoint.pt", tmp_path / "mesh", grid=16, progress=False)
        assert files and all(f.suffix == ".glb" for f in files)


def test_a_run_that_made_nothing_can_be_rerun_with_other_options(offline, tmp_path, capsys):
    """The model could not be fetched: only run.json exists, so a rerun with another -c just starts."""
    out = tmp_path / "run"
    assert main(["run", str(CLIP), "-o", str(out), *TINY_RUN, "-c", "hf://stabilityai/sv4d2.0/other.safetensors"]) == 2
    assert "other.safetensors" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["run.json"]
    assert main(["run", str(CLIP), "-o", str(out), *TINY_RUN, "--until", "generate"]) == 0
    state = json.loads((out / "run.json").read_text())
    assert state["stages"]["generate"]["done"] and state["options"]["generate"]["checkpoint"] == "sv4d2"

"""Checkpoints from the Hugging Face Hub: spec parsing, a pre-filled offline cache, every error message.

Never the network: sockets are refused for the whole module, the cache is laid out by hand
(``conftest.fill_hub_cache``) and failures of ``hf_hub_download`` are stubbed.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors as he
import huggingface_hub.utils
import pytest
import torch
from safetensors.torch import save_file

from conftest import DATA, fill_hub_cache, tiny_generation_checkpoint
from sv4d.checkpoint import check_checkpoint, load_model, preset_for_file, resolve_config
from sv4d.cli import main
from sv4d.errors import Sv4dError
from sv4d.generate.pipeline import GenerationPipeline
from sv4d.io.hub import HUB_MODELS, HubFile, hub_cache_dir, hub_file, parse_hf_uri, resolve_checkpoint

MP4 = DATA / "videos" / "test_video1.mp4"
REPO = "stabilityai/sv4d2.0"


pytestmark = pytest.mark.usefixtures("one_thread", "no_network")


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """HF_HOME set now (after huggingface_hub was imported), online, no other Hub variables."""
    home = tmp_path / "hf_home"
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A very small generating model: windows of 2 frames x 2 views, 32 px."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return tiny_generation_checkpoint(path, 2, 2, image_size=32, vae_downsample=4)


@pytest.fixture
def offline_cache(hf_env, tiny_ckpt, monkeypatch) -> Path:
    """The tiny checkpoint cached as stabilityai/sv4d2.0's sv4d2.safetensors, HF_HUB_OFFLINE=1."""
    snapshot = fill_hub_cache(hf_env / "hub", REPO, {"sv4d2.safetensors": tiny_ckpt})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


# ----------------------------------------------------------------------------- specs
def test_known_names():
    assert HUB_MODELS == {
        "sv4d2": (REPO, "sv4d2.safetensors"),
        "sv4d2_8views": (REPO, "sv4d2_8views.safetensors"),
    }
    assert hub_file("sv4d2") == HubFile(REPO, "sv4d2.safetensors")
    assert hub_file("sv4d2.safetensors") is None and hub_file(Path("sv4d2")) is None  # local paths


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("hf://stabilityai/sv4d2.0/sv4d2.safetensors", HubFile(REPO, "sv4d2.safetensors")),
        ("hf://me/my-model@v1.0/sub/dir/w.safetensors", HubFile("me/my-model", "sub/dir/w.safetensors", "v1.0")),
        ("hf://me/m_2@refs%2Fpr%2F3/w.safetensors", HubFile("me/m_2", "w.safetensors", "refs/pr/3")),
        ("hf://me/m@" + "a" * 40 + "/w.safetensors", HubFile("me/m", "w.safetensors", "a" * 40)),
    ],
)
def test_hf_uri_parsing(uri, expected):
    assert parse_hf_uri(uri) == expected
    assert parse_hf_uri(expected.uri) == expected  # the uri property spells it back


@pytest.mark.parametrize(
    "uri,message",
    [
        ("hf://", "expected hf://OWNER/REPO"),
        ("hf://owner", "expected hf://OWNER/REPO"),
        ("hf://owner/repo", "expected hf://OWNER/REPO"),
        ("hf://owner/repo/", "expected hf://OWNER/REPO"),
        ("hf://owner//w.safetensors", "expected hf://OWNER/REPO"),
        ("hf://owner/repo@/w.safetensors", "revision"),
        ("hf://own er/repo/w.safetensors", "not a repository id"),
        ("hf://owner/re--po/w.safetensors", "not a repository id"),
        ("hf://owner/repo/../w.safetensors", "'..'"),
        ("hf://owner/repo/model.ckpt", "only .safetensors"),
    ],
)
def test_bad_hf_uri_is_a_clear_error(uri, message):
    with pytest.raises(Sv4dError, match="bad Hub address") as e:
        resolve_checkpoint(uri)
    assert message in str(e.value)


def test_bad_hf_uri_through_the_cli(hf_env, tmp_path, capsys):
    rc = main(["generate", str(MP4), "-c", "hf://owner/repo", "-o", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("sv4d: error: bad Hub address") and "Traceback" not in err


def test_local_paths_and_typo_hints(tmp_path, tiny_ckpt):
    assert resolve_checkpoint(tiny_ckpt) == tiny_ckpt and resolve_checkpoint(str(tiny_ckpt)) == tiny_ckpt
    with pytest.raises(Sv4dError) as e:
        resolve_checkpoint(tmp_path / "weights.safetensors")
    assert str(e.value) == f"checkpoint not found: {tmp_path / 'weights.safetensors'}"  # no hint: not a typo
    with pytest.raises(Sv4dError, match=r"checkpoint not found: sv4d_2; known names: sv4d2, sv4d2_8views"):
        resolve_checkpoint("sv4d_2")
    with pytest.raises(Sv4dError, match=r"not found: sv4d2_8views\.safetensors \(give -c sv4d2_8views"):
        resolve_checkpoint("sv4d2_8views.safetensors")
    pickle = tmp_path / "model.safetensors"
    pickle.write_bytes(b"\x80\x04" + b"\x00" * 64)
    with pytest.raises(Sv4dError, match="pickle"):
        resolve_checkpoint(pickle)


# ----------------------------------------------------------------------------- the cache
def test_a_prefilled_offline_cache_is_found(offline_cache, hf_env, tiny_ckpt):
    # huggingface_hub read its environment at import, before these variables were set
    assert huggingface_hub.constants.HF_HOME != str(hf_env) and not huggingface_hub.constants.HF_HUB_OFFLINE
    assert hub_cache_dir() == hf_env / "hub"
    p = resolve_checkpoint("sv4d2")
    assert p == offline_cache / "sv4d2.safetensors" and p.is_symlink()
    assert p.read_bytes() == tiny_ckpt.read_bytes()
    commit = offline_cache.name
    assert resolve_checkpoint(f"hf://{REPO}/sv4d2.safetensors") == p
    assert resolve_checkpoint(f"hf://{REPO}@{commit}/sv4d2.safetensors") == p
    assert resolve_checkpoint(f"hf://{REPO}@main/sv4d2.safetensors") == p


def test_hf_hub_cache_wins_over_hf_home(hf_env, tiny_ckpt, tmp_path, monkeypatch):
    direct = tmp_path / "direct_cache"
    fill_hub_cache(direct, REPO, {"sv4d2.safetensors": tiny_ckpt})
    monkeypatch.setenv("HF_HUB_CACHE", str(direct))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint("sv4d2").is_relative_to(direct)


def test_checkpoint_functions_take_specs(offline_cache, tiny_ckpt, hf_env, tmp_path):
    assert resolve_config("sv4d2").name == "tiny_gen"
    assert load_model("sv4d2").cfg.name == "tiny_gen"
    assert "keys and shapes match the tiny_gen model" in check_checkpoint("sv4d2")
    pipe = GenerationPipeline.from_checkpoint("sv4d2", device="cpu")
    assert pipe.checkpoint == "sv4d2" and pipe.cfg.name == "tiny_gen"
    # a file without sv4d's config: the preset comes from the resolved file's own name
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(1)}, str(bare))
    fill_hub_cache(hf_env / "hub", REPO, {"sv4d2_8views.safetensors": bare}, commit=offline_cache.name)
    assert preset_for_file(resolve_checkpoint("sv4d2_8views")) == "sv4d2_8views"
    assert resolve_config("sv4d2_8views").name == "sv4d2_8views"


def test_a_bad_cached_file_is_refused_before_loading(hf_env, tmp_path, monkeypatch):
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04" + b"\x00" * 64)  # a zip (torch.save) file
    fill_hub_cache(hf_env / "hub", REPO, {"sv4d2.safetensors": junk})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Sv4dError, match="pickle checkpoint"):
        resolve_checkpoint("sv4d2")


def test_generate_runs_from_the_offline_cache_by_default(offline_cache, tmp_path, capsys):
    out = tmp_path / "gen"
    argv = ["generate", str(MP4), "-o", str(out), "--num-frames", "3", "--steps", "1", "--no-videos", "--no-preview"]
    assert main([*argv, "-c", "sv4d2", "-q"]) == 0
    gen = json.loads((out / "generation.json").read_text())
    assert gen["checkpoint"] == "sv4d2" and gen["model"] == "tiny_gen" and gen["num_frames"] == 3
    assert main([*argv, "--overwrite", "-q"]) == 0  # -c defaults to sv4d2
    assert json.loads((out / "generation.json").read_text())["checkpoint"] == "sv4d2"


def test_offline_and_not_cached(hf_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = hf_env / "hub"
    real, seen = huggingface_hub.hf_hub_download, []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: seen.append(k) or real(*a, **k))
    with pytest.raises(Sv4dError) as e:
        resolve_checkpoint("sv4d2_8views")
    assert seen[0]["local_files_only"] is True and seen[0]["cache_dir"] == str(cache)  # read at call time
    msg = str(e.value)
    assert f"not in the local cache ({cache}) and offline" in msg and "HF_HUB_OFFLINE" in msg
    rc = main(["generate", str(MP4), "-o", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and f"not in the local cache ({cache}) and offline" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- download errors
def _hub_error(name: str, status: int) -> Exception:
    """An exception of huggingface_hub.errors.NAME as the client raises it (with an HTTP response when
    the class takes one)."""
    cls = getattr(he, name)
    if "response" in inspect.signature(cls.__init__).parameters:
        http = sys.modules[he.HTTPError.__module__.split(".")[0]]  # the HTTP library huggingface_hub uses
        url = f"https://huggingface.co/{REPO}/resolve/main/sv4d2.safetensors"
        response = http.Response(status, request=http.Request("GET", url))
        return cls(f"{status} Client Error", response=response)
    return cls(f"{status} Client Error")


def _no_route() -> Exception:
    e = he.LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")
    e.__cause__ = ConnectionError("[Errno 101] Network is unreachable")
    return e


CASES = {
    "gated": (
        lambda: _hub_error("GatedRepoError", 403),
        ["gated", "accept its licence at https://huggingface.co/stabilityai/sv4d2.0", "hf auth login", "HF_TOKEN"],
    ),
    "no_repo": (lambda: _hub_error("RepositoryNotFoundError", 404), ["repository stabilityai/sv4d2.0 was not found"]),
    "no_file": (lambda: he.EntryNotFoundError("404: entry not found"), ["file sv4d2.safetensors was not found in"]),
    "unauthorised": (lambda: _hub_error("HfHubHTTPError", 401), ["not authorised", "HTTP 401", "hf auth login"]),
    "no_network": (_no_route, ["not in the local cache (", ") and offline", "could not be reached", "unreachable"]),
    "connection": (
        lambda: ConnectionError("Connection reset by peer"),
        ["could not download sv4d2.safetensors of stabilityai/sv4d2.0", "Connection reset by peer"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_download_errors_are_one_clear_line(case, hf_env, tmp_path, monkeypatch, capsys):
    make, expected = CASES[case]
    calls = []

    def fake_download(repo_id, filename, **kw):
        calls.append((repo_id, filename, kw))
        raise make()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    out = tmp_path / "o"
    for argv in (["generate", str(MP4), "-c", "sv4d2", "-o", str(out), "-q"], ["check", "sv4d2"]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert err.startswith("sv4d: error: ") and err.count("\n") == 1 and "Traceback" not in err
        for text in expected:
            assert text in err, (text, err)
    assert not out.exists()
    # the cache and offline switch were read from the environment at call time
    assert calls[0] == (
        REPO,
        "sv4d2.safetensors",
        {"revision": None, "cache_dir": str(hf_env / "hub"), "local_files_only": False},
    )


def test_hf_address_with_revision_is_downloaded_with_it(hf_env, tiny_ckpt, monkeypatch):
    calls, bars_hidden = [], huggingface_hub.utils.are_progress_bars_disabled()

    def fake_download(repo_id, filename, **kw):
        calls.append((repo_id, filename, kw["revision"], huggingface_hub.utils.are_progress_bars_disabled()))
        return str(tiny_ckpt)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert resolve_checkpoint("hf://me/model@dev/sub/w.safetensors", progress=False) == tiny_ckpt
    assert calls == [("me/model", "sub/w.safetensors", "dev", True)]  # progress=False: no download bars
    assert huggingface_hub.utils.are_progress_bars_disabled() == bars_hidden  # ... only meanwhile

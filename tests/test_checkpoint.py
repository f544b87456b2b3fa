"""Checkpoint loading: safetensors only, strict and explicit, config in metadata, dtypes."""

import pytest
import torch
from safetensors.torch import save_file

import sv4d
from sv4d import Sv4dError, tiny_config
from sv4d.checkpoint import load_model, preset_for_file, resolve_config, save_model
from sv4d.cli import main
from sv4d.devices import parse_dtype
from sv4d.models.sv4d import SV4DModel


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return SV4DModel(tiny_config("t", num_frames=2, num_views=3)).eval()


def _inputs(model, seed=0):
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    T, V, h = cfg.num_frames, cfg.num_views, cfg.latent_size
    N = T * V
    return dict(
        x=torch.randn(N, 8, h, h, generator=g),
        timesteps=torch.randn(N, generator=g),
        context=torch.randn(1, T, cfg.unet.context_dim, generator=g),
        y=torch.randn(N, cfg.unet.adm_in_channels, generator=g),
        cond_view=torch.randn(V, 4, h, h, generator=g),
    )


def _unet_out(model, inp):
    with torch.no_grad():
        return model.unet(inp["x"], inp["timesteps"], context=inp["context"], y=inp["y"], cond_view=inp["cond_view"])


def test_sv4d_written_checkpoint_loads_without_options(tiny_model, tmp_path):
    p = save_model(tiny_model, tmp_path / "mine.safetensors")
    assert not (tmp_path / "mine.safetensors.tmp").exists()
    m = sv4d.load(p)
    assert m.cfg == tiny_model.cfg
    inp = _inputs(tiny_model)
    assert torch.equal(_unet_out(m, inp), _unet_out(tiny_model, inp))
    assert not any(p.requires_grad for p in m.parameters())


@pytest.mark.parametrize("dtype,tol", [("fp16", 5e-2), ("bf16", 2e-1), (torch.float32, 0.0)])
def test_load_in_reduced_precision(tiny_model, tmp_path, dtype, tol):
    p = save_model(tiny_model, tmp_path / "mine.safetensors")
    m = load_model(p, dtype=dtype)
    want = parse_dtype(dtype)
    assert all(v.dtype == want for v in m.state_dict().values())
    inp = _inputs(tiny_model)
    ref = _unet_out(tiny_model, inp)
    got = _unet_out(m, inp)
    assert got.dtype == torch.float32  # output follows the input's dtype
    assert (got - ref).abs().max() <= tol * ref.abs().max() + 1e-6


def test_pickle_checkpoint_is_refused_with_a_message(tmp_path):
    p = tmp_path / "sv4d2.ckpt"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(Sv4dError, match="pickle"):
        load_model(p)


def test_pickle_protocol_0x80_and_zip_magic(tmp_path):
    import pickle

    p = tmp_path / "old.pt"
    p.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(Sv4dError, match="pickle"):
        load_model(p)


@pytest.mark.parametrize("length", [0x180, 0x4B50])  # first byte 0x80; first bytes "PK"
def test_safetensors_whose_header_length_looks_like_pickle_magic(tmp_path, length):
    """A header of 0x..80 or 0x4b50 bytes used to be taken for a pickle or zip file."""
    import struct

    from safetensors.torch import save_file

    from sv4d.io.safetensors import check_safetensors_file

    p = tmp_path / "t.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"pad": ""})
    base = struct.unpack("<Q", p.read_bytes()[:8])[0]
    for pad in range(max(0, length - base - 16), length - base + 16):
        save_file({"w": torch.zeros(2)}, str(p), metadata={"pad": "x" * pad})
        if struct.unpack("<Q", p.read_bytes()[:8])[0] == length:
            break
    else:
        pytest.fail("no padding gave the wanted header length")
    assert check_safetensors_file(p) == p


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(Sv4dError, match="not a safetensors"):
        load_model(p)
    with pytest.raises(Sv4dError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_mismatches_are_all_listed(tiny_model, tmp_path):
    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    del sd["model.diffusion_model.out.2.weight"]
    sd["model.diffusion_model.extra.weight"] = torch.zeros(3)
    sd["model.diffusion_model.time_embed.0.bias"] = torch.zeros(7)
    p = tmp_path / "bad.safetensors"
    save_file(sd, str(p), metadata={"sv4d_config": tiny_model.cfg.to_json()})
    with pytest.raises(Sv4dError) as e:
        load_model(p)
    msg = str(e.value)
    assert "missing keys (1)" in msg and "model.diffusion_model.out.2.weight" in msg
    assert "unexpected keys (1)" in msg and "model.diffusion_model.extra.weight" in msg
    assert "wrong shapes (1)" in msg and "time_embed.0.bias: file (7) vs model (128)" in msg


def test_sv4d_v1_checkpoint_gets_a_hint(tiny_model, tmp_path):
    sd = {k: v.clone() for k, v in tiny_model.state_dict().items() if "time_mixer_motion" not in k}
    p = tmp_path / "sv4d.safetensors"
    save_file(sd, str(p), metadata={"sv4d_config": tiny_model.cfg.to_json()})
    with pytest.raises(Sv4dError, match="SV4D v1"):
        load_model(p)


def test_known_unused_keys_may_be_present_or_absent(tiny_model, tmp_path):
    full = SV4DModel(tiny_model.cfg, include_unused=True)
    full.load_state_dict(tiny_model.state_dict(), strict=False)
    sd = {k: v.clone() for k, v in full.state_dict().items()}
    assert any(".encoder.decoder." in k for k in sd)
    p = tmp_path / "with_unused.safetensors"
    save_file(sd, str(p), metadata={"sv4d_config": tiny_model.cfg.to_json()})
    m = load_model(p)
    assert not any(".encoder.decoder." in k for k in m.state_dict())
    inp = _inputs(tiny_model)
    assert torch.equal(_unet_out(m, inp), _unet_out(tiny_model, inp))


def test_preset_defaults_from_file_name(tmp_path):
    assert preset_for_file("/x/sv4d2_8views.safetensors") == "sv4d2_8views"
    assert preset_for_file("/x/sv4d2.safetensors") == "sv4d2"
    p = tmp_path / "sv4d2_8views.safetensors"
    save_file({"a": torch.zeros(1)}, str(p))
    assert resolve_config(p).name == "sv4d2_8views"
    assert resolve_config(p).unet.view_attention == "per_pixel"
    assert resolve_config(p, "sv4d2").unet.view_attention == "grouped"


def test_check_command(tiny_model, tmp_path, capsys):
    p = save_model(tiny_model, tmp_path / "mine.safetensors")
    assert main(["check", str(p), "--load"]) == 0
    assert "keys and shapes match" in capsys.readouterr().out
    bad = tmp_path / "sv4d2.safetensors"
    save_file({"a": torch.zeros(1)}, str(bad))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "missing keys (2778)" in err and "Traceback" not in err


def test_config_roundtrip_and_validation():
    cfg = sv4d.get_preset("sv4d2_8views")
    assert sv4d.ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(Sv4dError, match="view_attention"):
        sv4d.UNetConfig(view_attention="sideways")
    with pytest.raises(Sv4dError, match="adm_in_channels"):
        sv4d.UNetConfig(adm_in_channels=1000)
    with pytest.raises(Sv4dError, match="unknown preset"):
        sv4d.get_preset("sv3d")


def test_chunked_reading_reopens_the_file_and_keeps_every_tensor(tiny_model, tmp_path):
    from sv4d.io.safetensors import read_tensors

    p = save_model(tiny_model, tmp_path / "mine.safetensors")
    sd = tiny_model.state_dict()
    got = read_tensors(p, list(sd), "cpu", torch.bfloat16, chunk_bytes=4096)
    assert set(got) == set(sd)
    assert all(torch.equal(got[k], sd[k].to(torch.bfloat16)) for k in sd)


def test_a_half_precision_generator_keeps_its_decoder_weights_in_float32(tmp_path):
    """The decoder runs in float32: its weights are read from the file as float32, not rounded to
    bf16 first and converted back (8 mantissa bits instead of 24)."""
    from conftest import tiny_generation_checkpoint
    from sv4d.generate.pipeline import GenerationPipeline

    ckpt = tiny_generation_checkpoint(tmp_path / "tiny.safetensors")
    exact = load_model(ckpt).first_stage_model.state_dict()
    pipe = GenerationPipeline.from_checkpoint(ckpt, device="cpu", dtype="bf16")
    decoder = pipe.model.first_stage_model.state_dict()
    assert all(decoder[k].dtype == torch.float32 and torch.equal(decoder[k], exact[k]) for k in exact)
    assert {p.dtype for p in pipe.model.unet.parameters()} == {torch.bfloat16}

"""SV4DPipeline: the diffusers-shaped front of GenerationPipeline (same images, generator, callbacks, Hub loading)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sv4d
from conftest import DATA, fill_hub_cache, tiny_generation_checkpoint
from sv4d.errors import Sv4dError
from sv4d.generate.api import SV4DPipeline, SV4DPipelineOutput, checkpoint_spec
from sv4d.generate.pipeline import GenerationPipeline
from sv4d.io.video import read_clip

pytestmark = pytest.mark.usefixtures("one_thread", "no_network")

REPO = "stabilityai/sv4d2.0"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A very small generating model: windows of 2 frames x 2 views, 32 px."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return tiny_generation_checkpoint(path, 2, 2, image_size=32, vae_downsample=4)


@pytest.fixture(scope="module")
def pipe(ckpt) -> SV4DPipeline:
    p = SV4DPipeline.from_pretrained(ckpt)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def clip():
    return read_clip(DATA / "videos" / "camel_96.gif", max_frames=3)  # 3 frames: windows 0-1 and 1-2


def test_exported_from_the_package():
    assert sv4d.SV4DPipeline is SV4DPipeline and "SV4DPipeline" in sv4d.__all__


def test_same_images_as_generation_pipeline(pipe, ckpt, clip):
    out = pipe(clip, num_inference_steps=2, seed=7)
    ref = GenerationPipeline.from_checkpoint(ckpt, device="cpu")(clip, steps=2, seed=7, progress=False)
    assert isinstance(out, SV4DPipelineOutput)
    assert out.frames.shape == (3, 2, 32, 32, 3) and out.frames.dtype == np.float32  # (T, V, H, W, 3)
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    assert np.array_equal(out.result.images, ref.images)
    assert np.array_equal(np.round(out.frames * 255).astype(np.uint8), ref.images[1:].transpose(1, 0, 2, 3, 4))
    # a generator seeded like the pipeline's own gives the same noise
    with_gen = pipe(clip, num_inference_steps=2, generator=torch.Generator().manual_seed(7))
    assert np.array_equal(with_gen.frames, out.frames)
    assert with_gen.result.settings["generator_initial_seed"] == 7 and with_gen.result.settings["seed"] is None


def test_generator_determinism(pipe, clip):
    def run(seed):
        return pipe(clip, num_inference_steps=1, generator=torch.Generator().manual_seed(seed)).frames

    a, b, c = run(3), run(3), run(4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    g = torch.Generator().manual_seed(3)
    first, second = (
        pipe(clip, num_inference_steps=1, generator=g).frames,
        pipe(clip, num_inference_steps=1, generator=g),
    )
    assert np.array_equal(first, a) and not np.array_equal(second.frames, a)  # the generator moves on
    with pytest.raises(Sv4dError, match="one generator"):
        pipe(clip, generator=[torch.Generator(), torch.Generator()])


def test_callback_on_step_end_every_step_of_every_window(pipe, clip):
    calls = []

    def on_step(p, step_index, timestep, callback_kwargs):
        assert p is pipe
        calls.append((callback_kwargs["window_index"], step_index, float(timestep), callback_kwargs))
        return {}

    steps = 3
    out = pipe(clip, num_inference_steps=steps, seed=5, callback_on_step_end=on_step)
    windows = len(out.result.windows)
    assert windows == 2 and len(calls) == steps * windows
    assert [(w, i) for w, i, _, _ in calls] == [(w, i) for w in range(windows) for i in range(steps)]
    for w in range(windows):
        sigmas = [t for cw, _, t, _ in calls if cw == w]
        assert sigmas == sorted(sigmas, reverse=True) and sigmas[-1] > 0  # the noise level falls step by step
    kw = calls[0][3]
    assert set(kw) == {"latents", "window_index", "num_windows"} and kw["num_windows"] == 2
    assert kw["latents"].shape == (2 * 2, 4, 8, 8)  # T x V latents of a window
    # asking for the denoised estimate too; an unknown tensor is refused
    seen = []
    pipe(
        clip,
        num_inference_steps=1,
        callback_on_step_end=lambda p, i, t, kw: seen.append(sorted(kw)),
        callback_on_step_end_tensor_inputs=["latents", "denoised"],
    )
    assert seen[0] == ["denoised", "latents", "num_windows", "window_index"]
    with pytest.raises(Sv4dError, match="unknown"):
        pipe(clip, callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["noise_pred"])


def test_callback_can_replace_the_latents(pipe, clip):
    plain = pipe(clip, num_inference_steps=2, seed=5).frames
    same = pipe(clip, num_inference_steps=2, seed=5, callback_on_step_end=lambda p, i, t, kw: kw).frames
    assert np.array_equal(plain, same)
    changed = pipe(
        clip, num_inference_steps=2, seed=5, callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0}
    ).frames
    assert not np.array_equal(plain, changed)


def test_output_types_and_options(pipe, clip):
    gif = DATA / "videos" / "camel_96.gif"
    out = pipe(gif, num_inference_steps=1, output_type="pil", azimuths=[90, 270], elevations=10, num_frames=2)
    assert len(out.frames) == 2 and len(out.frames[0]) == 2 and out.frames[0][0].size == (32, 32)
    assert (
        out.result.azimuths_deg == [0.0, 90.0, 270.0] and out.result.elevations_deg == [10.0] * 3
    )  # one value: every view (official)
    pt = pipe(clip, num_inference_steps=1, output_type="pt")
    assert pt.frames.shape == (3, 2, 3, 32, 32) and pt.frames.dtype == torch.float32
    (frames,) = pipe(clip, num_inference_steps=1, return_dict=False)
    assert pipe(clip, num_inference_steps=1, num_frames=2).frames.shape[0] == 2  # also on a Clip
    assert np.allclose(frames, pt.frames.permute(0, 1, 3, 4, 2).numpy())
    with pytest.raises(Sv4dError, match="output_type"):
        pipe(clip, output_type="latent")


def test_placement_dtype_and_offload(ckpt, pipe):
    assert pipe.device == torch.device("cpu") and pipe.dtype == torch.float32  # diffusers: CPU, float32
    assert pipe.to("cpu") is pipe
    half = SV4DPipeline.from_pretrained(ckpt, torch_dtype=torch.bfloat16)
    moved = SV4DPipeline.from_pretrained(ckpt).to(torch.bfloat16)
    assert half.dtype == moved.dtype == torch.bfloat16
    a, b = half.model.state_dict(), moved.model.state_dict()
    assert all(a[k].dtype == b[k].dtype for k in a)
    # the same weights, but the decoder: loading in bf16 rounds it before it goes back to fp32, .to() does not
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("first_stage_model."))
    assert next(moved.model.first_stage_model.parameters()).dtype == torch.float32  # the decoder stays fp32
    assert {t.dtype for t in moved.model.buffers() if t.is_floating_point()} == {
        t.dtype for t in half.model.buffers() if t.is_floating_point()
    }
    if not torch.cuda.is_available():
        with pytest.raises(Sv4dError, match="CUDA"):
            pipe.enable_model_cpu_offload()
        with pytest.raises(Sv4dError, match="accelerator"):
            pipe.enable_model_cpu_offload(device="cpu")


def test_checkpoint_specs(tmp_path, ckpt):
    assert checkpoint_spec() == f"hf://{REPO}/sv4d2.safetensors"
    assert checkpoint_spec(REPO, variant="8views") == f"hf://{REPO}/sv4d2_8views.safetensors"
    assert checkpoint_spec("me/finetune", revision="refs/pr/2") == "hf://me/finetune@refs%2Fpr%2F2/sv4d2.safetensors"
    assert checkpoint_spec("me/finetune", weight_name="w.safetensors") == "hf://me/finetune/w.safetensors"
    assert checkpoint_spec("sv4d2") == "sv4d2" and checkpoint_spec("sv4d2", variant="8views").endswith(
        "8views.safetensors"
    )
    assert checkpoint_spec(ckpt) == str(ckpt)
    assert checkpoint_spec(tmp_path, variant="8views") == str(tmp_path / "sv4d2_8views.safetensors")  # a local clone
    with pytest.raises(Sv4dError, match="unknown variant"):
        checkpoint_spec(REPO, variant="fp16")
    with pytest.raises(Sv4dError, match="names one file"):
        checkpoint_spec(ckpt, variant="8views")
    with pytest.raises(Sv4dError, match="bad Hub address"):
        checkpoint_spec("hf://me")
    with pytest.raises(Sv4dError, match="checkpoint not found"):
        SV4DPipeline.from_pretrained(tmp_path / "missing.safetensors")


def test_from_pretrained_a_repository_through_the_offline_cache(ckpt, tmp_path, monkeypatch, clip):
    home = tmp_path / "hf_home"
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill_hub_cache(home / "hub", REPO, {"sv4d2.safetensors": ckpt, "sv4d2_8views.safetensors": ckpt})
    p = SV4DPipeline.from_pretrained("stabilityai/sv4d2.0")
    assert p.pipeline.checkpoint == f"hf://{REPO}/sv4d2.safetensors" and p.config.name == "tiny_gen"
    p8 = SV4DPipeline.from_pretrained("stabilityai/sv4d2.0", variant="8views")
    assert p8.pipeline.checkpoint == f"hf://{REPO}/sv4d2_8views.safetensors"
    assert SV4DPipeline.from_pretrained("sv4d2").pipeline.checkpoint == "sv4d2"
    p.set_progress_bar_config(disable=True)
    assert p(clip, num_inference_steps=1).frames.shape == (3, 2, 32, 32, 3)
    with pytest.raises(Sv4dError, match="not in the local cache .* and offline"):
        SV4DPipeline.from_pretrained("me/other-model")

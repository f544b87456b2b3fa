"""Conformance against golden vectors recorded from the reference implementation.

A golden directory holds (format of ``shared/reference/golden/README.md``):

* ``tiny_config.json`` -- the reference engine config per style, plus T, V, sampler;
* ``tiny_unet.safetensors`` (engine keys ``model.diffusion_model.*``) and
  ``tiny_vae.safetensors`` (``AutoencoderKLModeOnly`` keys, copied into the three
  conditioning encoders and, ``decoder.*`` only, the first stage);
* ``unet_<style>.safetensors`` -- one UNet call with per-block traces;
* ``sampling_*.safetensors`` -- conditioner outputs and a full guided Euler run, decoded.

Every size is read from the directory. Tolerances follow the README's section 5.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .checkpoint import build_model, load_tensors_into
from .config import ModelConfig
from .devices import resolve_device
from .diffusion.guiders import guidance_scales
from .diffusion.sampling import make_denoiser
from .diffusion.schedules import edm_sigmas
from .errors import Sv4dError
from .io.reference_config import model_config_from_reference
from .models.sv4d import SV4DModel

# (atol, rtol) per quantity (golden README section 5)
TOL_UNET_OUT = (1e-4, 1e-4)
TOL_TRACE = (5e-4, 0.0)
TOL_COND_NOISE_FREE = (1e-4, 0.0)
TOL_COND_NOISY = (2e-4, 0.0)
TOL_VECTOR = (1e-5, 0.0)
TOL_LATENT = (1e-3, 0.0)
TOL_STEP0_XNEXT = (1e-3, 1e-5)
TOL_DECODED = (1e-3, 0.0)


@dataclass
class Check:
    group: str
    name: str
    max_abs: float
    atol: float
    rtol: float
    ok: bool

    def line(self) -> str:
        tol = f"atol {self.atol:.0e}" + (f" + rtol {self.rtol:.0e}" if self.rtol else "")
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.group:<28} {self.name:<34} max|err| {self.max_abs:.3e}  ({tol})"


def compare(group: str, name: str, got: torch.Tensor, ref: torch.Tensor, tol: tuple[float, float]) -> Check:
    atol, rtol = tol
    got = got.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    if got.shape != ref.shape:
        return Check(group, f"{name} shape {tuple(got.shape)} != {tuple(ref.shape)}", float("inf"), atol, rtol, False)
    err = (got - ref).abs()
    ok = bool((err <= atol + rtol * ref.abs()).all()) and bool(torch.isfinite(got).all())
    return Check(group, name, float(err.max()) if err.numel() else 0.0, atol, rtol, ok)


def _load_golden_weights(d: Path) -> dict[str, torch.Tensor]:
    for f in ("tiny_unet.safetensors", "tiny_vae.safetensors"):
        if not (d / f).exists():
            raise Sv4dError(f"golden directory {d} lacks {f}")
    unet = load_file(str(d / "tiny_unet.safetensors"))
    vae = load_file(str(d / "tiny_vae.safetensors"))
    sd = {k: v.float() for k, v in unet.items()}
    for i in (1, 4, 5):
        for k, v in vae.items():
            sd[f"conditioner.embedders.{i}.encoder.{k}"] = v.float()
    for k, v in vae.items():
        if k.startswith("decoder."):
            sd[f"first_stage_model.{k}"] = v.float()
    return sd


def _scalar(t: dict[str, torch.Tensor], key: str) -> int | None:
    return int(t[key]) if key in t else None


class GoldenRunner:
    """Runs a golden directory's vectors on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``, ...)."""

    def __init__(self, directory: str | Path, device: str | torch.device = "cpu") -> None:
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise Sv4dError(f"golden directory not found: {self.dir}")
        cfg_path = self.dir / "tiny_config.json"
        if not cfg_path.exists():
            raise Sv4dError(f"{self.dir} has no tiny_config.json")
        try:
            self.doc = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise Sv4dError(f"{cfg_path} is not valid JSON: {e}") from None
        self.device = resolve_device(device)
        self.weights = _load_golden_weights(self.dir)
        self._models: dict[str, SV4DModel] = {}

    def model(self, style: str) -> SV4DModel:
        if style not in self._models:
            cfg: ModelConfig = model_config_from_reference(self.doc, style)
            m = build_model(cfg)
            load_tensors_into(m, self.weights, device=self.device, source=f"golden weights ({style})")
            self._models[style] = m.eval()
        return self._models[style]

    # ------------------------------------------------------------------ UNet calls
    def check_unet(self, path: Path) -> Iterator[Check]:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
        style = meta.get("style") or path.stem[len("unet_") :]
        model = self.model(style)
        unet = model.unet
        group = path.stem
        b = _scalar(t, "batch")
        if b is not None and t["context"].shape[0] != b:
            raise Sv4dError(f"{path}: batch {b} disagrees with context {tuple(t['context'].shape)}")
        trace: dict[str, torch.Tensor] = {}
        dev = self.device
        with torch.no_grad():
            out = unet(
                t["x"].to(dev),
                t["timesteps"].to(dev),
                context=t["context"].to(dev),
                y=t["y"].to(dev),
                cond_view=t["cond_view"].to(dev),
                trace=trace,
            )
        if "sigma" in t:
            yield compare(group, "timesteps = 0.25 ln sigma", 0.25 * t["sigma"].log(), t["timesteps"], (1e-6, 0.0))
        yield compare(group, "out", out, t["out"], TOL_UNET_OUT)
        for k in sorted(t):
            if k.startswith("trace."):
                name = k[len("trace.") :]
                if name not in trace:
                    yield Check(group, f"{k} (not produced)", float("inf"), *TOL_TRACE, False)
                else:
                    yield compare(group, k, trace[name], t[k], TOL_TRACE)

    # ------------------------------------------------------------------ sampling runs
    def check_sampling(self, path: Path) -> Iterator[Check]:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
        group = path.stem
        style = meta.get("style")
        if style is None:
            raise Sv4dError(f"{path} has no 'style' in its metadata")
        model = self.model(style)
        cfg = model.cfg
        T, V = int(meta.get("T", cfg.num_frames)), int(meta.get("V", cfg.num_views))
        if (T, V) != (cfg.num_frames, cfg.num_views):
            raise Sv4dError(f"{path}: T, V = {T}, {V} disagree with style {style}")
        cond_mv = meta.get("cond_mv", "True") == "True"
        dev = self.device
        g = lambda k: t[k].to(dev)  # noqa: E731

        # 1. conditioner, without conditioning noise, against the noise-free encodings
        polar = t.get("in.polar_rad_f64", t.get("in.polar_rad"))
        azim = t.get("in.azimuth_rad_f64", t.get("in.azimuth_rad"))
        args = (
            g("in.cond_frames_without_noise"),
            g("in.cond_frames"),
            g("in.cond_view_images"),
            g("in.cond_motion_images"),
            polar.to(dev),
            azim.to(dev),
        )
        with torch.no_grad():
            c0, _ = model.conditioner(*args, cond_mv=True, noise_sigma=0.0)
            gen = torch.Generator(device=dev).manual_seed(0)
            c1, uc1 = model.conditioner(*args, cond_mv=cond_mv, generator=gen)
        for k in ("concat", "cond_view", "cond_motion"):
            if f"ref.noise_free_{k}" in t:
                yield compare(
                    group, f"conditioner {k} (noise-free)", c0[k], t[f"ref.noise_free_{k}"], TOL_COND_NOISE_FREE
                )
        for k in ("crossattn", "vector", "concat", "cond_view", "cond_motion"):
            tol = TOL_VECTOR if k in ("crossattn", "vector") else TOL_COND_NOISY
            if f"c.{k}" in t:
                yield compare(group, f"c.{k}", c1[k], t[f"c.{k}"], tol)
            if f"uc.{k}" in t:
                yield compare(group, f"uc.{k}", uc1[k], t[f"uc.{k}"], tol)

        # 2. sampler, fed the recorded conditioning
        c = {k[2:]: g(k) for k in t if k.startswith("c.")}
        uc = {k[3:]: g(k) for k in t if k.startswith("uc.")}
        num_steps = int(meta.get("num_steps", cfg.sampler.num_steps))
        s = cfg.sampler
        sigmas = edm_sigmas(num_steps, s.sigma_min, s.sigma_max, s.rho)
        if "sigmas" in t:
            yield compare(group, "sigmas", sigmas, t["sigmas"], (1e-4, 1e-6))
        kind, smin, smax = s.guider, s.min_scale, s.max_scale
        if "guider_params" in meta:
            gp = json.loads(meta["guider_params"])
            smax = float(gp.get("max_scale", smax))
            smin = float(gp.get("min_scale", 1.0 if kind == "linear" else smin))
            if "num_frames" in gp and int(gp["num_frames"]) != T * V:
                raise Sv4dError(f"{path}: guider num_frames {gp['num_frames']} != T*V = {T * V}")
        if "guider" in meta:
            kind = {"LinearPredictionGuider": "linear", "SpatiotemporalPredictionGuider": "spatiotemporal"}.get(
                meta["guider"], kind
            )
        scales = guidance_scales(kind, T, V, smin, smax)
        noise = g("in.noise")
        x_init = noise * torch.sqrt(1.0 + sigmas[0].to(dev) ** 2)
        if "x_scaled_init" in t:
            yield compare(group, "x_scaled_init", x_init, t["x_scaled_init"], TOL_STEP0_XNEXT)

        steps: list[dict[str, torch.Tensor]] = []
        traces: list[dict[str, torch.Tensor]] = []
        den = make_denoiser(model, c, uc, scales, trace=traces.append)
        from .diffusion.samplers import sample_euler

        with torch.no_grad():
            z = sample_euler(den, x_init, sigmas.to(dev), callback=lambda i, st: steps.append(st))
        for i, (st, tr) in enumerate(zip(steps, traces)):
            if i == 0:
                for k in ("denoised_uncond", "denoised_cond"):
                    if f"step0.{k}" in t:
                        yield compare(group, f"step0.{k}", tr[k], t[f"step0.{k}"], TOL_LATENT)
            if f"step{i}.denoised_guided" in t:
                yield compare(
                    group, f"step{i}.denoised_guided", st["denoised"], t[f"step{i}.denoised_guided"], TOL_LATENT
                )
            if f"step{i}.x_next" in t:
                tol = TOL_STEP0_XNEXT if i == 0 else TOL_LATENT
                yield compare(group, f"step{i}.x_next", st["x"], t[f"step{i}.x_next"], tol)
        if "out.samples_z" in t:
            yield compare(group, "out.samples_z", z, t["out.samples_z"], TOL_LATENT)

        # 3. decoding, from the recorded final latent (isolates the decoder)
        with torch.no_grad():
            dec = model.decode(g("out.samples_z"))
        if "out.decoded" in t:
            yield compare(group, "out.decoded", dec, t["out.decoded"], TOL_DECODED)
        if "out.images01" in t:
            yield compare(group, "out.images01", ((dec + 1) / 2).clamp(0, 1), t["out.images01"], TOL_DECODED)

    def run(self, on_check: Callable[[Check], None] | None = None) -> list[Check]:
        files_u = sorted(self.dir.glob("unet_*.safetensors"))
        files_s = sorted(self.dir.glob("sampling_*.safetensors"))
        if not files_u and not files_s:
            raise Sv4dError(f"{self.dir} has no unet_*.safetensors or sampling_*.safetensors vectors")
        checks: list[Check] = []
        for p in files_u:
            for ch in self.check_unet(p):
                checks.append(ch)
                on_check and on_check(ch)
        for p in files_s:
            for ch in self.check_sampling(p):
                checks.append(ch)
                on_check and on_check(ch)
        return checks


def verify_golden(
    directory: str | Path, device: str | torch.device = "cpu", echo: Callable[[str], None] | None = print
) -> bool:
    """Run every vector in ``directory`` on ``device`` (``auto`` = CUDA when available); print one
    line per tensor; True if all pass."""
    runner = GoldenRunner(directory, device=device)
    # The tolerances are for true float32 maths: TF32 matrix products (on by default for
    # convolutions on Ampere and later GPUs) would fail a correct model.
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        checks = runner.run(on_check=(lambda c: echo(c.line())) if echo else None)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    n_bad = sum(not c.ok for c in checks)
    if echo:
        echo(f"{len(checks) - n_bad} passed, {n_bad} failed")
    return n_bad == 0

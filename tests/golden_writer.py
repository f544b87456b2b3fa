"""Write a golden directory in the shared format from *our* model, at any size.

Used to show that ``sv4d verify-golden`` reads every size from the directory (T, V,
latent size, channel multipliers, res blocks, conditioner widths, camera angles) and that
it fails when a recorded tensor is wrong. The shipped golden set (recorded from the
reference) is what proves conformance; this only exercises the reader.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from sv4d.diffusion.guiders import guidance_scales
from sv4d.diffusion.samplers import sample_euler
from sv4d.diffusion.sampling import make_denoiser
from sv4d.diffusion.schedules import edm_sigmas
from sv4d.io.reference_config import model_config_from_reference
from sv4d.models.sv4d import SV4DModel


def _fp16_exact_init(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mix_factor"):
                v = torch.randn(p.shape, generator=gen)
            elif p.ndim >= 2:
                v = torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel())
            elif "norm" in name and name.endswith("weight"):
                v = 1 + 0.1 * torch.randn(p.shape, generator=gen)
            else:
                v = 0.1 * torch.randn(p.shape, generator=gen)
            p.copy_(v.half().float())


def write_golden(
    src_config: Path,
    out: Path,
    *,
    T: int,
    V: int,
    latent: int,
    channel_mult,
    num_res_blocks: int,
    dims=(40, 44, 44),
    azimuths=None,
    elevation_deg: float = 10.0,
    seed: int = 0,
    steps: int = 3,
) -> Path:
    doc = json.loads(Path(src_config).read_text())
    doc = copy.deepcopy(doc)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    doc["latent_hw"], doc["image_hw"] = latent, latent * 8
    styles = {}
    for style, use3d in (("sv4d2", True), ("sv4d2_8views", False)):
        st = doc["styles"][style]
        st["T"], st["V"] = T, V
        st["azimuths_deg"] = list(azimuths or [round(i * 360 / (V + 1), 3) for i in range(V + 1)])
        st["sampler"]["num_steps"] = steps
        gp = st["sampler"]["guider_config"]["params"]
        gp["num_frames"] = T * V
        if "num_views" in gp:
            gp["num_views"] = V
        net = doc["engine_config"][style]["params"]["network_config"]["params"]
        net["channel_mult"] = list(channel_mult)
        net["num_res_blocks"] = num_res_blocks
        net["use_3d_attention"] = use3d
        for e in doc["engine_config"][style]["params"]["conditioner_config"]["params"]["emb_models"]:
            if e["input_key"] == "cond_frames":
                e["params"]["sigma_cond_config"]["params"]["outdim"] = dims[0]
                e["params"]["n_cond_frames"] = T * V
            if e["input_key"] == "polar_rad":
                e["params"]["outdim"] = dims[1]
            if e["input_key"] == "azimuth_rad":
                e["params"]["outdim"] = dims[2]
        styles[style] = model_config_from_reference(doc, style)
    (out / "tiny_config.json").write_text(json.dumps(doc, indent=1))

    base = SV4DModel(styles["sv4d2"], include_unused=True)
    _fp16_exact_init(base, gen)
    sd = base.state_dict()
    save_file(
        {k: v.half().contiguous() for k, v in sd.items() if k.startswith("model.diffusion_model.")},
        str(out / "tiny_unet.safetensors"),
    )
    save_file(
        {
            k[len("conditioner.embedders.1.encoder.") :]: v.half().contiguous()
            for k, v in sd.items()
            if k.startswith("conditioner.embedders.1.encoder.")
        },
        str(out / "tiny_vae.safetensors"),
    )
    # the engine uses identical VAE copies
    for i in (4, 5):
        for k in list(sd):
            if k.startswith("conditioner.embedders.1."):
                sd[k.replace("embedders.1.", f"embedders.{i}.")] = sd[k]
    for k in list(sd):
        if k.startswith("conditioner.embedders.1.encoder.decoder."):
            sd[k.replace("conditioner.embedders.1.encoder.", "first_stage_model.")] = sd[k]
    sd = {k: v.half().float() for k, v in sd.items()}

    hw = latent
    for style, cfg in styles.items():
        m = SV4DModel(cfg, include_unused=True)
        m.load_state_dict(sd)
        m.eval()
        N = T * V
        b = 2
        x = torch.randn(b * N, 8, hw, hw, generator=gen)
        sigma = torch.full((b * N,), 2.5)
        ctx = torch.randn(b, T, cfg.unet.context_dim, generator=gen)
        y = torch.randn(b * N, cfg.unet.adm_in_channels, generator=gen)
        cv = torch.randn(b * V, 4, hw, hw, generator=gen)
        trace: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            o = m.unet(x, 0.25 * sigma.log(), context=ctx, y=y, cond_view=cv, trace=trace)
        rec = {
            "x": x,
            "sigma": sigma,
            "timesteps": 0.25 * sigma.log(),
            "context": ctx,
            "y": y,
            "cond_view": cv,
            "out": o,
            "batch": torch.tensor(b),
        }
        rec.update({f"trace.{k}": v.clone() for k, v in trace.items()})
        save_file(
            {k: v.clone().contiguous() for k, v in rec.items()},
            str(out / f"unet_{style}.safetensors"),
            metadata={"style": style, "T": str(T), "V": str(V)},
        )

        # a sampling run (later-window style: cond_mv True)
        H = hw * 8
        az = [math.radians(a) for a in doc["styles"][style]["azimuths_deg"]]
        polar = torch.tensor(
            [math.pi / 2 + math.radians(elevation_deg) * ((v % 2) * 2 - 1) for _ in range(T) for v in range(V)],
            dtype=torch.float64,
        )
        azim = torch.tensor(
            [(az[v + 1] - az[0]) % (2 * math.pi) for _ in range(T) for v in range(V)], dtype=torch.float64
        )
        motion = torch.rand(T, 3, H, H, generator=gen) * 2 - 1
        view = torch.rand(V, 3, H, H, generator=gen) * 2 - 1
        emb = torch.randn(T, cfg.unet.context_dim, generator=gen)
        frames = motion.repeat_interleave(V, 0)
        with torch.no_grad():
            c, uc = m.conditioner(
                emb, frames, view, motion, polar, azim, cond_mv=True, generator=torch.Generator().manual_seed(seed + 1)
            )
            nf, _ = m.conditioner(emb, frames, view, motion, polar, azim, cond_mv=True, noise_sigma=0.0)
        s = cfg.sampler
        sigmas = edm_sigmas(steps, s.sigma_min, s.sigma_max, s.rho)
        scales = guidance_scales(s.guider, T, V, s.min_scale, s.max_scale)
        noise = torch.randn(N, 4, hw, hw, generator=gen)
        recs: dict[str, torch.Tensor] = {}
        traces: list = []
        den = make_denoiser(m, c, uc, scales, trace=traces.append)
        x0 = noise * torch.sqrt(1 + sigmas[0] ** 2)
        with torch.no_grad():
            z = sample_euler(
                den,
                x0,
                sigmas,
                callback=lambda i, st, recs=recs: recs.update(
                    {f"step{i}.denoised_guided": st["denoised"], f"step{i}.x_next": st["x"]}
                ),
            )
            dec = m.decode(z)
        recs.update(
            {"step0.denoised_uncond": traces[0]["denoised_uncond"], "step0.denoised_cond": traces[0]["denoised_cond"]}
        )
        recs.update({f"c.{k}": v for k, v in c.items()})
        recs.update({f"uc.{k}": v for k, v in uc.items()})
        recs.update({f"ref.noise_free_{k}": nf[k] for k in ("concat", "cond_view", "cond_motion")})
        recs.update(
            {
                "in.cond_frames_without_noise": emb,
                "in.cond_motion_images": motion,
                "in.cond_view_images": view,
                "in.cond_frames": frames,
                "in.polar_rad_f64": polar,
                "in.azimuth_rad_f64": azim,
                "in.noise": noise,
                "sigmas": sigmas,
                "x_scaled_init": x0,
                "out.samples_z": z,
                "out.decoded": dec,
                "out.images01": ((dec + 1) / 2).clamp(0, 1),
            }
        )
        guider = {"linear": "LinearPredictionGuider", "spatiotemporal": "SpatiotemporalPredictionGuider"}[s.guider]
        gp = {"max_scale": s.max_scale, "min_scale": s.min_scale, "num_frames": N}
        save_file(
            {k: v.clone().contiguous() for k, v in recs.items()},
            str(out / f"sampling_{style}.safetensors"),
            metadata={
                "style": style,
                "T": str(T),
                "V": str(V),
                "cond_mv": "True",
                "num_steps": str(steps),
                "guider": guider,
                "guider_params": json.dumps(gp),
            },
        )
    return out

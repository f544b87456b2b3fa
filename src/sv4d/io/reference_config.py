"""Translate a reference (``generative-models`` yaml/json) engine config into a ModelConfig.

Used by ``sv4d verify-golden`` to read every size from a golden directory's
``tiny_config.json``. Only the SV4D 2.0 block types are supported; any other flag value
is refused with a message naming it.
"""

from __future__ import annotations

from typing import Any

from ..config import CLIPVisionConfig, ModelConfig, SamplerConfig, UNetConfig, VAEConfig
from ..errors import Sv4dError

_REQUIRED_FLAGS = {
    "use_motion_attention": True,
    "use_camera_emb": True,
    "separate_motion_merge_factor": True,
    "extra_ff_mix_layer": True,
    "use_linear_in_transformer": True,
    "use_spatial_transformer": True,
    "transformer_depth": 1,
    "legacy": False,
    "num_classes": "sequential",
    "time_block_merge_strategy": "learned_with_images",
    "time_mix_legacy": False,
}


def _target_name(d: dict[str, Any]) -> str:
    return str(d.get("target", "")).rsplit(".", 1)[-1]


def unet_config_from_reference(p: dict[str, Any]) -> UNetConfig:
    for k, v in _REQUIRED_FLAGS.items():
        if k in p and p[k] != v:
            raise Sv4dError(f"unsupported UNet setting {k}={p[k]!r} (SV4D 2.0 uses {v!r})")
    try:
        return UNetConfig(
            in_channels=int(p["in_channels"]),
            out_channels=int(p["out_channels"]),
            model_channels=int(p["model_channels"]),
            channel_mult=tuple(int(x) for x in p["channel_mult"]),
            num_res_blocks=int(p["num_res_blocks"]),
            attention_resolutions=tuple(int(x) for x in p["attention_resolutions"]),
            num_head_channels=int(p["num_head_channels"]),
            context_dim=int(p["context_dim"]),
            adm_in_channels=int(p["adm_in_channels"]),
            motion_context_dim=int(p.get("motion_context_dim", 4)),
            time_kernel_size=tuple(int(x) for x in p.get("time_kernel_size", (3, 1, 1))),
            view_attention="grouped" if p.get("use_3d_attention", False) else "per_pixel",
        )
    except KeyError as e:
        raise Sv4dError(f"reference network_config lacks {e}") from None


def vae_config_from_ddconfig(dd: dict[str, Any]) -> VAEConfig:
    if dd.get("attn_resolutions"):
        raise Sv4dError("VAE attention outside the middle block is not supported")
    return VAEConfig(
        ch=int(dd["ch"]),
        ch_mult=tuple(int(x) for x in dd["ch_mult"]),
        num_res_blocks=int(dd["num_res_blocks"]),
        z_channels=int(dd["z_channels"]),
        in_channels=int(dd.get("in_channels", 3)),
        out_ch=int(dd.get("out_ch", 3)),
    )


def sampler_config_from_reference(s: dict[str, Any]) -> SamplerConfig:
    disc = s.get("discretization_config", {}).get("params", {})
    g = s.get("guider_config", {})
    gp = g.get("params", {})
    kind = {
        "LinearPredictionGuider": "linear",
        "SpatiotemporalPredictionGuider": "spatiotemporal",
        "VanillaCFG": "constant",
        "IdentityGuider": "none",
    }.get(_target_name(g), "linear")
    return SamplerConfig(
        num_steps=int(s.get("num_steps", 50)),
        sigma_min=float(disc.get("sigma_min", 0.002)),
        sigma_max=float(disc.get("sigma_max", 700.0)),
        rho=float(disc.get("rho", 7.0)),
        guider=kind,
        max_scale=float(gp.get("max_scale", gp.get("scale", 2.0))),
        min_scale=float(gp.get("min_scale", 1.0)),
    )


def model_config_from_reference(doc: dict[str, Any], style: str) -> ModelConfig:
    """doc: the whole golden ``tiny_config.json``; style: a key of ``doc['styles']``."""
    try:
        st = doc["styles"][style]
        engine = doc["engine_config"][style]["params"]
    except KeyError:
        raise Sv4dError(f"config has no style {style!r} (styles: {sorted(doc.get('styles', {}))})") from None
    unet = unet_config_from_reference(engine["network_config"]["params"])
    emb = {e.get("input_key"): e for e in engine["conditioner_config"]["params"]["emb_models"]}
    try:
        dd = emb["cond_frames"]["params"]["encoder_config"]["params"]["ddconfig"]
        sigma_dim = int(emb["cond_frames"]["params"]["sigma_cond_config"]["params"]["outdim"])
        polar_dim = int(emb["polar_rad"]["params"]["outdim"])
        azim_dim = int(emb["azimuth_rad"]["params"]["outdim"])
        image = emb["cond_frames_without_noise"]["params"]
    except KeyError as e:
        raise Sv4dError(f"reference conditioner config lacks {e}") from None
    inner = image.get("open_clip_embedding_config", {})
    clip = None if _target_name(inner) == "IdentityEncoder" else CLIPVisionConfig()
    first = engine.get("first_stage_config", {}).get("params", {}).get("decoder_config", {}).get("params")
    vae = vae_config_from_ddconfig(dd)
    if first is not None and vae_config_from_ddconfig(first) != vae:
        raise Sv4dError("first-stage decoder and conditioning encoders have different ddconfigs")
    T, V = int(st["T"]), int(st["V"])
    az = st.get("azimuths_deg")
    azimuths = (
        tuple(float(a) for a in az) if az and len(az) == V + 1 else tuple(360.0 * i / (V + 1) for i in range(V + 1))
    )
    return ModelConfig(
        name=style,
        unet=unet,
        vae=vae,
        clip=clip,
        sigma_cond_dim=sigma_dim,
        polar_dim=polar_dim,
        azimuth_dim=azim_dim,
        scale_factor=float(engine.get("scale_factor", doc.get("scale_factor", 0.18215))),
        num_frames=T,
        num_views=V,
        image_size=int(doc.get("image_hw", 8 * int(doc.get("latent_hw", 72)))),
        azimuths_deg=azimuths,
        sampler=sampler_config_from_reference(st.get("sampler", {})),
    )

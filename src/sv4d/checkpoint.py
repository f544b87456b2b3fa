"""SV4D checkpoints: strict key/shape checking, meta-device construction, loading and saving.

Official files (``sv4d2.safetensors``, ``sv4d2_8views.safetensors``) hold the full
``DiffusionEngine`` state dict; the preset is chosen by ``preset=`` and defaults from the
file name (as the official script does). Files written by sv4d carry their full
``ModelConfig`` in the safetensors metadata (key ``sv4d_config``), so any size loads
without options. Every function that opens a checkpoint takes a spec of
:func:`sv4d.io.hub.resolve_checkpoint`: a path, a known name (``sv4d2``, ``sv4d2_8views``:
downloaded from the Hugging Face Hub once) or an ``hf://OWNER/REPO/FILE`` address. The file
format itself (checks, chunked reading, atomic writing) is :mod:`sv4d.io.safetensors`; this
module knows which model the tensors belong to.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from .config import ModelConfig, get_preset
from .devices import parse_dtype
from .errors import Sv4dError
from .io.hub import resolve_checkpoint
from .io.safetensors import check_safetensors_file, read_metadata, read_shapes, read_tensors, write_state_dict
from .models.sv4d import SV4DModel

CONFIG_METADATA_KEY = "sv4d_config"

# Keys the official file carries that inference never uses (spec section 9).
UNUSED_KEY_PATTERNS = (
    re.compile(r"^conditioner\.embedders\.[145]\.encoder\.decoder\."),
    re.compile(r"^conditioner\.embedders\.[145]\.encoder\.post_quant_conv\."),
    re.compile(
        r"^conditioner\.embedders\.0\.open_clip\.model\."
        r"(token_embedding\.|positional_embedding$|ln_final\.|text_projection$|logit_scale$)"
    ),
)


def is_unused_key(key: str) -> bool:
    """True for a key of the official file that inference never uses (see ``UNUSED_KEY_PATTERNS``)."""
    return any(p.search(key) for p in UNUSED_KEY_PATTERNS)


def preset_for_file(path: str | os.PathLike) -> str:
    """The official script's rule: '8views' in the name selects sv4d2_8views, else sv4d2
    (give it the resolved file: a Hub file keeps its own name in the cache)."""
    return "sv4d2_8views" if "8views" in Path(path).name else "sv4d2"


def resolve_config(path: str | os.PathLike, preset: str | None = None) -> ModelConfig:
    """The config of a checkpoint: from its metadata when sv4d wrote it, else the preset
    named by ``preset`` or, failing that, by the file name. ``path`` is any checkpoint spec."""
    path = resolve_checkpoint(path)
    meta = read_metadata(path)
    if CONFIG_METADATA_KEY in meta:
        return ModelConfig.from_json(meta[CONFIG_METADATA_KEY])
    return get_preset(preset or preset_for_file(path))


def _shape_str(shape: Iterable[int]) -> str:
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


def check_keys(
    expected: Mapping[str, tuple[int, ...]],
    available: Mapping[str, tuple[int, ...]],
    source: str,
    allow_missing_unused: bool = True,
) -> None:
    """Raise Sv4dError listing missing, unexpected and wrongly shaped keys."""
    missing = [k for k in expected if k not in available and not (allow_missing_unused and is_unused_key(k))]
    unexpected = [k for k in available if k not in expected and not is_unused_key(k)]
    wrong = [
        f"{k}: file {_shape_str(available[k])} vs model {_shape_str(expected[k])}"
        for k in expected
        if k in available and tuple(available[k]) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} does not match the model:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            lines.append(f"  {title} ({len(items)}):")
            lines += [f"    {x}" for x in items[:25]]
            if len(items) > 25:
                lines.append(f"    ... and {len(items) - 25} more")
    if any("time_mixer_motion" in k for k in missing) or any("time_mix_time_embed.0" in w for w in wrong):
        lines.append("  hint: this looks like an SV4D v1 (or SVD/SV3D) checkpoint; sv4d needs SV4D 2.0 weights")
    raise Sv4dError("\n".join(lines))


def build_model(cfg: ModelConfig, include_unused: bool = False) -> SV4DModel:
    """Build the model on the meta device (no storage): seconds even at full size.

    Fill it with ``load_tensors_into``. (Non-persistent buffers such as the CLIP
    normalisation constants are created as real tensors.)
    """
    with torch.device("meta"):
        return SV4DModel(cfg, include_unused=include_unused)


def expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """key -> shape of every entry of ``model.state_dict()``."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_tensors_into(
    model: torch.nn.Module,
    tensors: Mapping[str, torch.Tensor] | None = None,
    *,
    file: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    source: str | None = None,
    float32_prefixes: tuple[str, ...] = (),
) -> torch.nn.Module:
    """Strictly load either a mapping of tensors or a safetensors file into a (meta) model.

    Known-unused keys present in the source but not in the model are skipped; anything
    else that does not match raises Sv4dError listing the problems. Tensors are converted
    one at a time (no second full copy) and assigned. Keys starting with one of
    ``float32_prefixes`` are read as float32 whatever ``dtype`` is (read from the file, not
    rounded to ``dtype`` first).
    """
    expected = expected_shapes(model)

    def key_dtype(k: str) -> torch.dtype:
        return torch.float32 if float32_prefixes and k.startswith(float32_prefixes) else dtype

    if file is not None:
        p = check_safetensors_file(file)
        source = source or str(p)
        available = read_shapes(p)
        check_keys(expected, available, source)
        keys = [k for k in expected if k in available]
        sd = {}
        for dt in dict.fromkeys(key_dtype(k) for k in keys):
            sd.update(read_tensors(p, [k for k in keys if key_dtype(k) == dt], device, dt))
    else:
        assert tensors is not None
        available = {k: tuple(v.shape) for k, v in tensors.items()}
        check_keys(expected, available, source or "state dict")
        sd = {k: tensors[k].to(device=device, dtype=key_dtype(k)) for k in expected if k in available}
    if len(sd) != len(expected):
        raise Sv4dError(
            f"{source} lacks some of the unused parameters this model was built with; "
            "build it with include_unused=False"
        )
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device)


def load_model(
    path: str | os.PathLike,
    *,
    preset: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    config: ModelConfig | None = None,
    float32_prefixes: tuple[str, ...] = (),
) -> SV4DModel:
    """Load an official or sv4d-written safetensors checkpoint into an ``SV4DModel``.

    The model is built on the meta device and the file's tensors are assigned, so peak
    memory is one copy of the weights (in ``dtype``) plus one tensor. ``path`` is any
    checkpoint spec (see :func:`sv4d.io.hub.resolve_checkpoint`). Keys starting with one of
    ``float32_prefixes`` stay float32 (the generator's decoder: ``("first_stage_model.",)``).
    """
    path = resolve_checkpoint(path)
    dt = parse_dtype(dtype)
    cfg = config or resolve_config(path, preset)
    model = build_model(cfg)
    load_tensors_into(model, file=path, device=device, dtype=dt, float32_prefixes=float32_prefixes)
    return model.eval().requires_grad_(False)


def save_model(model: SV4DModel, path: str | os.PathLike, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors checkpoint with the config in its metadata (atomic rename)."""
    meta = {CONFIG_METADATA_KEY: model.cfg.to_json(), "format": "pt", "sv4d_version": "1"}
    if extra_metadata:
        meta.update(extra_metadata)
    return write_state_dict(model.state_dict(), path, metadata=meta)


def config_summary(cfg: ModelConfig) -> str:
    """A one-line JSON summary of a config: name, frames, views, view-attention kind."""
    return json.dumps(
        {"name": cfg.name, "T": cfg.num_frames, "V": cfg.num_views, "view_attention": cfg.unet.view_attention},
        sort_keys=True,
    )


def check_checkpoint(
    path: str | os.PathLike, *, preset: str | None = None, load: bool = False, dtype: str | torch.dtype | None = None
) -> str:
    """Compare a checkpoint's header with the model (``path``: any checkpoint spec); optionally
    load it. Returns a report."""
    p = resolve_checkpoint(path)
    cfg = resolve_config(p, preset)
    model = build_model(cfg, include_unused=True)
    expected = expected_shapes(model)
    available = read_shapes(p)
    check_keys(expected, available, str(p))
    n_params = sum(int(torch.Size(s).numel()) for k, s in available.items() if not is_unused_key(k))
    n_unused = sum(1 for k in available if is_unused_key(k))
    lines = [
        f"{p}: keys and shapes match the {cfg.name} model ({config_summary(cfg)})",
        f"  {len(available)} tensors, {n_params:,} parameters used at inference, {n_unused} known-unused tensors",
    ]
    if load:
        m = load_model(p, preset=preset, dtype=dtype)
        bad = [k for k, v in m.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise Sv4dError(f"{p}: non-finite values in {len(bad)} tensors, e.g. {bad[:5]}")
        lines.append(f"  loaded in {parse_dtype(dtype)}; all values finite")
    return "\n".join(lines)

"""Checkpoints: safetensors weights with the model config stored beside them, and VAR import.

Format: one `.safetensors` file; its metadata holds `format = "depthart"`, `format_version`
and `config` (the ModelConfig as JSON), and optionally `sampler`, the token sampler the checkpoint's
numbers were made with ("greedy" or "expect"; absent means greedy), which every entry point follows
unless told otherwise. Tensor names are the DepthART state dict: VAR's names
for the transformer, `vae.` + VAR's VQ-VAE names for the VQ-VAE. Files are written atomically.
"""

from __future__ import annotations

import json
import os
import warnings

import torch

from .config import PRESETS, ModelConfig, default_checkpoint
from .errors import DepthartError
from .fileio import atomic_path

FORMAT = "depthart"
FORMAT_VERSION = "1"
VAR_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
SAMPLERS = ("greedy", "expect")  # the deterministic samplers a checkpoint may recommend


def build_model(cfg: ModelConfig, device="cpu", empty: bool = False):
    """A model from a config. `empty=True` skips weight init (weights will be loaded)."""
    from .model import DepthART

    if not empty:
        return DepthART(cfg).to(device)
    with torch.device("meta"):
        model = DepthART(cfg)
    model = model.to_empty(device=device)
    model.reset_buffers()
    return model


def save_checkpoint(model, path, extra_metadata: dict | None = None, dtype=None) -> None:
    """Write the model's weights and config to `path` (.safetensors), atomically.

    dtype: e.g. torch.float16 to store floating-point tensors at half size (loading casts them
    back to the model's float32 parameters).
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.cfg.to_json()}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    if "sampler" in meta:
        _check_sampler(meta["sampler"], path)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)


def _read_metadata(path) -> dict:
    """A depthart checkpoint's metadata, checked for format and version, without reading the weights."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise DepthartError(f"{path}: not a safetensors checkpoint ({e})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise DepthartError(f"{path}: a safetensors file but not a depthart checkpoint (no depthart config "
                            "in its metadata); convert VAR weights with `depthart import-var`")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DepthartError(f"{path}: checkpoint format version {meta.get('format_version')} is not "
                            f"supported by this depthart (reads version {FORMAT_VERSION})")
    return meta


def _config_of(meta: dict, path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(json.loads(meta["config"]))
    except ValueError as e:
        raise DepthartError(f"{path}: invalid model config: {e}") from None


def _check_sampler(value, path) -> str:
    if value not in SAMPLERS:
        raise DepthartError(f"{path}: metadata names sampler {value!r}; a checkpoint can recommend "
                            f"{' or '.join(SAMPLERS)}")
    return value


def read_config(path) -> ModelConfig:
    """The ModelConfig stored in a checkpoint, without reading the weights."""
    return _config_of(_read_metadata(path), path)


def read_sampler(path) -> str:
    """The sampler a checkpoint recommends (its metadata's `sampler`: "greedy" or "expect"; "greedy" when it
    names none), without reading the weights. Raises DepthartError, naming the file, for any other value."""
    return _check_sampler(_read_metadata(path).get("sampler", "greedy"), path)


def model_sampler(model) -> str:
    """The sampler a model recommends: `model.default_sampler`, set by `load` / `load_checkpoint` from the
    checkpoint; "greedy" for models made any other way (presets, training)."""
    return getattr(model, "default_sampler", "greedy")


def load_checkpoint(path, device="cpu"):
    """A model in eval mode from a depthart checkpoint; `model.default_sampler` is the sampler the
    checkpoint recommends (`read_sampler`)."""
    from safetensors.torch import load_file

    meta = _read_metadata(path)
    cfg = _config_of(meta, path)
    sampler = _check_sampler(meta.get("sampler", "greedy"), path)
    model = build_model(cfg, device, empty=True)
    state = load_file(os.fspath(path), device=str(device))
    _load_strict(model, state, str(path))
    model.default_sampler = sampler
    return model.eval()


def load(path_or_preset=None, device="cpu"):
    """A model in eval mode: from a checkpoint path, a preset name (random weights, with a warning),
    or None / "default" for the trained default that ships with depthart. `model.default_sampler` is
    the sampler the checkpoint recommends ("greedy" for presets)."""
    if path_or_preset is None or path_or_preset == "default":
        return load_checkpoint(default_checkpoint(), device)
    p = os.fspath(path_or_preset)
    if os.path.isfile(p):
        return load_checkpoint(p, device)
    if p in PRESETS:
        warnings.warn(f"preset {p!r} has random weights: its depth maps are not meaningful", stacklevel=2)
        model = build_model(PRESETS[p], device).eval()
        model.default_sampler = "greedy"
        return model
    if os.path.exists(p):
        raise DepthartError(f"{p}: not a file")
    raise DepthartError(f"{p}: no such checkpoint file, and not a preset ({', '.join(PRESETS)})")


def load_reporting(path_or_preset, device, report):  # path_or_preset None: the shipped default
    """`load`, with its warnings (e.g. a preset's random weights) passed to `report(message)` (the CLIs)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(path_or_preset, device)
    for w in caught:
        report(str(w.message))
    return model


def _load_strict(model, state: dict, source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with the wrong shape (e.g. {k}: {tuple(state[k].shape)} vs "
                         f"{tuple(expected[k].shape)})")
        raise DepthartError(f"{source}: weights do not match the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------- VAR import
def _torch_load(path) -> dict:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise DepthartError(f"{p}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # pickle/zip errors: report the file, not a traceback
        raise DepthartError(f"{p}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model", "trainer"):  # common wrappers
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict) and not torch.is_tensor(obj[key]):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise DepthartError(f"{p}: expected a state dict of tensors")
    return obj


def _count(state: dict, prefix: str, suffix: str) -> int:
    n = 0
    while f"{prefix}{n}{suffix}" in state:
        n += 1
    return n


def vae_fields(vae: dict, source: str) -> dict:
    """ModelConfig fields of a VAR VQ-VAE state dict, read from tensor shapes."""
    try:
        vocab, cvae = vae["quantize.embedding.weight"].shape
        ch = vae["encoder.conv_in.weight"].shape[0]
        levels = _count(vae, "encoder.down.", ".block.0.conv1.weight")
        ch_mult = tuple(vae[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
        nrb = _count(vae, "encoder.down.0.block.", ".conv1.weight")
        share = _count(vae, "quantize.quant_resi.qresi_ls.", ".weight")
    except KeyError as e:
        raise DepthartError(f"{source}: not a VAR VQ-VAE state dict (no tensor {e.args[0]})") from None
    if share == 0:
        raise DepthartError(f"{source}: only VAR's partially shared phi (quant_resi.qresi_ls.*) is supported")
    return dict(vocab_size=int(vocab), cvae=int(cvae), vae_ch=int(ch), vae_ch_mult=ch_mult,
                vae_num_res_blocks=nrb, share_quant_resi=share)


def var_fields(var: dict, source: str, patch_nums=None, heads: int | None = None) -> dict:
    """ModelConfig fields of a VAR transformer state dict, read from tensor shapes."""
    if any(k.startswith("shared_ada_lin") for k in var):
        raise DepthartError(f"{source}: shared AdaLN (VAR-d36) checkpoints are not supported")
    try:
        width, cvae = var["word_embed.weight"].shape
        depth = _count(var, "blocks.", ".ada_lin.1.weight")
        L = var["pos_1LC"].shape[1]
        first_l = var["pos_start"].shape[1]
        num_classes = var["class_emb.weight"].shape[0] - 1
        hidden = var["blocks.0.ffn.fc1.weight"].shape[0]
    except KeyError as e:
        raise DepthartError(f"{source}: not a VAR transformer state dict (no tensor {e.args[0]})") from None
    if depth == 0:
        raise DepthartError(f"{source}: no transformer blocks found (blocks.N.ada_lin.1.weight)")
    l2 = "blocks.0.attn.scale_mul_1H11" in var
    if l2:
        found = var["blocks.0.attn.scale_mul_1H11"].shape[1]
        if heads is not None and heads != found:
            raise DepthartError(f"{source}: has {found} attention heads (scale_mul_1H11), not {heads}")
        heads = found
    elif heads is None:
        heads = depth  # no tensor records it: VAR's size rule, heads = depth
    if width % heads:
        raise DepthartError(f"{source}: width {width} is not divisible by {heads} heads; pass --heads")
    if patch_nums is None:
        patch_nums = VAR_PATCH_NUMS
        if sum(p * p for p in patch_nums) != L:
            raise DepthartError(f"{source}: {L} position embeddings do not fit VAR's default schedule "
                                f"{patch_nums} (680); pass the schedule with --patch-nums")
    patch_nums = tuple(patch_nums)
    if sum(p * p for p in patch_nums) != L or patch_nums[0] ** 2 != first_l:
        raise DepthartError(f"{source}: schedule {patch_nums} has {sum(p * p for p in patch_nums)} tokens, "
                            f"the checkpoint {L} (first scale {first_l})")
    return dict(depth=depth, width=int(width), heads=int(heads), mlp_ratio=hidden / width,
                attn="l2norm" if l2 else "plain", num_classes=int(num_classes), patch_nums=patch_nums,
                _cvae=int(cvae))


# buffers of VAR's modules that this model recomputes
_VAR_DERIVED = ("lvl_1L", "attn_bias_for_masking")


def import_var(vae_path, var_path, out_path=None, patch_nums=None, attn: str | None = None,
               heads: int | None = None):
    """Convert official VAR checkpoints (`vae_ch160v4096z32.pth`, `var_d{16,20,24,30}.pth`) to a model.

    Sizes are read from tensor shapes. `attn` overrides the attention variant ("plain" drops
    `scale_mul_1H11`, as the DepthART release does). `heads` is only needed for checkpoints
    without `scale_mul_1H11` that break VAR's heads = depth rule. Writes `out_path` if given.
    """
    vae = _torch_load(vae_path)
    var = _torch_load(var_path)
    vf = vae_fields(vae, os.fspath(vae_path))
    tf = var_fields(var, os.fspath(var_path), patch_nums, heads)
    if tf.pop("_cvae") != vf["cvae"]:
        raise DepthartError(f"{var_path}: transformer expects {var['word_embed.weight'].shape[1]}-channel "
                            f"latents, the VQ-VAE {vae_path} has {vf['cvae']}; they are not a pair")
    n_scales = vae["quantize.ema_vocab_hit_SV"].shape[0] if "quantize.ema_vocab_hit_SV" in vae else None
    if n_scales is not None and n_scales != len(tf["patch_nums"]):
        # VAR's own loader replaces a mismatching usage buffer; so do we (it is statistics only)
        vae = dict(vae)
        vae["quantize.ema_vocab_hit_SV"] = torch.zeros(len(tf["patch_nums"]), vf["vocab_size"])
    if attn is not None and attn != tf["attn"]:
        if attn == "l2norm":
            raise DepthartError(f"{var_path}: has no scale_mul_1H11, cannot use l2norm attention")
        tf["attn"] = attn
    cfg = ModelConfig(drop_path_rate=0.0, **vf, **tf)
    state = {f"vae.{k}": v for k, v in vae.items()}
    for k, v in var.items():
        if k in _VAR_DERIVED:
            continue
        if cfg.attn == "plain" and k.endswith("attn.scale_mul_1H11"):
            continue
        state[k] = v
    model = build_model(cfg, "cpu", empty=True)
    _load_strict(model, {k: v.float() for k, v in state.items()}, f"{var_path} + {vae_path}")
    model.eval()
    if out_path is not None:
        save_checkpoint(model, out_path, {"source": f"{os.path.basename(os.fspath(vae_path))} + "
                                                    f"{os.path.basename(os.fspath(var_path))}"})
    return model

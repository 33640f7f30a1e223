"""Checkpoints: safetensors weights with the model config stored beside them; VAR and DepthART-release import.

Format: one `.safetensors` file; its metadata holds `format = "depthart"`, `format_version`
and `config` (the ModelConfig as JSON), and optionally `sampler`, the token sampler the checkpoint's
numbers were made with ("greedy" or "expect"; absent means greedy), which every entry point follows
unless told otherwise. Tensor names are the DepthART state dict: VAR's names
for the transformer, `vae.` + VAR's VQ-VAE names for the VQ-VAE. Files are written atomically.
"""

from __future__ import annotations

import json
import math
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
                            "in its metadata); convert VAR weights with `depthart import-var`, the DepthART release's "
                            "with `depthart import-release`")
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
    """A model in eval mode: from a checkpoint path (a depthart checkpoint, or the DepthART release's
    model.safetensors, converted in memory), a preset name (random weights, with a warning), or None /
    "default" for the trained default that ships with depthart. `model.default_sampler` is the sampler
    the checkpoint recommends ("greedy" for presets and the release's file)."""
    if path_or_preset is None or path_or_preset == "default":
        return load_checkpoint(default_checkpoint(), device)
    p = os.fspath(path_or_preset)
    if os.path.isfile(p):
        return _load_file(p, device)
    if p in PRESETS:
        warnings.warn(f"preset {p!r} has random weights: its depth maps are not meaningful", stacklevel=2)
        model = build_model(PRESETS[p], device).eval()
        model.default_sampler = "greedy"
        return model
    if os.path.exists(p):
        raise DepthartError(f"{p}: not a file")
    raise DepthartError(f"{p}: no such checkpoint file, and not a preset ({', '.join(PRESETS)})")


def _load_file(p: str, device):
    """A depthart checkpoint, or the DepthART release's model.safetensors converted in memory."""
    found = _safetensors_keys(p)
    if found is None and _looks_like_pytorch_pickle(p):
        raise DepthartError(f"{p}: a PyTorch .pth file, not a depthart checkpoint; convert VAR's released pair with "
                            "`depthart import-var --vae vae_ch160v4096z32.pth --var var_d16.pth -o model.safetensors`")
    if found is not None and is_release_file(p):
        if _strip_ddp(found[0]):
            warnings.warn(f"{p}: stripped the '{_DDP}' prefix from every tensor name (a file saved from several "
                          "processes)", stacklevel=3)
        return import_release(p).to(device)
    return load_checkpoint(p, device)


def load_reporting(path_or_preset, device, report):  # path_or_preset None: the shipped default
    """`load`, with its warnings (e.g. a preset's random weights) passed to `report(message)` (the CLIs)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(path_or_preset, device)
    for w in caught:
        report(str(w.message))
    return model


def _load_strict(model, state: dict, source: str, shown=lambda k: k) -> None:
    """Load `state` into `model`, or raise naming the missing / unexpected / misshaped tensors (as `shown(name)`)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(map(shown, missing[:3]))})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(map(shown, unexpected[:3]))})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with the wrong shape (e.g. {shown(k)}: {tuple(state[k].shape)} vs "
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
    source = f"{os.path.basename(os.fspath(vae_path))} + {os.path.basename(os.fspath(var_path))}"
    return _model_from_var_dicts(vae, var, os.fspath(vae_path), os.fspath(var_path), patch_nums, attn, heads,
                                 out_path, {"source": source})


def _model_from_var_dicts(vae: dict, var: dict, vae_name: str, var_name: str, patch_nums, attn, heads, out_path,
                          metadata: dict, shown=lambda k: k):
    """A model from a VAR VQ-VAE state dict and a VAR-named transformer state dict (VAR's or the release's)."""
    vf = vae_fields(vae, vae_name)
    tf = var_fields(var, var_name, patch_nums, heads)
    if tf.pop("_cvae") != vf["cvae"]:
        raise DepthartError(f"{var_name}: transformer expects {var['word_embed.weight'].shape[1]}-channel "
                            f"latents, the VQ-VAE {vae_name} has {vf['cvae']}; they are not a pair")
    n_scales = vae["quantize.ema_vocab_hit_SV"].shape[0] if "quantize.ema_vocab_hit_SV" in vae else None
    if n_scales is not None and n_scales != len(tf["patch_nums"]):
        # VAR's own loader replaces a mismatching usage buffer; so do we (it is statistics only)
        vae = dict(vae)
        vae["quantize.ema_vocab_hit_SV"] = torch.zeros(len(tf["patch_nums"]), vf["vocab_size"])
    if attn is not None and attn != tf["attn"]:
        if attn == "l2norm":
            raise DepthartError(f"{var_name}: has no scale_mul_1H11, cannot use l2norm attention")
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
    if "lvl_1L" in var and tuple(var["lvl_1L"].shape) == tuple(model.lvl_1L.shape) \
            and not torch.equal(var["lvl_1L"].long(), model.lvl_1L.cpu()):
        raise DepthartError(f"{var_name}: its level ids (lvl_1L) do not match the schedule {cfg.patch_nums}; "
                            "pass the schedule it was trained with (--patch-nums)")
    source = var_name if vae_name == var_name else f"{var_name} + {vae_name}"
    _load_strict(model, {k: v.float() for k, v in state.items()}, source, shown)
    model.eval()
    if out_path is not None:
        save_checkpoint(model, out_path, metadata)
    return model


# ---------------------------------------------------------------- the DepthART release's model.safetensors
RELEASE_REPO = "github.com/bulatko/DepthART"
_RELEASE_VAE, _RELEASE_ALIAS, _DDP = "vae_proxy.", "vae_quant_proxy.", "module."
_RELEASE_SCALARS = ("normalizer.alpha", "normalizer.beta")  # target normalisation (training only)
_RELEASE_REQUIRED = ("lvl_1L", "word_embed.weight", "pos_1LC", "class_emb.weight", "head.weight",
                     "vae_proxy.quantize.embedding.weight", "vae_proxy.encoder.conv_in.weight") + _RELEASE_SCALARS


def _safetensors_keys(path):
    """(tensor names, header metadata) of a safetensors file, or None if it is not one."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            return list(f.keys()), f.metadata() or {}
    except Exception:  # safetensors raises its own error types for bad headers
        return None


def _looks_like_pytorch_pickle(path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"  # torch.save zip, or a legacy pickle


def _strip_ddp(keys) -> bool:
    return bool(keys) and all(k.startswith(_DDP) for k in keys)


def is_release_file(path) -> bool:
    """True when `path` is a safetensors file laid out as the DepthART release's `model.safetensors`
    (its VQ-VAE under `vae_proxy.`, perhaps everything under `module.`), without reading the weights."""
    found = _safetensors_keys(path)
    if found is None or found[1].get("format") == FORMAT:
        return False
    keys = [k[len(_DDP):] for k in found[0]] if _strip_ddp(found[0]) else found[0]
    return any(k.startswith(_RELEASE_VAE) for k in keys)


def _schedule_of_levels(lvl_1L, source) -> tuple[int, ...]:
    """The scale schedule recorded by a level-id buffer (1, L): scale k has pn_k ** 2 positions with id k."""
    ids = lvl_1L.reshape(-1).long()
    counts = torch.bincount(ids).tolist() if ids.numel() and int(ids.min()) >= 0 else []
    sides = [math.isqrt(n) for n in counts]
    if not counts or any(s * s != n for s, n in zip(sides, counts)) or ids.tolist() != sorted(ids.tolist()):
        raise DepthartError(f"{source}: lvl_1L does not describe a scale schedule (square token maps in order); "
                            "pass it with --patch-nums")
    return tuple(sides)


def import_release(path, out_path=None, patch_nums=None, heads: int | None = None, notes=None):
    """A model from the DepthART release's `model.safetensors` (written by its trainer through accelerate).

    The file holds the VQ-VAE under `vae_proxy.` (VAR's names), the transformer under VAR's names
    without `scale_mul_1H11` (the release's plain attention, softmax(q k^T / (4 sqrt(head_dim)))),
    `lvl_1L` (the level id of each position, from which the scale schedule is read unless `patch_nums` is
    given), `normalizer.alpha` / `normalizer.beta`, and sometimes `vae_quant_proxy.*` (aliases of
    `vae_proxy.quantize.*`, normally dropped by the save) or a `module.` prefix on every name (a file saved
    from several processes). Sizes are read from the tensors; the file does not record the attention heads,
    so VAR's rule heads = depth is used unless `heads` is given. Writes `out_path` (atomically) if given.

    Args:
        notes: a list that receives one-line remarks about the file (prefix stripped, aliases found).
    Returns:
        the model, in eval mode, with `default_sampler` "greedy".
    """
    from safetensors.torch import load_file

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise DepthartError(f"{p}: no such file")
    found = _safetensors_keys(p)
    if found is None:
        kind = "a PyTorch pickle (.pth)" if _looks_like_pytorch_pickle(p) else "not a safetensors file"
        raise DepthartError(f"{p}: {kind}; the DepthART release's weights are one model.safetensors file")
    keys, meta = found
    if meta.get("format") == FORMAT:
        raise DepthartError(f"{p}: already a depthart checkpoint; load it directly")
    notes = notes if notes is not None else []
    ddp = _strip_ddp(keys)
    names = {k[len(_DDP):] if ddp else k for k in keys}
    missing = [k for k in _RELEASE_REQUIRED if k not in names]
    unexpected = sorted(k for k in names if k.endswith("scale_mul_1H11") or k.startswith("shared_ada_lin"))
    if missing or unexpected:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        if unexpected:
            more = f" (+{len(unexpected) - 3})" if len(unexpected) > 3 else ""
            parts.append(f"unexpected {', '.join(unexpected[:3])}{more}")
        raise DepthartError(f"{p}: not the DepthART release's model.safetensors layout: {'; '.join(parts)}")
    if ddp:
        notes.append(f"stripped the '{_DDP}' prefix from every tensor name (a file saved from several processes)")
    state = {k[len(_DDP):] if ddp else k: v for k, v in load_file(p).items()}
    aliases = {k: state.pop(k) for k in [k for k in state if k.startswith(_RELEASE_ALIAS)]}
    for k, v in aliases.items():
        twin = _RELEASE_VAE + "quantize." + k[len(_RELEASE_ALIAS):]
        if twin not in state or not torch.equal(state[twin], v):
            raise DepthartError(f"{p}: {k} should be an alias of {twin} but differs from it")
    if aliases:
        notes.append(f"{len(aliases)} {_RELEASE_ALIAS}* tensors (aliases of {_RELEASE_VAE}quantize.*) checked and dropped")
    for k in _RELEASE_SCALARS:
        state.pop(k)
    if patch_nums is None:
        patch_nums = _schedule_of_levels(state["lvl_1L"], p)
    vae = {k[len(_RELEASE_VAE):]: v for k, v in state.items() if k.startswith(_RELEASE_VAE)}
    var = {k: v for k, v in state.items() if not k.startswith(_RELEASE_VAE)}
    model = _model_from_var_dicts(
        vae, var, p, p, patch_nums, None, heads, out_path,
        {"source": os.path.basename(p), "origin": f"DepthART release ({RELEASE_REPO}) model.safetensors"},
        shown=lambda k: _RELEASE_VAE + k[len("vae."):] if k.startswith("vae.") else k)
    model.default_sampler = "greedy"  # deterministic; the release's own default is MeanOfSamples (README)
    return model

"""Make the DepthART-release parity fixtures in this folder with the release's own code.

    python tests/release/generate.py --release PATH/TO/bulatko-DepthART --var PATH/TO/FoundationVision-VAR

Neither tree is copied here; both are imported from the paths given. For each configuration in
CONFIGS this builds the release's `DepthART` model class (mde/models/train_models/var_utils) with
random weights, saves it the way the release's trainer does (HF accelerate 0.30 `save_state`: one
`model.safetensors`, header metadata {"format": "pt"}, tensors that share memory with an earlier one
dropped) and records, for fixed images:

- the greedy tokens and depth of `DepthVAR.autoregressive_infer_cfg` (the release's argmax loop),
- the tokens drawn and the depth of `DepthART.autoregressive_infer_cfg` (its default: mean of 5 code
  vectors, top-k 900 / top-p 0.9) after `torch.manual_seed(SEED)` (it samples from the global RNG).

Outputs (per config NAME): NAME.safetensors.xz (the release's file, xz-compressed byte for byte) and
NAME.npz (images, tokens, draws, depth as uint16 = round(depth * 65535), and a JSON `meta`).
`--full DIR` also writes the unquantised depth there (for measuring, not committed).

Needs torch, numpy, Pillow, safetensors, scipy (imported by the release's depthart.py),
huggingface_hub (imported by depth_var.py, unused) and accelerate==0.30.0. Nothing is stubbed:
flash-attn and xformers are optional imports in the release (it falls back to PyTorch's SDPA), and
the `mde` package root (hydra, rocket, datasets) is not imported: `var_utils` is imported as a
package of its own and the normalizer module from its file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

SEED = 1234
CONFIGS = {
    # VAR's full 10-scale schedule at 256 px; heads = depth (VAR's rule)
    "release256": dict(patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), depth=2, width=64, heads=2, vocab=1024,
                       cvae=8, ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, num_classes=10,
                       image_hw=(72, 96)),
    # 4 scales at 64 px; 4 heads with 2 blocks breaks heads = depth, so importing needs --heads 4
    "release64": dict(patch_nums=(1, 2, 3, 4), depth=2, width=64, heads=4, vocab=1024, cvae=8, ch=32,
                      ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, num_classes=10, image_hw=(40, 56)),
}


def git_head(path):
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def import_release(root):
    sys.path.insert(0, os.path.join(root, "mde", "models", "train_models"))
    import var_utils  # the release's vendored VAR + DepthVAR / DepthART

    spec = importlib.util.spec_from_file_location(
        "release_normalizers", os.path.join(root, "mde", "capsules", "normalizers", "normalizers.py"))
    normalizers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(normalizers)
    return var_utils, normalizers


def build_release(var_utils, normalizers, c):
    """The release's model class, configured as its configs do (config/launch/eval/depthART.yaml)."""
    pn = tuple(c["patch_nums"])
    vae = var_utils.VQVAE(
        ddconfig=dict(dropout=0.0, z_channels=c["cvae"], num_res_blocks=c["num_res_blocks"], in_channels=3,
                      ch=c["ch"], ch_mult=list(c["ch_mult"]), using_mid_sa=True, using_sa=True),
        quantconfig=dict(using_znorm=False, beta=0.25,
                         resiconfig=dict(quant_resi=0.5, share_quant_resi=4, default_qresi_counts=0)),
        vocab_size=c["vocab"], v_patch_nums=pn)
    return var_utils.DepthART(
        vae_local=vae, num_classes=c["num_classes"], depth=c["depth"], embed_dim=c["width"], patch_nums=pn,
        shared_aln=False, cond_drop_rate=0.1, drop_path_rate=0.0667, flash_if_available=True,
        fused_if_available=True, rec_loss=True,
        BlockConfig=dict(num_heads=c["heads"], mlp_ratio=4.0, drop=0.0, attn_drop=0.0, tau=4, cos_attn=False),
        normalizer=normalizers.NormalizerUTSQuant(affine=True, alpha=2, beta=-1))


def snap(x, bits=2):
    """Round to `bits` mantissa bits: the values stay random but the file compresses well."""
    m, e = torch.frexp(x)
    return torch.ldexp(torch.round(m * 2 ** (bits + 1)) / 2 ** (bits + 1), e)


@torch.no_grad()
def randomize(model, images01, gen):
    """Random weights that keep activations O(1), AdaLN gates clearly non-zero, codebook vectors at the
    latent's scale and the decoder's output mostly inside its [-1, 1] clamp."""
    for name, t in model.state_dict().items():
        if not t.is_floating_point() or name.startswith(("normalizer.", "vae_quant_proxy.")) or "zero_k_bias" in name:
            continue
        r = torch.randn(t.shape, generator=gen)
        if name.endswith("weight") and t.ndim >= 2 and "embed" not in name and "class_emb" not in name:
            v = r / (t[0].numel() ** 0.5)  # std 1/sqrt(fan_in)
        elif name.endswith("weight") and t.ndim == 1:  # GroupNorm
            v = 1 + 0.1 * r
        elif name.startswith(("class_emb", "lvl_embed", "pos_")):
            v = 0.5 * r
        elif "ema_vocab_hit" in name:
            v = r.abs()
        else:  # biases, q_bias, v_bias, word_embed
            v = 0.1 * r
        t.copy_(snap(v))
    vae = model.vae_proxy
    x = images01 * 2 - 1
    f = vae.quant_conv(vae.encoder(x))
    vae.quantize.embedding.weight.copy_(snap(torch.randn(vae.quantize.embedding.weight.shape, generator=gen)
                                             * f.std()))
    out = vae.decoder(vae.post_quant_conv(f))
    vae.decoder.conv_out.weight.mul_(0.4 / out.std())
    vae.decoder.conv_out.bias.zero_()
    vae.decoder.conv_out.weight.copy_(snap(vae.decoder.conv_out.weight))


def save_like_the_trainer(model, out_dir):
    """What the release's trainer writes: accelerate's `save_state` (one process, CPU)."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    prepared = acc.prepare(model)
    acc.save_state(out_dir)
    del prepared
    return os.path.join(out_dir, "model.safetensors")


def images_for(c, rng):
    """Fixed uint8 test images (B = 2): smooth gradients, a disc and mild noise."""
    H, W = c["image_hw"]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = []
    for b in range(2):
        img = np.stack([xx / W * 255, yy / H * 255, (xx + yy) / (H + W) * 255], -1)
        disc = (xx - W * (0.3 + 0.4 * b)) ** 2 + (yy - H * 0.5) ** 2 < (0.25 * min(H, W)) ** 2
        img[disc] = [230, 40 + 150 * b, 60]
        img = img + rng.normal(0, 12, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def release_input(images_u8, size):
    """The release's eval preprocessing: PIL bicubic to size x size (aspect not kept), / 255."""
    arr = [np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
           for a in images_u8]
    return torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2).contiguous()


def run_config(name, c, var_utils, normalizers, out, full_dir, commits):
    torch.manual_seed(0)  # the release's constructors draw their own init from the global RNG
    gen = torch.Generator().manual_seed(SEED + len(c["patch_nums"]))
    model = build_release(var_utils, normalizers, c).eval()
    size = 16 * c["patch_nums"][-1]
    images = images_for(c, np.random.default_rng(len(c["patch_nums"])))
    x = release_input(images, size)
    randomize(model, x, gen)

    with tempfile.TemporaryDirectory() as tmp:
        path = save_like_the_trainer(model, tmp)
        raw = open(path, "rb").read()
    with open(os.path.join(out, f"{name}.safetensors.xz"), "wb") as f:
        f.write(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))

    # greedy: the release's deterministic loop (DepthVAR's argmax), tokens = argmax of the head's logits
    logits = []
    hook = model.head.register_forward_hook(lambda m, i, o: logits.append(o))
    with torch.no_grad():
        greedy = var_utils.DepthVAR.autoregressive_infer_cfg(model, B=len(x), image=x.clone()).mean(1)
    hook.remove()
    tokens = torch.cat([lg.argmax(-1) for lg in logits], 1)

    # the release's default sampler, with its draws recorded (it samples from the global RNG)
    draws = []
    sampler = var_utils.depthart.sample_with_top_k_top_p_

    def recording(*a, **kw):
        idx = sampler(*a, **kw)
        draws.append(idx.clone())
        return idx

    var_utils.depthart.sample_with_top_k_top_p_ = recording
    torch.manual_seed(SEED)
    with torch.no_grad():
        mean5 = model.autoregressive_infer_cfg(B=len(x), image=x.clone()).mean(1)
    var_utils.depthart.sample_with_top_k_top_p_ = sampler

    u16 = lambda d: np.round(d.numpy().astype(np.float64) * 65535).astype(np.uint16)  # noqa: E731
    meta = dict(config={k: list(v) if isinstance(v, tuple) else v for k, v in c.items()}, seed=SEED,
                release_commit=commits["release"], var_commit=commits["var"], torch=torch.__version__,
                accelerate=__import__("accelerate").__version__, num_tensors_in_file=None)
    from safetensors import safe_open

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as t:
        t.write(raw)
        t.flush()
        with safe_open(t.name, "pt") as f:
            meta["num_tensors_in_file"] = len(list(f.keys()))
            meta["file_metadata"] = f.metadata()
    meta["num_tensors_in_memory"] = len(model.state_dict())
    np.savez_compressed(os.path.join(out, f"{name}.npz"), images=images, greedy_tokens=tokens.numpy().astype(np.int16),
                        greedy_depth_u16=u16(greedy), mean_draws=torch.cat(draws, 1).numpy().astype(np.int16),
                        mean_depth_u16=u16(mean5), meta=np.array(json.dumps(meta)))
    if full_dir:
        np.savez(os.path.join(full_dir, f"{name}_full.npz"), greedy=greedy.numpy(), mean=mean5.numpy(),
                 model_input=x.numpy())
    print(f"{name}: {meta['num_tensors_in_file']} tensors in the file ({meta['num_tensors_in_memory']} in memory), "
          f"{len(raw):,} bytes, xz {os.path.getsize(os.path.join(out, name + '.safetensors.xz')):,}; "
          f"greedy depth range {greedy.min():.3f}..{greedy.max():.3f}")


def check_keys_against_var(var_root, var_utils, normalizers):
    """The issue's claims about names, checked at VAR-d16's block count: the release's `vae_proxy.*` are
    VAR's VQ-VAE names and shapes, and its transformer names are VAR's without `scale_mul_1H11` and
    `attn_bias_for_masking` (VAR's VQVAE hard-codes ch_mult (1, 1, 2, 2, 4), so that is used here)."""
    sys.path.insert(0, var_root)
    from models.var import VAR
    from models.vqvae import VQVAE

    c = dict(patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), depth=16, width=64 * 2, heads=16, vocab=64, cvae=8,
             ch=32, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, num_classes=1000)
    rel = build_release(var_utils, normalizers, c).state_dict()
    vae = VQVAE(vocab_size=64, z_channels=8, ch=32, test_mode=True, share_quant_resi=4, v_patch_nums=c["patch_nums"])
    var = VAR(vae, num_classes=1000, depth=16, embed_dim=c["width"], num_heads=16, attn_l2_norm=True,
              patch_nums=c["patch_nums"], flash_if_available=False, fused_if_available=False).state_dict()
    shape = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
    rel_vae = {k[len("vae_proxy."):]: v for k, v in shape(rel).items() if k.startswith("vae_proxy.")}
    assert rel_vae == shape(vae.state_dict()), "vae_proxy.* differ from VAR's VQ-VAE"
    alias = {k for k in rel if k.startswith("vae_quant_proxy.")}
    assert {k[len("vae_quant_proxy."):] for k in alias} == {k[len("quantize."):] for k in rel_vae if k.startswith("quantize.")}
    rel_tf = {k: v for k, v in shape(rel).items() if not k.startswith(("vae_proxy.", "vae_quant_proxy.", "normalizer."))}
    var_tf = {k: v for k, v in shape(var).items() if not k.endswith("scale_mul_1H11") and k != "attn_bias_for_masking"}
    assert rel_tf == var_tf, sorted(set(rel_tf) ^ set(var_tf))
    assert {k for k in rel if k.startswith("normalizer.")} == {"normalizer.alpha", "normalizer.beta"}
    print(f"names: vae_proxy.* = VAR's VQ-VAE ({len(rel_vae)}), {len(alias)} vae_quant_proxy.* aliases, "
          f"transformer = VAR's minus scale_mul_1H11 / attn_bias_for_masking ({len(rel_tf)}), normalizer.alpha/beta")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", required=True, help="a checkout of github.com/bulatko/DepthART")
    ap.add_argument("--var", required=True, help="a checkout of github.com/FoundationVision/VAR")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--full", default=None, help="also write unquantised outputs to this folder")
    ap.add_argument("--release-commit", default=None, help="if --release is not a git checkout")
    ap.add_argument("--var-commit", default=None, help="if --var is not a git checkout")
    args = ap.parse_args()
    commits = dict(release=args.release_commit or git_head(args.release), var=args.var_commit or git_head(args.var))
    var_utils, normalizers = import_release(args.release)
    check_keys_against_var(args.var, var_utils, normalizers)
    for name, c in CONFIGS.items():
        run_config(name, c, var_utils, normalizers, args.out, args.full, commits)


if __name__ == "__main__":
    main()

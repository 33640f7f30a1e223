"""DepthART: VAR's next-scale transformer predicting depth token maps, conditioned on an image.

Sequence layout (L = tokens per pyramid, 680 at 256 px):

    [ image prefix: L tokens | start token(s) + depth scales 1..K-1: L tokens ]

The image prefix is the frozen VQ-VAE's cumulative reconstruction of the RGB image after each
scale, resized (bicubic) to that scale's grid and embedded with the same word / level /
position embeddings as the depth tokens. Each token carries a *block id*: 0 for the prefix and
the start token, k for depth scale k. A token attends to every token whose block id is <= its
own: the image attends to itself and the start token, depth scale k to the whole image and to
depth scales <= k. Cached step k processes exactly block k, so the cached loop and one masked
full-sequence pass compute the same thing (tested).

State-dict names follow FoundationVision/VAR so `var_d16.pth` loads; the VQ-VAE sits under `vae.`.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .resize import resize
from .vqvae import VQVAE


class _Clock:
    """Adds the seconds since the last call to timings[name] (synchronising CUDA); a no-op without a dict."""

    def __init__(self, timings, device):
        self.timings, self.cuda = timings, torch.device(device).type == "cuda"
        self.t = time.perf_counter()

    def __call__(self, name):
        if self.timings is None:
            return
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.t
        self.t = now


class KVCache:
    """Keys and values of the whole sequence for every block, allocated once.

    `k[i]`, `v[i]`: (B, heads, seq_len, head_dim) for block i. `update` writes one step's slice.
    Without autograd the write is in place. When the new keys carry gradients (DepthART
    training backpropagates later scales through earlier scales' keys) the layer's buffer is
    replaced by a same-shape copy with the slice written (`slice_scatter`): an in-place write
    would invalidate tensors autograd saved at earlier steps. Shapes never change either way.
    """

    def __init__(self, cfg: ModelConfig, batch: int, device=None, dtype=torch.float32):
        shape = (batch, cfg.heads, cfg.seq_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.depth)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.depth)]

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    def update(self, layer: int, begin: int, k_BHlc: torch.Tensor, v_BHlc: torch.Tensor):
        """Write positions [begin, begin + l) of block `layer`; return its k, v up to begin + l."""
        end = begin + k_BHlc.shape[2]
        # out of place while anything in this layer's cache carries a gradient (in place would break its backward)
        if torch.is_grad_enabled() and (k_BHlc.requires_grad or v_BHlc.requires_grad or self.k[layer].requires_grad
                                        or self.v[layer].requires_grad):
            self.k[layer] = self.k[layer].slice_scatter(k_BHlc, dim=2, start=begin, end=end)
            self.v[layer] = self.v[layer].slice_scatter(v_BHlc, dim=2, start=begin, end=end)
        else:
            self.k[layer][:, :, begin:end] = k_BHlc
            self.v[layer][:, :, begin:end] = v_BHlc
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C, H = cfg.width, cfg.heads
        self.heads, self.head_dim = H, cfg.head_dim
        self.l2_norm = cfg.attn == "l2norm"
        if self.l2_norm:
            # learned per-head temperature on cosine attention, capped at 100 (VAR)
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, H, 1, 1), math.log(4.0)))
            self.max_scale_mul = math.log(100.0)
            self.scale = 1.0
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(C, 3 * C, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(C))
        self.v_bias = nn.Parameter(torch.zeros(C))
        self.register_buffer("zero_k_bias", torch.zeros(C))
        self.proj = nn.Linear(C, C)

    def forward(self, x_BlC, cache: KVCache | None, layer: int, begin: int, attn_bias=None):
        B, l, C = x_BlC.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x_BlC, self.mat_qkv.weight, bias).view(B, l, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, l, c)
        if self.l2_norm:
            # F.normalize's math (x / max(|x|, 1e-12)) without its expand_as: exported, the Div broadcasts the
            # norms instead of materialising them at full size (one copy per q and k per block fewer on CPU)
            q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12) * self.scale_mul_1H11.clamp(max=self.max_scale_mul).exp()
            k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if cache is not None:
            k, v = cache.update(layer, begin, k, v)  # (B, H, begin + l, c)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=self.scale)
        return self.proj(o.transpose(1, 2).reshape(B, l, C))


class FFN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = round(cfg.width * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.width, hidden)
        self.fc2 = nn.Linear(hidden, cfg.width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _drop_path(x, p: float, training: bool):
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class AdaLNSelfAttn(nn.Module):
    """Pre-norm block whose LayerNorm scale/shift and residual gates come from the condition."""

    def __init__(self, cfg: ModelConfig, drop_path: float):
        super().__init__()
        self.C = cfg.width
        self.attn = SelfAttention(cfg)
        self.ffn = FFN(cfg)
        self.ln_wo_grad = nn.LayerNorm(cfg.width, eps=cfg.norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 6 * cfg.width))
        self.drop_path = drop_path

    def forward(self, x_BlC, cond_BD, cache, layer, begin, attn_bias=None):
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.ada_lin(cond_BD).view(-1, 1, 6, self.C).unbind(2)
        h = self.attn(self.ln_wo_grad(x_BlC) * (1 + scale1) + shift1, cache, layer, begin, attn_bias)
        x_BlC = x_BlC + _drop_path(h * gamma1, self.drop_path, self.training)
        h = self.ffn(self.ln_wo_grad(x_BlC) * (1 + scale2) + shift2)
        return x_BlC + _drop_path(h * gamma2, self.drop_path, self.training)


class AdaLNBeforeHead(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.C = cfg.width
        self.ln_wo_grad = nn.LayerNorm(cfg.width, eps=cfg.norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 2 * cfg.width))

    def forward(self, x_BlC, cond_BD):
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.C).unbind(2)
        return self.ln_wo_grad(x_BlC) * (1 + scale) + shift


class DepthART(nn.Module):
    """The DepthART model: frozen VQ-VAE + VAR transformer over [image prefix | depth tokens]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C, L = cfg.width, cfg.tokens_per_map
        # 0. the frozen VQ-VAE (image prefix, depth latents, decoding)
        self.vae = VQVAE(cfg)
        self.vae.requires_grad_(False)
        # 1. input (word) embedding of VQ-VAE latent vectors
        self.word_embed = nn.Linear(cfg.cvae, C)
        # 2. class embedding; DepthART always uses the null class `num_classes` (start token and AdaLN)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)
        self.pos_start = nn.Parameter(torch.zeros(1, cfg.first_l, C))
        # 3. absolute position and level embeddings, shared by image and depth pyramids
        self.pos_1LC = nn.Parameter(torch.zeros(1, L, C))
        self.lvl_embed = nn.Embedding(cfg.num_scales, C)
        # 4. blocks
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(AdaLNSelfAttn(cfg, dpr[i]) for i in range(cfg.depth))
        # 5. head
        self.head_nm = AdaLNBeforeHead(cfg)
        self.head = nn.Linear(C, cfg.vocab_size)
        # level id of each pyramid token, and block id of each sequence token (module docstring)
        self.register_buffer("lvl_1L", torch.zeros(1, L, dtype=torch.long), persistent=False)
        self.register_buffer("block_id_T", torch.zeros(2 * L, dtype=torch.long), persistent=False)
        self.reset_buffers()
        self.init_weights()

    @torch.no_grad()
    def reset_buffers(self):
        """Recompute the derived (non-persistent) buffers, e.g. after `to_empty()`."""
        cfg, L = self.cfg, self.cfg.tokens_per_map
        lvl_L = torch.cat([torch.full((p * p,), k) for k, p in enumerate(cfg.patch_nums)])
        self.lvl_1L.copy_(lvl_L.view(1, L))
        self.block_id_T.copy_(torch.cat((torch.zeros(L, dtype=torch.long), lvl_L)))

    # ---------------------------------------------------------------- init
    @torch.no_grad()
    def init_weights(self, init_std: float | None = None, init_head: float = 0.02,
                     init_adaln: float = 0.5, init_adaln_gamma: float = 1e-5):
        """VAR's initialisation of the transformer (the VQ-VAE keeps PyTorch's defaults)."""
        std = init_std if init_std is not None else math.sqrt(1 / self.cfg.width / 3)
        for name, m in self.named_modules():
            if name.startswith("vae"):
                continue
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
        for p in (self.pos_start, self.pos_1LC):
            nn.init.trunc_normal_(p, std=std)
        self.head.weight.mul_(init_head)
        self.head.bias.zero_()
        self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
        self.head_nm.ada_lin[-1].bias.zero_()
        C = self.cfg.width
        for b in self.blocks:
            b.attn.proj.weight.div_(math.sqrt(2 * self.cfg.depth))
            b.ffn.fc2.weight.div_(math.sqrt(2 * self.cfg.depth))
            b.ada_lin[-1].weight[2 * C:].mul_(init_adaln)
            b.ada_lin[-1].weight[: 2 * C].mul_(init_adaln_gamma)
            b.ada_lin[-1].bias.zero_()

    def num_transformer_params(self) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("vae."))

    # ---------------------------------------------------------------- embeddings
    def lvl_pos(self, k: int) -> torch.Tensor:
        """Level + position embedding of scale k's tokens: (1, pn*pn, C)."""
        b, e = self.cfg.scale_ranges()[k]
        return self.lvl_embed(self.lvl_1L[:, b:e]) + self.pos_1LC[:, b:e]

    def cond(self, labels_B: torch.Tensor) -> torch.Tensor:
        """AdaLN condition (B, D): the class embedding (the null class for DepthART)."""
        return self.class_emb(labels_B)

    def null_labels(self, B: int, device=None) -> torch.Tensor:
        return torch.full((B,), self.cfg.num_classes, dtype=torch.long, device=device)

    def start_tokens(self, cond_BD: torch.Tensor) -> torch.Tensor:
        """Start token(s) of the depth pyramid: (B, first_l, C)."""
        return cond_BD.unsqueeze(1) + self.pos_start + self.lvl_pos(0)

    def embed_scale(self, k: int, x_BlCv: torch.Tensor) -> torch.Tensor:
        """Latent vectors of scale k (B, pn*pn, cvae) -> transformer input tokens (B, pn*pn, C)."""
        return self.word_embed(x_BlCv) + self.lvl_pos(k)

    def image_latents(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """The image's pyramid for the prefix (B, L, cvae): the frozen VQ-VAE's cumulative
        reconstruction after each scale, bicubic-resized to that scale's grid (the image's latent from
        `vae.encode_image`: the untied image encoder's where the model has one). No gradient, unless an untied
        image encoder trains (`train --trainable image`): then it passes straight through the quantiser (the
        values are the same)."""
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.vae.image_parameters())
        with torch.set_grad_enabled(grad):
            f = self.vae.encode_image(img_B3HW)
            with torch.no_grad():
                _, f_hats = self.vae.quantize.tokenize(f)
            if grad:
                f_hats = [f_hat + (f - f.detach()) for f_hat in f_hats]
            parts = [resize(f_hat, pn, "bicubic").flatten(2).transpose(1, 2)
                     for pn, f_hat in zip(self.cfg.patch_nums, f_hats)]
            return torch.cat(parts, dim=1)

    def image_prefix(self, img_B3HW: torch.Tensor, latents_BLCv: torch.Tensor | None = None) -> torch.Tensor:
        """Embedded image prefix (B, L, C); the embeddings are trainable, the VQ-VAE part is not.

        `latents_BLCv`: `image_latents(img_B3HW)` computed beforehand (the trainer's latent cache), or None.
        """
        lat = self.image_latents(img_B3HW) if latents_BLCv is None else latents_BLCv.to(self.pos_1LC.dtype)
        return self.word_embed(lat) + self.lvl_embed(self.lvl_1L) + self.pos_1LC

    # ---------------------------------------------------------------- the step
    def step(self, x_BlC: torch.Tensor, cond_BD: torch.Tensor, cache: KVCache | None, begin: int,
             attn_bias: torch.Tensor | None = None, logits_from=0) -> torch.Tensor:
        """Run the transformer on tokens at sequence positions [begin, begin + l); return logits (B, l, V).

        With a cache, the tokens' keys/values are written into it and the tokens attend to all
        cached positions < begin + l (a step must carry a whole block, see the module docstring).
        Without a cache they attend to each other under `attn_bias` (additive, (l, l)): the
        teacher-forcing pass. Training, inference and export all go through here.
        `logits_from`: the head runs on tokens [logits_from, l) only, and the logits are (B, l - logits_from, V)
        (step 0 of generation needs the start tokens' logits, not the image prefix's).
        """
        for i, block in enumerate(self.blocks):
            x_BlC = block(x_BlC, cond_BD, cache, i, begin, attn_bias)
        return self.head(self.head_nm(x_BlC[:, logits_from:], cond_BD))

    def block_causal_bias(self, begin: int = 0, end: int | None = None) -> torch.Tensor:
        """Additive mask (T, T) for a full pass over sequence positions [begin, end)."""
        ids = self.block_id_T[begin:end]
        allowed = ids[None, :] <= ids[:, None]
        zeros = torch.zeros(allowed.shape, device=ids.device)
        return zeros.masked_fill(~allowed, float("-inf"))

    # ---------------------------------------------------------------- teacher forcing
    def forward_teacher(self, img_B3HW: torch.Tensor, idx_list: list[torch.Tensor],
                        image_latents: torch.Tensor | None = None, cached: bool = False,
                        cache_dtype=None, with_prefix: bool = False) -> torch.Tensor:
        """One masked pass over the full sequence with ground-truth depth tokens (VAR teacher forcing).

        Returns logits of the depth tokens, (B, L, V): position j predicts depth token j.
        `image_latents`: the prefix's VQ-VAE latents if already computed (see `image_prefix`).
        `cached`: run it as the cached scale-by-scale loop (same result; faster for training on CPU).
        `with_prefix`: return the logits of all 2L positions, the image prefix's first (B, 2L, V).
        """
        B = img_B3HW.shape[0]
        L = self.cfg.tokens_per_map
        cond = self.cond(self.null_labels(B, img_B3HW.device))
        x = torch.cat([self.image_prefix(img_B3HW, image_latents), self.depth_inputs(cond, idx_list)], dim=1)
        first = 0 if with_prefix else L
        if not cached:
            return self.step(x, cond, None, 0, self.block_causal_bias())[:, first:]
        # the same computation block by block through a KV cache: no (T, T) mask, which PyTorch's
        # fused CPU attention handles slowly; the cache writes out of place under autograd
        cache = KVCache(self.cfg, B, x.device, cache_dtype or self.pos_1LC.dtype)
        logits = [self.step(x[:, b:e], cond, cache, b) for b, e in self.cfg.step_ranges()]
        return torch.cat(logits, dim=1)[:, first:]

    def depth_inputs(self, cond_BD, idx_list) -> torch.Tensor:
        """Teacher-forcing depth tokens (B, L, C): start token(s), then scales 1..K-1 from GT tokens."""
        teacher = self.vae.quantize.teacher_inputs(idx_list)  # (B, L - first_l, cvae)
        L, fl = self.cfg.tokens_per_map, self.cfg.first_l
        rest = self.word_embed(teacher) + self.lvl_embed(self.lvl_1L[:, fl:]) + self.pos_1LC[:, fl:L]
        return torch.cat([self.start_tokens(cond_BD), rest], dim=1)

    def forward_class(self, labels_B: torch.Tensor, idx_list: list[torch.Tensor]) -> torch.Tensor:
        """VAR's own class-conditional teacher-forcing pass (no image prefix): logits (B, L, V).

        Used to check imported VAR weights against the official code.
        """
        cond = self.cond(labels_B)
        L = self.cfg.tokens_per_map
        return self.step(self.depth_inputs(cond, idx_list), cond, None, 0, self.block_causal_bias(L, 2 * L))

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(self, img_B3HW: torch.Tensor, sampler=None, return_tokens: bool = False, timings=None):
        """Cached scale-by-scale loop. Returns the final latent f_hat (B, cvae, h, w) [and tokens].

        `sampler(k, logits_BlV, codebook) -> (idx, code vectors (B, pn*pn, cvae))`; defaults to greedy.
        `timings`: an optional dict that receives seconds per stage (prefix, step_k, next_k), for benchmarks.
        """
        from .sampling import Greedy

        sampler = sampler or Greedy()
        clock = _Clock(timings, img_B3HW.device)
        cfg = self.cfg
        B = img_B3HW.shape[0]
        cache = KVCache(cfg, B, img_B3HW.device, self.pos_1LC.dtype)
        cond = self.cond(self.null_labels(B, img_B3HW.device))
        codebook = self.vae.quantize.embedding.weight
        f_hat = img_B3HW.new_zeros(B, cfg.cvae, cfg.patch_nums[-1], cfg.patch_nums[-1])
        x = torch.cat([self.image_prefix(img_B3HW), self.start_tokens(cond)], dim=1)
        clock("prefix")
        tokens = []
        for k, (begin, _) in enumerate(cfg.step_ranges()):
            pn = cfg.patch_nums[k]
            logits = self.step(x, cond, cache, begin, logits_from=x.shape[1] - pn * pn)
            idx, h_BlCv = sampler(k, logits, codebook)
            tokens.append(idx)
            clock(f"step_{k}")
            f_hat = self.vae.quantize.accumulate(k, f_hat, self.vae.quantize.code_map(k, h_BlCv))
            if k + 1 < cfg.num_scales:
                x = self.embed_scale(k + 1, self.vae.quantize.next_input(k + 1, f_hat))
            clock(f"next_{k}")
        return (f_hat, tokens) if return_tokens else f_hat

    @torch.no_grad()
    def predict_normalized(self, img_B3HW: torch.Tensor, sampler=None, timings=None) -> torch.Tensor:
        """Model-resolution image in [-1, 1] -> relative depth (B, 1, H, W) in [0, 1] (0 near)."""
        f_hat = self.generate(img_B3HW, sampler, timings=timings)
        clock = _Clock(timings, img_B3HW.device)
        depth = self.decode_depth(f_hat)
        clock("decoder")
        return depth

    def decode_depth(self, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """Final latent -> relative depth (B, 1, H, W) in [0, 1]: decode, clamp, map to [0, 1], mean of channels."""
        return ((self.vae.decode(f_hat_BChw) + 1) / 2).mean(1, keepdim=True)

    @torch.no_grad()
    def predict(self, image, sampler=None):
        """Depth of one image (PIL image, uint8/uint16 array or path) as float32 HxW in [0, 1], at its size.

        0 is near. Preprocessing and the resize back: `depthart.preprocess`. `sampler` None: the one the
        checkpoint recommends (`default_sampler`, set by `depthart.load`; greedy for other models).
        """
        from .preprocess import load_image, resize_depth, to_model_input
        from .sampling import make_sampler

        if sampler is None:
            sampler = make_sampler(getattr(self, "default_sampler", "greedy"))
        img = load_image(image)
        x = torch.from_numpy(to_model_input(img, self.cfg.image_size))[None].to(self.pos_1LC.device)
        depth = self.predict_normalized(x, sampler)[0, 0].float().cpu().numpy()
        return resize_depth(depth, img.height, img.width)


def untie_image_encoder(model: DepthART, res_blocks: int) -> DepthART:
    """`model` with its images read by an untied image encoder of `res_blocks` residual blocks per level
    (`vqvae.untie_image_encoder`: the same prefix as before to float rounding, the depth side unchanged); in place,
    also returned. Its config records the new image side (ModelConfig.image_res_blocks)."""
    from .vqvae import untie_image_encoder as untie_vae

    model.vae = untie_vae(model.vae, res_blocks)
    model.cfg = model.vae.cfg
    return model


UNET_CHANNELS = (12, 24, 48, 96, 192)  # add_image_unet's default: the reference CNN of the default-model calibration


def add_image_unet(model: DepthART, channels: tuple[int, ...] | None = None, seed: int = 0) -> DepthART:
    """`model` with its images read through a fresh U-Net depth guess and the VQ-VAE's depth encoder
    (`vqvae.add_image_unet`); in place, also returned. Its config records it (ModelConfig.image_unet). Default
    channels: UNET_CHANNELS, less its deepest levels where the image size does not halve that often."""
    from .vqvae import add_image_unet as add_vae

    if channels is None:
        levels = len(UNET_CHANNELS)
        while levels > 2 and model.cfg.image_size % 2 ** (levels - 1):
            levels -= 1
        channels = UNET_CHANNELS[:levels]

    model.vae = add_vae(model.vae, channels, seed)
    model.cfg = model.vae.cfg
    return model

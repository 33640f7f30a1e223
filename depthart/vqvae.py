"""VAR's multi-scale residual VQ-VAE, with VAR's state-dict names.

`VQVAE` loads FoundationVision/VAR's `vae_ch160v4096z32.pth` strictly. The residual
quantisation over the scale schedule is written once, as two per-scale transitions on
`MultiScaleQuantizer`:

- `residual_tokens(k, f, f_hat)`: nearest codes of the part of `f` that `f_hat` does not
  yet explain, at scale k (area-downsampled);
- `accumulate(k, f_hat, h)`: add scale k's code vectors to `f_hat` (bicubic upsample, phi).

Resizes between token-map sizes are constant matrices (`depthart.resize`), equal to VAR's
`F.interpolate` calls to float rounding.

Tokenisation, teacher-forcing inputs, inference and DepthART's dynamic targets are all
loops over these two functions.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .resize import precompute, resize


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over h*w positions (scale C^-0.5)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = _norm(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, 1, C, H * W).transpose(3, 4)
        q, k, v = qkv.unbind(1)  # each (B, 1, HW, C): one head (4-D for the ONNX exporter)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        return x + self.proj_out(h.transpose(2, 3).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(**modules) -> nn.Module:
    m = nn.Module()
    for name, mod in modules.items():
        setattr(m, name, mod)
    return m


def _run_level(level: nn.Module, h):
    """Residual blocks of one resolution level, each followed by its attention block if the level has them."""
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):
            h = level.attn[i](h)
    return h


def _mid(c: int) -> nn.Module:
    return _level(block_1=ResnetBlock(c, c), attn_1=AttnBlock(c), block_2=ResnetBlock(c, c))


class Encoder(nn.Module):
    """Image (B, 3, H, W) in [-1, 1] -> latent (B, cvae, H/ds, W/ds). Attention at the lowest level."""

    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        c_in = ch
        last = len(ch_mult) - 1
        for i, m in enumerate(ch_mult):
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(c_in, ch * m))
                c_in = ch * m
                if i == last:
                    attns.append(AttnBlock(c_in))
            level = _level(block=blocks, attn=attns)
            if i != last:
                level.downsample = Downsample(c_in)
            self.down.append(level)
        self.mid = _mid(c_in)
        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, cvae, h, w) -> image (B, 3, h*ds, w*ds), unclamped."""

    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int):
        super().__init__()
        last = len(ch_mult) - 1
        c_in = ch * ch_mult[last]
        self.conv_in = nn.Conv2d(z_channels, c_in, 3, padding=1)
        self.mid = _mid(c_in)
        levels = []
        for i in reversed(range(len(ch_mult))):
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(c_in, ch * ch_mult[i]))
                c_in = ch * ch_mult[i]
                if i == last:
                    attns.append(AttnBlock(c_in))
            level = _level(block=blocks, attn=attns)
            if i != 0:
                level.upsample = Upsample(c_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)  # indexed by resolution level, run from the last to the first
        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, 3, 3, padding=1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) h + r conv3x3(h): the per-scale refinement of upsampled code vectors."""

    def __init__(self, c: int, ratio: float):
        super().__init__(c, c, 3, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h):
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


class _PhiList(nn.Module):
    # a wrapper module so the state-dict names are VAR's `quant_resi.qresi_ls.{i}`
    def __init__(self, phis: list[Phi]):
        super().__init__()
        self.qresi_ls = nn.ModuleList(phis)


class MultiScaleQuantizer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.cvae)
        self.quant_resi = _PhiList([Phi(cfg.cvae, cfg.quant_resi) for _ in range(cfg.share_quant_resi)])
        # VAR's codebook-usage statistics; kept so official checkpoints load strictly
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(cfg.num_scales, cfg.vocab_size))
        self._phi_of_scale = [cfg.phi_index(k) for k in range(cfg.num_scales)]
        precompute(cfg.patch_nums)

    @property
    def last(self) -> int:
        return self.cfg.patch_nums[-1]

    def phi(self, k: int) -> Phi:
        return self.quant_resi.qresi_ls[self._phi_of_scale[k]]

    def code_distances(self, z_BChw: torch.Tensor) -> torch.Tensor:
        """Squared L2 distance of every position's vector to every code: (B, h*w, V) fp32."""
        B, C, h, w = z_BChw.shape
        with torch.autocast(z_BChw.device.type, enabled=False):  # distances in fp32 even under bf16 autocast
            z_NC = z_BChw.permute(0, 2, 3, 1).reshape(-1, C).float()
            e_VC = self.embedding.weight.float()
            d_NV = z_NC.square().sum(1, keepdim=True) + e_VC.square().sum(1) - 2 * z_NC @ e_VC.T
        return d_NV.view(B, h * w, -1)

    def nearest(self, z_BChw: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector (L2) for every position: (B, h*w) int64."""
        return self.code_distances(z_BChw).argmin(-1)

    def residual(self, k: int, f_BChw: torch.Tensor, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """What `f_hat` does not yet explain of `f`, area-downsampled to scale k: (B, cvae, pn, pn)."""
        return resize(f_BChw - f_hat_BChw, self.cfg.patch_nums[k], "area")

    def code_map(self, k: int, h_BlC: torch.Tensor) -> torch.Tensor:
        """Scale k's code vectors as a sequence (B, pn*pn, cvae) -> as a map (B, cvae, pn, pn), what `accumulate` takes."""
        pn = self.cfg.patch_nums[k]
        return h_BlC.transpose(1, 2).reshape(h_BlC.shape[0], self.cfg.cvae, pn, pn)

    def embed(self, k: int, idx_Bl: torch.Tensor) -> torch.Tensor:
        """Token indices of scale k (B, pn*pn) -> code vectors (B, cvae, pn, pn)."""
        return self.code_map(k, self.embedding(idx_Bl))

    def residual_tokens(self, k: int, f_BChw: torch.Tensor, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """Scale k's tokens for what `f_hat` does not yet explain of `f`: nearest codes of area(f - f_hat)."""
        return self.nearest(self.residual(k, f_BChw, f_hat_BChw))

    def accumulate(self, k: int, f_hat_BChw: torch.Tensor, h_BChw: torch.Tensor) -> torch.Tensor:
        """f_hat + phi_k(bicubic_up(h)): add scale k's code vectors (B, cvae, pn, pn) to f_hat. Out of place."""
        return f_hat_BChw + self.phi(k)(resize(h_BChw, self.last, "bicubic"))

    def next_input(self, k: int, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """The input token map of scale k (> 0): f_hat area-downsampled, flattened to (B, pn*pn, cvae)."""
        return resize(f_hat_BChw, self.cfg.patch_nums[k], "area").flatten(2).transpose(1, 2)

    # ---- loops over the two transitions ----
    def tokenize(self, f_BChw: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Multi-scale residual tokenisation of a latent.

        Returns:
            (idx, f_hats): per scale, tokens (B, pn*pn) int64 and the cumulative
            reconstruction f_hat after that scale (B, cvae, last, last).
        """
        f_hat = torch.zeros_like(f_BChw)
        idx_list, f_hats = [], []
        for k in range(self.cfg.num_scales):
            idx = self.residual_tokens(k, f_BChw, f_hat)
            f_hat = self.accumulate(k, f_hat, self.embed(k, idx))
            idx_list.append(idx)
            f_hats.append(f_hat)
        return idx_list, f_hats

    def idx_to_fhat(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        f_hat = None
        for k, idx in enumerate(idx_list):
            h = self.embed(k, idx)
            if f_hat is None:
                f_hat = h.new_zeros(h.shape[0], self.cfg.cvae, self.last, self.last)
            f_hat = self.accumulate(k, f_hat, h)
        return f_hat

    def teacher_inputs(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing inputs for scales 1..K-1 from ground-truth tokens: (B, L - first_l, cvae)."""
        B = idx_list[0].shape[0]
        f_hat = self.embedding.weight.new_zeros(B, self.cfg.cvae, self.last, self.last)
        inputs = []
        for k in range(self.cfg.num_scales - 1):
            f_hat = self.accumulate(k, f_hat, self.embed(k, idx_list[k]))
            inputs.append(self.next_input(k + 1, f_hat))
        return torch.cat(inputs, dim=1)


IMAGE_SIDE = ("image_encoder", "image_quant_conv", "image_unet")  # the images' own modules, where a VQ-VAE has them


class VQVAE(nn.Module):
    """VAR's VQ-VAE: encoder, quant_conv, multi-scale quantizer, post_quant_conv, decoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        args = (cfg.vae_ch, cfg.vae_ch_mult, cfg.vae_num_res_blocks, cfg.cvae)
        self.encoder = Encoder(*args)
        self.decoder = Decoder(*args)
        self.quantize = MultiScaleQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.cvae, cfg.cvae, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(cfg.cvae, cfg.cvae, 3, padding=1)
        if cfg.image_res_blocks:  # an untied image side (ModelConfig.image_res_blocks)
            self.image_encoder = Encoder(cfg.vae_ch, cfg.vae_ch_mult, cfg.image_res_blocks, cfg.cvae)
            self.image_quant_conv = nn.Conv2d(cfg.cvae, cfg.cvae, 3, padding=1)
        if cfg.image_unet:  # a U-Net's depth guess, read by the depth encoder (ModelConfig.image_unet)
            from .unet import DepthUNet

            self.image_unet = DepthUNet(cfg.image_unet)

    @property
    def untied(self) -> bool:
        """Whether images have their own image side (`encode_image`: an untied encoder or a U-Net) rather than
        going through the VQ-VAE's encoder as they are."""
        return any(hasattr(self, n) for n in IMAGE_SIDE)

    def image_parameters(self) -> list:
        """The parameters of the images' own side (untied encoder or U-Net); none for a tied VQ-VAE."""
        return [p for n in IMAGE_SIDE if hasattr(self, n) for p in getattr(self, n).parameters()]

    def image_depth(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """A U-Net model's depth guess (B, 1, H, W) in [0, 1] (relative depth, as `depth_of` makes targets)."""
        return self.image_unet(img_B3HW)

    def encode(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> continuous latent f (B, cvae, last, last), not quantised. The VQ-VAE's own
        encoder: what depth maps (the targets' tokens) go through, and images too unless `untied`."""
        return self.quant_conv(self.encoder(img_B3HW))

    def encode_image(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """The RGB image's latent (B, cvae, last, last) for the transformer's prefix: the untied image encoder's
        if the model has one, else `encode`'s."""
        if hasattr(self, "image_unet"):  # the guess as a normalised 3-channel depth map, as depth maps enter encode
            return self.encode((self.image_depth(img_B3HW) * 2 - 1).expand(-1, 3, -1, -1))
        if self.untied:
            return self.image_quant_conv(self.image_encoder(img_B3HW))
        return self.encode(img_B3HW)

    def decode(self, f_hat_BChw: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Latent -> image in [-1, 1] (clamped; clamp=False: the raw output, for losses whose gradient must not
        stop at the ends)."""
        out = self.decoder(self.post_quant_conv(f_hat_BChw))
        return out.clamp(-1, 1) if clamp else out

    def img_to_idx(self, img_B3HW: torch.Tensor) -> list[torch.Tensor]:
        return self.quantize.tokenize(self.encode(img_B3HW))[0]

    def img_to_reconstruction(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        return self.decode(self.quantize.tokenize(self.encode(img_B3HW))[1][-1])


def untie_image_encoder(vae: VQVAE, res_blocks: int) -> VQVAE:
    """A copy of `vae` with an untied image encoder of `res_blocks` residual blocks per level that computes what
    `vae.encode_image` computes now (to float rounding): the existing image side (the shared encoder, or an
    untied one) fills the first blocks of each level, every added block starts as the identity (its last conv,
    and its attention's output projection at the attended level, zero). The depth side is copied unchanged."""
    if vae.cfg.image_unet:
        raise ValueError("this VQ-VAE's images go through a U-Net (image_unet); an untied encoder would replace it")
    have = vae.cfg.image_res_blocks or vae.cfg.vae_num_res_blocks
    if res_blocks < have:
        raise ValueError(f"an image encoder of {res_blocks} residual blocks per level cannot hold the {have} "
                         "this VQ-VAE's image side has; pass at least that many")
    out = VQVAE(vae.cfg.replace(image_res_blocks=res_blocks)).to(next(vae.parameters()).device)
    src_enc, src_conv = (vae.image_encoder, vae.image_quant_conv) if vae.untied else (vae.encoder, vae.quant_conv)
    state = {k: v for k, v in vae.state_dict().items() if not k.startswith(("image_encoder.", "image_quant_conv."))}
    state.update({f"image_quant_conv.{k}": v for k, v in src_conv.state_dict().items()})
    src = src_enc.state_dict()
    state.update({f"image_encoder.{k}": v for k, v in src.items()})
    for name, p in out.image_encoder.state_dict().items():
        key = f"image_encoder.{name}"
        if key not in state:  # an added block: random, then made the identity
            state[key] = p.clone()
            if ".conv2." in name or ".proj_out." in name:
                state[key].zero_()
    out.load_state_dict(state, strict=True)
    for p in out.parameters():
        p.requires_grad_(False)
    return out.to(next(vae.parameters()).dtype)


def add_image_unet(vae: VQVAE, channels: tuple[int, ...], seed: int = 0) -> VQVAE:
    """A copy of `vae` whose images go through a fresh U-Net of `channels` (seeded) and then the depth encoder
    (ModelConfig.image_unet); an untied image encoder it had is dropped; the depth side is copied unchanged."""
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = VQVAE(vae.cfg.replace(image_res_blocks=0, image_unet=tuple(channels)))
    state = {k: v for k, v in vae.state_dict().items() if not k.startswith(tuple(f"{n}." for n in IMAGE_SIDE))}
    state.update({f"image_unet.{k}": v for k, v in out.image_unet.state_dict().items()})
    out.load_state_dict(state, strict=True)
    for p in out.parameters():
        p.requires_grad_(False)
    return out.train(vae.training).to(device, dtype)

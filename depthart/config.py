"""Model configuration: one frozen dataclass and named presets.

Everything about a model's shape lives here; every module is built from a `ModelConfig`.
The scale schedule `patch_nums` is the only source of the per-scale token offsets.
This module imports no torch, so the runtime and the CLI's `--help` can use it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

ATTN_VARIANTS = ("l2norm", "plain")
# the trained `small` model that ships with depthart (docs/experiments.md, scripts/train_default.sh)
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(__file__), "assets", "default.safetensors")


def default_checkpoint() -> str:
    """The path of the shipped default; DepthartError if this install lacks it."""
    if not os.path.isfile(DEFAULT_CHECKPOINT):
        from .errors import DepthartError

        raise DepthartError(f"the trained default checkpoint is missing ({DEFAULT_CHECKPOINT}); reinstall depthart, "
                            "or pass --checkpoint model.safetensors (or a preset name for random weights)")
    return DEFAULT_CHECKPOINT


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a DepthART model: the VAR transformer plus its multi-scale VQ-VAE.

    The VAR size rule is width = 64 * depth and heads = depth (head dim 64); tiny configs
    may break it, the code path is the same.
    """

    # transformer
    depth: int = 16  # number of AdaLN self-attention blocks
    width: int = 1024  # embedding width C (= cond dim D)
    heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    # "l2norm": VAR's released models (q, k L2-normalised, learned per-head scale `scale_mul_1H11`)
    # "plain": the DepthART release (softmax(q k^T / 32), i.e. 0.25 / sqrt(head_dim))
    attn: str = "l2norm"
    num_classes: int = 1000  # class_emb has num_classes + 1 rows; the last is VAR's null class
    drop_path_rate: float = 0.0  # training only; VAR uses 0.1 * depth / 24
    # scale schedule: token map k is patch_nums[k] x patch_nums[k]
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    # multi-scale residual VQ-VAE
    vocab_size: int = 4096
    cvae: int = 32  # latent / codebook channels
    vae_ch: int = 160
    vae_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    vae_num_res_blocks: int = 2
    quant_resi: float = 0.5  # phi(h) = (1 - r) h + r conv(h)
    share_quant_resi: int = 4  # number of shared phi convs
    # the image side: 0 = images go through the VQ-VAE's own encoder (VAR's and the paper's: one encoder for
    # images and depth maps); N >= 1 = an untied image encoder (`vae.image_encoder`, `vae.image_quant_conv`) of
    # the encoder's shape with N residual blocks per level, so the image side can learn (train-vqvae
    # --image-to-depth) without moving the depth maps' tokens (docs/experiments.md section 16)
    image_res_blocks: int = 0
    # () = none; channels per level = the image first goes through a small U-Net (`depthart.unet.DepthUNet`, these
    # channels) that guesses its normalised depth map, and the VQ-VAE's own depth encoder makes the prefix's latent
    # of that guess (`vae.image_unet`; train-vqvae --image-unet; docs/experiments.md section 17)
    image_unet: tuple[int, ...] = ()

    def __post_init__(self):
        # lists (from JSON) become tuples so the config stays hashable
        object.__setattr__(self, "patch_nums", tuple(int(p) for p in self.patch_nums))
        object.__setattr__(self, "vae_ch_mult", tuple(int(m) for m in self.vae_ch_mult))
        object.__setattr__(self, "image_unet", tuple(int(c) for c in self.image_unet))
        problems = []
        if self.attn not in ATTN_VARIANTS:
            problems.append(f"attn must be one of {ATTN_VARIANTS}, got {self.attn!r}")
        if self.width % self.heads:
            problems.append(f"width {self.width} is not divisible by heads {self.heads}")
        if len(self.patch_nums) < 2 or list(self.patch_nums) != sorted(set(self.patch_nums)):
            problems.append(f"patch_nums must be >= 2 strictly increasing sizes, got {self.patch_nums}")
        if self.vae_ch % 32 or any((self.vae_ch * m) % 32 for m in self.vae_ch_mult):
            problems.append(f"VQ-VAE channels {self.vae_ch} x {self.vae_ch_mult} must be multiples of 32 (GroupNorm)")
        if self.share_quant_resi < 1:
            problems.append("share_quant_resi must be >= 1")
        if self.image_res_blocks < 0:
            problems.append("image_res_blocks must be >= 0 (0: the VQ-VAE's own encoder reads the images)")
        if self.image_unet and (len(self.image_unet) < 2 or min(self.image_unet) < 1):
            problems.append(f"image_unet must be () or >= 2 positive channel counts, got {self.image_unet}")
        elif self.image_unet and self.image_size % 2 ** (len(self.image_unet) - 1):
            problems.append(f"a U-Net of {len(self.image_unet)} levels needs an image size divisible by "
                            f"{2 ** (len(self.image_unet) - 1)}; this model runs at {self.image_size} px")
        if self.image_unet and self.image_res_blocks:
            problems.append("an image side is either an untied encoder (image_res_blocks) or a U-Net (image_unet), "
                            "not both")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    # ---- derived quantities (never stored) ----
    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def tokens_per_map(self) -> int:
        """L: tokens in one multi-scale pyramid (680 for the default schedule)."""
        return sum(p * p for p in self.patch_nums)

    @property
    def first_l(self) -> int:
        return self.patch_nums[0] ** 2

    @property
    def seq_len(self) -> int:
        """Full sequence: image prefix (L tokens) then depth tokens (L, the first being the start token)."""
        return 2 * self.tokens_per_map

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.vae_ch_mult) - 1)

    @property
    def image_size(self) -> int:
        """The only resolution the model runs at (256 for the default schedule)."""
        return self.patch_nums[-1] * self.downsample

    def scale_ranges(self) -> list[tuple[int, int]]:
        """[begin, end) of each scale's tokens inside one pyramid of L tokens."""
        out, cur = [], 0
        for p in self.patch_nums:
            out.append((cur, cur + p * p))
            cur += p * p
        return out

    def step_ranges(self) -> list[tuple[int, int]]:
        """[begin, end) of the tokens each cached step processes in the full sequence.

        Step 0 carries the whole image prefix plus the start token(s); step k > 0 carries
        the tokens of depth scale k. The KV cache holds `seq_len` positions.
        """
        L = self.tokens_per_map
        return [(0, L + e) if k == 0 else (L + b, L + e) for k, (b, e) in enumerate(self.scale_ranges())]

    def phi_index(self, k: int) -> int:
        """Which shared phi conv serves scale k: the one whose tick is nearest k / (K - 1) (VAR)."""
        import numpy as np  # VAR's ticks are numpy floats; ties (e.g. 3 scales) must break as VAR's do

        n = self.share_quant_resi
        lo = 1 / 3 / n if n == 4 else 1 / 2 / n
        ticks = np.linspace(lo, 1 - lo, n)
        return int(np.argmin(np.abs(ticks - k / (self.num_scales - 1))))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; this depthart knows {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def _var(depth: int, **kw) -> ModelConfig:
    """VAR's released size rule: width 64 * depth, heads = depth."""
    return ModelConfig(depth=depth, width=64 * depth, heads=depth, **kw)


PRESETS: dict[str, ModelConfig] = {
    # seconds on CPU: 16 px images, 3 scales, 21 tokens per pyramid
    "tiny": ModelConfig(
        depth=2, width=128, heads=2, patch_nums=(1, 2, 4), vocab_size=64, cvae=8,
        vae_ch=32, vae_ch_mult=(1, 1, 2), share_quant_resi=4,
    ),
    # the model trained on CPU in this repo (the shipped default): 64 px with a 16x16 latent grid
    # (the 8x8 grid of `small8` bounds what the image prefix can carry: docs/experiments.md),
    # 5 scales, 341 tokens per pyramid
    "small": ModelConfig(
        depth=4, width=192, heads=3, patch_nums=(1, 2, 4, 8, 16), vocab_size=512, cvae=16,
        vae_ch=32, vae_ch_mult=(1, 2, 4), vae_num_res_blocks=1,
    ),
    # the default shipped until 2026-11-30: 64 px, 8x8 latent grid, 6 scales, 130 tokens per pyramid
    "small8": ModelConfig(
        depth=4, width=256, heads=4, patch_nums=(1, 2, 3, 4, 6, 8), vocab_size=512, cvae=16,
        vae_ch=32, vae_ch_mult=(1, 2, 2, 4), vae_num_res_blocks=1,
    ),
    # the former `small` (128 px, 7 scales, 179 tokens; 17.1 M + 17.5 M parameters): the size the
    # CPU speed and precision figures in docs/benchmarks.md and docs/precision.md were measured at
    "small128": ModelConfig(
        depth=6, width=384, heads=6, patch_nums=(1, 2, 3, 4, 5, 6, 8), vocab_size=1024, cvae=16,
        vae_ch=64, vae_ch_mult=(1, 1, 2, 2, 4),
    ),
    # VAR's released sizes (vae_ch160v4096z32 + var_d{16,20,24,30}), 256 px
    "d16": _var(16),
    "d20": _var(20),
    "d24": _var(24),
    "d30": _var(30),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None

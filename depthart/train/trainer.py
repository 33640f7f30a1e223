"""The trainer: one loop for DepthART, VAR teacher forcing and the VQ-VAE.

    cfg = TrainConfig(preset="tiny", method="depthart", out_dir="runs/a", steps=1000)
    Trainer(cfg).fit()                      # or Trainer(cfg, resume=True).fit()

Defaults are the paper's (AdamW lr 1e-4, betas (0.9, 0.999), wd 0.01 on every parameter as the
release; StepLR every 5000 iterations x 0.8; batch 16), plus gradient clipping at 2.0 and
optional EMA, warm-up and a cosine schedule. Mixed precision (bf16 autocast) on CUDA, and on CPU
with `amp_cpu`. With `cache_latents`, the frozen VQ-VAE's outputs per sample come from
`latent_cache`. The transformer methods train every parameter outside `vae.` with the VQ-VAE
frozen (eval mode, no grad); `method="vqvae"` trains only the VQ-VAE.

A run folder holds

    config.json           the TrainConfig
    metrics.jsonl         one JSON object per logged step
    model.safetensors     the weights (a depthart checkpoint: `depthart.load` reads it)
    model_ema.safetensors the EMA weights, when EMA is on
    train_state.pt        step, samples consumed, optimizer, scheduler, EMA, dead-code state, RNG states

written atomically every `save_every` steps and at the end: the weights first, then the state;
both record the step, and `resume` refuses a pair whose steps differ. Batches are a pure function
of the position in the data stream (`depthart.data.torch_data`), so resuming continues exactly:
same batches, same random numbers (Gumbel noise, drop path, dead-code picks).

Distributed (torchrun): every process reads its own slice of the data (`RankView`); gradients
are averaged with all_reduce after backward (the loss calls `model.step` directly, not
`forward`, so DDP's forward hooks are not used); rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..checkpoint import build_model, load_checkpoint, read_config, save_checkpoint
from ..config import get_preset
from ..errors import DepthartError
from ..fileio import atomic_path, atomic_write_bytes
from ..vqvae import IMAGE_SIDE
from .losses import LOOP_INPUTS, depthart_loss, teacher_forcing_loss
from .vqvae_train import CodeUsage, image_to_depth_loss, image_unet_loss, vqvae_loss

METHODS = ("depthart", "var", "vqvae")
# what a transformer run (depthart, var) trains, any of these parts joined by "+": the transformer, the VQ-VAE's
# decoder (post_quant_conv + decoder: taught to decode the latents the model itself builds, through depth_silog /
# depth_absrel), the untied image encoder (image_encoder + image_quant_conv: taught, through the frozen transformer,
# to give it the prefix its own loss asks for; the prefix's quantisation passes the gradient straight through)
PARTS = ("transformer", "image", "decoder")
TRAINABLE = tuple("+".join(c) for r in range(1, len(PARTS) + 1) for c in itertools.combinations(PARTS, r))
DECODER_PREFIXES = ("vae.post_quant_conv.", "vae.decoder.")
IMAGE_PREFIXES = tuple(f"vae.{n}." for n in IMAGE_SIDE)
MODEL_FILE, EMA_FILE, STATE_FILE = "model.safetensors", "model_ema.safetensors", "train_state.pt"
KEEP_DIR = "ckpt"  # --keep-checkpoints: ckpt/step_N.safetensors (and ckpt/ema_N.safetensors with --ema)
CONFIG_FILE, METRICS_FILE = "config.json", "metrics.jsonl"


@dataclass
class TrainConfig:
    out_dir: str = "run"
    method: str = "depthart"  # depthart | var (teacher forcing) | vqvae
    preset: str | None = "tiny"  # model shape; ignored (must match if given) with `init`
    init: str | None = None  # a depthart checkpoint to start from (e.g. imported VAR weights)
    init_vae: str | None = None  # take only the VQ-VAE from this checkpoint (the transformer from preset/init)
    data: str = "synthetic"  # see depthart.train.data
    steps: int = 1000  # total optimizer steps of the run
    batch_size: int = 16  # per process
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    lr_step: int = 5000  # StepLR period (iterations)
    lr_gamma: float = 0.8
    lr_schedule: str = "step"  # step (StepLR, the paper's) | cosine (to lr_min_ratio * lr at `steps`)
    warmup: int = 0  # linear warm-up steps (both schedules)
    lr_min_ratio: float = 0.02
    grad_clip: float = 2.0  # max global grad norm; 0 = off
    ema: float = 0.0  # EMA decay (e.g. 0.999); 0 = off
    rec_loss: bool = False  # depthart: the release's Gumbel soft last scale + 10 x latent MSE
    scale_balance: float = 0.0  # CE weight of a scale's tokens ~ n_k ** -scale_balance (0: per token, VAR; 1: per scale)
    soft_tau: float = 0.0  # > 0: CE against softmax(-squared code distance / tau) instead of the nearest code
    code_mse: float = 0.0  # > 0: + code_mse * ||expected code vector - residual||^2 (losses.expected_code_error)
    prefix_aux: float = 0.0  # > 0: + prefix_aux * the image prefix's outputs vs the depth at their place (losses)
    # > 0: + depth_silog * a scale-invariant log loss on decoded depth (vqvae_train.decoded_silog): with the
    # transformer methods, of the latent the `expect` sampler builds (losses.expected_latent); with image_to_depth
    # (train-vqvae), of the image's latent
    depth_silog: float = 0.0
    # transformer methods, > 0: + depth_absrel * AbsRel after median scaling (vqvae_train.absrel_loss) of the same
    # decoded depth: the metric itself, asymmetric where SILog is not
    depth_absrel: float = 0.0
    # depthart: what of its own prediction the loop feeds on, "greedy" (the paper's argmax code) or "expect" (the
    # expected code vector: the loop is then the `expect` sampler's inference loop; losses.refine_loop)
    own_inputs: str = "greedy"
    # transformer methods: which parts train (TRAINABLE); a trained decoder needs depth_silog or depth_absrel, its
    # only losses
    trainable: str = "transformer"
    save_every: int = 1000
    keep_checkpoints: bool = False  # also keep a copy of each checkpoint's weights in ckpt/ (curves)
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    amp_cpu: bool = False  # bf16 autocast on CPU too (worth it where the CPU has AVX-512 BF16 / AMX)
    cache_latents: bool = False  # transformer methods, finite data: encode every sample once (latent_cache)
    # vqvae
    recon: str = "l1"  # l1 | mse
    beta: float = 0.25
    dead_after: int = 100  # re-init codes unused for this many steps; 0 = never
    depth_weight: float = 1.0  # weight of the depth maps' reconstruction loss relative to the images'
    # > 0: train only the encoder (and quant_conv) of a trained VQ-VAE (init / init_vae) so that an image's latent
    # is its depth map's latent under that VQ-VAE (image_to_depth x MSE), the depth maps' own latents held where
    # it put them (depth_pin x MSE): the image prefix then carries depth (vqvae_train.image_to_depth_loss)
    image_to_depth: float = 0.0
    depth_pin: float = 4.0
    # with image_to_depth, N > 0: first give the images their own encoder of N residual blocks per level
    # (ModelConfig.image_res_blocks; vqvae.untie_image_encoder: it starts as the current image side, the added blocks
    # the identity); only it trains, the depth maps' encoder and tokens stay exactly as they are (no pin needed).
    # A model whose images already have their own encoder trains that one with or without this option.
    untie_image_encoder: int = 0
    # train-vqvae: give the images a U-Net depth guess read by the depth encoder (ModelConfig.image_unet;
    # model.add_image_unet, fresh and seeded, unless the model has one) and train only it, on its own map against the
    # depth map (vqvae_train.image_unet_loss: SILog + L1); the depth side, tokens, transformer and decoder stay
    image_unet: bool = False

    def __post_init__(self):
        self.betas = tuple(self.betas)
        problems = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 <= self.scale_balance <= 1.0:
            problems.append(f"scale_balance must be in [0, 1], got {self.scale_balance}")
        if self.soft_tau < 0:
            problems.append(f"soft_tau must be >= 0, got {self.soft_tau}")
        if self.code_mse < 0:
            problems.append(f"code_mse must be >= 0, got {self.code_mse}")
        if self.prefix_aux < 0:
            problems.append(f"prefix_aux must be >= 0, got {self.prefix_aux}")
        if self.depth_weight < 0:
            problems.append("depth_weight must be >= 0")
        if self.image_to_depth < 0 or self.depth_pin < 0:
            problems.append("image_to_depth and depth_pin must be >= 0")
        if self.depth_silog < 0:
            problems.append("depth_silog must be >= 0")
        if self.depth_absrel < 0:
            problems.append("depth_absrel must be >= 0")
        elif self.depth_absrel > 0 and self.method == "vqvae":
            problems.append("depth_absrel scores the transformer's decoded depth: use it with method depthart or var")
        elif self.depth_absrel > 0 and self.method == "depthart" and self.rec_loss:
            problems.append("depth_absrel needs the logits of every scale; rec_loss replaces the last scale's: "
                            "use one of them")
        if self.depth_silog > 0 and self.method == "vqvae" and self.image_to_depth <= 0:
            problems.append("depth_silog in train-vqvae is part of image_to_depth training: set image_to_depth > 0 "
                            "as well")
        if self.depth_silog > 0 and self.method == "depthart" and self.rec_loss:
            problems.append("depth_silog needs the logits of every scale; rec_loss replaces the last scale's: "
                            "use one of them")
        if self.own_inputs not in LOOP_INPUTS:
            problems.append(f"own_inputs must be one of {LOOP_INPUTS}, got {self.own_inputs!r}")
        elif self.own_inputs != "greedy" and self.method != "depthart":
            problems.append("own_inputs chooses what DepthART's own loop feeds on: use it with method depthart")
        if self.trainable not in TRAINABLE:
            problems.append(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        elif self.trainable != "transformer" and self.method == "vqvae":
            problems.append("trainable chooses the parts of a transformer run (method depthart or var); train-vqvae "
                            "trains the VQ-VAE")
        elif "decoder" in self.trainable and self.depth_silog <= 0 and self.depth_absrel <= 0:
            problems.append("a trained decoder learns only from the decoded depth: set depth_silog or depth_absrel "
                            "> 0 as well")
        if "image" in self.trainable_parts and self.cache_latents:
            problems.append("a trained image encoder changes the image latents that cache_latents would keep: "
                            "run without --cache-latents")
        if self.untie_image_encoder < 0:
            problems.append("untie_image_encoder must be >= 0")
        elif self.untie_image_encoder > 0 and self.image_to_depth <= 0:
            problems.append("untie_image_encoder gives the images their own encoder for image_to_depth training: "
                            "set image_to_depth > 0 (train-vqvae --image-to-depth W)")
        if self.image_unet and (self.method != "vqvae" or self.image_to_depth > 0 or self.untie_image_encoder
                                or not (self.init or self.init_vae)):
            problems.append("image_unet trains a U-Net image side on its own (train-vqvae --image-unet --init MODEL): "
                            "leave out --image-to-depth and --untie-image-encoder, and give a trained model to start "
                            "from (its depth encoder reads the U-Net's map)")
        if self.image_unet and self.ema > 0:
            problems.append("image_unet with ema: the average would pair averaged U-Net weights with BatchNorm "
                            "statistics of the live ones; run --image-unet without --ema")
        if self.image_to_depth > 0 and self.method != "vqvae":
            problems.append("image_to_depth trains the VQ-VAE's encoder: use it with method vqvae (train-vqvae)")
        if self.image_to_depth > 0 and not (self.init or self.init_vae):
            problems.append("image_to_depth needs a trained VQ-VAE to start from (init or init_vae): its depth "
                            "latents are the targets")
        if self.lr_schedule not in ("step", "cosine"):
            problems.append(f"lr_schedule must be step or cosine, got {self.lr_schedule!r}")
        if self.warmup < 0 or not 0.0 <= self.lr_min_ratio <= 1.0:
            problems.append("warmup must be >= 0 and lr_min_ratio in [0, 1]")
        if self.cache_latents and self.method == "vqvae":
            problems.append("cache_latents is for the transformer methods (the VQ-VAE is what it caches)")
        if self.recon not in ("l1", "mse"):
            problems.append(f"recon must be l1 or mse, got {self.recon!r}")
        for name in ("steps", "batch_size", "save_every", "log_every", "lr_step"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if not 0.0 <= self.ema < 1.0:
            problems.append("ema must be in [0, 1)")
        if self.preset is None and self.init is None:
            problems.append("give a preset or an init checkpoint")
        if problems:
            raise DepthartError("invalid training config: " + "; ".join(problems))

    @property
    def trainable_parts(self) -> list[str]:
        """`trainable` as its parts (PARTS)."""
        return self.trainable.split("+")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _dist():
    """(rank, world) from torchrun's environment; initialises the process group if world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _checkpoint_step(path) -> int | None:
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="pt") as f:
        step = (f.metadata() or {}).get("step")
    return None if step is None else int(step)


class Trainer:
    """Builds the model, optimizer and data of a TrainConfig; `fit()` trains to `cfg.steps`.

    Args:
        cfg: the TrainConfig.
        resume: continue the run in `cfg.out_dir` from its last checkpoint.
        source: a depth dataset to use instead of `cfg.data` (tests).
        log: a callable receiving each progress line (default: stderr on rank 0; None to silence).
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, source=None, log="stderr"):
        self.cfg = cfg
        self.rank, self.world = _dist()
        self.log = (lambda s: print(s, file=sys.stderr, flush=True)) if log == "stderr" else log
        if self.rank != 0:
            self.log = None
        dev = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if dev.startswith("cuda") and self.world > 1:
            dev = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(dev)
        self.device = torch.device(dev)
        self.amp = (cfg.amp and self.device.type == "cuda") or (cfg.amp_cpu and self.device.type == "cpu")
        _seed_all(cfg.seed)
        self.model = self._build_model(resume)
        self.model_cfg = self.model.cfg
        if source is None:
            from .data import open_source

            source = open_source(cfg.data, self.model_cfg.image_size, cfg.steps * cfg.batch_size * self.world)
        if self.world > 1:
            from .data import RankView

            source = RankView(source, self.rank, self.world)
        self.source = source
        vae_only = cfg.method == "vqvae"
        if vae_only and cfg.image_to_depth <= 0 and not cfg.image_unet and self.model.vae.untied:
            if self.model_cfg.image_unet:
                raise DepthartError("this model's images go through a U-Net (image_unet); train-vqvae trains it with "
                                    "--image-unet (whole-VQ-VAE training reads images with the depth maps' encoder)")
            raise DepthartError("this model's images have their own encoder (image_res_blocks "
                                f"{self.model_cfg.image_res_blocks}); train-vqvae trains it only with --image-to-depth W "
                                "(whole-VQ-VAE training reads images with the depth maps' encoder)")
        self.model.requires_grad_(False)
        self.ref_vae = None
        if cfg.image_unet or cfg.image_to_depth > 0:  # the image side alone
            if cfg.image_to_depth > 0:  # the starting VQ-VAE gives the depth latents
                self.ref_vae = self._reference_vae()
            image_side = IMAGE_PREFIXES if self.model.vae.untied else ("vae.encoder.", "vae.quant_conv.")
            self.params = [p for n, p in self.model.named_parameters() if n.startswith(image_side)]
        elif vae_only:
            self.params = [p for n, p in self.model.named_parameters() if n.startswith("vae.")]
        else:
            parts = cfg.trainable_parts
            if "image" in parts and not self.model.vae.untied:
                raise DepthartError("--trainable image trains the images' own encoder, and this model reads images with "
                                    "its depth maps' encoder (training it would move the depth tokens): give it an "
                                    "image side first (depthart train-vqvae --image-to-depth W --untie-image-encoder N, "
                                    "or train-vqvae --image-unet)")
            self.params = [p for n, p in self.model.named_parameters()
                           if ("transformer" in parts and not n.startswith("vae."))
                           or ("decoder" in parts and n.startswith(DECODER_PREFIXES))
                           or ("image" in parts and n.startswith(IMAGE_PREFIXES))]
        if not self.params:
            raise DepthartError("nothing to train: the model has none of the parts these options train (with --resume, "
                                "give the run's own options)")
        for p in self.params:
            p.requires_grad_(True)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor(cfg))
        self.ema = [p.detach().clone() for p in self.params] if cfg.ema > 0 else None
        # the codebook trains (and dead codes revive) only when the whole VQ-VAE does
        whole_vae = vae_only and self.ref_vae is None and not cfg.image_unet
        self.usage = CodeUsage(self.model_cfg.vocab_size, cfg.dead_after) if whole_vae else None
        self.step = 0
        self._rng = None  # RNG states to restore once the data iterator exists (resume)
        self.latents = None
        if self.world > 1:
            self._broadcast_params()
        if resume:
            self.load()
        if cfg.cache_latents:  # after load(): a resumed model's VQ-VAE weights arrive there
            from .latent_cache import LatentCache, data_id

            whole = source.source if self.world > 1 else source  # the cache covers every rank's samples
            folder = getattr(whole, "folder", None) or cfg.out_dir
            self.latents = LatentCache.build_or_load(self.model, whole, self.model_cfg.image_size, folder, log=self.log,
                                                     data=data_id(whole, cfg.data), rank=self.rank, world=self.world)

    # ------------------------------------------------------------ setup
    def _build_model(self, resume: bool):
        cfg = self.cfg
        run_weights = os.path.join(cfg.out_dir, MODEL_FILE)
        if resume and os.path.isfile(run_weights):  # the run's own weights replace these in load()
            return build_model(read_config(run_weights), self.device, empty=True)
        model = self._build_init_model()
        if cfg.init_vae:
            self._load_vae(model, cfg.init_vae)
        if cfg.untie_image_encoder:
            from ..model import untie_image_encoder

            try:
                model = untie_image_encoder(model, cfg.untie_image_encoder)
            except ValueError as e:
                raise DepthartError(f"--untie-image-encoder {cfg.untie_image_encoder}: {e}") from None
        if cfg.image_unet and not model.cfg.image_unet:
            from ..model import add_image_unet

            model = add_image_unet(model, seed=cfg.seed)
        return model

    def _reference_vae(self):
        """The VQ-VAE the run starts from (init / init_vae), frozen: image_to_depth's depth latents."""
        vae = self._build_model(resume=False).vae.eval()
        vae.requires_grad_(False)
        return vae

    def _load_vae(self, model, path: str):
        """Copy the VQ-VAE weights of checkpoint `path` into `model` (its VQ-VAE shape must match)."""
        from safetensors.torch import load_file

        if not os.path.isfile(path):
            raise DepthartError(f"--init-vae {path}: no such checkpoint file")
        other = read_config(path)
        vae_fields = ("patch_nums", "vocab_size", "cvae", "vae_ch", "vae_ch_mult", "vae_num_res_blocks", "quant_resi",
                      "share_quant_resi")
        diff = [f for f in vae_fields if getattr(other, f) != getattr(model.cfg, f)]
        if diff:
            raise DepthartError(f"--init-vae {path}: its VQ-VAE differs from the model's in {', '.join(diff)}")
        if (other.image_res_blocks, other.image_unet) != (model.cfg.image_res_blocks, model.cfg.image_unet):
            from ..vqvae import VQVAE  # the image side comes with the VQ-VAE

            dtype = next(model.vae.parameters()).dtype
            model.vae = VQVAE(model.cfg.replace(image_res_blocks=other.image_res_blocks,
                                                image_unet=other.image_unet)).to(self.device, dtype)
            model.vae.requires_grad_(False)
            model.cfg = model.vae.cfg
        weights = {k[4:]: v for k, v in load_file(path, device=str(self.device)).items() if k.startswith("vae.")}
        model.vae.load_state_dict({k: v.to(model.vae.state_dict()[k].dtype) for k, v in weights.items()}, strict=True)

    def _build_init_model(self):
        cfg = self.cfg
        if cfg.init:
            if not os.path.isfile(cfg.init):
                raise DepthartError(f"--init {cfg.init}: no such checkpoint file")
            init_cfg = read_config(cfg.init)
            if cfg.preset and cfg.preset != "auto" and get_preset(cfg.preset) != init_cfg:
                raise DepthartError(f"--init {cfg.init}: its model config differs from preset {cfg.preset!r}; "
                                    "leave out --preset to take the checkpoint's")
            return load_checkpoint(cfg.init, self.device)
        try:
            return build_model(get_preset(cfg.preset), self.device)
        except ValueError as e:
            raise DepthartError(str(e)) from None

    def _broadcast_params(self):
        import torch.distributed as dist

        for t in self.model.state_dict().values():
            dist.broadcast(t, 0)

    def _set_modes(self):
        if self.cfg.method == "vqvae":
            self.model.eval()
            self.model.vae.train()
        else:
            # a frozen transformer runs as at inference (no drop path); the VQ-VAE has no train-time behaviour
            self.model.train("transformer" in self.cfg.trainable_parts)
            self.model.vae.eval()  # frozen, as the paper (its decoder may train: --trainable)

    # ------------------------------------------------------------ one step
    def _autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: dict) -> dict:
        """One optimizer step on a batch; returns its metrics."""
        cfg = self.cfg
        if self.latents is not None:
            batch = self.latents.add_to(batch)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self._set_modes()
        self.opt.zero_grad(set_to_none=True)
        aux = None
        with self._autocast():
            if cfg.method == "depthart":
                loss, metrics = depthart_loss(self.model, batch, rec_loss=cfg.rec_loss,
                                              cache_dtype=torch.bfloat16 if self.amp else None,
                                              balance=cfg.scale_balance, soft_tau=cfg.soft_tau, code_mse=cfg.code_mse,
                                              prefix_aux=cfg.prefix_aux, depth_silog=cfg.depth_silog,
                                              inputs=cfg.own_inputs, depth_absrel=cfg.depth_absrel)
            elif cfg.method == "var":
                loss, metrics = teacher_forcing_loss(self.model, batch, cache_dtype=torch.bfloat16 if self.amp else None,
                                                     balance=cfg.scale_balance, soft_tau=cfg.soft_tau,
                                                     code_mse=cfg.code_mse, prefix_aux=cfg.prefix_aux,
                                                     depth_silog=cfg.depth_silog, depth_absrel=cfg.depth_absrel)
            elif cfg.image_unet:
                loss, metrics = image_unet_loss(self.model.vae, batch["image"], batch["depth"], batch.get("valid"))
            elif self.ref_vae is not None:
                loss, metrics = image_to_depth_loss(self.model.vae, self.ref_vae, batch["image"], batch["depth"],
                                                    cfg.image_to_depth, cfg.depth_pin, cfg.depth_silog,
                                                    batch.get("valid"))
            else:
                # the VQ-VAE codes both pyramids the transformer sees: RGB images and depth maps
                x = torch.cat([batch["image"], batch["depth"]])
                w = torch.cat([torch.ones(len(batch["image"])), torch.full((len(batch["depth"]),), cfg.depth_weight)])
                loss, metrics, aux = vqvae_loss(self.model.vae, x, cfg.recon, cfg.beta, sample_weight=w.to(x.device))
        if not torch.isfinite(loss):
            raise DepthartError(f"step {self.step + 1}: the loss is {loss.item()}; lower --lr or check the data")
        loss.backward()
        if self.world > 1:
            self._allreduce_grads()
        if cfg.grad_clip > 0:
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip))
        metrics["lr"] = self.sched.get_last_lr()[0]
        self.opt.step()
        self.sched.step()
        self.step += 1
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - cfg.ema)
        if self.usage is not None:
            hits = aux["hits"]
            if self.world > 1:
                import torch.distributed as dist

                dist.all_reduce(hits)  # every rank sees the same usage; revived codes come from rank 0
            metrics["revived"] = self.usage.update(self.step, self.model.vae.quantize.embedding, hits,
                                                   aux["residuals"])
            if self.world > 1 and metrics["revived"]:
                import torch.distributed as dist

                dist.broadcast(self.model.vae.quantize.embedding.weight.data, 0)
        return metrics

    def _allreduce_grads(self):
        import torch.distributed as dist

        grads = [p.grad for p in self.params if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()

    # ------------------------------------------------------------ loop
    def loader(self):
        """The data stream from the current position (samples this process has consumed)."""
        from ..data.torch_data import make_loader

        finite = getattr(self.source, "length", None) is not None
        loader = make_loader(self.source, self.model_cfg.image_size, self.cfg.batch_size,
                             num_workers=self.cfg.num_workers, shuffle=finite, seed=self.cfg.seed,
                             start=self.step * self.cfg.batch_size, repeat=finite,
                             pin_memory=self.device.type == "cuda")
        loader.generator = torch.Generator().manual_seed(self.cfg.seed)  # keep the global RNG untouched
        return loader

    def fit(self, steps: int | None = None) -> dict:
        """Train until step `steps` (default cfg.steps); checkpoint every save_every and at the end.

        Returns the last step's metrics.
        """
        cfg = self.cfg
        steps = cfg.steps if steps is None else steps
        if self.rank == 0:
            os.makedirs(cfg.out_dir, exist_ok=True)
            atomic_write_bytes(os.path.join(cfg.out_dir, CONFIG_FILE), (cfg.to_json() + "\n").encode())
        metrics: dict = {}
        if self.step >= steps:
            return metrics
        it = iter(self.loader())
        if self._rng is not None:
            _set_rng_state(self._rng)
            self._rng = None
        t_last, n_last = time.perf_counter(), 0
        while self.step < steps:
            metrics = self.train_step(next(it))
            n_last += 1
            if self.step % cfg.log_every == 0 or self.step == steps:
                now = time.perf_counter()
                metrics["it_s"] = n_last / max(now - t_last, 1e-9)
                t_last, n_last = now, 0
                self._log(metrics, steps)
            if self.step % cfg.save_every == 0 or self.step == steps:
                self.save()
        return metrics

    def _log(self, metrics: dict, steps: int):
        if self.rank != 0:
            return
        row = {"step": self.step, "samples": self.step * self.cfg.batch_size * self.world}
        row.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()})
        if "acc" in row:
            row["acc"] = [round(a, 4) for a in row["acc"]]
        with open(os.path.join(self.cfg.out_dir, METRICS_FILE), "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.log:
            shown = ("ce", "mse", "rec", "vq", "img_to_depth", "depth_silog", "depth_pin", "unet_silog", "unet_l1")
            extra = "".join(f"  {k} {metrics[k]:.4f}" for k in shown if k in metrics)
            self.log(f"step {self.step}/{steps}  loss {metrics['loss']:.4f}{extra}  lr {metrics['lr']:.2e}  "
                     f"{metrics['it_s']:.2f} it/s")

    # ------------------------------------------------------------ checkpoints
    @contextlib.contextmanager
    def _ema_weights(self):
        """Temporarily put the EMA weights into the model."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, e in zip(self.params, self.ema):
                p.copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    def save(self):
        """Write the weights (then the EMA weights) and the train state, each atomically (rank 0)."""
        if self.rank != 0:
            return
        out = self.cfg.out_dir
        meta = {"step": self.step, "method": self.cfg.method, "rec_loss": self.cfg.rec_loss}
        save_checkpoint(self.model, os.path.join(out, MODEL_FILE), meta)
        if self.ema is not None:
            with self._ema_weights():
                save_checkpoint(self.model, os.path.join(out, EMA_FILE), dict(meta, ema=self.cfg.ema))
        if self.cfg.keep_checkpoints:
            os.makedirs(os.path.join(out, KEEP_DIR), exist_ok=True)
            kept = [(MODEL_FILE, "step")] + ([(EMA_FILE, "ema")] if self.ema is not None else [])
            for name, tag in kept:
                with atomic_path(os.path.join(out, KEEP_DIR, f"{tag}_{self.step}.safetensors")) as tmp:
                    shutil.copyfile(os.path.join(out, name), tmp)
        state = {
            "step": self.step,
            "samples": self.step * self.cfg.batch_size,  # per process
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "ema": self.ema,
            "code_usage": self.usage.state_dict() if self.usage is not None else None,
            "rng": _rng_state(),
            "train_config": dataclasses.asdict(self.cfg),
        }
        with atomic_path(os.path.join(out, STATE_FILE)) as tmp:
            torch.save(state, tmp)

    def load(self):
        """Restore the run in cfg.out_dir (weights, optimizer, scheduler, EMA, position, RNG)."""
        from safetensors.torch import load_file

        out = self.cfg.out_dir
        mpath, spath = os.path.join(out, MODEL_FILE), os.path.join(out, STATE_FILE)
        for p in (mpath, spath):
            if not os.path.isfile(p):
                raise DepthartError(f"--resume: {p} not found; nothing to resume in {out}")
        state = torch.load(spath, map_location="cpu", weights_only=False)
        wstep = _checkpoint_step(mpath)
        if wstep != state["step"]:
            raise DepthartError(f"--resume: {mpath} is from step {wstep} but {spath} from step {state['step']} "
                                "(a write was interrupted); cannot resume exactly")
        prev = state["train_config"]
        for key in ("method", "batch_size", "seed", "data", "rec_loss", "trainable", "image_unet", "image_to_depth",
                    "untie_image_encoder"):  # what decides the trained parameters and the optimizer's state
            was = prev.get(key, TrainConfig.__dataclass_fields__[key].default)  # runs older than the option
            if was != getattr(self.cfg, key):
                raise DepthartError(f"--resume: the run used {key}={was!r}, now {getattr(self.cfg, key)!r}")
        weights = load_file(mpath, device=str(self.device))
        if read_config(mpath) != self.model_cfg:
            raise DepthartError(f"--resume: {mpath} has a different model config")
        self.model.load_state_dict(weights, strict=True)
        self.opt.load_state_dict(state["optimizer"])
        sched = dict(state["scheduler"])
        sched.setdefault("lr_lambdas", [None] * len(self.opt.param_groups))  # a StepLR state of older runs
        self.sched.load_state_dict(sched)
        if self.ema is not None:
            if state["ema"] is None:
                raise DepthartError("--resume: the run had no EMA; leave out --ema")
            for e, s in zip(self.ema, state["ema"]):
                e.copy_(s)
        if self.usage is not None and state["code_usage"] is not None:
            self.usage.load_state_dict(state["code_usage"])
        self.step = state["step"]
        self._rng = state["rng"]


def lr_factor(cfg: TrainConfig):
    """The learning-rate multiplier of each step (LambdaLR): linear warm-up, then StepLR's
    gamma ** (step // lr_step) or a cosine from 1 down to lr_min_ratio at cfg.steps."""
    import math

    def factor(step: int) -> float:
        if cfg.warmup and step < cfg.warmup:
            return (step + 1) / cfg.warmup
        if cfg.lr_schedule == "step":
            return cfg.lr_gamma ** (step // cfg.lr_step)
        t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def train(cfg: TrainConfig, resume: bool = False, **kw) -> dict:
    """Train a run to completion; returns the last metrics."""
    return Trainer(cfg, resume=resume, **kw).fit()


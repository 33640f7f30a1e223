"""`depthart train` and `depthart train-vqvae` (registered on the root group in depthart/cli.py).

Thin: options -> TrainConfig -> Trainer. Options left out fall back to `--config FILE` (a JSON
TrainConfig), then, with `--resume`, to the run's own config.json, then to TrainConfig's defaults.
"""

from __future__ import annotations

import json
import os

import click

from ..errors import DepthartError

COMMON = [
    click.option("-o", "--out-dir", "out_dir", required=True, type=click.Path(file_okay=False),
                 help="Run folder: config.json, metrics.jsonl, model.safetensors, train_state.pt."),
    click.option("--preset", default=None,
                 help="Model preset (tiny, small, d16, ...); with --init, the checkpoint's by default."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                 help="A JSON file of TrainConfig fields; command-line options override it."),
    click.option("--data", default=None,
                 help="synthetic (procedural scenes, endless), synthetic:N (the first N), synthetic@FIRST (from scene FIRST "
                      "on), rendered:FOLDER (scenes rendered once by `depthart render-data`), or hypersim:PATH "
                      "(Hypersim's layout, official train split; hypersim:PATH:val for another split)."),
    click.option("--init", default=None, type=click.Path(dir_okay=False), help="Start from this depthart checkpoint."),
    click.option("--init-vae", default=None, type=click.Path(dir_okay=False),
                 help="Take only the VQ-VAE from this checkpoint (e.g. a train-vqvae run), the transformer from "
                      "--preset or --init."),
    click.option("--resume", is_flag=True,
                 help="Continue the run in OUT_DIR exactly where its last checkpoint stopped."),
    click.option("--steps", type=click.IntRange(min=1), default=None, help="Total optimizer steps of the run."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size per process (default 16)."),
    click.option("--lr", type=float, default=None, help="AdamW learning rate (default 1e-4)."),
    click.option("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0.01)."),
    click.option("--lr-step", type=click.IntRange(min=1), default=None, help="StepLR period in steps (default 5000)."),
    click.option("--lr-gamma", type=float, default=None, help="StepLR factor (default 0.8)."),
    click.option("--lr-schedule", type=click.Choice(["step", "cosine"]), default=None,
                 help="step: StepLR (--lr-step, --lr-gamma; the paper's, default); cosine: down to 2%% of --lr at --steps."),
    click.option("--warmup", type=click.IntRange(min=0), default=None, help="Linear learning-rate warm-up steps (default 0)."),
    click.option("--bf16-cpu/--no-bf16-cpu", "amp_cpu", default=None,
                 help="bf16 autocast on CPU (on CUDA it is always on); fast where the CPU has AVX-512 BF16 or AMX."),
    click.option("--grad-clip", type=float, default=None, help="Max gradient norm, 0 = off (default 2.0)."),
    click.option("--ema", type=float, default=None, help="EMA decay, e.g. 0.999; 0 = off (default)."),
    click.option("--save-every", type=click.IntRange(min=1), default=None,
                 help="Checkpoint every N steps (default 1000)."),
    click.option("--keep-checkpoints/--no-keep-checkpoints", default=None,
                 help="Also keep each checkpoint's weights as OUT_DIR/ckpt/step_N.safetensors (and ema_N with --ema), "
                      "for learning curves (scripts/eval_checkpoints.py)."),
    click.option("--log-every", type=click.IntRange(min=1), default=None, help="Log every N steps (default 10)."),
    click.option("--seed", type=int, default=None, help="Seed of the run (default 0)."),
    click.option("--workers", "num_workers", type=click.IntRange(min=0), default=None,
                 help="DataLoader worker processes."),
    click.option("--device", default=None, help="auto (default: CUDA if present), cpu, cuda, cuda:1, ..."),
]


def _options(extra):
    def deco(f):
        for opt in reversed(COMMON + extra):
            f = opt(f)
        return f

    return deco


def _config(method: str, kw: dict):
    from .trainer import CONFIG_FILE, TrainConfig

    config_file, resume = kw.pop("config_file"), kw.pop("resume")
    fields: dict = {}
    if resume and os.path.isfile(os.path.join(kw["out_dir"], CONFIG_FILE)):
        with open(os.path.join(kw["out_dir"], CONFIG_FILE)) as f:
            fields.update(json.load(f))
    if config_file:
        try:
            with open(config_file) as f:
                fields.update(json.load(f))
        except (OSError, ValueError) as e:
            raise click.ClickException(f"--config {config_file}: cannot read a JSON object ({e})") from None
    fields.update({k: v for k, v in kw.items() if v is not None})
    fields["method"] = method if method != "from-config" else fields.get("method", "depthart")
    if fields.get("init") and not kw.get("preset"):
        fields["preset"] = None  # take the checkpoint's config
    if not fields.get("preset") and not fields.get("init"):
        raise click.ClickException("give the model: --preset NAME (tiny, small, d16, ...) or --init CHECKPOINT")
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise click.ClickException(f"unknown training config field(s): {', '.join(unknown)}")
    try:
        return TrainConfig(**fields), resume
    except DepthartError as e:
        raise click.ClickException(str(e)) from None


def _run(cfg, resume: bool):
    try:
        import torch  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError:
        raise click.ClickException('training needs PyTorch: pip install torch==2.13.0 "depthart[torch]"') from None
    from .trainer import STATE_FILE, Trainer

    if not resume and os.path.exists(os.path.join(cfg.out_dir, STATE_FILE)):
        raise click.ClickException(f"{cfg.out_dir} already holds a run; pass --resume to continue it, "
                                   "or choose another --out-dir")
    try:
        trainer = Trainer(cfg, resume=resume, log=lambda s: click.echo(s, err=True))
        metrics = trainer.fit()
    except DepthartError as e:
        raise click.ClickException(str(e)) from None
    if trainer.world > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank finished (rank 0 wrote the checkpoint) before the teardown
        dist.destroy_process_group()
    if trainer.rank == 0:
        done = f"step {trainer.step}" + (f", loss {metrics['loss']:.4f}" if metrics else " (nothing to do)")
        click.echo(f"{done}; weights: {os.path.join(cfg.out_dir, 'model.safetensors')}")


@click.command("train")
@_options([
    click.option("--method", type=click.Choice(["depthart", "var"]), default=None,
                 help="depthart (the paper's self-refinement, default) or var (teacher forcing baseline)."),
    click.option("--rec-loss/--no-rec-loss", default=None,
                 help="depthart: the release's variant (last scale via Gumbel soft code + 10 x latent MSE)."),
    click.option("--scale-balance", type=click.FloatRange(0, 1), default=None,
                 help="CE weight of each scale's tokens ~ n_k ** -B: 0 = every token the same (VAR, default), "
                      "1 = every scale the same (the coarse scales' few tokens count as much as the finest scale's)."),
    click.option("--soft-tau", type=click.FloatRange(0, None), default=None,
                 help="Soft code targets: the CE's target is softmax(-||residual - code||^2 / TAU) over the codes instead "
                      "of the nearest code alone (near-tie codes share it). 0 = off (default, the paper's loss)."),
    click.option("--code-mse", type=click.FloatRange(0, None), default=None,
                 help="Add W x ||expected code vector - residual||^2 per token (the vector the `expect` sampler "
                      "feeds), weighted per scale like the CE: a near-miss costs less than a far one. 0 = off (default)."),
    click.option("--prefix-aux", type=click.FloatRange(0, None), default=None,
                 help="Add W x a loss on the image prefix's own outputs (unused by the paper's loss): each image "
                      "token predicts the depth code at its scale and place (CE, plus --code-mse's regression). "
                      "Inference is unchanged. 0 = off (default)."),
    click.option("--depth-silog", type=click.FloatRange(min=0), default=None,
                 help="Add S x a scale-invariant log loss on the depth that the frozen decoder makes of the latent the "
                      "`expect` sampler builds from every scale's logits (relative errors near and far count alike, as "
                      "AbsRel counts them; the decoder runs in every step). 0 = off (default)."),
    click.option("--depth-absrel", type=click.FloatRange(min=0), default=None,
                 help="Weight of AbsRel after median scaling (the metric itself) on the same decoded depth as "
                      "--depth-silog; asymmetric (a map too far costs more than one too near). 0 = off (default)."),
    click.option("--own-inputs", type=click.Choice(["greedy", "expect"]), default=None,
                 help="depthart: what of its own prediction the loop feeds on: greedy (the argmax code, the paper's; "
                      "default) or expect (the expected code vector, so training runs the `expect` sampler's loop)."),
    click.option("--trainable", metavar="PARTS", default=None,
                 help="What trains: transformer (default), image (the images' own side: an untied encoder or a U-Net), "
                      "decoder (the VQ-VAE's), or several joined by '+' in that order (e.g. transformer+decoder, "
                      "image+decoder). The decoder learns from --depth-silog / --depth-absrel alone: it is taught to "
                      "decode the latents the model itself builds (with --method depthart --own-inputs expect, exactly "
                      "the `expect` sampler's). The image side (train-vqvae --untie-image-encoder or --image-unet) "
                      "learns through the frozen transformer what prefix the run's loss asks for."),
    click.option("--cache-latents/--no-cache-latents", default=None,
                 help="Finite data (rendered:FOLDER, synthetic:N): run the frozen VQ-VAE over every sample once and "
                      "keep its outputs (stored beside the data), so each step runs only the transformer."),
])
def train_cmd(method, **kw):
    """Train the transformer (the VQ-VAE stays frozen) with DepthART or VAR teacher forcing; with --trainable, the
    VQ-VAE's decoder too, or alone.

    \b
    Examples:
      depthart train --preset tiny --data synthetic -o runs/tiny --steps 1000
      depthart train --init var_d16.safetensors --data hypersim:/data/hypersim -o runs/d16 --rec-loss
      depthart train -o runs/tiny --resume --steps 2000       # continue, exactly
      depthart train --init model.safetensors --method depthart --own-inputs expect --depth-silog 1 \\
        --trainable decoder --data rendered:runs/scenes64 -o runs/dec   # the decoder reads the model's own latents
    Multi-GPU: torchrun --nproc-per-node 8 -m depthart.cli train ... (DDP; gloo on CPU).
    """
    if method is None:
        method = "from-config"
    cfg, resume = _config(method, kw)
    if cfg.method == "vqvae":
        raise click.ClickException("this run trains the VQ-VAE; use `depthart train-vqvae`")
    _run(cfg, resume)


@click.command("train-vqvae")
@_options([
    click.option("--recon", type=click.Choice(["l1", "mse"]), default=None, help="Reconstruction loss (default l1)."),
    click.option("--beta", type=float, default=None, help="Commitment weight (default 0.25, VAR)."),
    click.option("--dead-after", type=click.IntRange(min=0), default=None,
                 help="Re-initialise codes unused for N steps from batch residuals; 0 = never (default 100)."),
    click.option("--depth-weight", type=click.FloatRange(min=0), default=None,
                 help="Weight of the depth maps' reconstruction loss vs the images' (default 1)."),
    click.option("--image-to-depth", type=click.FloatRange(min=0), default=None,
                 help="W > 0: train only the encoder of the --init (or --init-vae) VQ-VAE so that an image's latent is "
                      "its depth map's latent (W x MSE): the image prefix then carries depth. Off by default."),
    click.option("--depth-pin", type=click.FloatRange(min=0), default=None,
                 help="With --image-to-depth: weight of holding the depth maps' latents where the starting VQ-VAE "
                      "put them, so the transformer's depth tokens keep their meaning (default 4)."),
    click.option("--untie-image-encoder", "untie_image_encoder", type=click.IntRange(min=1), default=None,
                 metavar="N",
                 help="With --image-to-depth: give the images their own encoder of N residual blocks per level, "
                      "started as the current image side (added blocks as the identity), and train only it: the "
                      "depth maps' encoder and tokens stay exactly as they are (no --depth-pin needed). A model whose "
                      "images already have their own encoder trains that one without this option."),
    click.option("--image-unet/--no-image-unet", "image_unet", default=None,
                 help="Give the images a small U-Net that guesses their depth map, read by the model's own depth "
                      "encoder (so the prefix is a token pyramid of that guess), and train only the U-Net, on its map "
                      "against the depth map (SILog + L1; no decoder in the step). Needs --init; a model that has one "
                      "trains it on."),
    click.option("--depth-silog", type=click.FloatRange(min=0), default=None,
                 help="With --image-to-depth: weight of a scale-invariant log loss on the depth that the frozen decoder "
                      "makes of the image's latent (relative errors near and far count alike, as AbsRel counts them; "
                      "about twice the step time). Default 0."),
])
def train_vqvae_cmd(**kw):
    """Train the multi-scale VQ-VAE on RGB images and depth maps (for models with no VAR VQ-VAE).

    Writes a full depthart checkpoint (random transformer) to use as `depthart train --init`.

    \b
    Example:
      depthart train-vqvae --preset small --data synthetic -o runs/vae --steps 20000 --lr 2e-4
      depthart train-vqvae --init model.safetensors --image-to-depth 1 --data rendered:runs/scenes64 -o runs/enc
    """
    cfg, resume = _config("vqvae", kw)
    _run(cfg, resume)


@click.command("render-data")
@click.option("-o", "--out-dir", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to create (rgb.npy, depth.npy, valid.npy, scenes.json); must not exist.")
@click.option("-n", "--num-scenes", type=click.IntRange(min=1), default=20000, show_default=True,
              help="How many scenes.")
@click.option("--first", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the first scene (training seeds stay below the held-out test scenes at 1e9).")
@click.option("--size", type=click.IntRange(min=8), default=64, show_default=True,
              help="Image size in pixels (the model's resolution: 64 for `small`).")
@click.option("--kind", type=click.Choice(["indoor", "outdoor"]), default=None, help="Only one kind of scene (default both).")
@click.option("--workers", type=click.IntRange(min=1), default=max(1, os.cpu_count() or 1), show_default="all cores",
              help="Rendering processes.")
def render_data_cmd(out_dir, num_scenes, first, size, kind, workers):
    """Render procedural training scenes once, to read back at memory speed (--data rendered:FOLDER).

    A 64 px scene takes ~19 ms to render on one core, about as long as a small model's training
    step spends per sample; a set rendered once also lets `depthart train --cache-latents` encode
    every scene with the frozen VQ-VAE a single time.

    \b
    Example:
      depthart render-data -o runs/scenes64 -n 32000 --size 64
      depthart train --init vae.safetensors --data rendered:runs/scenes64 --cache-latents -o runs/tf
    """
    from ..data.rendered import render_scenes

    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(total=num_scenes, desc="render", unit="scene") if tqdm is not None else None

    def progress(done, n):
        if bar is not None:
            bar.update(done - bar.n)

    try:
        render_scenes(out_dir, first, num_scenes, size, kind, workers, progress)
    except DepthartError as e:
        raise click.ClickException(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"{num_scenes} scenes -> {out_dir} (use --data rendered:{out_dir})")

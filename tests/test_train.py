"""Training: DepthART's dynamic targets and loop, teacher forcing, the trainer (resume), the VQ-VAE trainer, the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import randomize_
from depthart.config import get_preset
from depthart.data import ProceduralDataset
from depthart.data.torch_data import make_loader
from depthart.model import DepthART
from depthart.train.losses import depth_latent, depthart_loss, refine_loop, teacher_forcing_loss
from depthart.train.trainer import MODEL_FILE, STATE_FILE, TrainConfig, Trainer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    return next(iter(make_loader(ProceduralDataset(size=16), image_size=16, batch_size=4)))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return randomize_(DepthART(get_preset("tiny")))


def _cfg(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), preset="tiny", steps=4, batch_size=2, lr=1e-3, log_every=1,
                save_every=100, seed=3)
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------- the DepthART loop
def test_targets_equal_vqvae_tokens_when_predictions_follow_them(model, batch):
    """The issue's check: if the chosen tokens are the targets at every scale, the dynamic targets are
    the VQ-VAE's own multi-scale tokens of the depth, and f_hat its reconstruction."""
    f_D = depth_latent(model, batch["depth"])
    out = refine_loop(model, batch["image"], f_D, choose=lambda k, logits, target: target)
    tokens, f_hats = model.vae.quantize.tokenize(f_D)
    assert len(out.targets) == len(tokens) == model.cfg.num_scales
    for k, (t, ref) in enumerate(zip(out.targets, tokens)):
        assert torch.equal(t, ref), f"scale {k}"
        assert torch.equal(out.tokens[k], ref)
    assert ref.unique().numel() > 1  # a non-trivial check: the finest scale uses several codes
    torch.testing.assert_close(out.f_hat, f_hats[-1], rtol=0, atol=1e-6)


def test_greedy_targets_depend_on_the_models_own_predictions(model, batch):
    f_D = depth_latent(model, batch["depth"])
    out = refine_loop(model, batch["image"], f_D)
    tokens, _ = model.vae.quantize.tokenize(f_D)
    assert torch.equal(out.targets[0], tokens[0])  # nothing predicted yet: the first target is Q[f_D]
    for k, lg in enumerate(out.logits):
        assert torch.equal(out.tokens[k], lg.argmax(-1))  # greedy
    # the random model mispredicts scale 0, so scale 1's residual and its targets differ from the VQ-VAE's
    assert not torch.equal(out.tokens[0], tokens[0])
    assert not torch.equal(out.targets[1], tokens[1])


def test_the_cached_training_loop_matches_inference(model, batch):
    """Greedy tokens and the final latent of the training loop equal `model.generate`'s."""
    model.eval()
    f_D = depth_latent(model, batch["depth"])
    out = refine_loop(model, batch["image"], f_D)
    f_hat, tokens = model.generate(batch["image"], return_tokens=True)
    for a, b in zip(out.tokens, tokens):
        assert torch.equal(a, b)
    torch.testing.assert_close(out.f_hat, f_hat)


def test_the_expect_input_loop_is_the_expect_samplers_loop(model, batch, tmp_path):
    """inputs="expect" (train --own-inputs expect): the loop feeds on expected code vectors, so its final latent is
    `generate(..., Expected())`'s and differs from the greedy loop's; each dynamic target is the nearest code of
    what that soft latent leaves unexplained; the option is DepthART's only."""
    from depthart.errors import DepthartError
    from depthart.sampling import Expected
    from depthart.train.losses import expected_latent

    model.eval()
    f_D = depth_latent(model, batch["depth"])
    out = refine_loop(model, batch["image"], f_D, inputs="expect")
    torch.testing.assert_close(out.f_hat, model.generate(batch["image"], Expected()), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(expected_latent(model, out.logits), out.f_hat, rtol=1e-5, atol=1e-5)
    greedy = refine_loop(model, batch["image"], f_D)
    assert not torch.allclose(greedy.f_hat, out.f_hat, atol=1e-3)
    q = model.vae.quantize
    f_hat = torch.zeros_like(f_D)
    for k, lg in enumerate(out.logits):
        assert torch.equal(out.targets[k], q.residual_tokens(k, f_D, f_hat)), k
        h = Expected()(k, lg, q.embedding.weight)[1]
        f_hat = q.accumulate(k, f_hat, h.transpose(1, 2).reshape(f_D.shape[0], model.cfg.cvae, *[model.cfg.patch_nums[k]] * 2))
    with pytest.raises(ValueError, match="inputs"):
        refine_loop(model, batch["image"], f_D, inputs="sampled")
    with pytest.raises(DepthartError, match="own_inputs"):
        _cfg(tmp_path, method="var", own_inputs="expect")
    with pytest.raises(DepthartError, match="own_inputs"):
        _cfg(tmp_path, method="depthart", own_inputs="mean")


def test_gradients_reach_earlier_scales_through_the_cache(model, batch):
    """The last scale's CE alone moves the start token (only in step 0's input): through cached keys/values."""
    f_D = depth_latent(model, batch["depth"])
    out = refine_loop(model, batch["image"], f_D)
    loss = torch.nn.functional.cross_entropy(out.logits[-1].flatten(0, 1), out.targets[-1].flatten())
    loss.backward()
    assert model.pos_start.grad is not None and model.pos_start.grad.abs().sum() > 0
    assert model.word_embed.weight.grad.abs().sum() > 0  # the image prefix's embedding, also step 0
    assert all(p.grad is None for p in model.vae.parameters())  # the VQ-VAE stays frozen


def test_rec_loss_variant_trains_the_last_scale_through_the_latent(model, batch):
    torch.manual_seed(0)
    loss, m = depthart_loss(model, batch, rec_loss=True)
    assert set(m) >= {"ce", "mse", "loss", "acc"} and len(m["acc"]) == model.cfg.num_scales
    assert m["loss"] == pytest.approx(m["ce"] + 10 * m["mse"], rel=1e-5)
    # the MSE alone reaches the head through the soft (Gumbel) code of the last scale
    f_D = depth_latent(model, batch["depth"]).float()
    out = refine_loop(model, batch["image"], f_D, soft_last=True)
    assert len(out.logits) == model.cfg.num_scales - 1
    torch.nn.functional.mse_loss(out.f_hat, f_D).backward()
    assert model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method,rec_loss,inputs", [("depthart", False, "greedy"), ("depthart", True, "greedy"),
                                                   ("depthart", False, "expect"), ("var", False, "greedy")])
def test_loss_decreases_when_overfitting_one_batch(tmp_path, batch, method, rec_loss, inputs):
    trainer = Trainer(_cfg(tmp_path, method=method, rec_loss=rec_loss, lr=3e-3, own_inputs=inputs), log=None)
    first = trainer.train_step(batch)
    for _ in range(29):
        last = trainer.train_step(batch)
    assert last["ce"] < 0.5 * first["ce"], (first, last)
    assert last["acc"][-1] > first["acc"][-1]


def test_teacher_forcing_targets_are_the_vqvae_tokens(model, batch):
    loss, m = teacher_forcing_loss(model, batch)
    assert loss.ndim == 0 and len(m["acc"]) == model.cfg.num_scales
    loss.backward()
    assert all(p.grad is None for p in model.vae.parameters())


# ---------------------------------------------------------------- the trainer
def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("method", ["depthart", "vqvae"])
def test_resume_continues_exactly(tmp_path, method):
    """Train 2N steps in one go == train N, save, resume in a new trainer, train N more."""
    # Gumbel noise (depthart), dead-code revivals (vqvae), EMA and one LR decay: all must continue exactly
    kw = dict(method=method, steps=4, rec_loss=True, ema=0.9, dead_after=1, lr_step=3)
    full = Trainer(_cfg(tmp_path / "full", **kw), log=None)
    full.fit()
    Trainer(_cfg(tmp_path / "half", **kw), log=None).fit(2)
    torch.rand(100)  # disturb the global RNG: resume must restore it
    resumed = Trainer(_cfg(tmp_path / "half", **kw), resume=True, log=None)
    assert resumed.step == 2
    resumed.fit()
    a, b = _weights(tmp_path / "full" / "run" / MODEL_FILE), _weights(tmp_path / "half" / "run" / MODEL_FILE)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    ea = _weights(tmp_path / "full" / "run" / "model_ema.safetensors")
    eb = _weights(tmp_path / "half" / "run" / "model_ema.safetensors")
    for k in ea:
        torch.testing.assert_close(ea[k], eb[k], rtol=1e-5, atol=1e-6, msg=k)
    rows = [json.loads(line) for line in open(tmp_path / "full" / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["lr"] == pytest.approx(1e-3 * 0.8)  # StepLR: step 4 runs after the first decay
    assert {"loss", "lr", "it_s", "samples"} <= set(rows[-1])


def test_trainer_freezes_the_vqvae_and_writes_a_loadable_checkpoint(tmp_path):
    import depthart

    trainer = Trainer(_cfg(tmp_path, steps=2, method="var"), log=None)
    vae_before = {k: v.clone() for k, v in trainer.model.vae.state_dict().items()}
    trainer.fit()
    assert not trainer.model.vae.training
    for k, v in trainer.model.vae.state_dict().items():
        assert torch.equal(v, vae_before[k]), k
    model = depthart.load(str(tmp_path / "run" / MODEL_FILE))
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_resume_refuses_mismatched_files(tmp_path):
    from depthart.errors import DepthartError

    cfg = _cfg(tmp_path, steps=1)
    with pytest.raises(DepthartError, match="nothing to resume"):
        Trainer(cfg, resume=True, log=None)
    t = Trainer(cfg, log=None)
    t.fit()
    t.step = 7
    from depthart.checkpoint import save_checkpoint

    save_checkpoint(t.model, tmp_path / "run" / MODEL_FILE, {"step": 7})  # weights newer than the state
    with pytest.raises(DepthartError, match="step 7"):
        Trainer(cfg, resume=True, log=None)


def test_vqvae_trainer_reduces_reconstruction_loss(tmp_path, batch):
    trainer = Trainer(_cfg(tmp_path, method="vqvae", lr=2e-3, dead_after=5), log=None)
    params = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert params and all(n.startswith("vae.") for n in params)
    first = trainer.train_step(batch)
    revived = 0
    for _ in range(29):
        last = trainer.train_step(batch)
        revived += last["revived"]
    assert last["rec"] < 0.7 * first["rec"], (first, last)
    assert revived > 0  # 64 codes, tiny batch: unused codes were re-initialised


def test_vqvae_sample_weights_scale_each_samples_reconstruction(model, batch):
    from depthart.train.vqvae_train import vqvae_loss

    x = torch.cat([batch["image"], batch["depth"]])
    n = len(batch["image"])
    torch.manual_seed(0)
    _, plain, _ = vqvae_loss(model.vae, x)
    _, ones, _ = vqvae_loss(model.vae, x, sample_weight=torch.ones(2 * n))
    assert ones["rec"] == pytest.approx(plain["rec"], rel=1e-5)
    # weight 0 on the depth maps (weights normalised to mean 1): the images' mean loss alone
    _, images, _ = vqvae_loss(model.vae, x, sample_weight=torch.cat([torch.ones(n), torch.zeros(n)]))
    with torch.no_grad():
        f_hat = model.vae.quantize.tokenize(model.vae.encode(batch["image"]))[1][-1]
        out = model.vae.decoder(model.vae.post_quant_conv(f_hat))  # the loss's unclamped decoder
    assert images["rec"] == pytest.approx((out - batch["image"]).abs().mean().item(), rel=1e-4)
    assert images["rec"] != pytest.approx(plain["rec"], rel=1e-3)


def test_dead_codes_are_reinitialised_from_residuals():
    from depthart.train.vqvae_train import CodeUsage

    emb = torch.nn.Embedding(4, 2)
    usage = CodeUsage(4, dead_after=2)
    residuals = torch.tensor([[5.0, 5.0]])
    hits = torch.tensor([1.0, 0, 0, 0])
    assert usage.update(1, emb, hits, residuals) == 0
    assert usage.update(2, emb, hits, residuals) == 3  # codes 1-3 unused for 2 steps
    assert torch.equal(emb.weight[1:], torch.full((3, 2), 5.0))


# ---------------------------------------------------------------- the CLI
def test_cli_trains_resumes_and_writes_a_checkpoint(tmp_path):
    import depthart
    from depthart.train.cli import train_cmd

    out = tmp_path / "run"
    args = ["--preset", "tiny", "--data", "synthetic", "--steps", "3", "--batch-size", "2", "-o", str(out),
            "--save-every", "2", "--keep-checkpoints", "--ema", "0.9"]
    r = CliRunner().invoke(train_cmd, args)
    assert r.exit_code == 0, r.output
    assert "step 3/3" in r.output and (out / STATE_FILE).is_file()
    kept = sorted(p.name for p in (out / "ckpt").iterdir())
    assert kept == ["ema_2.safetensors", "ema_3.safetensors", "step_2.safetensors", "step_3.safetensors"]
    assert (out / "ckpt" / "step_3.safetensors").read_bytes() == (out / MODEL_FILE).read_bytes()
    assert (out / "ckpt" / "step_2.safetensors").read_bytes() != (out / MODEL_FILE).read_bytes()
    model = depthart.load(str(out / MODEL_FILE))
    assert model.cfg == get_preset("tiny")
    r = CliRunner().invoke(train_cmd, args)  # the folder holds a run: refuse without --resume
    assert r.exit_code != 0 and "--resume" in r.output
    r = CliRunner().invoke(train_cmd, ["-o", str(out), "--resume", "--steps", "4"])  # flags from config.json
    assert r.exit_code == 0, r.output
    assert "step 4/4" in r.output
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert rows[-1]["step"] == 4 and rows[-1]["samples"] == 8
    assert (out / "ckpt" / "ema_4.safetensors").is_file()  # --keep-checkpoints came from config.json


@pytest.mark.parametrize("data,message", [
    ("hypersim:{tmp}/missing", "is not a folder"),
    ("hypersim:{tmp}", "split CSV not found"),
    ("imagenet", "unknown data source"),
    ("synthetic:zero", "synthetic:N"),
    ("synthetic@x", "synthetic@FIRST"),
    ("synthetic@1000000000", "held-out"),
    ("synthetic@999999999:10", "held-out"),
    ("synthetic@999999990", "held-out"),  # endless: 1000 steps x batch 16 from there
    ("synthetic@5:x", "synthetic@FIRST:N"),
])
def test_cli_rejects_bad_data_before_training(tmp_path, data, message):
    from depthart.train.cli import train_cmd

    r = CliRunner().invoke(train_cmd, ["--preset", "tiny", "--data", data.format(tmp=tmp_path),
                                       "-o", str(tmp_path / "run")])
    assert r.exit_code == 1 and message in r.output, r.output
    assert not (tmp_path / "run" / STATE_FILE).exists()


def test_synthetic_from_a_first_scene():
    from depthart.train.data import open_source

    src = open_source("synthetic@7", 32)
    assert src.length is None and src.seed_offset == 7
    np.testing.assert_array_equal(src[0]["depth"], ProceduralDataset(seed_offset=0, size=32)[7]["depth"])
    assert len(open_source("synthetic@7:5", 32)) == 5


def test_cli_needs_a_model(tmp_path):
    from depthart.train.cli import train_cmd

    r = CliRunner().invoke(train_cmd, ["--data", "synthetic", "-o", str(tmp_path / "run")])
    assert r.exit_code == 1 and "--preset" in r.output
    r = CliRunner().invoke(train_cmd, ["--init", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "run")])
    assert r.exit_code == 1 and "no such checkpoint" in r.output


def test_cli_train_vqvae_then_transformer_from_it(tmp_path):
    from depthart.train.cli import train_cmd, train_vqvae_cmd

    vae_run = tmp_path / "vae"
    r = CliRunner().invoke(train_vqvae_cmd, ["--preset", "tiny", "--data", "synthetic:8", "--steps", "2",
                                             "--batch-size", "2", "-o", str(vae_run)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(train_cmd, ["--init", str(vae_run / MODEL_FILE), "--method", "var", "--steps", "1",
                                       "--batch-size", "2", "-o", str(tmp_path / "tf")])
    assert r.exit_code == 0, r.output
    a, b = _weights(vae_run / MODEL_FILE), _weights(tmp_path / "tf" / MODEL_FILE)
    for k in a:
        if k.startswith("vae."):
            assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- distributed (2 CPU processes, gloo)
DDP_SCRIPT = """
import json, sys, torch, torch.distributed as dist
torch.set_num_threads(1)
from depthart.train.trainer import TrainConfig, Trainer
cfg = TrainConfig(**json.loads(sys.argv[1]))
t = Trainer(cfg, log=None)
t.fit()
flat = torch.cat([p.detach().flatten() for p in t.params])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    json.dump({"max_diff": float((gathered[0] - gathered[1]).abs().max())}, open(sys.argv[2], "w"))
dist.barrier()  # both ranks done before the gloo teardown (a rank tearing down early can abort the other)
dist.destroy_process_group()
# skip the interpreter's C++ static teardown: gloo's leftover thread sometimes aborts it there
# ("terminate called without an active exception", ~1 run in 3 on the 2-core CI VM), after all work is done
import os
sys.stdout.flush()
os._exit(0)
"""


def test_ddp_two_gloo_processes_stay_in_sync_and_match_one_process(tmp_path):
    """2 ranks x batch 2 == 1 process x batch 4 (teacher forcing: no randomness); ranks stay identical."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kw = dict(method="var", preset="tiny", steps=3, batch_size=2, lr=1e-3, save_every=100, seed=3)
    ddp_cfg = dict(kw, out_dir=str(tmp_path / "ddp"))
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                   LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-c", DDP_SCRIPT, json.dumps(ddp_cfg),
                                       str(tmp_path / "sync.json")], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert json.load(open(tmp_path / "sync.json"))["max_diff"] == 0.0
    rows = [json.loads(line) for line in open(tmp_path / "ddp" / "metrics.jsonl")]
    assert rows[-1]["samples"] == 12  # 3 steps x 2 per rank x 2 ranks

    single = Trainer(TrainConfig(**dict(kw, batch_size=4, out_dir=str(tmp_path / "one"))), log=None)
    single.fit()
    a, b = _weights(tmp_path / "ddp" / MODEL_FILE), _weights(tmp_path / "one" / MODEL_FILE)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)

"""The fast CPU training recipe: rendered scene sets, the latent cache, the cached teacher-forcing pass,
bf16 autocast on CPU, warm-up + cosine learning rate, --init-vae, `depthart render-data`."""

import json
import math
import pathlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import randomize_
from depthart.cli import main
from depthart.config import get_preset
from depthart.data import DataError, generate_scene
from depthart.data.rendered import RenderedDataset, render_scenes
from depthart.data.torch_data import make_loader
from depthart.model import DepthART
from depthart.train.data import open_source
from depthart.train.latent_cache import LatentCache
from depthart.train.losses import (depthart_loss, expected_code_error, prefix_aux_loss, refine_loop, scale_weights,
                                   soft_code_targets, teacher_forcing_loss)
from depthart.train.trainer import MODEL_FILE, TrainConfig, Trainer, lr_factor


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return render_scenes(tmp_path_factory.mktemp("r") / "scenes", first=7, n=6, size=16)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return randomize_(DepthART(get_preset("tiny")))


def test_rendered_scenes_are_the_generators_scenes(scenes):
    ds = RenderedDataset(scenes)
    assert len(ds) == 6
    for i in (0, 5):
        g = generate_scene(7 + i, 16)
        s = ds[i]
        np.testing.assert_array_equal(s["rgb"], g.rgb)
        np.testing.assert_array_equal(s["depth"], g.depth)
        np.testing.assert_array_equal(s["valid"], g.valid)
        assert s["meta"]["id"] == f"procedural_{7 + i}"
    with pytest.raises(IndexError):
        ds[6]


def test_render_refuses_existing_folders_held_out_seeds_and_bad_folders(scenes, tmp_path):
    with pytest.raises(DataError, match="already exists"):
        render_scenes(scenes, 0, 2, 16)
    with pytest.raises(DataError, match="held-out"):
        render_scenes(tmp_path / "x", 999_999_999, 2, 16)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    with pytest.raises(DataError, match="not a rendered scene set"):
        RenderedDataset(tmp_path)
    with pytest.raises(DataError, match="rendered:"):
        open_source(f"rendered:{tmp_path}", 16)
    assert len(open_source(f"rendered:{scenes}", 16)) == 6


def test_render_data_cli(tmp_path):
    out = tmp_path / "s"
    r = CliRunner().invoke(main, ["render-data", "-o", str(out), "-n", "3", "--size", "16", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert len(RenderedDataset(out)) == 3
    r = CliRunner().invoke(main, ["render-data", "-o", str(out), "-n", "3", "--size", "16"])
    assert r.exit_code != 0 and "already exists" in r.output


def test_cached_teacher_forcing_pass_equals_the_masked_pass(model, scenes):
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 3)))
    tokens = model.vae.img_to_idx(batch["depth"])
    a = model.forward_teacher(batch["image"], tokens)
    b = model.forward_teacher(batch["image"], tokens, cached=True)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_losses_with_cached_latents_equal_losses_without(model, scenes, tmp_path):
    ds = RenderedDataset(scenes)
    cache = LatentCache.build_or_load(model, ds, 16, str(tmp_path), batch_size=4)
    assert cache.image_latents.shape == (6, model.cfg.tokens_per_map, model.cfg.cvae)
    batch = next(iter(make_loader(ds, 16, 3, shuffle=True, seed=1)))
    cached = cache.add_to(batch)
    for fn in (teacher_forcing_loss, depthart_loss):
        la, _ = fn(model, batch)
        lb, _ = fn(model, cached)
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    # a second build reads the stored file; another VQ-VAE does not
    files = list(tmp_path.glob("latents-*.pt"))
    assert len(files) == 1
    again = LatentCache.build_or_load(model, ds, 16, str(tmp_path))
    torch.testing.assert_close(again.f_D, cache.f_D)
    with torch.no_grad():
        model.vae.quant_conv.bias.add_(1.0)
    LatentCache.build_or_load(model, ds, 16, str(tmp_path), batch_size=4)
    assert len(list(tmp_path.glob("latents-*.pt"))) == 2


def test_latent_cache_is_keyed_by_the_data_leaves_the_rng_alone_and_maps_rank_indices(model, scenes, tmp_path):
    ds = RenderedDataset(scenes)
    state = torch.get_rng_state()
    a = LatentCache.build_or_load(model, ds, 16, str(tmp_path), batch_size=4, data="synthetic:6")
    assert torch.equal(torch.get_rng_state(), state)  # a run is the same whether the file existed or not
    LatentCache.build_or_load(model, ds, 16, str(tmp_path), batch_size=4, data="synthetic@100:6")
    assert len(list(tmp_path.glob("latents-*.pt"))) == 2  # other data: another file, never a stale one
    # DDP: rank 1 of 2 sees global items 1, 3, 5 as its items 0, 1, 2
    r1 = LatentCache(a.image_latents, a.f_D, rank=1, world=2)
    out = r1.add_to({"index": torch.tensor([0, 2])})
    torch.testing.assert_close(out["f_D"], a.f_D[[1, 5]])


def test_scale_balanced_ce(model, scenes):
    counts = [1, 4, 16, 64]
    for b in (0.0, 0.5, 1.0):
        w = scale_weights(counts, b)
        assert float((w * torch.tensor(counts, dtype=torch.float)).sum()) == pytest.approx(1.0)
    torch.testing.assert_close(scale_weights(counts, 1.0) * torch.tensor(counts, dtype=torch.float),
                               torch.full((4,), 0.25))
    torch.testing.assert_close(scale_weights(counts, 0.0), torch.full((4,), 1 / 85))
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 3)))
    tokens = model.vae.img_to_idx(batch["depth"])
    logits = model.forward_teacher(batch["image"], tokens)
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), torch.cat(tokens, 1), reduction="none")
    per_scale = torch.stack([per_token[:, b:e].mean() for b, e in model.cfg.scale_ranges()])
    torch.manual_seed(0)
    plain, _ = teacher_forcing_loss(model, batch)
    balanced, _ = teacher_forcing_loss(model, batch, balance=1.0)
    torch.testing.assert_close(plain, per_token.mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(balanced, per_scale.mean(), rtol=1e-4, atol=1e-5)
    assert not torch.isclose(plain, balanced)
    loss, metrics = depthart_loss(model, batch, balance=1.0)
    assert torch.isfinite(loss) and len(metrics["acc"]) == model.cfg.num_scales
    with pytest.raises(Exception, match="scale_balance"):
        TrainConfig(scale_balance=1.5)


def test_soft_code_targets(model, scenes):
    """Soft targets: a distribution over the codes peaked at the nearest one; tau -> 0 gives the hard CE
    (teacher forcing and DepthART), a larger tau spreads the target over near codes and changes the loss."""
    q = model.vae.quantize
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 3)))
    f = model.vae.encode(batch["depth"])
    tokens, f_hats = q.tokenize(f)
    for k, tau in ((0, 1e-6), (2, 1e-6), (2, 10.0)):
        p = soft_code_targets(q, k, f, f_hats[k - 1] if k else torch.zeros_like(f), tau)
        assert p.shape == (*tokens[k].shape, model.cfg.vocab_size)
        torch.testing.assert_close(p.sum(-1), torch.ones(tokens[k].shape))
        assert torch.equal(p.argmax(-1), tokens[k])
        if tau < 1:
            assert float(p.max(-1).values.min()) > 0.999
        else:
            assert float(p.max(-1).values.max()) < 0.5
    for loss_fn in (teacher_forcing_loss, depthart_loss):
        hard, _ = loss_fn(model, batch)
        near_hard, _ = loss_fn(model, batch, soft_tau=1e-6)
        soft, metrics = loss_fn(model, batch, soft_tau=10.0)
        torch.testing.assert_close(near_hard, hard, rtol=1e-4, atol=1e-4)
        assert not torch.isclose(soft, hard) and len(metrics["acc"]) == model.cfg.num_scales
    with pytest.raises(Exception, match="soft_tau"):
        TrainConfig(soft_tau=-1)


def test_expected_code_regression(model, scenes):
    """code_mse: ||softmax(logits) @ codebook - residual||^2 per token. Zero when the logits pick the code
    that equals the residual; a near code costs less than a far one; it adds to the CE of both objectives,
    and its gradient reaches the logits."""
    q = model.vae.quantize
    E = q.embedding.weight.detach()
    V = E.shape[0]
    far = int((E - E[0]).square().sum(1).argmax())
    near = int((E - E[0]).square().sum(1).topk(2, largest=False).indices[1])
    r = E[0].expand(2, 1, -1)  # residual = code 0 exactly, 2 samples, 1 token
    onehot = lambda v: torch.nn.functional.one_hot(torch.full((2, 1), v), V).float() * 50.0
    assert float(expected_code_error([onehot(0)], [r], E)) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(expected_code_error([onehot(near)], [r], E)) < float(expected_code_error([onehot(far)], [r], E))
    logits = torch.zeros(2, 1, V, requires_grad=True)
    expected_code_error([logits], [r], E).backward()
    assert float(logits.grad.abs().sum()) > 0 and float(logits.grad[0, 0, 0]) < 0  # more mass on the right code
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 3)))
    for loss_fn in (teacher_forcing_loss, depthart_loss):
        torch.manual_seed(0)
        plain, m0 = loss_fn(model, batch)
        torch.manual_seed(0)
        both, m1 = loss_fn(model, batch, code_mse=2.0)
        assert "code_mse" not in m0 and m1["code_mse"] > 0
        torch.testing.assert_close(both, plain + 2.0 * m1["code_mse"], rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match="code_mse"):
        TrainConfig(code_mse=-1)


def test_prefix_aux_trains_the_image_prefix_outputs(model, scenes):
    """prefix_aux: the image prefix's logits (the same in the teacher-forcing pass and DepthART's loop) are
    scored against the nearest codes of area_k(f_D); the depth logits do not change; the loss adds up."""
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 3)))
    q, L = model.vae.quantize, model.cfg.tokens_per_map
    f = model.vae.encode(batch["depth"])
    tokens, _ = q.tokenize(f)
    with torch.no_grad():
        full = model.forward_teacher(batch["image"], tokens, with_prefix=True)
        assert full.shape[1] == 2 * L
        torch.testing.assert_close(full[:, L:], model.forward_teacher(batch["image"], tokens), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(full, model.forward_teacher(batch["image"], tokens, cached=True, with_prefix=True),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(refine_loop(model, batch["image"], f).prefix_logits, full[:, :L], rtol=1e-4, atol=1e-4)
    # the 1x1 prefix target is the nearest code of the mean latent, i.e. the depth pyramid's first token
    prefix = full[:, :L].clone()
    prefix[:, 0] = torch.nn.functional.one_hot(tokens[0][:, 0], model.cfg.vocab_size).float() * 100
    prefix.requires_grad_(True)
    loss, ce, acc = prefix_aux_loss(model, prefix, f, balance=1.0)
    loss.backward()
    assert float(prefix.grad[:, 0].abs().max()) < 1e-6 and float(prefix.grad[:, 1:].abs().sum()) > 0
    assert 1 / L <= acc <= 1
    for loss_fn in (teacher_forcing_loss, depthart_loss):
        torch.manual_seed(0)
        plain, _ = loss_fn(model, batch)
        torch.manual_seed(0)
        with_aux, m = loss_fn(model, batch, prefix_aux=0.5)
        assert m["prefix_ce"] > 0 and 0 <= m["prefix_acc"] <= 1
        torch.testing.assert_close(with_aux, plain + 0.5 * m["prefix_ce"], rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match="prefix_aux"):
        TrainConfig(prefix_aux=-1)


def test_latent_cache_refuses_endless_data(model):
    from depthart.data import ProceduralDataset
    from depthart.errors import DepthartError

    with pytest.raises(DepthartError, match="finite"):
        LatentCache.build_or_load(model, ProceduralDataset(size=16), 16, "unused")


def test_warmup_then_cosine_schedule():
    cfg = TrainConfig(preset="tiny", steps=110, warmup=10, lr_schedule="cosine", lr_min_ratio=0.1)
    f = lr_factor(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    step = lr_factor(TrainConfig(preset="tiny", lr_step=5, lr_gamma=0.5))
    assert step(4) == 1.0 and step(5) == 0.5 and step(10) == 0.25


@pytest.mark.parametrize("method", ["var", "depthart"])
def test_trainer_with_rendered_data_cached_latents_and_bf16_resumes_exactly(tmp_path, scenes, method):
    kw = dict(preset="tiny", method=method, data=f"rendered:{scenes}", cache_latents=True, amp_cpu=True,
              steps=4, batch_size=2, lr=1e-3, warmup=2, lr_schedule="cosine", log_every=1, save_every=100, seed=3)
    full = Trainer(TrainConfig(out_dir=str(tmp_path / "full"), **kw), log=None)
    assert full.amp and full.latents is not None
    full.fit()
    Trainer(TrainConfig(out_dir=str(tmp_path / "half"), **kw), log=None).fit(2)
    resumed = Trainer(TrainConfig(out_dir=str(tmp_path / "half"), **kw), resume=True, log=None)
    resumed.fit()
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full" / MODEL_FILE)), load_file(str(tmp_path / "half" / MODEL_FILE))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
    assert rows[0]["lr"] == pytest.approx(0.5e-3) and math.isfinite(rows[-1]["loss"])
    assert list(pathlib.Path(scenes).glob("latents-*.pt"))  # stored beside the rendered data


def test_init_vae_takes_only_the_vqvae(tmp_path):
    from safetensors.torch import load_file

    from depthart.checkpoint import save_checkpoint
    from depthart.errors import DepthartError

    torch.manual_seed(5)
    donor = randomize_(DepthART(get_preset("tiny").replace(width=64, heads=1)))
    save_checkpoint(donor, tmp_path / "vae.safetensors", {})
    t = Trainer(TrainConfig(out_dir=str(tmp_path / "run"), preset="tiny", init_vae=str(tmp_path / "vae.safetensors"),
                            steps=1), log=None)
    assert t.model.cfg.width == get_preset("tiny").width
    for k, v in t.model.vae.state_dict().items():
        torch.testing.assert_close(v, donor.vae.state_dict()[k], msg=k)
    other = DepthART(get_preset("tiny").replace(vocab_size=32))
    save_checkpoint(other, tmp_path / "other.safetensors", {})
    with pytest.raises(DepthartError, match="vocab_size"):
        Trainer(TrainConfig(out_dir=str(tmp_path / "r2"), preset="tiny", init_vae=str(tmp_path / "other.safetensors")),
                log=None)
    assert load_file(str(tmp_path / "vae.safetensors"))  # untouched


def test_image_to_depth_trains_only_the_encoder_toward_the_depth_latents(tmp_path, scenes):
    """train-vqvae --image-to-depth: an image's latent moves to its depth map's latent under the starting VQ-VAE,
    the depth maps' latents stay near where it put them, and nothing but the encoder (and quant_conv) changes."""
    from depthart.checkpoint import save_checkpoint
    from depthart.errors import DepthartError

    torch.manual_seed(3)
    start = randomize_(DepthART(get_preset("tiny")))
    save_checkpoint(start, tmp_path / "start.safetensors", {})
    with pytest.raises(DepthartError, match="trained VQ-VAE to start from"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="vqvae", preset="tiny", image_to_depth=1.0)
    with pytest.raises(DepthartError, match="method vqvae"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="var", init=str(tmp_path / "start.safetensors"),
                    preset=None, image_to_depth=1.0)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), method="vqvae", preset=None, init=str(tmp_path / "start.safetensors"),
                      data=f"rendered:{scenes}", image_to_depth=1.0, depth_pin=4.0, lr=3e-3, batch_size=6, steps=40,
                      save_every=40)
    t = Trainer(cfg, log=None)
    trained = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("vae.encoder.", "vae.quant_conv.")) for n in trained)
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 6)))

    def gaps(vae):
        with torch.no_grad():
            f_D = start.vae.encode(batch["depth"])
            return (vae.encode(batch["image"]) - f_D).pow(2).mean().item(), (vae.encode(batch["depth"]) - f_D).pow(2).mean().item()

    before_img, before_dep = gaps(t.model.vae)
    assert before_dep == 0.0
    t.fit()
    after_img, after_dep = gaps(t.model.vae)
    assert after_img < 0.5 * before_img, (before_img, after_img)
    assert after_dep < 0.2 * before_img  # held near the start's depth latents
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert {"img_to_depth", "depth_pin"} <= set(rows[-1])
    sd, s0 = t.model.state_dict(), start.state_dict()
    for k, v in sd.items():
        if not k.startswith(("vae.encoder.", "vae.quant_conv.")):
            assert torch.equal(v, s0[k]), k
    # resumes: the reference VQ-VAE comes from --init again, not from the run's trained weights
    cfg2 = TrainConfig(**{**cfg.__dict__, "steps": 41})
    r = Trainer(cfg2, resume=True, log=None)
    for k, v in r.ref_vae.state_dict().items():
        assert torch.equal(v, start.vae.state_dict()[k]), k


def test_an_untied_image_encoder_starts_as_the_image_side_and_trains_alone(tmp_path, scenes):
    """train-vqvae --image-to-depth --untie-image-encoder N: the images get their own encoder (N residual blocks per
    level) that first computes the prefix the shared encoder did; training moves its latents toward the depth
    latents and moves nothing else, so the depth maps' tokens stay exactly where they were (no pin needed); the
    checkpoint records the new image side and loads back; a second segment grows it again."""
    from depthart.checkpoint import load_checkpoint, read_config, save_checkpoint
    from depthart.errors import DepthartError
    from depthart.model import untie_image_encoder

    torch.manual_seed(6)
    start = randomize_(DepthART(get_preset("tiny"))).eval()
    save_checkpoint(start, tmp_path / "start.safetensors", {})
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 6)))
    import copy

    grown = untie_image_encoder(copy.deepcopy(start), 2)
    assert grown.cfg.image_res_blocks == 2 and grown.vae.untied and not start.vae.untied
    with torch.no_grad():
        torch.testing.assert_close(grown.image_latents(batch["image"]), start.image_latents(batch["image"]),
                                   rtol=0, atol=1e-5)
        assert torch.equal(grown.vae.encode(batch["depth"]), start.vae.encode(batch["depth"]))
    with pytest.raises(ValueError, match="at least"):
        untie_image_encoder(copy.deepcopy(grown), 1)
    with pytest.raises(DepthartError, match="image_to_depth > 0"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="vqvae", preset=None, init=str(tmp_path / "start.safetensors"),
                    untie_image_encoder=2)

    cfg = TrainConfig(out_dir=str(tmp_path / "run"), method="vqvae", preset=None, init=str(tmp_path / "start.safetensors"),
                      data=f"rendered:{scenes}", image_to_depth=1.0, depth_silog=0.5, untie_image_encoder=2, lr=3e-3,
                      batch_size=6, steps=40, save_every=40)
    t = Trainer(cfg, log=None)
    trained = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("vae.image_encoder.", "vae.image_quant_conv.")) for n in trained)
    assert any(".block.1." in n for n in trained)  # the added blocks train

    def image_gap(model):
        with torch.no_grad():
            return (model.vae.encode_image(batch["image"]) - start.vae.encode(batch["depth"])).pow(2).mean().item()

    before = image_gap(t.model)
    t.fit()
    after = image_gap(t.model)
    assert after < 0.5 * before, (before, after)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert "img_to_depth" in rows[-1] and "depth_pin" not in rows[-1]
    s0 = start.state_dict()
    for k, v in t.model.state_dict().items():
        if not k.startswith(("vae.image_encoder.", "vae.image_quant_conv.")):
            assert torch.equal(v, s0[k]), k  # the depth side, the decoder, the transformer: untouched
    saved = tmp_path / "run" / MODEL_FILE
    assert read_config(saved).image_res_blocks == 2
    back = load_checkpoint(saved).eval()
    with torch.no_grad():
        assert torch.equal(back.image_latents(batch["image"]), t.model.eval().image_latents(batch["image"]))
        assert not torch.allclose(back.image_latents(batch["image"]), start.image_latents(batch["image"]))
    # a second segment from the trained checkpoint trains its image encoder without the option, or grows it
    t2 = Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "run2"), "init": str(saved),
                                "untie_image_encoder": 0, "steps": 1}), log=None)
    assert all(n.startswith(("vae.image_encoder.", "vae.image_quant_conv."))
               for n, p in t2.model.named_parameters() if p.requires_grad)
    t3 = Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "run3"), "init": str(saved),
                                "untie_image_encoder": 3, "steps": 1}), log=None)
    assert t3.model.cfg.image_res_blocks == 3
    with pytest.raises(DepthartError, match="--untie-image-encoder 1"):
        Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "run4"), "init": str(saved),
                               "untie_image_encoder": 1, "steps": 1}), log=None)
    # whole-VQ-VAE training would read images with the depth maps' encoder: refused for an untied model
    with pytest.raises(DepthartError, match="only with --image-to-depth"):
        Trainer(TrainConfig(out_dir=str(tmp_path / "run5"), method="vqvae", preset=None, init=str(saved),
                            data=f"rendered:{scenes}", steps=1), log=None)
    # --init-vae brings its image side along: a tied transformer run takes the untied VQ-VAE whole
    t6 = Trainer(TrainConfig(out_dir=str(tmp_path / "run6"), method="var", preset=None,
                             init=str(tmp_path / "start.safetensors"), init_vae=str(saved), data=f"rendered:{scenes}",
                             steps=1), log=None)
    assert t6.model.cfg.image_res_blocks == 2 and t6.model.vae.untied
    with torch.no_grad():
        assert torch.equal(t6.model.eval().image_latents(batch["image"]), back.image_latents(batch["image"]))


def test_untie_image_encoder_cli_refuses_it_without_image_to_depth(tmp_path, scenes):
    from depthart.checkpoint import save_checkpoint

    save_checkpoint(DepthART(get_preset("tiny")), tmp_path / "start.safetensors", {})
    r = CliRunner().invoke(main, ["train-vqvae", "--init", str(tmp_path / "start.safetensors"), "-o", str(tmp_path / "r"),
                                  "--data", f"rendered:{scenes}", "--untie-image-encoder", "2", "--steps", "1"])
    assert r.exit_code != 0 and "image_to_depth > 0" in r.output and "Traceback" not in r.output


def test_trainable_image_teaches_the_untied_image_encoder_through_the_frozen_transformer(tmp_path, scenes):
    """train --trainable image: only the untied image encoder trains, from the loss of the model's own loop (the
    gradient passes the frozen transformer and, straight through, the prefix's quantiser); the prefix values are the
    quantised ones as before; the loss falls; a model that reads images with its depth encoder is refused, and so is a
    latent cache (it would keep stale image latents)."""
    import copy

    from depthart.checkpoint import save_checkpoint
    from depthart.errors import DepthartError
    from depthart.model import untie_image_encoder
    from depthart.sampling import Expected

    torch.manual_seed(7)
    tied = randomize_(DepthART(get_preset("tiny"))).eval()
    save_checkpoint(tied, tmp_path / "tied.safetensors", {})
    start = untie_image_encoder(copy.deepcopy(tied), tied.cfg.vae_num_res_blocks).eval()
    save_checkpoint(start, tmp_path / "start.safetensors", {})
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 6)))

    # the straight-through prefix has the quantised values, and a gradient only when the image encoder trains
    for p in start.vae.image_encoder.parameters():
        p.requires_grad_(True)
    lat = start.image_latents(batch["image"])
    with torch.no_grad():
        assert torch.equal(lat, start.image_latents(batch["image"]))
    lat.sum().backward()
    assert start.vae.image_encoder.conv_in.weight.grad.abs().sum() > 0
    start.requires_grad_(False)
    assert not start.image_latents(batch["image"]).requires_grad

    cfg = TrainConfig(out_dir=str(tmp_path / "run"), method="depthart", own_inputs="expect", preset=None,
                      init=str(tmp_path / "start.safetensors"), data=f"rendered:{scenes}", trainable="image",
                      code_mse=1.0, depth_silog=1.0, lr=2e-3, batch_size=6, steps=30, save_every=30, seed=3)
    t = Trainer(cfg, log=None)
    trained = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("vae.image_encoder.", "vae.image_quant_conv.")) for n in trained)

    def loss_of(model):
        with torch.no_grad():
            return depthart_loss(model.eval(), batch, code_mse=1.0, depth_silog=1.0, inputs="expect")[0].item()

    before = loss_of(start)
    t.fit()
    after = loss_of(t.model)
    assert after < before, (before, after)
    s0 = start.state_dict()
    moved = [k for k, v in t.model.state_dict().items() if not torch.equal(v, s0[k])]
    assert moved and all(k.startswith(("vae.image_encoder.", "vae.image_quant_conv.")) for k in moved), moved
    with torch.no_grad():  # the prediction changed through the prefix alone
        assert not torch.equal(t.model.generate(batch["image"][:2], Expected()), start.generate(batch["image"][:2], Expected()))

    with pytest.raises(DepthartError, match="untie"):
        Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "r2"), "init": str(tmp_path / "tied.safetensors"),
                               "steps": 1}), log=None)
    with pytest.raises(DepthartError, match="cache"):
        TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "r3"), "cache_latents": True})
    with pytest.raises(DepthartError, match="trainable"):
        TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "r4"), "trainable": "decoder+image"})


def test_image_unet_gives_the_images_a_unet_depth_guess_and_trains_it_alone(tmp_path, scenes):
    """train-vqvae --image-unet: the images first go through a fresh U-Net (ModelConfig.image_unet) whose map the
    depth encoder reads; only the U-Net trains, on its own map (SILog + L1), and its loss falls; the depth side, the
    decoder and the transformer stay bit for bit; the checkpoint records the U-Net and loads back; a second segment
    trains the same U-Net on; wrong combinations are refused with clear errors."""
    from depthart.checkpoint import load_checkpoint, read_config, save_checkpoint
    from depthart.errors import DepthartError
    from depthart.model import add_image_unet, untie_image_encoder
    from depthart.train.vqvae_train import image_unet_loss

    torch.manual_seed(8)
    start = randomize_(DepthART(get_preset("tiny"))).eval()
    save_checkpoint(start, tmp_path / "start.safetensors", {})
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 6)))
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), method="vqvae", preset=None, init=str(tmp_path / "start.safetensors"),
                      data=f"rendered:{scenes}", image_unet=True, lr=3e-3, batch_size=6, steps=40, save_every=40, seed=4)
    t = Trainer(cfg, log=None)
    assert t.model.cfg.image_unet and t.model.vae.untied
    trained = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("vae.image_unet.") for n in trained)

    def unet_loss(model):
        import copy

        model = copy.deepcopy(model)
        model.vae.image_unet.train()  # batch statistics (the running ones start at the identity); on a copy
        with torch.no_grad():
            return image_unet_loss(model.vae, batch["image"], batch["depth"], batch["valid"])[0].item()

    before = unet_loss(t.model)
    t.fit()
    after = unet_loss(t.model)
    assert after < 0.8 * before, (before, after)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert {"unet_silog", "unet_l1"} <= set(rows[-1])
    s0 = start.state_dict()
    for k, v in t.model.state_dict().items():
        if not k.startswith("vae.image_unet."):
            assert torch.equal(v, s0[k]), k
    model = t.model.eval()
    with torch.no_grad():  # the prefix is the depth encoder's latent of the U-Net's map
        guess = (model.vae.image_depth(batch["image"]) * 2 - 1).expand(-1, 3, -1, -1)
        torch.testing.assert_close(model.vae.encode_image(batch["image"]), model.vae.encode(guess))
    saved = tmp_path / "run" / MODEL_FILE
    assert read_config(saved).image_unet == model.cfg.image_unet
    back = load_checkpoint(saved).eval()
    with torch.no_grad():
        assert torch.equal(back.image_latents(batch["image"]), model.image_latents(batch["image"]))
    back.requires_grad_(False)  # as a transformer run holds it: grad mode on, the U-Net frozen
    assert not back.image_latents(batch["image"]).requires_grad
    back.vae.image_unet.requires_grad_(True)  # --trainable image: the gradient reaches the U-Net
    back.image_latents(batch["image"]).sum().backward()
    assert back.vae.image_unet.out.weight.grad.abs().sum() > 0
    t2 = Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "run2"), "init": str(saved), "steps": 1}),
                 log=None)
    for k, v in back.state_dict().items():
        assert torch.equal(t2.model.state_dict()[k], v), k  # the trained U-Net, not a fresh one

    for bad in ({"method": "var"}, {"image_to_depth": 1.0}, {"untie_image_encoder": 2}, {"init": None}, {"ema": 0.99}):
        with pytest.raises(DepthartError, match="image_unet"):
            TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "x"), **bad})
    # resuming with other options than the run's: a clear error, not a traceback from the optimizer
    with pytest.raises(DepthartError, match="--image-unet"):
        Trainer(TrainConfig(**{**cfg.__dict__, "image_unet": False}), resume=True, log=None)
    with pytest.raises(DepthartError, match="--resume: the run used"):
        Trainer(TrainConfig(**{**cfg.__dict__, "method": "var", "image_unet": False, "trainable": "image",
                               "steps": 80}), resume=True, log=None)
    with pytest.raises(ValueError, match="divisible"):
        get_preset("tiny").replace(image_unet=(4,) * 8)
    assert not back.vae.training and not add_image_unet(back).vae.training  # a model in eval mode stays there
    with pytest.raises(ValueError, match="U-Net"):
        untie_image_encoder(back, 2)
    r = CliRunner().invoke(main, ["train-vqvae", "-o", str(tmp_path / "c"), "--data", f"rendered:{scenes}",
                                  "--image-unet", "--steps", "1"])
    assert r.exit_code != 0 and "--init" in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(main, ["train-vqvae", "--init", str(tmp_path / "start.safetensors"), "-o", str(tmp_path / "c2"),
                                  "--data", f"rendered:{scenes}", "--image-unet", "--steps", "2", "--batch-size", "6"])
    assert r.exit_code == 0, r.output  # the README's command, as the CLI runs it
    assert read_config(tmp_path / "c2" / MODEL_FILE).image_unet


def test_silog_loss_is_zero_for_the_target_blind_to_scale_and_to_invalid_pixels():
    from depthart.train.vqvae_train import silog_loss

    g = torch.Generator().manual_seed(0)
    p, t = torch.rand(3, 8, 8, generator=g) + 0.05, torch.rand(3, 8, 8, generator=g) + 0.05
    assert silog_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)
    assert silog_loss(p, t).item() > 0.01
    k = torch.tensor([1.0, 3.0, 10.0]).view(3, 1, 1)  # each map its own scale: the means are per map
    torch.testing.assert_close(silog_loss(k * p, t, lam=1.0), silog_loss(p, t, lam=1.0))
    valid = torch.rand(3, 8, 8, generator=g) > 0.3
    q = torch.where(valid, p, torch.full_like(p, 50.0))  # wild values where nothing is valid
    torch.testing.assert_close(silog_loss(q, t, valid), silog_loss(p, t, valid))
    assert not torch.allclose(silog_loss(q, t), silog_loss(p, t))


def test_depth_silog_teaches_the_encoder_through_the_frozen_decoder(tmp_path, scenes):
    """train-vqvae --image-to-depth W --depth-silog S: the depth that the frozen decoder makes of an image's
    latent moves toward the target in log space; decoder and codebook stay as they were."""
    from depthart.checkpoint import save_checkpoint
    from depthart.errors import DepthartError
    from depthart.train.vqvae_train import decoded_silog

    torch.manual_seed(4)
    start = randomize_(DepthART(get_preset("tiny")))
    save_checkpoint(start, tmp_path / "start.safetensors", {})
    with pytest.raises(DepthartError, match="image_to_depth > 0 as well"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="vqvae", preset=None, init=str(tmp_path / "start.safetensors"),
                    depth_silog=1.0)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), method="vqvae", preset=None, init=str(tmp_path / "start.safetensors"),
                      data=f"rendered:{scenes}", image_to_depth=0.1, depth_silog=1.0, depth_pin=1.0, lr=3e-3,
                      batch_size=6, steps=40, save_every=40)
    torch.manual_seed(5)
    t = Trainer(cfg, log=None)
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 6)))

    def image_silog(vae):
        with torch.no_grad():
            return decoded_silog(vae, vae.encode(batch["image"]), batch["depth"], batch["valid"]).item()

    before = image_silog(t.model.vae)
    t.fit()
    after = image_silog(t.model.vae)
    assert after < 0.5 * before, (before, after)
    # the same run without the log term (the latent MSE alone): the log term is what brings it down
    torch.manual_seed(5)
    control = Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "control"), "depth_silog": 0.0}), log=None)
    control.fit()
    without = image_silog(control.model.vae)
    assert after < 0.7 * without, (after, without)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert {"img_to_depth", "depth_silog", "depth_pin"} <= set(rows[-1])
    sd, s0 = t.model.state_dict(), start.state_dict()
    for k, v in sd.items():
        if not k.startswith(("vae.encoder.", "vae.quant_conv.")):
            assert torch.equal(v, s0[k]), k


def test_expected_latent_is_the_latent_the_expect_sampler_builds(model):
    """losses.expected_latent (what --depth-silog decodes in the transformer methods) is the `expect` sampler's
    f_hat for the same logits, and the VQ-VAE's own accumulation of the codes when the logits are one-hot."""
    from depthart.sampling import Expected
    from depthart.train.losses import expected_latent

    seen = []

    def recording(k, logits, codebook):
        seen.append(logits.clone())
        return Expected()(k, logits, codebook)

    S = model.cfg.image_size
    g = torch.Generator().manual_seed(3)
    f_hat = model.generate(torch.rand(2, 3, S, S, generator=g) * 2 - 1, recording)
    torch.testing.assert_close(expected_latent(model, seen), f_hat, rtol=1e-5, atol=1e-5)
    q = model.vae.quantize
    idx, f_hats = q.tokenize(model.vae.encode(torch.rand(2, 3, S, S, generator=g) * 2 - 1))
    peaked = [torch.nn.functional.one_hot(i, q.embedding.num_embeddings).float() * 1e4 for i in idx]
    torch.testing.assert_close(expected_latent(model, peaked), f_hats[-1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="all"):
        expected_latent(model, seen[:-1])


def _expect_map_score(model, batch, loss_fn) -> float:
    """loss_fn (silog_loss, absrel_loss) of the depth the `expect` sampler predicts for the batch, against its target."""
    from depthart.sampling import Expected
    from depthart.train.vqvae_train import depth_of

    with torch.no_grad():
        return loss_fn(model.predict_normalized(batch["image"], Expected())[:, 0], depth_of(batch["depth"]),
                       batch["valid"]).item()


@pytest.mark.parametrize("method,inputs", [("var", "greedy"), ("depthart", "greedy"), ("depthart", "expect")])
def test_depth_silog_trains_the_transformer_on_its_decoded_depth(tmp_path, scenes, method, inputs):
    """train --depth-silog S: the depth decoded from what the `expect` sampler builds moves toward the target in
    log space, more than the same run without the term; the VQ-VAE stays frozen."""
    from depthart.errors import DepthartError
    from depthart.train.vqvae_train import silog_loss

    with pytest.raises(DepthartError, match="rec_loss"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="depthart", rec_loss=True, depth_silog=1.0)
    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 6)))

    def predicted_silog(m):
        return _expect_map_score(m, batch, silog_loss)

    def run(name, weight):
        cfg = TrainConfig(out_dir=str(tmp_path / name), method=method, preset="tiny", data=f"rendered:{scenes}",
                          depth_silog=weight, lr=3e-3, batch_size=6, steps=25, save_every=25, seed=2,
                          own_inputs=inputs)
        t = Trainer(cfg, log=None)
        vae0 = {k: v.clone() for k, v in t.model.vae.state_dict().items()}
        first = predicted_silog(t.model)
        t.fit()
        for k, v in t.model.vae.state_dict().items():
            assert torch.equal(v, vae0[k]), k
        return first, predicted_silog(t.model), [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")]

    before, after, rows = run("silog", 10.0)
    _, without, _ = run("control", 0.0)
    assert "depth_silog" in rows[-1]
    assert after < 0.85 * before and after < 0.85 * without, (before, after, without)


def test_a_trained_decoder_learns_to_decode_the_models_own_latents(tmp_path, scenes):
    """train --trainable decoder: only post_quant_conv and the decoder move, and the depth decoded from the latents
    the `expect` loop builds (the transformer and the encoder as they were) moves toward the target; with
    transformer+decoder both move; the latent cache's key ignores the decoder; bad combinations are refused."""
    from depthart.errors import DepthartError
    from depthart.train.latent_cache import vae_hash
    from depthart.train.vqvae_train import absrel_loss, silog_loss

    batch = next(iter(make_loader(RenderedDataset(scenes), 16, 6)))

    def predicted_silog(m):
        return _expect_map_score(m, batch, silog_loss)

    def predicted_absrel(m):
        return _expect_map_score(m, batch, absrel_loss)

    def run(name, trainable, steps, silog=10.0, absrel=0.0, score=predicted_silog):
        cfg = TrainConfig(out_dir=str(tmp_path / name), method="depthart", own_inputs="expect", preset="tiny",
                          data=f"rendered:{scenes}", depth_silog=silog, depth_absrel=absrel, lr=3e-3, batch_size=6,
                          steps=steps, save_every=steps, seed=2, trainable=trainable)
        t = Trainer(cfg, log=None)
        before = {k: v.clone() for k, v in t.model.state_dict().items()}
        first = score(t.model)
        t.fit()
        moved = {k for k, v in t.model.state_dict().items() if not torch.equal(v, before[k])}
        return t.model, first, score(t.model), moved

    decoder = ("vae.post_quant_conv.", "vae.decoder.")
    model, first, last, moved = run("decoder", "decoder", 25)
    assert moved and all(k.startswith(decoder) for k in moved), sorted(moved)[:5]
    assert any(k.startswith("vae.decoder.") for k in moved) and any(k.startswith("vae.post_quant_conv.") for k in moved)
    assert last < 0.85 * first, (first, last)
    _, first, last, moved = run("absrel", "decoder", 25, silog=0.0, absrel=10.0, score=predicted_absrel)
    assert moved and all(k.startswith(decoder) for k in moved) and last < 0.98 * first, (first, last)  # L1-like: slow
    _, _, _, moved = run("both", "transformer+decoder", 2)
    assert any(k.startswith(decoder) for k in moved) and any(not k.startswith("vae.") for k in moved)
    assert not any(k.startswith(("vae.encoder.", "vae.quant")) for k in moved)

    key = vae_hash(model)
    with torch.no_grad():
        model.vae.decoder.conv_out.weight.add_(1.0)
        assert vae_hash(model) == key  # the cache holds encoder outputs only
        model.vae.encoder.conv_in.weight.add_(1.0)
        assert vae_hash(model) != key

    with pytest.raises(DepthartError, match="depth_silog"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="var", trainable="decoder")
    with pytest.raises(DepthartError, match="trainable"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="vqvae", trainable="decoder", depth_silog=1.0,
                    image_to_depth=1.0, init="x.safetensors")
    with pytest.raises(DepthartError, match="trainable"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="var", trainable="encoder", depth_silog=1.0)
    r = CliRunner().invoke(main, ["train", "--method", "var", "--preset", "tiny", "-o", str(tmp_path / "c"),
                                  "--trainable", "decoder"])
    assert r.exit_code != 0 and "depth_silog" in r.output and "Traceback" not in r.output, r.output
    with pytest.raises(DepthartError, match="depth_absrel"):
        TrainConfig(out_dir=str(tmp_path / "x"), method="vqvae", depth_absrel=1.0)


def test_absrel_loss_is_the_metrics_median_scaled_absrel():
    """vqvae_train.absrel_loss on a batch of maps == the mean of depthart.metrics' median-scaled AbsRel per map
    (maps in range, so the metric's clipping does nothing), and it differs from SILog's symmetry: a map twice too far
    costs more than one half too near."""
    from depthart.metrics import evaluate
    from depthart.train.vqvae_train import absrel_loss

    g = torch.Generator().manual_seed(5)
    target = torch.rand(3, 12, 12, generator=g) * 0.9 + 0.1
    pred = target * torch.exp(torch.randn(3, 12, 12, generator=g) * 0.3)
    valid = torch.rand(3, 12, 12, generator=g) > 0.2
    want = np.mean([evaluate(p.numpy(), t.numpy() * 7.0, v.numpy(), alignment="median_scale",
                             depth_range=(1e-3, 200))["abs_rel"] for p, t, v in zip(pred, target, valid)])
    assert absrel_loss(pred, target, valid).item() == pytest.approx(want, rel=1e-5)
    flat, near = torch.ones(1, 4, 4), torch.ones(1, 4, 4)
    far = flat.clone()
    far[0, :2], near[0, :2] = 2.0, 0.5  # part of the map off by x2 / x0.5; the median stays on the rest
    far[0, 0], near[0, 0] = 1.0, 1.0
    assert absrel_loss(far, flat).item() > absrel_loss(near, flat).item() > 0

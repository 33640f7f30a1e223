import numpy as np
import pytest
import torch

from depthart.model import DepthART, KVCache
from depthart.sampling import Expected, Greedy, MeanOfSamples, TopKTopP, filter_top_k_top_p


def cached_logits(model, img, tokens):
    """The inference loop's computation, fed with given tokens: per-scale logits from the KV-cached steps."""
    cfg = model.cfg
    B = img.shape[0]
    q = model.vae.quantize
    cache = KVCache(cfg, B)
    cond = model.cond(model.null_labels(B))
    x = torch.cat([model.image_prefix(img), model.start_tokens(cond)], 1)
    f_hat = torch.zeros(B, cfg.cvae, cfg.patch_nums[-1], cfg.patch_nums[-1])
    out = []
    for k, (begin, _) in enumerate(cfg.step_ranges()):
        p = cfg.patch_nums[k]
        out.append(model.step(x, cond, cache, begin)[:, -p * p:])
        f_hat = q.accumulate(k, f_hat, q.embed(k, tokens[k]))
        if k + 1 < cfg.num_scales:
            x = model.embed_scale(k + 1, q.next_input(k + 1, f_hat))
    return torch.cat(out, 1), cache


@pytest.mark.parametrize("attn", ["l2norm", "plain"])
def test_cached_loop_equals_masked_full_forward(tiny_cfg, attn):
    from conftest import randomize_

    torch.manual_seed(0)
    model = randomize_(DepthART(tiny_cfg.replace(attn=attn)).eval())
    img = torch.rand(2, 3, tiny_cfg.image_size, tiny_cfg.image_size) * 2 - 1
    with torch.no_grad():
        _, greedy_tokens = model.generate(img, return_tokens=True)
        random_tokens = [torch.randint(0, tiny_cfg.vocab_size, (2, p * p)) for p in tiny_cfg.patch_nums]
        for tokens in (greedy_tokens, random_tokens):
            full = model.forward_teacher(img, tokens)
            cached, _ = cached_logits(model, img, tokens)
            assert full.shape == (2, tiny_cfg.tokens_per_map, tiny_cfg.vocab_size)
            assert full.abs().max() > 1e-2  # not trivially zero
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
        # greedy generation picks the argmax of the teacher-forced logits on its own tokens
        full = model.forward_teacher(img, greedy_tokens)
        assert torch.equal(full.argmax(-1), torch.cat(greedy_tokens, 1))


def test_the_mask_is_what_depthart_specifies(tiny_model):
    cfg = tiny_model.cfg
    L = cfg.tokens_per_map
    allowed = tiny_model.block_causal_bias() == 0  # (2L, 2L)
    img_rows = allowed[:L]
    assert img_rows[:, :L].all()  # image tokens see the whole image
    assert img_rows[:, L:L + cfg.first_l].all() and not img_rows[:, L + cfg.first_l:].any()  # + start token only
    for k, (b, e) in enumerate(cfg.scale_ranges()):
        rows = allowed[L + b:L + e]
        assert rows[:, :L].all()  # depth sees the whole image
        assert rows[:, L:L + e].all() and not rows[:, L + e:].any()  # block-causal over scales


def test_kv_cache_is_allocated_once_and_written_in_place(tiny_model):
    cfg = tiny_model.cfg
    img = torch.rand(1, 3, cfg.image_size, cfg.image_size) * 2 - 1
    tokens = [torch.zeros(1, p * p, dtype=torch.long) for p in cfg.patch_nums]
    cache = KVCache(cfg, 1)
    ptrs = [t.data_ptr() for t in cache.k + cache.v]
    shapes = [t.shape for t in cache.k]
    with torch.no_grad():
        cond = tiny_model.cond(tiny_model.null_labels(1))
        x = torch.cat([tiny_model.image_prefix(img), tiny_model.start_tokens(cond)], 1)
        begin, end = cfg.step_ranges()[0]
        tiny_model.step(x, cond, cache, begin)
    assert [t.data_ptr() for t in cache.k + cache.v] == ptrs
    assert [t.shape for t in cache.k] == shapes == [(1, cfg.heads, cfg.seq_len, cfg.head_dim)] * cfg.depth
    assert cache.k[0][:, :, :end].abs().sum() > 0 and cache.k[0][:, :, end:].abs().sum() == 0
    del tokens


def test_gradients_flow_through_cached_keys(tiny_model):
    """DepthART training: later scales' losses reach earlier scales' activations via the cache."""
    cfg = tiny_model.cfg
    tiny_model.train()
    img = torch.rand(1, 3, cfg.image_size, cfg.image_size) * 2 - 1
    cache = KVCache(cfg, 1)
    cond = tiny_model.cond(tiny_model.null_labels(1))
    x0 = torch.cat([tiny_model.image_prefix(img), tiny_model.start_tokens(cond)], 1)
    x0.retain_grad()
    tiny_model.step(x0, cond, cache, 0)
    b1, _ = cfg.step_ranges()[1]
    x1 = tiny_model.embed_scale(1, torch.randn(1, cfg.patch_nums[1] ** 2, cfg.cvae))
    tiny_model.step(x1, cond, cache, b1).logsumexp(-1).sum().backward()
    assert x0.grad is not None and x0.grad.abs().sum() > 0


def test_greedy_predict_is_deterministic_and_at_input_size(tiny_model, sample_photo):
    d1 = tiny_model.predict(sample_photo)
    d2 = tiny_model.predict(str(sample_photo))
    assert d1.dtype == np.float32 and d1.shape == (267, 400)
    assert d1.min() >= 0 and d1.max() <= 1 and d1.std() > 0
    np.testing.assert_array_equal(d1, d2)
    from PIL import Image

    d3 = tiny_model.predict(np.asarray(Image.open(sample_photo)))
    np.testing.assert_array_equal(d1, d3)


def test_samplers_are_seeded_and_respect_filters(tiny_model):
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 64) * 3
    codebook = torch.randn(64, 8)
    i1, _ = TopKTopP(top_k=4, seed=7)(0, logits, codebook)
    i2, _ = TopKTopP(top_k=4, seed=7)(0, logits, codebook)
    assert torch.equal(i1, i2)
    top4 = logits.topk(4, -1).indices
    assert (i1[..., None] == top4).any(-1).all()
    # top-k 1 is greedy
    assert torch.equal(TopKTopP(top_k=1, seed=0)(0, logits, codebook)[0], Greedy()(0, logits, codebook)[0])
    # top-p keeps the smallest prefix of the sorted distribution reaching p
    lg = torch.log(torch.tensor([[[0.5, 0.3, 0.15, 0.05]]]))
    kept = torch.isfinite(filter_top_k_top_p(lg, top_p=0.7))
    assert kept.tolist() == [[[True, True, False, False]]]
    # mean of N samples averages code vectors of the drawn tokens
    idx, h = MeanOfSamples(num_samples=3, top_k=2, top_p=0.0, seed=3)(0, logits, codebook)
    assert h.shape == (2, 5, 8)
    top2 = codebook[logits.topk(2, -1).indices]  # (2,5,2,8)
    lo, hi = top2.min(2).values, top2.max(2).values
    assert ((h >= lo - 1e-6) & (h <= hi + 1e-6)).all()
    # the expected code vector: the probability-weighted mean of the codebook; argmax indices
    idx, h = Expected()(0, logits, codebook)
    assert torch.equal(idx, logits.argmax(-1))
    torch.testing.assert_close(h, torch.einsum("blv,vc->blc", logits.softmax(-1), codebook))
    sharp = Expected()(0, logits * 1e4, codebook)[1]
    torch.testing.assert_close(sharp, codebook[idx])  # a confident model: greedy
    flat = Expected()(0, torch.zeros(1, 1, 64), codebook)[1]
    torch.testing.assert_close(flat[0, 0], codebook.mean(0))
    # the same seed gives the same depth map through the whole model
    img = torch.rand(1, 3, 16, 16) * 2 - 1
    a = tiny_model.predict_normalized(img, MeanOfSamples(seed=5, top_k=10))
    b = tiny_model.predict_normalized(img, MeanOfSamples(seed=5, top_k=10))
    assert torch.equal(a, b)

import torch
import torch.nn.functional as F

from depthart.config import get_preset
from depthart.vqvae import VQVAE


def test_state_dict_names_and_shapes_are_vars():
    with torch.device("meta"):
        vae = VQVAE(get_preset("d16"))
    sd = vae.state_dict()
    assert len(sd) == 324
    expect = {
        "encoder.conv_in.weight": (160, 3, 3, 3),
        "encoder.down.2.block.0.nin_shortcut.weight": (320, 160, 1, 1),
        "encoder.down.4.attn.1.qkv.weight": (1920, 640, 1, 1),
        "encoder.mid.attn_1.proj_out.weight": (640, 640, 1, 1),
        "encoder.conv_out.weight": (32, 640, 3, 3),
        "decoder.up.4.attn.2.qkv.weight": (1920, 640, 1, 1),
        "decoder.up.3.block.0.nin_shortcut.weight": (320, 640, 1, 1),
        "decoder.up.1.upsample.conv.weight": (160, 160, 3, 3),
        "decoder.conv_out.weight": (3, 160, 3, 3),
        "quant_conv.weight": (32, 32, 3, 3),
        "post_quant_conv.weight": (32, 32, 3, 3),
        "quantize.embedding.weight": (4096, 32),
        "quantize.quant_resi.qresi_ls.3.weight": (32, 32, 3, 3),
        "quantize.ema_vocab_hit_SV": (10, 4096),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert "decoder.up.0.upsample.conv.weight" not in sd  # no upsample at level 0


def test_tokenize_is_a_residual_decomposition(tiny_model):
    vae, cfg = tiny_model.vae, tiny_model.cfg
    img = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 2 - 1
    with torch.no_grad():
        f = vae.encode(img)
        assert f.shape == (2, cfg.cvae, cfg.patch_nums[-1], cfg.patch_nums[-1])
        idx, f_hats = vae.quantize.tokenize(f)
        assert [t.shape for t in idx] == [(2, p * p) for p in cfg.patch_nums]
        # the f_hats are cumulative: rebuilding from the tokens gives the last one
        assert torch.allclose(vae.quantize.idx_to_fhat(idx), f_hats[-1], atol=1e-6)
        # each scale's tokens are the nearest codes of the unexplained residual
        prev = torch.zeros_like(f)
        for k, p in enumerate(cfg.patch_nums):
            rest = f - prev
            rest = F.interpolate(rest, size=(p, p), mode="area") if k < cfg.num_scales - 1 else rest
            d = torch.cdist(rest.flatten(2).transpose(1, 2), vae.quantize.embedding.weight[None].expand(2, -1, -1))
            assert torch.equal(d.argmin(-1), idx[k])
            prev = f_hats[k]
        rec = vae.img_to_reconstruction(img)
        assert rec.shape == img.shape and rec.abs().max() <= 1


def test_teacher_inputs_are_next_scale_inputs_of_the_gt_pyramid(tiny_model):
    q, cfg = tiny_model.vae.quantize, tiny_model.cfg
    idx = [torch.randint(0, cfg.vocab_size, (2, p * p)) for p in cfg.patch_nums]
    x = q.teacher_inputs(idx)
    assert x.shape == (2, cfg.tokens_per_map - cfg.first_l, cfg.cvae)
    f_hat = torch.zeros(2, cfg.cvae, cfg.patch_nums[-1], cfg.patch_nums[-1])
    parts = []
    for k in range(cfg.num_scales - 1):
        f_hat = q.accumulate(k, f_hat, q.embed(k, idx[k]))
        parts.append(q.next_input(k + 1, f_hat))
    assert torch.equal(torch.cat(parts, 1), x)

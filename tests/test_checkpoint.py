import pytest
import torch

from depthart.checkpoint import (import_var, load, load_checkpoint, model_sampler, read_config, read_sampler,
                                 save_checkpoint)
from depthart.errors import DepthartError


def var_format_files(model, folder):
    """Write the model's weights the way FoundationVision/VAR saves them: vae.pth and var.pth."""
    sd = model.state_dict()
    vae = {k[len("vae."):]: v.clone() for k, v in sd.items() if k.startswith("vae.")}
    var = {k: v.clone() for k, v in sd.items() if not k.startswith("vae.")}
    L = model.cfg.tokens_per_map
    var["lvl_1L"] = model.lvl_1L.clone()  # buffers VAR's state dict carries
    var["attn_bias_for_masking"] = torch.zeros(1, 1, L, L)
    torch.save(vae, folder / "vae.pth")
    torch.save(var, folder / "var.pth")
    return folder / "vae.pth", folder / "var.pth"


def test_save_load_round_trip_is_exact(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind
    assert read_config(path) == tiny_model.cfg
    loaded = load_checkpoint(path)
    assert not loaded.training
    for (k, a), (k2, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert torch.equal(loaded.lvl_1L, tiny_model.lvl_1L) and torch.equal(loaded.block_id_T, tiny_model.block_id_T)
    img = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded.predict_normalized(img), tiny_model.predict_normalized(img))


def test_load_by_preset_warns_and_bad_paths_fail_clearly(tmp_path):
    with pytest.warns(UserWarning, match="random weights"):
        m = load("tiny")
    assert m.cfg.depth == 2
    with pytest.raises(DepthartError, match="no such checkpoint file"):
        load(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DepthartError, match="not a safetensors checkpoint"):
        load(bad)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(DepthartError, match="not a depthart checkpoint"):
        load(tmp_path / "other.safetensors")


def test_a_checkpoint_names_the_sampler_its_numbers_were_made_with(tiny_model, tmp_path):
    plain, expect = tmp_path / "plain.safetensors", tmp_path / "expect.safetensors"
    save_checkpoint(tiny_model, plain)
    save_checkpoint(tiny_model, expect, extra_metadata={"sampler": "expect", "method": "depthart"})
    assert read_sampler(plain) == "greedy" and read_sampler(expect) == "expect"
    assert load_checkpoint(plain).default_sampler == "greedy"
    assert load_checkpoint(expect).default_sampler == "expect" and load(expect).default_sampler == "expect"
    with pytest.warns(UserWarning, match="random weights"):
        assert load("tiny").default_sampler == "greedy"
    assert model_sampler(tiny_model) == "greedy"  # built, not loaded: greedy
    # a value other than greedy / expect is refused, naming the file, on reading and on writing
    from safetensors.torch import save_file

    meta = {"format": "depthart", "format_version": "1", "config": tiny_model.cfg.to_json(), "sampler": "topk"}
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, bad, metadata=meta)
    for fn in (read_sampler, load_checkpoint, load):
        with pytest.raises(DepthartError, match=r"bad\.safetensors: metadata names sampler 'topk'; .*greedy or expect"):
            fn(bad)
    with pytest.raises(DepthartError, match="sampler 'Expect'"):
        save_checkpoint(tiny_model, tmp_path / "x.safetensors", extra_metadata={"sampler": "Expect"})
    assert not (tmp_path / "x.safetensors").exists()


def test_import_var_infers_sizes_and_reproduces_the_model(tiny_model, tmp_path):
    vae, var = var_format_files(tiny_model, tmp_path)
    with pytest.raises(DepthartError, match="--patch-nums"):  # 21 positions: not VAR's 680 schedule
        import_var(vae, var)
    out = tmp_path / "imported.safetensors"
    imported = import_var(vae, var, out, patch_nums=tiny_model.cfg.patch_nums)
    assert imported.cfg == tiny_model.cfg.replace(drop_path_rate=0.0)
    reloaded = load_checkpoint(out)
    labels = torch.tensor([3, tiny_model.cfg.num_classes])
    idx = [torch.randint(0, 64, (2, p * p)) for p in tiny_model.cfg.patch_nums]
    with torch.no_grad():
        ref = tiny_model.forward_class(labels, idx)
        torch.testing.assert_close(imported.forward_class(labels, idx), ref, atol=0, rtol=0)
        torch.testing.assert_close(reloaded.forward_class(labels, idx), ref, atol=0, rtol=0)


def test_import_var_plain_attention_drops_the_scale(tiny_model, tmp_path):
    vae, var = var_format_files(tiny_model, tmp_path)
    m = import_var(vae, var, patch_nums=tiny_model.cfg.patch_nums, attn="plain")
    assert m.cfg.attn == "plain"
    assert not any("scale_mul" in k for k in m.state_dict())
    # a checkpoint without the scale imports as plain, and refuses l2norm
    sd = torch.load(var)
    torch.save({k: v for k, v in sd.items() if "scale_mul" not in k}, tmp_path / "plain.pth")
    assert import_var(vae, tmp_path / "plain.pth", patch_nums=(1, 2, 4)).cfg.attn == "plain"
    with pytest.raises(DepthartError, match="l2norm"):
        import_var(vae, tmp_path / "plain.pth", patch_nums=(1, 2, 4), attn="l2norm")
    # heads are not recorded without the scale: VAR's rule (heads = depth) unless given
    assert import_var(vae, tmp_path / "plain.pth", patch_nums=(1, 2, 4), heads=4).cfg.heads == 4
    with pytest.raises(DepthartError, match="not divisible"):
        import_var(vae, tmp_path / "plain.pth", patch_nums=(1, 2, 4), heads=3)
    with pytest.raises(DepthartError, match="2 attention heads"):
        import_var(vae, var, patch_nums=(1, 2, 4), heads=4)


def test_import_var_rejects_mismatched_or_foreign_files(tiny_model, tmp_path):
    vae, var = var_format_files(tiny_model, tmp_path)
    with pytest.raises(DepthartError, match="not a VAR VQ-VAE"):
        import_var(var, var, patch_nums=(1, 2, 4))  # transformer given as VQ-VAE
    with pytest.raises(DepthartError, match="not a VAR transformer"):
        import_var(vae, vae, patch_nums=(1, 2, 4))
    sd = torch.load(vae)
    sd["quantize.embedding.weight"] = torch.zeros(64, 16)  # a 16-channel codebook: not this transformer's pair
    torch.save(sd, tmp_path / "vae16.pth")
    with pytest.raises(DepthartError, match="not a pair"):
        import_var(tmp_path / "vae16.pth", var, patch_nums=(1, 2, 4))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DepthartError, match="cannot read"):
        import_var(tmp_path / "junk.pth", var)
    with pytest.raises(DepthartError, match="no such file"):
        import_var(tmp_path / "missing.pth", var)
    out = tmp_path / "never.safetensors"
    sd = torch.load(var)
    sd["blocks.0.ffn.fc1.bias"] = torch.zeros(7)
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(DepthartError, match="wrong shape"):
        import_var(vae, tmp_path / "broken.pth", out, patch_nums=(1, 2, 4))
    assert not out.exists() and not any(p.name.startswith(".never") for p in tmp_path.iterdir())


def test_import_var_reads_var_d16_sizes_from_shapes():
    """The full-size path: VAR-d16 / vae_ch160v4096z32 layouts are recognised from tensor shapes alone."""
    from depthart.checkpoint import var_fields, vae_fields
    from depthart.config import get_preset
    from depthart.model import DepthART

    with torch.device("meta"):
        m = DepthART(get_preset("d16"))
    sd = m.state_dict()
    vf = vae_fields({k[4:]: v for k, v in sd.items() if k.startswith("vae.")}, "vae")
    tf = var_fields({k: v for k, v in sd.items() if not k.startswith("vae.")}, "var")
    assert vf == dict(vocab_size=4096, cvae=32, vae_ch=160, vae_ch_mult=(1, 1, 2, 2, 4), vae_num_res_blocks=2,
                      share_quant_resi=4)
    assert (tf["depth"], tf["width"], tf["heads"], tf["attn"], tf["patch_nums"]) == (
        16, 1024, 16, "l2norm", (1, 2, 3, 4, 5, 6, 8, 10, 13, 16))


def test_a_fresh_process_loads_and_predicts(tiny_checkpoint, tiny_model, sample_photo, tmp_path):
    """Loading builds the model on the meta device first; nothing may be cached from there."""
    import subprocess
    import sys

    import numpy as np

    code = (f"import numpy as np, depthart; m = depthart.load(r'{tiny_checkpoint}'); "
            f"np.save(r'{tmp_path / 'd.npy'}', m.predict(r'{sample_photo}'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), tiny_model.predict(sample_photo), atol=1e-6)

"""The DepthART release's own checkpoint (github.com/bulatko/DepthART): import, direct loading, parity.

tests/release/ holds files made by the release's own code (tests/release/generate.py, docs/release_parity.md):
per configuration its `model.safetensors` as the release's trainer writes it (xz-compressed, byte for
byte) and its greedy tokens, depth and mean-of-5 draws for two fixed images.
"""

import json
import lzma
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from depthart.checkpoint import import_release, is_release_file, load, read_config
from depthart.cli import main
from depthart.errors import DepthartError
from depthart.preprocess import to_model_input
from depthart.sampling import Greedy, MeanOfSamples

FIXTURES = Path(__file__).parent / "release"
HEADS = {"release256": None, "release64": 4}  # release64 has 4 heads in 2 blocks: not VAR's heads = depth
DEPTH_TOL = 1e-4 + 0.5 / 65535  # the fixture stores depth as round(depth * 65535)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """{name: {"file": the release's model.safetensors, "converted": via the CLI, "ref": its npz, "meta": ...}}"""
    root = tmp_path_factory.mktemp("release")
    out = {}
    for name, heads in HEADS.items():
        folder = root / name
        folder.mkdir()
        path = folder / "model.safetensors"
        path.write_bytes(lzma.decompress((FIXTURES / f"{name}.safetensors.xz").read_bytes()))
        conv = folder / "converted.safetensors"
        args = ["import-release", str(path), "-o", str(conv)] + (["--heads", str(heads)] if heads else [])
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        ref = dict(np.load(FIXTURES / f"{name}.npz"))
        out[name] = {"file": path, "converted": conv, "ref": ref, "meta": json.loads(str(ref["meta"])),
                     "cli_output": r.output}
    return out


def model_input(ref, size):
    """The fixture's images as the model sees them (Pillow bicubic to size x size, [-1, 1])."""
    return torch.from_numpy(np.stack([to_model_input(Image.fromarray(a), size) for a in ref["images"]]))


def ref_depth(ref, key):
    return ref[key].astype(np.float64) / 65535


def test_the_fixture_files_are_laid_out_as_the_release_writes_them(release):
    from safetensors import safe_open

    for name, r in release.items():
        with safe_open(str(r["file"]), "pt") as f:
            assert f.metadata() == {"format": "pt"}
            keys = list(f.keys())
            dtypes = {str(f.get_slice(k).get_dtype()) for k in keys if k != "lvl_1L"}
            assert f.get_slice("lvl_1L").get_dtype() == "I64" and dtypes == {"F32"}
            assert float(f.get_tensor("normalizer.alpha")) == 2 and float(f.get_tensor("normalizer.beta")) == -1
        # accelerate dropped the 10 vae_quant_proxy.* aliases of vae_proxy.quantize.*
        assert len(keys) == r["meta"]["num_tensors_in_file"] == r["meta"]["num_tensors_in_memory"] - 10
        assert not any(k.startswith("vae_quant_proxy.") for k in keys) and is_release_file(r["file"])
        assert not any("scale_mul" in k or "attn_bias" in k for k in keys)


@pytest.mark.parametrize("name,route", [("release256", "converted"), ("release256", "direct"),
                                        ("release64", "converted")])
def test_greedy_tokens_and_depth_equal_the_release(release, name, route, one_thread):
    r = release[name]
    model = load(r["converted"] if route == "converted" else r["file"])
    c = r["meta"]["config"]
    assert (model.cfg.depth, model.cfg.width, model.cfg.heads, model.cfg.attn, list(model.cfg.patch_nums)) == (
        c["depth"], c["width"], c["heads"], "plain", c["patch_nums"])
    x = model_input(r["ref"], model.cfg.image_size)
    f_hat, tokens = model.generate(x, Greedy(), return_tokens=True)
    assert np.array_equal(torch.cat(tokens, 1).numpy(), r["ref"]["greedy_tokens"])
    depth = model.decode_depth(f_hat)[:, 0].numpy()
    assert np.abs(depth - ref_depth(r["ref"], "greedy_depth_u16")).max() < DEPTH_TOL


def test_direct_loading_assumes_heads_equal_depth(release):
    """The file does not record heads: direct loading uses VAR's rule; other counts need import-release --heads."""
    assert load(release["release64"]["file"]).cfg.heads == 2
    assert read_config(release["release64"]["converted"]).heads == 4


class ReleaseDraws(MeanOfSamples):
    """The release's mean of 5 code vectors, fed the tokens the release drew (recorded per scale)."""

    def __init__(self, draws_BLn, patch_nums):
        super().__init__()
        self.left = list(torch.from_numpy(draws_BLn.astype(np.int64)).split([p * p for p in patch_nums], dim=1))

    def draw(self, logits_BlV, n):
        assert n == 5
        return self.left.pop(0)


@pytest.mark.parametrize("name", list(HEADS))
def test_mean_of_5_matches_the_release_given_its_draws(release, name, one_thread):
    r = release[name]
    model = load(r["converted"])
    x = model_input(r["ref"], model.cfg.image_size)
    want = ref_depth(r["ref"], "mean_depth_u16")
    replay = ReleaseDraws(r["ref"]["mean_draws"], model.cfg.patch_nums)
    assert np.abs(model.predict_normalized(x, replay)[:, 0].numpy() - want).max() < DEPTH_TOL
    assert not replay.left
    # the same seed draws the same tokens: the release samples from the global generator after
    # torch.manual_seed(seed), MeanOfSamples(seed=seed) from its own generator (depends on torch's multinomial)
    sampler = MeanOfSamples(5, 900, 0.9, seed=r["meta"]["seed"])
    drawn, draw = [], sampler.draw
    sampler.draw = lambda logits, n: drawn.append(draw(logits, n)) or drawn[-1]
    depth = model.predict_normalized(x, sampler)[:, 0].numpy()
    assert np.array_equal(torch.cat(drawn, 1).numpy(), r["ref"]["mean_draws"])
    assert np.abs(depth - want).max() < DEPTH_TOL


def test_import_release_reports_what_it_did_and_rejects_other_files(release, tmp_path):
    from safetensors.torch import load_file, save_file

    r = release["release64"]
    assert "4 heads" in r["cli_output"] and "scales 1,2,3,4" in r["cli_output"]
    assert read_config(r["converted"]).patch_nums == (1, 2, 3, 4)  # read from lvl_1L
    state = load_file(r["file"])
    # saved from several processes: every name under module.; the aliases kept (e.g. save_file, not save_state)
    ddp = {f"module.{k}": v for k, v in state.items()}
    ddp.update({f"module.vae_quant_proxy.{k[len('vae_proxy.quantize.'):]}": v.clone()
                for k, v in state.items() if k.startswith("vae_proxy.quantize.")})
    save_file(ddp, tmp_path / "ddp.safetensors", metadata={"format": "pt"})
    out = tmp_path / "ddp_converted.safetensors"
    res = CliRunner().invoke(main, ["import-release", str(tmp_path / "ddp.safetensors"), "-o", str(out),
                                    "--heads", "4"])
    assert res.exit_code == 0, res.output
    assert "stripped the 'module.' prefix" in res.output and "10 vae_quant_proxy.* tensors" in res.output
    a, b = load(out).state_dict(), load(r["converted"]).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.warns(UserWarning, match="stripped the 'module.' prefix"):
        assert load(tmp_path / "ddp.safetensors").cfg.patch_nums == (1, 2, 3, 4)

    def fails(path, *extra, match):
        res = CliRunner().invoke(main, ["import-release", str(path), "-o", str(tmp_path / "x.safetensors"), *extra])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1 and match in res.output, res.output
        assert not (tmp_path / "x.safetensors").exists()

    bad = dict(state)
    del bad["normalizer.alpha"], bad["lvl_1L"]
    bad["blocks.0.attn.scale_mul_1H11"] = torch.zeros(1, 2, 1, 1)
    save_file(bad, tmp_path / "bad.safetensors")
    fails(tmp_path / "bad.safetensors", match="missing lvl_1L, normalizer.alpha; unexpected blocks.0.attn.scale_mul_1H11")
    bad = dict(state)
    bad["vae_quant_proxy.embedding.weight"] = state["vae_proxy.quantize.embedding.weight"] + 1
    save_file(bad, tmp_path / "alias.safetensors")
    fails(tmp_path / "alias.safetensors", match="vae_quant_proxy.embedding.weight should be an alias")
    bad = dict(state)
    bad["extra.weight"] = torch.zeros(3)
    save_file(bad, tmp_path / "extra.safetensors")
    fails(tmp_path / "extra.safetensors", match="1 unexpected (e.g. extra.weight)")
    fails(r["file"], "--heads", "3", match="not divisible by 3 heads")
    fails(r["file"], "--patch-nums", "1,2,4", match="schedule (1, 2, 4) has 21 tokens")
    fails(r["converted"], match="already a depthart checkpoint")
    torch.save(state, tmp_path / "var.pth")
    fails(tmp_path / "var.pth", match="a PyTorch pickle (.pth)")
    fails(tmp_path / "missing.safetensors", match="no such file")
    res = CliRunner().invoke(main, ["import-release", str(r["file"]), "-o", str(r["converted"])])
    assert res.exit_code == 1 and "--overwrite" in res.output
    # depthart.load points a .pth at import-var
    with pytest.raises(DepthartError, match="PyTorch .pth file.*depthart import-var"):
        load(tmp_path / "var.pth")
    with pytest.raises(DepthartError, match="already a depthart checkpoint"):
        import_release(r["converted"])


def test_export_run_and_bench_on_the_imported_checkpoint(release, tmp_path):
    r = release["release64"]
    bundle = tmp_path / "bundle"
    res = CliRunner().invoke(main, ["export", "-c", str(r["converted"]), "-o", str(bundle)])
    assert res.exit_code == 0, res.output
    photo = tmp_path / "in.png"
    Image.fromarray(r["ref"]["images"][0]).save(photo)
    res = CliRunner().invoke(main, ["run", str(bundle), str(photo), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    want = load(r["converted"]).predict(photo)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "in.npy"), want, atol=1e-4)
    res = CliRunner().invoke(main, ["bench", "-c", str(r["converted"]), "--bundle", str(bundle), "--runs", "1",
                                    "--warmup", "0"])
    assert res.exit_code == 0 and "vs eager" in res.output, res.output

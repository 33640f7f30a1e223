import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from depthart.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("cmd", [[], ["predict"], ["import-var"]])
def test_help(cmd):
    r = run(*cmd, "-h")
    assert r.exit_code == 0 and "Usage: depthart" in r.output


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and "0.1.0" in r.output


def test_predict_real_photo_writes_three_outputs(tiny_checkpoint, sample_photo, tmp_path):
    out = tmp_path / "out"
    r = run("predict", sample_photo, "-o", out, "-c", tiny_checkpoint)
    assert r.exit_code == 0, r.output
    d = np.load(out / "coffee.npy")
    assert d.shape == (267, 400) and d.dtype == np.float32 and 0 <= d.min() < d.max() <= 1
    png = np.asarray(Image.open(out / "coffee.png"))
    assert png.dtype == np.uint16 and png.shape == (267, 400)
    np.testing.assert_array_equal(png, (np.clip(d, 0, 1) * 65535 + 0.5).astype(np.uint16))
    assert Image.open(out / "coffee_color.png").size == (400, 267)
    # the same run again refuses to overwrite, and leaves the files as they were
    before = (out / "coffee.npy").read_bytes()
    r = run("predict", sample_photo, "-o", out, "-c", tiny_checkpoint)
    assert r.exit_code == 1 and "--overwrite" in r.output and "Traceback" not in r.output
    assert (out / "coffee.npy").read_bytes() == before
    assert run("predict", sample_photo, "-o", out, "-c", tiny_checkpoint, "--overwrite").exit_code == 0


def test_bad_inputs_are_named_and_the_rest_still_processed(tiny_checkpoint, sample_photo, tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.png").write_text("not an image")
    (bad / "cut.jpg").write_bytes(sample_photo.read_bytes()[:2000])
    Image.open(sample_photo).save(bad / "good.png")
    out = tmp_path / "out"
    r = run("predict", bad, tmp_path / "missing.jpg", "-o", out, "-c", tiny_checkpoint)
    assert r.exit_code == 1
    for name in ("empty.jpg", "notes.png", "cut.jpg", "missing.jpg"):
        assert f"{name}:" in r.output
    assert "Traceback" not in r.output
    assert "1 of 5 images" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["good.npy", "good.png", "good_color.png"]


def test_predict_follows_the_sampler_the_checkpoint_names(tiny_model, sample_photo, tmp_path):
    from depthart.checkpoint import save_checkpoint
    from depthart.sampling import Expected

    ckpt = tmp_path / "expect.safetensors"
    save_checkpoint(tiny_model, ckpt, extra_metadata={"sampler": "expect"})
    r = run("predict", sample_photo, "-o", tmp_path / "auto", "-c", ckpt)
    assert r.exit_code == 0, r.output
    assert "sampler: expect (recommended by the checkpoint" in r.output
    expect, greedy = tiny_model.predict(sample_photo, Expected()), tiny_model.predict(sample_photo)
    assert np.abs(expect - greedy).max() > 1e-3
    np.testing.assert_allclose(np.load(tmp_path / "auto" / "coffee.npy"), expect, atol=1e-6, rtol=0)
    r = run("predict", sample_photo, "-o", tmp_path / "greedy", "-c", ckpt, "--sampler", "greedy")
    assert r.exit_code == 0, r.output
    assert "sampler:" not in r.output
    np.testing.assert_allclose(np.load(tmp_path / "greedy" / "coffee.npy"), greedy, atol=1e-6, rtol=0)
    r = run("predict", "-h")
    assert "[default: auto]" in r.output and "checkpoint recommends" in r.output


def test_predict_with_a_preset_warns_about_random_weights(sample_photo, tmp_path):
    r = run("predict", sample_photo, "-o", tmp_path, "-c", "tiny")
    assert r.exit_code == 0 and "random weights" in r.output


def test_predict_user_errors_have_no_traceback(sample_photo, tmp_path):
    r = run("predict", sample_photo, "-o", tmp_path, "-c", tmp_path / "none.safetensors")
    assert r.exit_code == 1 and "no such checkpoint" in r.output and "Traceback" not in r.output
    r = run("predict", tmp_path, "-o", tmp_path / "o", "-c", "tiny")  # an empty folder
    assert r.exit_code == 1 and "no input images" in r.output


def test_predict_without_checkpoint_uses_the_shipped_default(sample_photo, tmp_path):
    from depthart.checkpoint import read_config
    from depthart.config import DEFAULT_CHECKPOINT, get_preset

    # the `small` preset, its images read through a U-Net depth guess and the depth encoder (train-vqvae --image-unet,
    # a later stage of the recipe: the preset itself starts shared, as VAR's VQ-VAE, docs/experiments.md section 17)
    assert read_config(DEFAULT_CHECKPOINT) == get_preset("small").replace(image_unet=(12, 24, 48, 96, 192))
    r = run("predict", sample_photo, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert "random weights" not in r.output
    depth = np.load(tmp_path / "coffee.npy")
    assert depth.shape == (267, 400) and depth.dtype == np.float32
    assert depth.std() > 0.02  # a trained model's map has structure, not one value


def test_import_var_command(tiny_model, tmp_path):
    from test_checkpoint import var_format_files

    vae, var = var_format_files(tiny_model, tmp_path)
    out = tmp_path / "m.safetensors"
    r = run("import-var", "--vae", vae, "--var", var, "-o", out, "--patch-nums", "1,2,4")
    assert r.exit_code == 0, r.output
    assert "depth 2, width 128" in r.output and out.is_file()
    r = run("import-var", "--vae", vae, "--var", var, "-o", out, "--patch-nums", "1,2,4")
    assert r.exit_code == 1 and "exists" in r.output
    r = run("import-var", "--vae", vae, "--var", var, "-o", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "--patch-nums" in r.output and "Traceback" not in r.output
    r = run("import-var", "--vae", vae, "--var", var, "-o", tmp_path / "y.safetensors", "--patch-nums", "a,b")
    assert r.exit_code == 2 and "comma-separated" in r.output

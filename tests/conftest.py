import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "coffee.jpg"  # a real photo (scikit-image's "coffee", CC0), 400x267


@pytest.fixture(scope="session")
def tiny_cfg():
    from depthart.config import get_preset

    return get_preset("tiny")


@pytest.fixture
def tiny_model(tiny_cfg):
    import torch

    from depthart.model import DepthART

    torch.manual_seed(0)
    model = DepthART(tiny_cfg).eval()
    randomize_(model)
    return model


def randomize_(model, seed=0):
    """Give every weight a random value that keeps activations O(1), so tests exercise real math.

    (VAR's init leaves AdaLN gates ~1e-5 and would make the transformer blocks almost identity.)
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale_mul_1H11"):
                p.copy_(torch.log(torch.full_like(p, 4.0)) + 0.3 * torch.randn(p.shape, generator=g))
            elif p.ndim >= 2:
                fan_in = p[0].numel() if not name.endswith("embedding.weight") else 1
                p.copy_(torch.randn(p.shape, generator=g) / max(fan_in, 1) ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture
def sample_photo():
    assert SAMPLE.is_file(), SAMPLE
    return SAMPLE


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    from depthart.checkpoint import save_checkpoint

    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A tiny random-weight checkpoint exported through the CLI, with --trt (which needs TensorRT).

    {"model", "dir", "ckpt", "result" (the CLI result), "root"}; shared by export and runtime tests.
    """
    import torch
    from click.testing import CliRunner

    from depthart.checkpoint import save_checkpoint
    from depthart.cli import main
    from depthart.config import get_preset
    from depthart.model import DepthART

    torch.manual_seed(0)
    model = randomize_(DepthART(get_preset("tiny")).eval())
    root = tmp_path_factory.mktemp("export")
    ckpt = root / "tiny.safetensors"
    save_checkpoint(model, ckpt)
    out = root / "bundle"
    result = CliRunner().invoke(main, ["export", "-c", str(ckpt), "-o", str(out), "--trt"])
    return {"model": model, "dir": out, "ckpt": ckpt, "result": result, "root": root}


@pytest.fixture(scope="session")
def tiny_expect_bundle(tmp_path_factory):
    """tiny_bundle's weights in a checkpoint whose metadata names the `expect` sampler, and its bundle.

    {"model" (loaded from "ckpt": default_sampler "expect"), "ckpt", "dir"}.
    """
    import torch

    from depthart.checkpoint import load_checkpoint, save_checkpoint
    from depthart.config import get_preset
    from depthart.export.bundle import export_bundle
    from depthart.model import DepthART

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("expect")
    ckpt = root / "tiny_expect.safetensors"
    save_checkpoint(randomize_(DepthART(get_preset("tiny")).eval()), ckpt, extra_metadata={"sampler": "expect"})
    model = load_checkpoint(ckpt)
    export_bundle(model, root / "bundle", source=str(ckpt), check=False)
    return {"model": model, "ckpt": ckpt, "dir": root / "bundle"}


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    """The `small` preset with random weights, exported with the parity check."""
    import torch

    from depthart.config import get_preset
    from depthart.export.bundle import export_bundle
    from depthart.model import DepthART

    torch.manual_seed(0)
    model = randomize_(DepthART(get_preset("small")).eval(), seed=1)
    out = tmp_path_factory.mktemp("small") / "bundle"
    export_bundle(model, out, source="small")
    return {"model": model, "dir": out}


def pytest_report_header(config):
    return f"depthart tests from {REPO} (cwd {os.getcwd()})"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny ops: more threads only add contention on a shared CPU
    (10-100x slower with 2 threads under load)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

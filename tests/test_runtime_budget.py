"""Depth under a latency budget: the runtime stops after K scales (`max_scale`) or before a scale that would pass
`budget_ms`, and decodes the latent built so far; `depthart run --max-scale/--budget-ms`."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from depthart.cli import main
from depthart.errors import DepthartError
from depthart.runtime import DepthRuntime


def model_depth_after(model, image, K):
    """The PyTorch model's depth decoded from its f_hat after K scales of `generate` (greedy), at the image's size."""
    import torch

    from depthart.preprocess import load_image, resize_depth, to_model_input

    img = load_image(image)
    x = torch.from_numpy(to_model_input(img, model.cfg.image_size))[None]
    q = model.vae.quantize
    f_hats, accumulate = [], q.accumulate
    q.accumulate = lambda k, f, h: f_hats.append(accumulate(k, f, h)) or f_hats[-1]  # f_hat after each scale
    try:
        with torch.no_grad():
            model.generate(x)
            # the image prefix tokenises the image latent first: the scale loop's f_hats are the last ones
            depth = model.decode_depth(f_hats[len(f_hats) - model.cfg.num_scales + K - 1])[0, 0].numpy()
    finally:
        del q.accumulate
    # (zeroing the code vectors of scales >= K is not the same: phi_k(0) = r * bias_k adds a constant per scale)
    return resize_depth(depth, img.height, img.width)


def test_max_scale_decodes_the_models_f_hat_after_k_scales(tiny_bundle, sample_photo, one_thread):
    rt = DepthRuntime(tiny_bundle["dir"], threads=1)
    N = rt.num_scales
    maps = []
    for K in range(1, N + 1):
        res = rt.predict(sample_photo, max_scale=K)
        assert res.scales == K == rt.last_scales and len(res.tokens) == K
        assert "decoder" in res.timings and f"step_{K - 1}" in res.timings and f"step_{K}" not in res.timings
        np.testing.assert_allclose(res.depth, model_depth_after(tiny_bundle["model"], sample_photo, K), atol=1e-4,
                                   rtol=0)
        maps.append(res.depth)
    np.testing.assert_array_equal(maps[-1], rt.predict(sample_photo).depth)  # K = all: the usual prediction
    assert not np.allclose(maps[0], maps[-1], atol=1e-3)  # the coarse map really is another one
    # the runtime's default applies to plain predict() calls (videos, bags); an argument overrides it
    rt1 = DepthRuntime(tiny_bundle["dir"], threads=1, max_scale=1)
    np.testing.assert_array_equal(rt1.predict(sample_photo).depth, maps[0])
    assert rt1.predict(sample_photo, max_scale=N).scales == N


def test_budget_stops_early_and_a_huge_one_uses_all_scales(tiny_bundle, sample_photo):
    rt = DepthRuntime(tiny_bundle["dir"], threads=1)
    N = rt.num_scales
    first = rt.predict(sample_photo, budget_ms=1e-3)  # no measurements yet: guesses from the prefix and scale 0
    assert first.scales == 1
    assert rt.predict(sample_photo, budget_ms=1e7).scales == N
    assert rt.predict(sample_photo, budget_ms=1e-3).scales == 1  # the first scale always runs
    assert rt.predict_batch([sample_photo] * 2, budget_ms=1e7)[1].scales == N  # a batch size of its own
    plan = rt._plans[1]
    assert set(plan.seconds) == {"prefix", "decoder", *range(N)}


@pytest.mark.parametrize("kw, msg", [({"max_scale": 0}, "outside 1..3"), ({"max_scale": 4}, "outside 1..3"),
                                     ({"budget_ms": 0}, "above 0"), ({"budget_ms": -5.0}, "above 0")])
def test_bad_stopping_values(tiny_bundle, sample_photo, kw, msg):
    rt = DepthRuntime(tiny_bundle["dir"])
    with pytest.raises(DepthartError, match=msg):
        rt.predict(sample_photo, **kw)
    with pytest.raises(DepthartError, match=msg):
        DepthRuntime(tiny_bundle["dir"], **kw)


def run(*args):
    return CliRunner().invoke(main, ["run", *[str(a) for a in args]])


def test_run_max_scale_and_budget(tiny_bundle, sample_photo, tmp_path):
    r = run(tiny_bundle["dir"], sample_photo, "-o", tmp_path / "a", "--max-scale", "1")
    assert r.exit_code == 0, r.output
    assert "scales: the first 1 of 3 (--max-scale)" in r.output
    want = DepthRuntime(tiny_bundle["dir"]).predict(sample_photo, max_scale=1).depth
    np.testing.assert_allclose(np.load(tmp_path / "a" / "coffee.npy"), want, atol=1e-6)
    # a video with --stats: every JSON line carries the scales used
    path = str(tmp_path / "clip.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (40, 32))
    for i in range(2):
        w.write(np.full((32, 40, 3), 60 * i, np.uint8))
    w.release()
    r = run(tiny_bundle["dir"], path, "-o", tmp_path / "b", "--budget-ms", "1e6", "--stats", tmp_path / "s.jsonl")
    assert r.exit_code == 0, r.output
    assert "scales: as many of 3 as fit in 1e+06 ms per frame (--budget-ms)" in r.output
    lines = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [x["scales"] for x in lines] == [3, 3]
    for args, msg in ((["--max-scale", "0"], "max scale 0 is outside 1..3"), (["--max-scale", "9"], "outside 1..3"),
                      (["--budget-ms", "0"], "must be above 0"), (["--budget-ms", "-1"], "must be above 0")):
        r = run(tiny_bundle["dir"], sample_photo, "-o", tmp_path / "c", *args)
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output

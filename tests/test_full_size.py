"""Full-size (VAR-d16) checks with random weights: minutes on a 2-core CPU, so marked slow."""

import pytest
import torch

from depthart.config import get_preset
from depthart.model import DepthART

pytestmark = pytest.mark.slow


def test_d16_cached_loop_equals_masked_full_forward():
    from test_model import cached_logits

    torch.manual_seed(0)
    model = DepthART(get_preset("d16")).eval()
    img = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        _, tokens = model.generate(img, return_tokens=True)
        full = model.forward_teacher(img, tokens)
        cached, _ = cached_logits(model, img, tokens)
    assert full.shape == (1, 680, 4096)
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)
    assert torch.equal(full.argmax(-1), torch.cat(tokens, 1))


def test_d16_predict_on_a_real_photo(sample_photo):
    torch.manual_seed(0)
    model = DepthART(get_preset("d16")).eval()
    depth = model.predict(sample_photo)
    assert depth.shape == (267, 400) and 0 <= depth.min() <= depth.max() <= 1


def test_d16_exports_with_parity(tmp_path):
    """Random-weight VAR-d16: about 6 minutes and 6.6 GB peak RSS on a 2-core CPU."""
    from depthart.export.bundle import export_bundle

    torch.manual_seed(0)
    m = export_bundle(DepthART(get_preset("d16")).eval(), tmp_path / "d16", source="d16")
    assert m["parity"]["passed"], m["parity"]["failures"]
    assert m["parity"]["tokens_identical"] and m["parity"]["depth_max_abs"] <= 1e-4
    assert len(m["steps"]) == 10 and m["steps"][0]["tokens"] == 681
    step_mb = m["graphs"]["step"]["bytes"] / 1e6
    assert 1200 < step_mb < 1300  # the transformer's 310M fp32 weights, once

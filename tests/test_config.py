import numpy as np
import pytest
import torch

from depthart.config import PRESETS, ModelConfig, get_preset
from depthart.model import DepthART


def test_presets_are_valid_and_follow_the_var_size_rule():
    for name, cfg in PRESETS.items():
        assert cfg.width % cfg.heads == 0, name
        assert cfg.image_size == cfg.patch_nums[-1] * cfg.downsample
    for d in (16, 20, 24, 30):
        cfg = get_preset(f"d{d}")
        assert (cfg.depth, cfg.width, cfg.heads, cfg.head_dim) == (d, 64 * d, d, 64)
        assert cfg.tokens_per_map == 680 and cfg.image_size == 256 and cfg.seq_len == 1360


def test_schedule_offsets_derive_from_patch_nums():
    cfg = get_preset("d16")
    ranges = cfg.scale_ranges()
    assert ranges[0] == (0, 1) and ranges[-1] == (424, 680)
    steps = cfg.step_ranges()
    # step 0: 680 image tokens + the start token; then one scale per step; the cache ends at 1360
    assert steps[0] == (0, 681)
    assert [e - b for b, e in steps[1:]] == [p * p for p in cfg.patch_nums[1:]]
    assert steps[-1][1] == 1360
    assert all(steps[i][1] == steps[i + 1][0] for i in range(len(steps) - 1))


@pytest.mark.parametrize("name", ["tiny", "small", "d16"])
def test_phi_index_matches_var_ticks(name):
    cfg = get_preset(name)
    n = cfg.share_quant_resi
    ticks = np.linspace(1 / 3 / n, 1 - 1 / 3 / n, n) if n == 4 else np.linspace(1 / 2 / n, 1 - 1 / 2 / n, n)
    K = cfg.num_scales
    assert [cfg.phi_index(k) for k in range(K)] == [int(np.argmin(np.abs(ticks - k / (K - 1)))) for k in range(K)]
    if name == "d16":  # scales 0,1 -> phi0; 2,3,4 -> phi1; 5,6 -> phi2; 7,8,9 -> phi3
        assert [cfg.phi_index(k) for k in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def test_config_json_round_trip_and_validation():
    cfg = get_preset("small")
    assert ModelConfig.from_dict(__import__("json").loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="attn"):
        cfg.replace(attn="flash")
    with pytest.raises(ValueError, match="divisible"):
        cfg.replace(heads=5)
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"depth": 2, "colour": "red"})
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("d17")


@pytest.mark.parametrize("name,expected", [("d16", 310_283_520), ("d20", 600_917_136),
                                           ("d24", 1_033_399_360), ("d30", 2_010_020_356)])
def test_var_sizes_have_vars_exact_parameter_counts(name, expected):
    with torch.device("meta"):
        model = DepthART(get_preset(name))
    assert model.num_transformer_params() == expected
    assert sum(p.numel() for p in model.vae.parameters()) == 108_948_355  # vae_ch160v4096z32

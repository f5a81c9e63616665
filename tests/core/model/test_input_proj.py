from __future__ import annotations

import pytest
import torch

from uninext_core.model.input_proj import InputProjection


def test_input_projection_shapes_and_strides():
    torch.manual_seed(0)
    proj = InputProjection(in_channels=(16, 24, 40), d_model=64)
    c3, c4, c5 = torch.randn(2, 16, 12, 20), torch.randn(2, 24, 6, 10), torch.randn(2, 40, 3, 5)
    out = proj([c3, c4, c5])
    assert [tuple(o.shape) for o in out] == [(2, 64, 12, 20), (2, 64, 6, 10), (2, 64, 3, 5), (2, 64, 2, 3)]


def test_input_projection_state_dict_keys_match_official_layout():
    proj = InputProjection(in_channels=(512, 1024, 2048), d_model=256)
    shapes = {k: tuple(v.shape) for k, v in proj.state_dict().items()}
    assert shapes["levels.0.0.weight"] == (256, 512, 1, 1)
    assert shapes["levels.2.0.weight"] == (256, 2048, 1, 1)
    assert shapes["levels.3.0.weight"] == (256, 2048, 3, 3)
    assert shapes["levels.3.1.bias"] == (256,)
    assert len(shapes) == 16


def test_input_projection_init_zero_bias_and_group_norm_output():
    torch.manual_seed(0)
    proj = InputProjection(in_channels=(8, 8, 8), d_model=32)
    for block in proj.levels:
        assert torch.count_nonzero(block[0].bias) == 0
    out = proj([torch.randn(1, 8, 4, 4)] * 3)[0]
    # GroupNorm(32) over 32 channels = per-channel normalisation over the 4x4 map.
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(1, 32), atol=1e-5)


@pytest.mark.parametrize("d_model", [0, 48])
def test_input_projection_rejects_d_model_not_multiple_of_32(d_model):
    with pytest.raises(ValueError, match="multiple of 32"):
        InputProjection(in_channels=(8, 8, 8), d_model=d_model)

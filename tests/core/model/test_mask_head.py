"""Dynamic mask head: dynamic 1×1 convs against a per-pixel direct formula, aligned bilinear, locations, wiring."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uninext_core.model.mask_head import (
    MaskHeadSmallConv,
    dynamic_mask_logits,
    dynamic_param_count,
    mask_locations,
    masks_for_queries,
)
from uninext_core.model.outputs import RawOutputs
from uninext_core.ops.resize import aligned_bilinear


def test_param_count_is_169_for_the_official_layout():
    assert dynamic_param_count(in_channels=8, channels=8, num_layers=3) == 169
    # (4 + 2)·8 + 8·8·2 + 8 weights, 8·3 + 1 biases.
    assert dynamic_param_count(in_channels=4, channels=8, num_layers=4) == 48 + 128 + 8 + 25


def test_locations_are_cell_centres_in_pixels():
    torch.testing.assert_close(mask_locations(2, 3), torch.tensor(
        [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0], [12.0, 12.0], [20.0, 12.0]]))


def test_aligned_bilinear_hand_computed():
    x = torch.tensor([[[[0.0, 4.0]]]])
    torch.testing.assert_close(aligned_bilinear(x, 2), torch.tensor([[[[0.0, 0.0, 2.0, 4.0], [0.0, 0.0, 2.0, 4.0]]]]))
    torch.testing.assert_close(aligned_bilinear(x, 1), x)
    with pytest.raises(ValueError, match="integer >= 1"):
        aligned_bilinear(x, 0)


def direct_dynamic_convs(features, params, reference_px):
    """Per query and pixel: relu(W0 [rel; f] + b0) -> relu(W1 · + b1) -> W2 · + b2, params [w0 w1 w2 b0 b1 b2]."""
    B, _, H, W = features.shape
    K = params.shape[1]
    out = torch.zeros(B, K, H, W, dtype=features.dtype)
    for b in range(B):
        for k in range(K):
            p = params[b, k]
            w0, w1, w2 = p[:80].reshape(8, 10), p[80:144].reshape(8, 8), p[144:152].reshape(1, 8)
            b0, b1, b2 = p[152:160], p[160:168], p[168:169]
            for i in range(H):
                for j in range(W):
                    rel = reference_px[b, k] - torch.tensor([8.0 * j + 4, 8.0 * i + 4], dtype=features.dtype)
                    x = torch.cat([rel, features[b, :, i, j]])
                    h = torch.relu(w0 @ x + b0)
                    h = torch.relu(w1 @ h + b1)
                    out[b, k, i, j] = (w2 @ h + b2)[0]
    return out


def random_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 8, 3, 4, generator=g, dtype=torch.float64)
    params = torch.randn(2, 3, 169, generator=g, dtype=torch.float64) * 0.3
    reference_px = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 32
    return features, params, reference_px


def test_dynamic_convs_equal_direct_formula_at_stride_8():
    features, params, reference_px = random_inputs(0)
    logits = dynamic_mask_logits(features, params, reference_px, out_stride=8)
    torch.testing.assert_close(logits, direct_dynamic_convs(features, params, reference_px), rtol=1e-10, atol=1e-10)


def test_stride_4_output_is_aligned_bilinear_of_stride_8():
    features, params, reference_px = random_inputs(1)
    logits = dynamic_mask_logits(features, params, reference_px)
    assert logits.shape == (2, 3, 6, 8)
    expected = aligned_bilinear(direct_dynamic_convs(features, params, reference_px).reshape(6, 1, 3, 4), 2)
    torch.testing.assert_close(logits, expected.reshape(2, 3, 6, 8), rtol=1e-10, atol=1e-10)


def test_masks_for_queries_gathers_the_chosen_queries():
    features, params, reference_px = random_inputs(2)
    zeros = torch.zeros(2, 3, 1, dtype=torch.float64)
    raw = RawOutputs(token_logits=zeros, pooled_logits=zeros, iou_logits=zeros, boxes_cxcywh=zeros.expand(2, 3, 4),
                     embeddings=zeros[..., :0], mask_params=params, mask_features=features,
                     mask_reference_px=reference_px)
    index = torch.tensor([[2, 0], [1, 1]])
    masks = masks_for_queries(raw, index)
    expected = dynamic_mask_logits(features, torch.stack([params[0, [2, 0]], params[1, [1, 1]]]),
                                   torch.stack([reference_px[0, [2, 0]], reference_px[1, [1, 1]]]))
    torch.testing.assert_close(masks, expected)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        masks_for_queries(raw, torch.tensor([0, 1]))


def test_wrong_parameter_width_is_rejected():
    features, params, reference_px = random_inputs(3)
    with pytest.raises(ValueError, match="169"):
        dynamic_mask_logits(features, params[..., :100], reference_px)


def test_mask_feature_branch_wiring():
    torch.manual_seed(4)
    head = MaskHeadSmallConv(d_model=16, mid_dim=8, out_dim=4)
    s8, s16, s32 = torch.randn(1, 16, 8, 10), torch.randn(1, 16, 4, 5), torch.randn(1, 16, 2, 3)
    x = F.relu(F.conv2d(s32, head.lay3.weight, head.lay3.bias, padding=1))
    x = F.relu(F.conv2d(s16 + F.interpolate(x, size=(4, 5)), head.lay4.weight, head.lay4.bias, padding=1))
    x = F.relu(F.conv2d(s8 + F.interpolate(x, size=(8, 10)), head.jia_dcn.weight, head.jia_dcn.bias, padding=1))
    x = F.relu(F.conv2d(x, head.lay1.weight, head.lay1.bias, padding=1))
    expected = F.relu(F.conv2d(x, head.lay2.weight, head.lay2.bias, padding=1))
    torch.testing.assert_close(head([s8, s16, s32]), expected)
    assert expected.shape == (1, 4, 8, 10)
    assert torch.count_nonzero(head.lay1.bias) == 0


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning", "ignore::UserWarning")
def test_dynamic_convs_export_to_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    features, params, reference_px = (t.float() for t in random_inputs(5))

    class Wrapper(torch.nn.Module):
        def forward(self, f, p, r):
            return dynamic_mask_logits(f, p, r)

    path = tmp_path / "dyn.onnx"
    torch.onnx.export(Wrapper(), (features, params, reference_px), str(path), opset_version=17, dynamo=False,
                      input_names=["f", "p", "r"])
    (got,) = onnxruntime.InferenceSession(str(path)).run(
        None, {"f": features.numpy(), "p": params.numpy(), "r": reference_px.numpy()})
    assert abs(got - dynamic_mask_logits(features, params, reference_px).numpy()).max() < 1e-4

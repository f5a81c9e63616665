"""MSDeformAttn against a naive per-sample, per-head, per-point bilinear loop (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from uninext_core.model.deform_attn import MSDeformAttn, level_start_index, ms_deform_attn_sample

SHAPES = [(5, 6), (3, 4), (2, 1)]


def naive_bilinear(value_map: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """value_map (H, W, D); (x, y) in [0, 1]; align_corners=False, zeros outside."""
    H, W, D = value_map.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(D, dtype=value_map.dtype)
    for xi, wx in ((x0, x0 + 1 - px), (x0 + 1, px - x0)):
        for yi, wy in ((y0, y0 + 1 - py), (y0 + 1, py - y0)):
            if 0 <= xi < W and 0 <= yi < H:
                out = out + wx * wy * value_map[yi, xi]
    return out


def naive_sample(value, shapes, locations, weights):
    """value (B, S, M, D), locations (B, Q, M, L, P, 2), weights (B, Q, M, L, P) -> (B, Q, M·D)."""
    B, _, M, D = value.shape
    _, Q, _, _, P, _ = locations.shape
    starts = level_start_index(shapes)
    out = torch.zeros(B, Q, M * D, dtype=value.dtype)
    for b in range(B):
        for q in range(Q):
            for m in range(M):
                acc = torch.zeros(D, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    value_map = value[b, starts[lvl]:starts[lvl] + h * w, m].reshape(h, w, D)
                    for p in range(P):
                        x, y = locations[b, q, m, lvl, p].tolist()
                        acc = acc + weights[b, q, m, lvl, p] * naive_bilinear(value_map, x, y)
                out[b, q, m * D:(m + 1) * D] = acc
    return out


def randomised_module(seed: int) -> MSDeformAttn:
    torch.manual_seed(seed)
    module = MSDeformAttn(d_model=8, n_levels=3, n_heads=2, n_points=2).double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module


def test_level_start_index_is_cumulative_area():
    assert level_start_index(SHAPES) == [0, 30, 42]


def test_sampling_core_equals_naive_loop_inside_and_outside_the_map():
    g = torch.Generator().manual_seed(0)
    S = sum(h * w for h, w in SHAPES)
    value = torch.randn(2, S, 2, 3, generator=g, dtype=torch.float64)
    # Locations from -0.2 to 1.2 cover cells, borders and out-of-map samples (zeros padding).
    locations = torch.rand(2, 4, 2, 3, 2, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(2, 4, 2, 3, 2, generator=g, dtype=torch.float64)
    fast = ms_deform_attn_sample(value, SHAPES, locations, weights)
    torch.testing.assert_close(fast, naive_sample(value, SHAPES, locations, weights), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("box_references", [False, True])
def test_module_equals_naive_formula_with_padding(box_references: bool):
    module = randomised_module(1)
    g = torch.Generator().manual_seed(2)
    B, Q, S = 2, 3, sum(h * w for h, w in SHAPES)
    query = torch.randn(B, Q, 8, generator=g, dtype=torch.float64)
    value_in = torch.randn(B, S, 8, generator=g, dtype=torch.float64)
    padding_mask = torch.zeros(B, S, dtype=torch.bool)
    padding_mask[1, 20:30] = True  # bottom rows of level 0 of image 1
    padding_mask[1, 40:42] = True
    if box_references:
        reference = torch.rand(B, Q, 3, 4, generator=g, dtype=torch.float64) * 0.5 + 0.25
    else:
        reference = torch.rand(B, Q, 3, 2, generator=g, dtype=torch.float64)

    out = module(query, reference, value_in, SHAPES, padding_mask)

    # Direct formula.
    value = module.value_proj(value_in).masked_fill(padding_mask[..., None], 0.0).view(B, S, 2, 4)
    offsets = module.sampling_offsets(query).view(B, Q, 2, 3, 2, 2)
    weights = module.attention_weights(query).view(B, Q, 2, 6).softmax(-1).view(B, Q, 2, 3, 2)
    locations = torch.empty_like(offsets)
    for lvl, (h, w) in enumerate(SHAPES):
        for p in range(2):
            if box_references:
                centre, size = reference[:, :, None, lvl, :2], reference[:, :, None, lvl, 2:]
                locations[:, :, :, lvl, p] = centre + offsets[:, :, :, lvl, p] / 2 * size * 0.5
            else:
                normaliser = torch.tensor([w, h], dtype=torch.float64)
                locations[:, :, :, lvl, p] = reference[:, :, None, lvl] + offsets[:, :, :, lvl, p] / normaliser
    expected = module.output_proj(naive_sample(value, SHAPES, locations, weights))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_padded_values_do_not_influence_the_output():
    module = randomised_module(3)
    g = torch.Generator().manual_seed(4)
    S = sum(h * w for h, w in SHAPES)
    query = torch.randn(1, 5, 8, generator=g, dtype=torch.float64)
    reference = torch.rand(1, 5, 3, 2, generator=g, dtype=torch.float64)
    value = torch.randn(1, S, 8, generator=g, dtype=torch.float64)
    padding_mask = torch.zeros(1, S, dtype=torch.bool)
    padding_mask[0, ::3] = True
    changed = value.clone()
    changed[padding_mask] = 1e3
    torch.testing.assert_close(module(query, reference, value, SHAPES, padding_mask),
                               module(query, reference, changed, SHAPES, padding_mask))
    assert not torch.allclose(module(query, reference, value, SHAPES, None),
                              module(query, reference, changed, SHAPES, None))


def test_sampling_core_gradcheck():
    g = torch.Generator().manual_seed(5)
    shapes = [(3, 2), (1, 2)]
    value = torch.randn(1, 8, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    locations = (torch.rand(1, 2, 2, 2, 2, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    weights = torch.rand(1, 2, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, loc, w: ms_deform_attn_sample(v, shapes, loc, w),
                                    (value, locations, weights))


def test_initial_offsets_point_along_max_normalised_head_directions():
    module = MSDeformAttn(d_model=32, n_levels=4, n_heads=8, n_points=4)
    bias = module.sampling_offsets.bias.view(8, 4, 4, 2)
    # Head 1 points at 45° -> (1, 1) after max-normalisation; point index 2 is scaled by 3; same on every level.
    torch.testing.assert_close(bias[1, :, 2], torch.full((4, 2), 3.0))
    torch.testing.assert_close(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(bias[4, 3, 0], torch.tensor([-1.0, math.sin(math.pi)]))
    assert torch.count_nonzero(module.sampling_offsets.weight) == 0
    assert torch.count_nonzero(module.attention_weights.weight) == 0
    assert torch.count_nonzero(module.attention_weights.bias) == 0


def test_rejects_bad_sizes_and_reference_shapes():
    with pytest.raises(ValueError, match="multiple of n_heads"):
        MSDeformAttn(d_model=10, n_levels=1, n_heads=4, n_points=1)
    module = MSDeformAttn(d_model=8, n_levels=3, n_heads=2, n_points=2)
    S = sum(h * w for h, w in SHAPES)
    with pytest.raises(ValueError, match="end in 2 or 4"):
        module(torch.zeros(1, 1, 8), torch.zeros(1, 1, 3, 3), torch.zeros(1, S, 8), SHAPES)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_onnx_export_matches_eager_with_box_references_and_padding(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(6)
    shapes = [(8, 10), (4, 5), (2, 3), (1, 2)]
    module = MSDeformAttn(d_model=32, n_levels=4, n_heads=4, n_points=2).eval()
    with torch.no_grad():
        module.sampling_offsets.weight.normal_(0.0, 0.2)
        module.attention_weights.weight.normal_(0.0, 0.2)

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = module

        def forward(self, query, reference, value, padding_mask):
            return self.attn(query, reference, value, shapes, padding_mask)

    S = sum(h * w for h, w in shapes)
    inputs = (torch.randn(1, 7, 32), torch.rand(1, 7, 4, 4), torch.randn(1, S, 32), torch.zeros(1, S, dtype=torch.bool))
    inputs[3][0, 70:80] = True
    path = tmp_path / "msda.onnx"
    torch.onnx.export(Wrapper(), inputs, str(path), opset_version=17, dynamo=False,
                      input_names=["query", "reference", "value", "padding_mask"])
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {n: t.numpy() for n, t in zip(["query", "reference", "value", "padding_mask"], inputs,
                                                              strict=True)})
    with torch.no_grad():
        expected = Wrapper()(*inputs).numpy()
    assert abs(got - expected).max() < 1e-5

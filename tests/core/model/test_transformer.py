"""Encoder references, two-stage proposals, top-K selection, denoising layout, decoder refinement, transformer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from uninext_core.model.decoder import DeformableDecoder, DeformableDecoderLayer
from uninext_core.model.denoising import (
    DenoisingMeta,
    FeatureResizer,
    build_denoising_queries,
    denoising_attn_mask,
)
from uninext_core.model.encoder import DeformableEncoder, DeformableEncoderLayer, encoder_reference_points
from uninext_core.model.fusion import BiXAttentionBlock
from uninext_core.model.mlp import MLP
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.retrieval import StillClassifier
from uninext_core.model.transformer import DeformableTransformer, valid_sizes
from uninext_core.model.two_stage import encoder_proposals, select_top_queries
from uninext_core.ops.boxes import box_cxcywh_to_xyxy


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_encoder_reference_points_hand_computed():
    # One 2x4 level whose valid region is 2x2 (valid ratio w 0.5), seen from a second 1x2 level (ratio w 1.0).
    valid_ratios = torch.tensor([[[0.5, 1.0], [1.0, 1.0]]])
    ref = encoder_reference_points([(2, 4), (1, 2)], valid_ratios)
    assert ref.shape == (1, 10, 2, 2)
    # Cell (row 1, col 1) of level 0: centre (1.5 / 2, 1.5 / 2) of the valid extent.
    torch.testing.assert_close(ref[0, 5, 0], torch.tensor([0.75 * 0.5, 0.75]))
    torch.testing.assert_close(ref[0, 5, 1], torch.tensor([0.75, 0.75]))
    # Level 1 cell 1: (1.5 / 2, 0.5 / 1).
    torch.testing.assert_close(ref[0, 9, 0], torch.tensor([0.75 * 0.5, 0.5]))


def test_proposals_hand_computed_with_padding():
    padding_levels = [torch.zeros(1, 2, 2, dtype=torch.bool), torch.zeros(1, 1, 1, dtype=torch.bool)]
    padding_levels[0][0, :, 1] = True  # right column of level 0 is padding: valid width 1
    mask = torch.cat([m.flatten(1) for m in padding_levels], 1)
    sizes = valid_sizes(padding_levels)
    torch.testing.assert_close(sizes, torch.tensor([[[1.0, 2.0], [1.0, 1.0]]]))
    proposals = encoder_proposals(mask, [(2, 2), (1, 1)], sizes)
    # Cell (row 1, col 0) of level 0: centre (0.5 / 1, 1.5 / 2), size 0.05.
    torch.testing.assert_close(proposals.boxes_logit[0, 2],
                               torch.tensor([logit(0.5), logit(0.75), logit(0.05), logit(0.05)]))
    torch.testing.assert_close(proposals.boxes_logit[0, 4],
                               torch.tensor([logit(0.5), logit(0.5), logit(0.1), logit(0.1)]))
    assert proposals.valid[0, :, 0].tolist() == [True, False, True, False, True]
    assert torch.isinf(proposals.boxes_logit[0, 1]).all() and torch.isinf(proposals.boxes_logit[0, 3]).all()


def test_proposals_outside_the_valid_band_are_invalid():
    # A 1x1 level 5 proposes size 0.05 · 32 = 1.6 > 0.99.
    levels = [(1, 1)] * 6
    mask = torch.zeros(1, 6, dtype=torch.bool)
    proposals = encoder_proposals(mask, levels, torch.ones(1, 6, 2))
    assert proposals.valid[0, :, 0].tolist() == [True, True, True, True, True, False]


def test_top_query_selection_orders_by_score_and_keeps_the_graph():
    scores = torch.tensor([[0.1, 3.0, -1.0, 2.0]])
    boxes = torch.arange(16, dtype=torch.float32).view(1, 4, 4).requires_grad_()
    selection = select_top_queries(scores, boxes, 2)
    assert selection.index.tolist() == [[1, 3]]
    torch.testing.assert_close(selection.boxes_logit, boxes[:, [1, 3]])
    selection.boxes_logit.sum().backward()
    assert boxes.grad[0, :, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="exceeds"):
        select_top_queries(scores, boxes, 5)


def test_denoising_attention_mask_hand_built():
    mask = denoising_attn_mask(DenoisingMeta(num_groups=2, max_gt=1), num_queries=2)
    expected = torch.tensor([
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_denoising_queries_layout_and_noise_ranges():
    gt = [torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.1, 0.1], [0.6, 0.6, 0.2, 0.2]]),
          torch.tensor([[0.4, 0.5, 0.2, 0.2]])]
    content = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    dn = build_denoising_queries(gt, content, dn_number=100, box_noise_scale=1.0, num_queries=5,
                                 generator=torch.Generator().manual_seed(0))
    assert dn.meta == DenoisingMeta(num_groups=33, max_gt=3)  # 200 // 6 groups
    assert dn.content.shape == (2, 198, 2) and dn.attn_mask.shape == (203, 203)
    pos, neg = dn.meta.positive_index(3), dn.meta.negative_index(3)
    assert pos[:4].tolist() == [0, 1, 2, 6] and neg[:4].tolist() == [3, 4, 5, 9]
    assert dn.meta.gt_index(3)[:4].tolist() == [0, 1, 2, 0]
    # Image 1 has one box: slots 1, 2 (and 4, 5) of each group are zero padding.
    torch.testing.assert_close(dn.content[1, 0], content[1])
    assert torch.count_nonzero(dn.content[1, [1, 2, 4, 5]]) == 0
    assert torch.count_nonzero(dn.boxes_logit[1, [1, 2, 4, 5]]) == 0
    # Corner shifts: positives < half size, negatives in [half, full) size (before clipping to [0, 1]).
    gt_xyxy = box_cxcywh_to_xyxy(gt[0])
    half = gt[0][:, 2:].repeat(1, 2) / 2
    shift_pos = (box_cxcywh_to_xyxy(dn.boxes_logit[0, pos].sigmoid()) - gt_xyxy.repeat(33, 1)).abs()
    shift_neg = (box_cxcywh_to_xyxy(dn.boxes_logit[0, neg].sigmoid()) - gt_xyxy.repeat(33, 1)).abs()
    assert torch.all(shift_pos <= half.repeat(33, 1) + 1e-5)
    # Skip corners clipped to the image and boxes whose corners crossed (their size was clamped to ~0).
    neg_boxes = dn.boxes_logit[0, neg].sigmoid()
    neg_xyxy = box_cxcywh_to_xyxy(neg_boxes)
    inside = (neg_xyxy > 1e-4) & (neg_xyxy < 1 - 1e-4) & (neg_boxes[:, 2:] > 1e-3).all(-1, keepdim=True)
    assert inside.sum() > 50
    assert torch.all(shift_neg[inside] >= half.repeat(33, 1)[inside] - 1e-5)


def test_no_ground_truth_gives_no_denoising_queries():
    dn = build_denoising_queries([torch.zeros(0, 4)], torch.ones(1, 3), dn_number=100, box_noise_scale=1.0,
                                 num_queries=4)
    assert dn.meta.num_queries == 0 and dn.attn_mask is None and dn.content.shape == (1, 0, 3)


def make_decoder(look_forward_twice: bool) -> tuple[DeformableDecoder, nn.ModuleList]:
    torch.manual_seed(0)
    layer = DeformableDecoderLayer(d_model=16, dim_feedforward=32, dropout=0.0, n_levels=2, n_heads=2, n_points=2)
    decoder = DeformableDecoder.with_clones(layer, 3, d_model=16, look_forward_twice=look_forward_twice)
    heads = nn.ModuleList(MLP(input_dim=16, hidden_dim=16, output_dim=4, num_layers=3) for _ in range(3))
    return decoder, heads


def run_decoder(decoder, heads, reference):
    g = torch.Generator().manual_seed(1)
    tgt = torch.randn(1, 4, 16, generator=g)
    memory = torch.randn(1, 20, 16, generator=g)
    return decoder(tgt, reference, memory, [(4, 4), (2, 2)], torch.ones(1, 2, 2), torch.zeros(1, 20, dtype=torch.bool),
                   heads)


@pytest.mark.parametrize("look_forward_twice", [True, False])
def test_decoder_refinement_and_look_forward_twice_gradients(look_forward_twice: bool):
    decoder, heads = make_decoder(look_forward_twice)
    reference = torch.rand(1, 4, 4).mul(0.5).add(0.25).requires_grad_()
    out = run_decoder(decoder, heads, reference)
    assert out.hidden.shape == (3, 1, 4, 16) and out.boxes_cxcywh.shape == (3, 1, 4, 4)
    # Each layer refines the previous box; references are the previous boxes.
    torch.testing.assert_close(out.reference_boxes[0], reference)
    torch.testing.assert_close(out.reference_boxes[1:], out.boxes_cxcywh[:-1])
    for layer in range(3):
        delta = heads[layer](out.hidden[layer])
        ref_logit = torch.log(out.reference_boxes[layer] / (1 - out.reference_boxes[layer]))
        torch.testing.assert_close(out.boxes_cxcywh[layer], (delta + ref_logit).sigmoid(), rtol=1e-4, atol=1e-5)
    # The last box trains the previous layer's box head only with look-forward-twice.
    out.boxes_cxcywh[2].sum().backward()
    grad = heads[1].layers[-1].weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == look_forward_twice
    # Layer 0's reference (the two-stage selection) is never detached.
    assert reference.grad is not None and reference.grad.abs().sum() > 0


def tiny_transformer() -> tuple[DeformableTransformer, StillClassifier, nn.ModuleList]:
    torch.manual_seed(2)
    d, levels = 32, 4
    fusion = BiXAttentionBlock(v_dim=d, l_dim=12, embed_dim=32, num_heads=4, dropout=0.0, init_gamma=0.5)
    enc = DeformableEncoder.with_clones(DeformableEncoderLayer(d_model=d, dim_feedforward=64, dropout=0.0,
                                                               n_levels=levels, n_heads=4, n_points=2), 2)
    dec = DeformableDecoder.with_clones(DeformableDecoderLayer(d_model=d, dim_feedforward=64, dropout=0.0,
                                                               n_levels=levels, n_heads=4, n_points=2), 2, d_model=d)
    transformer = DeformableTransformer(fusion=fusion, encoder=enc, decoder=dec, d_model=d, text_dim=12,
                                        num_levels=levels, num_queries=10)
    boxes = nn.ModuleList(MLP(input_dim=d, hidden_dim=d, output_dim=4, num_layers=3) for _ in range(3))
    return transformer.eval(), StillClassifier(d_model=d), boxes


def transformer_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    sizes = [(8, 10), (4, 5), (2, 3), (1, 2)]
    srcs = [torch.randn(2, 32, h, w, generator=g) for h, w in sizes]
    masks = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in sizes]
    masks[0][1, 6:] = True
    masks[0][1, :, 7:] = True
    prompt = PromptFeatures(torch.randn(2, 5, 12, generator=g), torch.tensor([[True] * 5, [True] * 3 + [False] * 2]))
    return srcs, masks, prompt


def test_transformer_outputs_and_denoising_does_not_leak_into_matching_queries():
    transformer, score_head, boxes = tiny_transformer()
    srcs, masks, prompt = transformer_inputs(3)
    plain = transformer(srcs, masks, prompt, score_head=score_head, box_heads=boxes)
    assert plain.decoder.hidden.shape == (2, 2, 10, 32)
    assert plain.memory.shape == (2, 80 + 20 + 6 + 2, 32)
    assert plain.encoder_logits.shape == (2, 108, 1) and plain.prompt.shape == (2, 5, 12)
    torch.testing.assert_close(plain.valid_ratios[1, 0], torch.tensor([0.7, 0.75]))
    label = FeatureResizer(input_dim=12, output_dim=32, dropout=0.0)(prompt.hidden.mean(1))
    dn = build_denoising_queries([torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.zeros(0, 4)], label, dn_number=4,
                                 box_noise_scale=1.0, num_queries=10)
    noisy = transformer(srcs, masks, prompt, score_head=score_head, box_heads=boxes, denoising=dn)
    n_dn = dn.meta.num_queries
    assert noisy.decoder.hidden.shape == (2, 2, n_dn + 10, 32)
    torch.testing.assert_close(noisy.decoder.hidden[:, :, n_dn:], plain.decoder.hidden, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(noisy.decoder.boxes_cxcywh[:, :, n_dn:], plain.decoder.boxes_cxcywh)


def test_transformer_initialisation_follows_the_official_order():
    transformer, _, _ = tiny_transformer()
    layer = transformer.encoder.layers[0].self_attn
    assert torch.count_nonzero(layer.sampling_offsets.weight) == 0  # MSDA init survives the Xavier pass
    assert torch.count_nonzero(transformer.fusion.attn.v_proj.bias) == 0
    assert transformer.resizer.layer_norm.eps == 1e-12
    with pytest.raises(ValueError, match="levels"):
        srcs, masks, prompt = transformer_inputs(4)
        transformer(srcs[:3], masks[:3], prompt, score_head=StillClassifier(d_model=32), box_heads=[])

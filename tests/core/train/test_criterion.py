"""The criterion on constructed outputs: hand-computed losses, assignment, key names, normalisers, empty targets."""

from __future__ import annotations

import math

import pytest
import torch

from uninext_core.model.denoising import DenoisingMeta
from uninext_core.model.mask_head import dynamic_mask_logits, dynamic_param_count
from uninext_core.model.outputs import DenoisingOutputs, EncoderOutputs, HeadOutputs, TrainOutputs
from uninext_core.train.batching import FrameTargets
from uninext_core.train.criterion import ReferenceFrame, SetCriterion, align_reference_targets
from uninext_core.train.losses import downsample_gt_masks, mask_losses

LN2 = math.log(2.0)
GT = [0.5, 0.5, 0.2, 0.2]
FAR = [0.1, 0.1, 0.05, 0.05]
P = dynamic_param_count(in_channels=8, channels=8, num_layers=3)


def _heads(layers: int, boxes: list[list[float]], tokens: int) -> HeadOutputs:
    """All-zero logits (p = 0.5) and the given boxes for every layer, batch 1."""
    q = len(boxes)
    box = torch.tensor(boxes, dtype=torch.float32)[None].repeat(layers, 1, 1, 1)
    return HeadOutputs(torch.zeros(layers, 1, q, tokens), torch.zeros(layers, 1, q, 1), torch.zeros(layers, 1, q, 1),
                       box)


def _outputs(*, layers: int = 2, dn: bool = True, generator_seed: int = 0) -> TrainOutputs:
    g = torch.Generator().manual_seed(generator_seed)
    meta = DenoisingMeta(num_groups=2, max_gt=1) if dn else DenoisingMeta(0, 0)
    # denoising layout [pos g0, neg g0, pos g1, neg g1]; positives are off by +0.1 in x
    dn_boxes = [[0.6, 0.5, 0.2, 0.2], FAR, [0.6, 0.5, 0.2, 0.2], FAR] if dn else []
    dn_heads = _heads(layers, dn_boxes, 2) if dn else HeadOutputs(*(torch.zeros(layers, 1, 0, d) for d in (2, 1, 1, 4)))
    return TrainOutputs(
        layers=_heads(layers, [GT, FAR, [0.58, 0.5, 0.2, 0.2]], 2),
        mask_params=torch.randn(layers, 1, 3, P, generator=g) * 0.1,
        mask_reference_px=torch.full((layers, 1, 3, 2), 16.0),
        mask_features=torch.randn(1, 8, 4, 4, generator=g),
        encoder=EncoderOutputs(logits=torch.zeros(1, 2, 1), boxes_cxcywh=torch.tensor([[GT, FAR]])),
        denoising=DenoisingOutputs(heads=dn_heads, meta=meta),
        embeddings=torch.zeros(1, 3, 0),
        prompt_mask=torch.ones(1, 2, dtype=torch.bool),
    )


def _targets(*, masks: bool = False) -> list[FrameTargets]:
    mask = None
    if masks:
        mask = torch.zeros(1, 32, 32, dtype=torch.bool)
        mask[0, 13:19, 13:19] = True
    return [FrameTargets(boxes_cxcywh=torch.tensor([GT]), boxes_xyxy_px=torch.tensor([[12.8, 12.8, 19.2, 19.2]]),
                         positive_map=torch.tensor([[True, False]]), masks=mask, ids=torch.tensor([5]),
                         image_size_hw=(32, 32), original_height=32)]


def test_losses_by_hand_on_a_constructed_case() -> None:
    criterion = SetCriterion(num_decoder_layers=2)
    result = criterion(_outputs(), _targets(), prompt_kind="category", mask_supervision="none")
    losses = {k: v.item() for k, v in result.losses.items()}
    # Dynamic-k: IoUs with the GT are 1 (query 0), 0.024 / 0.056 = 0.43 (query 2) and 0, so k = floor(1.43) = 1 and
    # query 0 (the exact box) is the only match: one matched pair per layer.
    assert result.num_matches == 1
    # ce: 6 query-token pairs at p = 0.5, one positive: 0.25·0.25·ln2 + 5 · 0.75·0.25·ln2 = ln2 (normaliser 1)
    for suffix in ("", "_aux0"):
        assert losses[f"loss_ce{suffix}"] == pytest.approx(LN2, rel=1e-5)
        assert losses[f"loss_bbox{suffix}"] == pytest.approx(0.0, abs=1e-6)
        assert losses[f"loss_giou{suffix}"] == pytest.approx(0.0, abs=1e-5)  # GIoU eps 1e-7
        assert losses[f"loss_boxiou{suffix}"] == pytest.approx(LN2, rel=1e-5)  # BCE(logit 0, IoU 1)
    # encoder: Hungarian picks proposal 0; one positive + one negative at p = 0.5: (0.0625 + 0.1875)·ln2
    assert losses["loss_ce_enc"] == pytest.approx(0.25 * LN2, rel=1e-5)
    assert losses["loss_bbox_enc"] == pytest.approx(0.0, abs=1e-6)
    # denoising: fixed pairs (query 0, GT 0) and (query 2, GT 0), boxes off by 0.1 in x:
    # L1 = 0.1 per pair; IoU = 0.02 / 0.06 = 1/3 with enclosing area = union, so GIoU loss 2/3 per pair; M = 2
    # ce: 8 query-token pairs, 2 positives: (2·0.0625 + 6·0.1875)·ln2 / 2
    for suffix in ("_dn", "_dn_aux0"):
        assert losses[f"loss_bbox{suffix}"] == pytest.approx(0.1, rel=1e-5)
        assert losses[f"loss_giou{suffix}"] == pytest.approx(2 / 3, rel=1e-5)
        assert losses[f"loss_ce{suffix}"] == pytest.approx(0.625 * LN2, rel=1e-5)
    expected_total = sum(result.weights[k] * v for k, v in losses.items())
    assert result.total.item() == pytest.approx(expected_total, rel=1e-6)
    assert result.weights["loss_ce"] == 2.0 and result.weights["loss_bbox_dn"] == 5.0
    assert result.weights["loss_boxiou"] == 1.0


def test_pooled_prompts_score_the_pooled_logit_and_mask_keys_appear() -> None:
    criterion = SetCriterion(num_decoder_layers=2)
    outputs = _outputs(dn=False)
    targets = [t._replace(positive_map=torch.tensor([[True]])) for t in _targets(masks=True)]
    result = criterion(outputs, targets, prompt_kind="expression", mask_supervision="masks")
    # 3 queries with one pooled logit each, one positive: (0.0625 + 2·0.1875)·ln2
    assert result.losses["loss_ce"].item() == pytest.approx(0.4375 * LN2, rel=1e-5)
    assert not any("_dn" in k for k in result.losses)
    # The mask terms are those of query 0's dynamic mask against the stride-4 GT mask.
    logits = dynamic_mask_logits(outputs.mask_features, outputs.mask_params[-1][:, :1],
                                 outputs.mask_reference_px[-1][:, :1])
    expected = mask_losses(logits[:, 0], downsample_gt_masks(targets[0].masks), num_matches=1)
    assert result.losses["loss_mask"].item() == pytest.approx(expected.focal.item(), rel=1e-5)
    assert result.losses["loss_dice"].item() == pytest.approx(expected.dice.item(), rel=1e-5)


def test_count_reduction_rescales_every_term_like_a_global_normaliser() -> None:
    # A reducer reporting twice the local counts (another process with as many matches, world size 1) halves every
    # match-normalised term, including the per-process means (IoU branch).
    local = SetCriterion(num_decoder_layers=2)(_outputs(), _targets(), prompt_kind="category",
                                               mask_supervision="none")
    doubled = SetCriterion(num_decoder_layers=2, reduce_counts=lambda c: 2 * c)(
        _outputs(), _targets(), prompt_kind="category", mask_supervision="none")
    for key in ("loss_ce", "loss_boxiou", "loss_ce_enc", "loss_bbox_dn", "loss_giou_dn_aux0"):
        assert doubled.losses[key].item() == pytest.approx(local.losses[key].item() / 2, rel=1e-6)


def test_image_without_ground_truth_gives_zero_losses() -> None:
    empty = [FrameTargets(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 2, dtype=torch.bool), None,
                          torch.zeros(0, dtype=torch.int64), (32, 32), 32)]
    result = SetCriterion(num_decoder_layers=2)(_outputs(dn=False), empty, prompt_kind="category",
                                                mask_supervision="none")
    assert result.num_matches == 0
    assert result.total.item() == 0.0 and all(torch.isfinite(v) for v in result.losses.values())


def test_reference_frame_alignment_and_reid_terms() -> None:
    key = _targets()[0]
    shifted = key._replace(ids=torch.tensor([9, 5]), boxes_cxcywh=torch.tensor([FAR, [0.52, 0.5, 0.2, 0.2]]))
    boxes, valid = align_reference_targets(key, shifted)
    assert valid.tolist() == [True]
    torch.testing.assert_close(boxes, torch.tensor([[0.52, 0.5, 0.2, 0.2]]))
    _, invalid = align_reference_targets(key, shifted._replace(ids=torch.tensor([1, 2])))
    assert invalid.tolist() == [False]

    outputs = _outputs(dn=False)._replace(embeddings=torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]]))
    reference = ReferenceFrame(outputs=outputs, targets=[shifted])
    result = SetCriterion(num_decoder_layers=2)(outputs, [key], prompt_kind="category", mask_supervision="none",
                                                reference=reference)
    assert {"loss_reid", "loss_reid_aux"} <= set(result.losses)
    assert result.weights["loss_reid"] == 2.0 and result.weights["loss_reid_aux"] == 3.0
    # Key = query 0 (e = (1, 0)); reference positives = its dynamic-k set {0}; negatives = queries 1, 2.
    # loss = log(1 + exp(e1·k − e0·k) + exp(e2·k − e0·k)) = log(1 + e^-1 + e^-0.5)
    assert result.losses["loss_reid"].item() == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-0.5)), rel=1e-5)


def test_wrong_layer_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="3 decoder layers"):
        SetCriterion(num_decoder_layers=3)(_outputs(), _targets(), prompt_kind="category", mask_supervision="none")

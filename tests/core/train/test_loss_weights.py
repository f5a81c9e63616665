"""Loss keys and weights come from one table (reference §6.2)."""

from __future__ import annotations

import pytest
import torch

from uninext_core.train.loss_weights import Output, loss_key, loss_weights, weighted_total


def test_loss_keys_and_suffixes() -> None:
    assert loss_key("ce") == "loss_ce"
    assert loss_key("bbox", layer=0) == "loss_bbox_aux0"
    assert loss_key("giou", output=Output.ENCODER) == "loss_giou_enc"
    assert loss_key("ce", output=Output.DENOISING) == "loss_ce_dn"
    assert loss_key("giou", output=Output.DENOISING, layer=1) == "loss_giou_dn_aux1"
    with pytest.raises(ValueError, match="unknown loss term"):
        loss_key("class")
    with pytest.raises(ValueError, match="no auxiliary layers"):
        loss_key("ce", output=Output.ENCODER, layer=0)


def test_weight_table_for_two_decoder_layers_with_masks_and_reid() -> None:
    weights = loss_weights(num_decoder_layers=2, mask_supervision="masks", reid=True)
    assert weights == {
        "loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_boxiou": 1.0, "loss_mask": 2.0, "loss_dice": 5.0,
        "loss_reid": 2.0, "loss_reid_aux": 3.0,
        "loss_ce_aux0": 2.0, "loss_bbox_aux0": 5.0, "loss_giou_aux0": 2.0, "loss_boxiou_aux0": 1.0,
        "loss_mask_aux0": 2.0, "loss_dice_aux0": 5.0,
        "loss_ce_enc": 2.0, "loss_bbox_enc": 5.0, "loss_giou_enc": 2.0,
        "loss_ce_dn": 2.0, "loss_bbox_dn": 5.0, "loss_giou_dn": 2.0,
        "loss_ce_dn_aux0": 2.0, "loss_bbox_dn_aux0": 5.0, "loss_giou_dn_aux0": 2.0,
    }


def test_boxinst_table_has_unit_weight_box_terms_on_every_layer() -> None:
    weights = loss_weights(num_decoder_layers=6, mask_supervision="boxinst", reid=False)
    assert weights["loss_prj"] == 1.0 and weights["loss_pairwise_aux4"] == 1.0
    assert "loss_prj_aux5" not in weights and "loss_mask" not in weights and "loss_reid" not in weights
    assert "loss_prj_enc" not in weights and "loss_boxiou_dn" not in weights
    assert len(weights) == 6 * 6 + 3 + 6 * 3


def test_weighted_total_by_hand_and_key_checks() -> None:
    weights = loss_weights(num_decoder_layers=1, mask_supervision="none", reid=False, denoising=False,
                           encoder=False)
    assert set(weights) == {"loss_ce", "loss_bbox", "loss_giou", "loss_boxiou"}
    losses = {"loss_ce": torch.tensor(1.0), "loss_bbox": torch.tensor(2.0), "loss_giou": torch.tensor(0.5),
              "loss_boxiou": torch.tensor(0.25)}
    assert weighted_total(losses, weights).item() == pytest.approx(2 * 1 + 5 * 2 + 2 * 0.5 + 1 * 0.25)
    with pytest.raises(ValueError, match="no weight for \\['loss_mask'\\]"):
        weighted_total({**losses, "loss_mask": torch.tensor(1.0)}, weights)
    with pytest.raises(ValueError, match="no loss for \\['loss_giou'\\]"):
        weighted_total({k: v for k, v in losses.items() if k != "loss_giou"}, weights)

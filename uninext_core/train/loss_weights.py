"""Loss keys and their weights (reference §6.2), made in one place so that no key and weight can drift apart.

Keys are `loss_<term>` plus a suffix naming the output scored:
* final decoder layer: no suffix; earlier decoder layers i = 0..L−2: `_aux{i}`;
* encoder proposals (Hungarian, one "object" token): `_enc` — classification and boxes only;
* denoising queries: `_dn` (final layer) and `_dn_aux{i}` — classification and boxes only.
Mask terms (`mask`/`dice` with full masks, `prj`/`pairwise` with BoxInst) and the IoU branch (`boxiou`) are computed
on every decoder layer; the re-ID terms (`reid`, `reid_aux`) on the final layer only.

Weights: ce 2, bbox 5, giou 2, mask 2, dice 5, reid 2, reid_aux 3 (= 1.5 × reid); boxiou, prj and pairwise are not
in the official weight dict and so enter the total with weight 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Literal

import torch

TERM_WEIGHTS: dict[str, float] = {
    "ce": 2.0,
    "bbox": 5.0,
    "giou": 2.0,
    "boxiou": 1.0,
    "mask": 2.0,
    "dice": 5.0,
    "prj": 1.0,
    "pairwise": 1.0,
    "reid": 2.0,
    "reid_aux": 3.0,
}

MaskSupervision = Literal["none", "masks", "boxinst"]


class Output(Enum):
    """Which prediction set a loss scores."""

    DECODER = "decoder"
    ENCODER = "encoder"
    DENOISING = "denoising"


def loss_key(term: str, *, output: Output = Output.DECODER, layer: int | None = None) -> str:
    """The key of one loss value.

    Args:
        term: one of TERM_WEIGHTS ("ce", "bbox", ...).
        output: decoder, encoder or denoising queries.
        layer: for decoder / denoising outputs, the auxiliary layer index 0..L−2; None = final layer.

    Returns:
        e.g. "loss_ce", "loss_ce_aux0", "loss_bbox_enc", "loss_giou_dn", "loss_ce_dn_aux1".
    """
    if term not in TERM_WEIGHTS:
        raise ValueError(f"unknown loss term {term!r}; expected one of {sorted(TERM_WEIGHTS)}")
    aux = "" if layer is None else f"_aux{layer}"
    match output:
        case Output.DECODER:
            return f"loss_{term}{aux}"
        case Output.DENOISING:
            return f"loss_{term}_dn{aux}"
        case Output.ENCODER:
            if layer is not None:
                raise ValueError(f"the encoder output has no auxiliary layers; got layer={layer}")
            return f"loss_{term}_enc"
    raise TypeError(f"output must be an Output; got {output!r}")


def decoder_terms(*, mask_supervision: MaskSupervision, iou_branch: bool = True) -> tuple[str, ...]:
    """Terms computed on every decoder layer."""
    if mask_supervision not in ("none", "masks", "boxinst"):
        raise ValueError(f"mask_supervision must be 'none', 'masks' or 'boxinst'; got {mask_supervision!r}")
    terms = ["ce", "bbox", "giou"]
    if iou_branch:
        terms.append("boxiou")
    if mask_supervision == "masks":
        terms += ["mask", "dice"]
    elif mask_supervision == "boxinst":
        terms += ["prj", "pairwise"]
    return tuple(terms)


def loss_weights(*, num_decoder_layers: int, mask_supervision: MaskSupervision, reid: bool,
                 denoising: bool = True, encoder: bool = True, iou_branch: bool = True) -> dict[str, float]:
    """Weight of every loss key a training step produces.

    Args:
        num_decoder_layers: L (6 official, 2 tiny); layers 0..L−2 get `_aux{i}` keys.
        mask_supervision: "masks" (focal + dice), "boxinst" (projection + pairwise) or "none".
        reid: add the stage-3 re-ID terms (final layer only).
        denoising: add `_dn` / `_dn_aux{i}` classification and box terms.
        encoder: add `_enc` classification and box terms (two-stage proposals).
        iou_branch: add `boxiou` on every decoder layer.

    Returns:
        {key: weight}, in the order final layer, auxiliary layers, encoder, denoising.
    """
    if num_decoder_layers < 1:
        raise ValueError(f"num_decoder_layers must be >= 1; got {num_decoder_layers}")
    layers: list[int | None] = [None, *range(num_decoder_layers - 1)]
    weights: dict[str, float] = {}
    for layer in layers:
        for term in decoder_terms(mask_supervision=mask_supervision, iou_branch=iou_branch):
            weights[loss_key(term, layer=layer)] = TERM_WEIGHTS[term]
        if layer is None and reid:
            for term in ("reid", "reid_aux"):
                weights[loss_key(term)] = TERM_WEIGHTS[term]
    if encoder:
        for term in ("ce", "bbox", "giou"):
            weights[loss_key(term, output=Output.ENCODER)] = TERM_WEIGHTS[term]
    if denoising:
        for layer in layers:
            for term in ("ce", "bbox", "giou"):
                weights[loss_key(term, output=Output.DENOISING, layer=layer)] = TERM_WEIGHTS[term]
    return weights


def weighted_total(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Σ weight[key] · loss[key]; a loss without a weight, or a weight without its loss, raises.

    Args:
        losses: {key: scalar tensor}.
        weights: from `loss_weights`.

    Returns:
        Scalar total loss.
    """
    missing_weight = sorted(set(losses) - set(weights))
    missing_loss = sorted(set(weights) - set(losses))
    if missing_weight or missing_loss:
        raise ValueError(f"loss keys and weights disagree: no weight for {missing_weight}, no loss for "
                         f"{missing_loss}")
    if not losses:
        raise ValueError("no losses to sum; expected at least one")
    return torch.stack([weights[key] * value for key, value in losses.items()]).sum()

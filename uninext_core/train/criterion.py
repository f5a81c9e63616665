"""The UNINEXT training criterion (reference §6; official `DINOCriterion` with `HungarianMatcherVL`).

For one forward of the key frames it produces every loss of the weight table (`loss_weights.loss_weights`):

* decoder layers (final: no suffix, earlier: `_aux{i}`): dynamic-k (SimOTA) assignment per layer, then token focal
  (`ce`), L1 + GIoU (`bbox`, `giou`), the IoU branch (`boxiou`) and masks — focal + dice against stride-4 GT masks
  (`mask`, `dice`) or BoxInst projection + pairwise for box-only data (`prj`, `pairwise`);
* encoder proposals (`_enc`): one-to-one Hungarian assignment against a single "object" token, `ce`/`bbox`/`giou`;
* denoising queries (`_dn`, `_dn_aux{i}`): the fixed assignment of `DenoisingMeta` (positive copy g of GT n),
  `ce`/`bbox`/`giou`;
* with a reference frame (stage 3 VIS / MOT clips): IDOL's contrastive re-ID loss and its cosine auxiliary term
  (`reid`, `reid_aux`) — key embedding = the key frame's lowest-cost OTA query of each instance.

Normaliser: every term of an output is divided by the number of matched pairs of that output. All counts of a step
are summed over processes once (`reduce_counts`) and divided by the world size, so that the gradient DDP averages
equals the gradient of one process on the combined batch; terms that the official code averages per process (IoU
branch, BoxInst projection, re-ID) are rescaled the same way. With one process nothing changes. The BoxInst pairwise
term stays normalised by the pixel count of its own process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from uninext_core.model.mask_head import dynamic_mask_logits
from uninext_core.model.outputs import HeadOutputs, TrainOutputs
from uninext_core.train.batching import FrameTargets, MaskSupervision, PromptKind
from uninext_core.train.boxinst import BoxInstLoss, boxinst_targets
from uninext_core.train.loss_weights import Output, loss_key, loss_weights, weighted_total
from uninext_core.train.losses import (
    MatchedIndex,
    box_losses,
    classification_loss,
    downsample_gt_masks,
    gather_matches,
    iou_branch_loss,
    mask_losses,
)
from uninext_core.train.matcher import (
    DynamicKMatcher,
    HungarianMatcher,
    Match,
    assignment_to_match,
    best_query_per_target,
    dynamic_k_assignment,
    empty_match,
)
from uninext_core.train.reid import reid_losses, select_reid_samples

CountReducer = Callable[[torch.Tensor], torch.Tensor]


class ReferenceFrame(NamedTuple):
    """The reference frame of each clip (stage 3 re-ID).

    Attributes:
        outputs: TrainOutputs of the reference frames (forward without denoising).
        targets: B FrameTargets of the reference frames (instances matched to the key frame by `ids`).
    """

    outputs: TrainOutputs
    targets: list[FrameTargets]


class CriterionOutput(NamedTuple):
    """Losses of one step.

    Attributes:
        losses: {key: unweighted scalar} for every key of `weights`.
        weights: {key: weight} of this batch (depends on mask supervision, denoising and re-ID).
        total: Σ weight · loss, the scalar to back-propagate.
        num_matches: matched pairs of the final decoder layer on this process.
    """

    losses: dict[str, torch.Tensor]
    weights: dict[str, float]
    total: torch.Tensor
    num_matches: int


def _identity(counts: torch.Tensor) -> torch.Tensor:
    return counts


def align_reference_targets(key: FrameTargets, reference: FrameTargets) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference-frame boxes in the key frame's instance order.

    Args:
        key: key-frame targets (N instances).
        reference: reference-frame targets.

    Returns:
        boxes_cxcywh (N, 4) (a dummy centred box where the instance is absent) and valid (N,) bool.
    """
    boxes = torch.tensor([[0.5, 0.5, 0.1, 0.1]], dtype=torch.float32).repeat(len(key.ids), 1)
    valid = torch.zeros(len(key.ids), dtype=torch.bool)
    where = {int(i): k for k, i in enumerate(reference.ids.tolist())}
    for row, instance in enumerate(key.ids.tolist()):
        if instance in where:
            boxes[row] = reference.boxes_cxcywh[where[instance]]
            valid[row] = True
    return boxes.to(key.boxes_cxcywh.device), valid.to(key.boxes_cxcywh.device)


class SetCriterion(nn.Module):
    """Matching and all loss terms of UNINEXT (see module docstring).

    Args:
        num_decoder_layers: L; layers 0..L−2 give `_aux{i}` keys.
        decoder_matcher: dynamic-k matcher of the decoder layers (default official costs).
        encoder_matcher: Hungarian matcher of the encoder proposals (default class 2, L1 5, GIoU 2).
        boxinst: BoxInst loss with its warm-up counter (default official settings).
        mask_dynamic_channels: D of the dynamic mask convs (8).
        mask_dynamic_layers: number of dynamic convs (3).
        mask_out_stride: mask logit stride (4).
        iou_branch: train the IoU branch (`boxiou`).
        reduce_counts: maps the (K,) float64 local match counts of a step to normalisers; DDP passes
            "all-reduce sum / world size", one process the identity.
    """

    def __init__(self, *, num_decoder_layers: int, decoder_matcher: DynamicKMatcher | None = None,
                 encoder_matcher: HungarianMatcher | None = None, boxinst: BoxInstLoss | None = None,
                 mask_dynamic_channels: int = 8, mask_dynamic_layers: int = 3, mask_out_stride: int = 4,
                 iou_branch: bool = True, reduce_counts: CountReducer | None = None) -> None:
        super().__init__()
        if num_decoder_layers < 1:
            raise ValueError(f"num_decoder_layers must be >= 1, got {num_decoder_layers}")
        self.num_decoder_layers = num_decoder_layers
        self.decoder_matcher = decoder_matcher or DynamicKMatcher()
        self.encoder_matcher = encoder_matcher or HungarianMatcher()
        self.boxinst = boxinst or BoxInstLoss()
        self.mask_dynamic_channels = mask_dynamic_channels
        self.mask_dynamic_layers = mask_dynamic_layers
        self.mask_out_stride = mask_out_stride
        self.iou_branch = iou_branch
        self.reduce_counts: CountReducer = reduce_counts or _identity

    def _layer_key(self, term: str, layer: int, output: Output = Output.DECODER) -> str:
        return loss_key(term, output=output, layer=None if layer == self.num_decoder_layers - 1 else layer)

    @staticmethod
    def _logits(heads: HeadOutputs, prompt_kind: PromptKind) -> torch.Tensor:
        """(N_layers, B, Q, T) token logits for category prompts, (N_layers, B, Q, 1) pooled logits otherwise."""
        return heads.token_logits if prompt_kind == "category" else heads.pooled_logits

    @torch.no_grad()
    def _final_layer_matches(self, logits: torch.Tensor, boxes: torch.Tensor, target_boxes: Sequence[torch.Tensor],
                             positive_maps: Sequence[torch.Tensor]) -> tuple[list[Match], list[torch.Tensor]]:
        """Dynamic-k matches of the last layer (as `DynamicKMatcher`) and, per image, each GT's lowest-cost query
        (the re-ID key query), which needs the cost matrix the matcher does not return."""
        matches, key_queries = [], []
        for b, (gt_boxes, positive_map) in enumerate(zip(target_boxes, positive_maps, strict=True)):
            if gt_boxes.shape[0] == 0:
                matches.append(empty_match(logits.device))
                key_queries.append(torch.zeros(0, dtype=torch.int64, device=logits.device))
                continue
            cost = self.decoder_matcher.cost(logits[b], boxes[b], gt_boxes, positive_map)
            assigned = dynamic_k_assignment(cost.cost, cost.iou, num_candidates=self.decoder_matcher.num_candidates)
            matches.append(assignment_to_match(assigned))
            key_queries.append(best_query_per_target(cost.cost, assigned))
        return matches, key_queries

    def _mask_logits(self, outputs: TrainOutputs, layer: int, index: MatchedIndex) -> torch.Tensor:
        """(M, H/4, W/4) stride-4 mask logits of the matched queries of one decoder layer."""
        features = outputs.mask_features[index.batch_idx]  # (M, C_f, H/8, W/8)
        params = outputs.mask_params[layer][index.batch_idx, index.query_idx][:, None]  # (M, 1, P)
        reference = outputs.mask_reference_px[layer][index.batch_idx, index.query_idx][:, None]  # (M, 1, 2)
        logits = dynamic_mask_logits(features, params, reference, channels=self.mask_dynamic_channels,
                                     num_layers=self.mask_dynamic_layers, out_stride=self.mask_out_stride)
        return logits[:, 0]

    def forward(self, outputs: TrainOutputs, targets: Sequence[FrameTargets], *, prompt_kind: PromptKind,
                mask_supervision: MaskSupervision, images_rgb: torch.Tensor | None = None,
                reference: ReferenceFrame | None = None, generator: torch.Generator | None = None) -> CriterionOutput:
        """All losses of a batch.

        Args:
            outputs: TrainOutputs of the key frames.
            targets: B FrameTargets of the key frames (positive maps (N, T) for category prompts, (N, 1) else).
            prompt_kind: "category" scores token logits against the valid prompt tokens; "expression" and
                "template" score the pooled-prompt logit.
            mask_supervision: "masks", "boxinst" or "none".
            images_rgb: (B, 3, H, W) padded RGB in [0, 255]; needed for "boxinst".
            reference: reference frames for the re-ID terms, or None.
            generator: random source for the BoxInst subset and re-ID auxiliary negatives.

        Returns:
            CriterionOutput.
        """
        L = self.num_decoder_layers
        if outputs.layers.boxes_cxcywh.shape[0] != L:
            raise ValueError(f"expected outputs of {L} decoder layers, got {outputs.layers.boxes_cxcywh.shape[0]}")
        if len(targets) != outputs.layers.boxes_cxcywh.shape[1]:
            raise ValueError(f"got targets for {len(targets)} images, outputs for "
                             f"{outputs.layers.boxes_cxcywh.shape[1]}")
        device = outputs.layers.boxes_cxcywh.device
        logits = self._logits(outputs.layers, prompt_kind)
        token_mask = outputs.prompt_mask if prompt_kind == "category" else None
        target_boxes = [t.boxes_cxcywh.to(device) for t in targets]
        positive_maps = [t.positive_map.to(device) for t in targets]
        counts = [len(t.ids) for t in targets]
        all_boxes = torch.cat([torch.zeros(0, 4, device=device), *target_boxes])

        # ---- assignments of every output (no gradients) -------------------------------------------------------
        final_matches, key_queries = self._final_layer_matches(logits[-1], outputs.layers.boxes_cxcywh[-1],
                                                               target_boxes, positive_maps)
        layer_index = [gather_matches(self.decoder_matcher(logits[layer], outputs.layers.boxes_cxcywh[layer],
                                                           target_boxes, positive_maps), counts)
                       for layer in range(L - 1)]
        layer_index.append(gather_matches(final_matches, counts))
        object_maps = [torch.ones(n, 1, dtype=torch.bool, device=device) for n in counts]
        encoder_index = gather_matches(self.encoder_matcher(outputs.encoder.logits, outputs.encoder.boxes_cxcywh,
                                                            target_boxes, object_maps), counts)
        meta = outputs.denoising.meta
        denoising = meta.num_queries > 0
        dn_index = gather_matches([Match(meta.positive_index(n, device), meta.gt_index(n, device)) for n in counts],
                                  counts) if denoising else None
        reid_samples = None
        if reference is not None:
            ref_logits = self._logits(reference.outputs.layers, prompt_kind)[-1]
            aligned = [align_reference_targets(k, r) for k, r in zip(targets, reference.targets, strict=True)]
            reid_samples = select_reid_samples(
                self.decoder_matcher, key_query_idx=key_queries, ref_logits=ref_logits,
                ref_boxes_cxcywh=reference.outputs.layers.boxes_cxcywh[-1],
                ref_target_boxes_cxcywh=[a[0] for a in aligned], ref_positive_maps=positive_maps,
                valid=[a[1] for a in aligned])

        # ---- one reduction of all counts: normalisers ---------------------------------------------------------
        # [decoder layers 0..L-1, encoder, denoising, re-ID instances]
        local = [float(i.num_matches) for i in layer_index]
        local.append(float(encoder_index.num_matches))
        local.append(float(dn_index.num_matches) if dn_index is not None else 0.0)
        local.append(float(len(reid_samples.image_idx)) if reid_samples is not None else 0.0)
        norms = self.reduce_counts(torch.tensor(local, dtype=torch.float64)).tolist()

        def scale(local_count: float, norm: float) -> float:  # per-process mean -> sum / global normaliser
            return local_count / norm if local_count > 0 else 1.0

        losses: dict[str, torch.Tensor] = {}
        gt_masks = None
        if mask_supervision == "masks":
            if any(t.masks is None for t in targets):
                raise ValueError("mask_supervision 'masks' needs masks in every target")
            gt_masks = downsample_gt_masks(torch.cat([t.masks.to(device) for t in targets]),
                                           stride=self.mask_out_stride)
        box_targets = None
        if mask_supervision == "boxinst":
            if images_rgb is None:
                raise ValueError("mask_supervision 'boxinst' needs images_rgb")
            box_targets = boxinst_targets(images_rgb, [t.boxes_xyxy_px.to(device) for t in targets],
                                          [t.image_size_hw for t in targets], [t.original_height for t in targets],
                                          stride=self.mask_out_stride)

        for layer, index in enumerate(layer_index):
            norm = norms[layer]
            pred = outputs.layers.boxes_cxcywh[layer][index.batch_idx, index.query_idx]
            matched_gt = all_boxes[index.flat_target_idx]
            losses[self._layer_key("ce", layer)] = classification_loss(logits[layer], index, positive_maps,
                                                                       token_mask, num_matches=norm)
            boxes = box_losses(pred, matched_gt, num_matches=norm)
            losses[self._layer_key("bbox", layer)] = boxes.l1
            losses[self._layer_key("giou", layer)] = boxes.giou
            if self.iou_branch:
                iou = iou_branch_loss(outputs.layers.iou_logits[layer][index.batch_idx, index.query_idx], pred,
                                      matched_gt)
                losses[self._layer_key("boxiou", layer)] = iou * scale(index.num_matches, norm)
            if mask_supervision == "masks":
                assert gt_masks is not None
                masks = mask_losses(self._mask_logits(outputs, layer, index), gt_masks[index.flat_target_idx],
                                    num_matches=norm)
                losses[self._layer_key("mask", layer)] = masks.focal
                losses[self._layer_key("dice", layer)] = masks.dice
            elif mask_supervision == "boxinst":
                assert box_targets is not None
                box_masks = torch.cat([t.box_masks for t in box_targets])[index.flat_target_idx]
                similarity = torch.stack([t.color_similarity for t in box_targets])[index.batch_idx]
                boxinst = self.boxinst(self._mask_logits(outputs, layer, index), box_masks, similarity,
                                       generator=generator)
                # A mean over instances; exact over processes unless a process keeps a random subset (> 64).
                losses[self._layer_key("prj", layer)] = boxinst.projection * scale(index.num_matches, norm)
                losses[self._layer_key("pairwise", layer)] = boxinst.pairwise

        encoder_pred = outputs.encoder.boxes_cxcywh[encoder_index.batch_idx, encoder_index.query_idx]
        losses[loss_key("ce", output=Output.ENCODER)] = classification_loss(
            outputs.encoder.logits, encoder_index, object_maps, None, num_matches=norms[L])
        encoder_boxes = box_losses(encoder_pred, all_boxes[encoder_index.flat_target_idx], num_matches=norms[L])
        losses[loss_key("bbox", output=Output.ENCODER)] = encoder_boxes.l1
        losses[loss_key("giou", output=Output.ENCODER)] = encoder_boxes.giou

        if dn_index is not None:
            dn_logits = self._logits(outputs.denoising.heads, prompt_kind)
            for layer in range(L):
                pred = outputs.denoising.heads.boxes_cxcywh[layer][dn_index.batch_idx, dn_index.query_idx]
                losses[self._layer_key("ce", layer, Output.DENOISING)] = classification_loss(
                    dn_logits[layer], dn_index, positive_maps, token_mask, num_matches=norms[L + 1])
                dn_boxes = box_losses(pred, all_boxes[dn_index.flat_target_idx], num_matches=norms[L + 1])
                losses[self._layer_key("bbox", layer, Output.DENOISING)] = dn_boxes.l1
                losses[self._layer_key("giou", layer, Output.DENOISING)] = dn_boxes.giou

        if reference is not None:
            assert reid_samples is not None
            reid = reid_losses(outputs.embeddings, reference.outputs.embeddings, reid_samples, generator=generator)
            factor = scale(float(len(reid_samples.image_idx)), norms[L + 2])
            losses[loss_key("reid")] = reid.contrastive * factor
            losses[loss_key("reid_aux")] = reid.aux * factor

        weights = loss_weights(num_decoder_layers=L, mask_supervision=mask_supervision, reid=reference is not None,
                               denoising=denoising, encoder=True, iou_branch=self.iou_branch)
        return CriterionOutput(losses=losses, weights=weights, total=weighted_total(losses, weights),
                               num_matches=layer_index[-1].num_matches)

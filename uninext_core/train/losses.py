"""Detection and segmentation loss terms of UNINEXT training (reference §6.2, official `SetCriterion`).

Every term is a function of plain tensors; the criterion gathers matched pairs with `gather_matches` and calls them
once per decoder layer, for the encoder proposals and for the denoising queries.

Normaliser: with OTA every term is divided by the number of matched pairs of the output it scores (`num_matches`,
per process; a DDP run passes the all-reduced count instead). An output without any matched pair gives zero for
every term (official behaviour, including the classification term), as a zero that keeps the autograd graph.

Shape letters: B batch, Q queries, T prompt tokens, M matched pairs in the batch, H×W the padded input image.
Boxes are `boxes_cxcywh`, normalised to [0, 1] of the un-padded image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou_loss

from uninext_core.train.matcher import Match

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
MASK_OUT_STRIDE = 4


class MatchedIndex(NamedTuple):
    """Matched pairs of a batch, flattened image by image.

    Attributes:
        batch_idx: (M,) int64 image of each pair.
        query_idx: (M,) int64 query within its image.
        target_idx: (M,) int64 ground truth within its image.
        flat_target_idx: (M,) int64 ground truth index into the concatenation of all images' targets.
    """

    batch_idx: torch.Tensor
    query_idx: torch.Tensor
    target_idx: torch.Tensor
    flat_target_idx: torch.Tensor

    @property
    def num_matches(self) -> int:
        """M."""
        return int(self.query_idx.numel())


class BoxLosses(NamedTuple):
    """`loss_bbox` (L1 on cxcywh) and `loss_giou` (1 − GIoU), both summed over pairs / num_matches."""

    l1: torch.Tensor
    giou: torch.Tensor


class MaskLosses(NamedTuple):
    """`loss_mask` (sigmoid focal, mean over pixels) and `loss_dice` (+1 smoothing), summed / num_matches."""

    focal: torch.Tensor
    dice: torch.Tensor


def gather_matches(matches: Sequence[Match], num_targets: Sequence[int]) -> MatchedIndex:
    """Flatten per-image Matches into batch indices.

    Args:
        matches: B Matches.
        num_targets: B ground-truth counts (to offset `flat_target_idx`).

    Returns:
        MatchedIndex over all M pairs (image-major, each image's pairs in Match order).
    """
    if len(matches) != len(num_targets):
        raise ValueError(f"got {len(matches)} matches but {len(num_targets)} target counts")
    device = matches[0].query_idx.device if matches else None
    offsets = torch.tensor([0, *num_targets], device=device).cumsum(0)[:-1].tolist()
    batch_idx = [torch.full_like(m.query_idx, b) for b, m in enumerate(matches)]
    flat = [m.target_idx + offset for m, offset in zip(matches, offsets, strict=True)]
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return MatchedIndex(batch_idx=torch.cat([empty, *batch_idx]),
                        query_idx=torch.cat([empty, *[m.query_idx for m in matches]]),
                        target_idx=torch.cat([empty, *[m.target_idx for m in matches]]),
                        flat_target_idx=torch.cat([empty, *flat]))


def _normaliser(num_pairs: int, num_matches: float | None) -> float:
    return float(num_pairs) if num_matches is None else float(num_matches)


def _zero(like: torch.Tensor) -> torch.Tensor:
    return like.sum() * 0.0


def token_targets(logits_shape: torch.Size, index: MatchedIndex, positive_maps: Sequence[torch.Tensor],
                  *, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    """Binary (B, Q, T) token targets: matched query q of GT n gets GT n's name-token row, every other query zeros.

    Args:
        logits_shape: (B, Q, T).
        index: matched pairs.
        positive_maps: B bool tensors (N_b, T).
        dtype: output dtype.
        device: output device.

    Returns:
        (B, Q, T) tensor of 0/1.
    """
    target = torch.zeros(logits_shape, dtype=dtype, device=device)
    if index.num_matches > 0:
        all_maps = torch.cat([p.to(device=device) for p in positive_maps])
        target[index.batch_idx, index.query_idx] = all_maps[index.flat_target_idx].to(dtype)
    return target


def token_sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, token_mask: torch.Tensor | None, *,
                             num_matches: float, alpha: float = FOCAL_ALPHA,
                             gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Token-level sigmoid focal loss (Lin et al. 2017, Eq. 5; GLIP token form), summed over valid tokens.

    loss = Σ_{b,q,t valid} α_t (1 − p_t)^γ · BCE(logit, target) / num_matches, where p_t = p for targets 1 and 1 − p
    for targets 0, α_t = α for targets 1 and 1 − α for targets 0. Padded tokens are dropped before any arithmetic.

    Args:
        logits: (B, Q, T) logits.
        targets: (B, Q, T) 0/1 targets.
        token_mask: (B, T) bool valid tokens, or None when all are valid.
        num_matches: normaliser (> 0).
        alpha: focal α.
        gamma: focal γ.

    Returns:
        Scalar loss.
    """
    if logits.shape != targets.shape or logits.dim() != 3:
        raise ValueError(f"logits and targets must both be (B, Q, T); got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    if token_mask is not None:
        if token_mask.shape != (logits.shape[0], logits.shape[2]):
            raise ValueError(f"token_mask must be (B, T) = {(logits.shape[0], logits.shape[2])}; got "
                             f"{tuple(token_mask.shape)}")
        valid = token_mask.bool()[:, None, :].expand_as(logits)
        logits = logits[valid]
        targets = targets[valid]
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum() / num_matches


def classification_loss(logits: torch.Tensor, index: MatchedIndex, positive_maps: Sequence[torch.Tensor],
                        token_mask: torch.Tensor | None, *, num_matches: float | None = None) -> torch.Tensor:
    """`loss_ce`: token focal loss of every query, matched queries targeting their GT's name tokens.

    Args:
        logits: (B, Q, T) token logits ((B, Q, 1) pooled logits for expressions / templates / the encoder).
        index: matched pairs.
        positive_maps: B bool tensors (N_b, T).
        token_mask: (B, T) bool valid prompt tokens, or None.
        num_matches: normaliser; None = M of this output.

    Returns:
        Scalar; zero when the batch has no matched pair.
    """
    if index.num_matches == 0:
        return _zero(logits)
    targets = token_targets(logits.shape, index, positive_maps, dtype=logits.dtype, device=logits.device)
    return token_sigmoid_focal_loss(logits, targets, token_mask,
                                    num_matches=_normaliser(index.num_matches, num_matches))


def box_losses(pred_boxes_cxcywh: torch.Tensor, target_boxes_cxcywh: torch.Tensor, *,
               num_matches: float | None = None) -> BoxLosses:
    """`loss_bbox` and `loss_giou` of matched pairs.

    L1 = Σ|b̂ − b| over the 4 cxcywh coordinates; GIoU loss = 1 − GIoU (torchvision / fvcore form, eps 1e-7).

    Args:
        pred_boxes_cxcywh: (M, 4) predicted boxes of matched queries.
        target_boxes_cxcywh: (M, 4) their GT boxes.
        num_matches: normaliser; None = M.

    Returns:
        BoxLosses; zeros when M = 0.
    """
    if pred_boxes_cxcywh.shape != target_boxes_cxcywh.shape or pred_boxes_cxcywh.shape[-1:] != (4,):
        raise ValueError(f"predicted and target boxes must both be (M, 4); got {tuple(pred_boxes_cxcywh.shape)} "
                         f"and {tuple(target_boxes_cxcywh.shape)}")
    if pred_boxes_cxcywh.shape[0] == 0:
        zero = _zero(pred_boxes_cxcywh)
        return BoxLosses(l1=zero, giou=zero.clone())
    norm = _normaliser(pred_boxes_cxcywh.shape[0], num_matches)
    target = target_boxes_cxcywh.to(pred_boxes_cxcywh.dtype)
    l1 = F.l1_loss(pred_boxes_cxcywh, target, reduction="sum") / norm
    giou = generalized_box_iou_loss(box_convert(pred_boxes_cxcywh, "cxcywh", "xyxy"),
                                    box_convert(target, "cxcywh", "xyxy"), reduction="sum") / norm
    return BoxLosses(l1=l1, giou=giou)


def paired_box_iou(boxes1_cxcywh: torch.Tensor, boxes2_cxcywh: torch.Tensor) -> torch.Tensor:
    """IoU of pairs (row i with row i), (M, 4) cxcywh each -> (M,) in [0, 1]."""
    a = box_convert(boxes1_cxcywh, "cxcywh", "xyxy")
    b = box_convert(boxes2_cxcywh, "cxcywh", "xyxy")
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter).clamp(min=torch.finfo(inter.dtype).tiny)  # 0/0 -> 0, not NaN


def iou_branch_loss(iou_logits: torch.Tensor, pred_boxes_cxcywh: torch.Tensor,
                    target_boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    """`loss_boxiou`: BCE-with-logits of the IoU branch against the (no-grad) IoU of each matched prediction, mean.

    Args:
        iou_logits: (M,) or (M, 1) IoU logits of matched queries.
        pred_boxes_cxcywh: (M, 4) their predicted boxes.
        target_boxes_cxcywh: (M, 4) their GT boxes.

    Returns:
        Scalar mean over the M pairs (not divided by num_matches, as official); zero when M = 0.
    """
    iou_logits = iou_logits.reshape(-1)
    if iou_logits.shape[0] != pred_boxes_cxcywh.shape[0]:
        raise ValueError(f"got {iou_logits.shape[0]} IoU logits for {pred_boxes_cxcywh.shape[0]} boxes")
    if iou_logits.shape[0] == 0:
        return _zero(iou_logits)
    with torch.no_grad():
        target_iou = paired_box_iou(pred_boxes_cxcywh.detach().float(), target_boxes_cxcywh.float())
    return F.binary_cross_entropy_with_logits(iou_logits, target_iou.to(iou_logits.dtype), reduction="mean")


def downsample_gt_masks(masks: torch.Tensor, *, stride: int = MASK_OUT_STRIDE) -> torch.Tensor:
    """GT masks at the mask-head output stride: every `stride`-th pixel starting at stride // 2 (official).

    Args:
        masks: (..., H, W) masks of the padded input (H, W multiples of `stride`), bool or float.
        stride: output stride (4).

    Returns:
        (..., H / stride, W / stride) float masks.
    """
    H, W = masks.shape[-2:]
    if H % stride or W % stride:
        raise ValueError(f"mask size {(H, W)} must be a multiple of the stride {stride}")
    start = stride // 2
    return masks[..., start::stride, start::stride].float()


def mask_losses(mask_logits: torch.Tensor, target_masks: torch.Tensor, *, num_matches: float | None = None,
                alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA) -> MaskLosses:
    """`loss_mask` and `loss_dice` of matched queries (stride-4 logits vs stride-4 sampled GT masks).

    focal: per pair the mean over pixels of α_t (1 − p_t)^γ · BCE; dice: 1 − (2Σ p·t + 1) / (Σ p + Σ t + 1);
    both summed over pairs and divided by num_matches.

    Args:
        mask_logits: (M, ...) mask logits (e.g. (M, H/4, W/4) or (M, F, H/4, W/4)).
        target_masks: same shape, 0/1 (`downsample_gt_masks` of the GT masks).
        num_matches: normaliser; None = M.
        alpha: focal α.
        gamma: focal γ.

    Returns:
        MaskLosses; zeros when M = 0.
    """
    if mask_logits.shape != target_masks.shape:
        raise ValueError(f"mask logits {tuple(mask_logits.shape)} and targets {tuple(target_masks.shape)} differ")
    if mask_logits.shape[0] == 0:
        zero = _zero(mask_logits)
        return MaskLosses(focal=zero, dice=zero.clone())
    norm = _normaliser(mask_logits.shape[0], num_matches)
    logits = mask_logits.flatten(1)
    targets = target_masks.flatten(1).to(logits.dtype)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    focal = (alpha_t * (1 - p_t) ** gamma * ce).mean(dim=1).sum() / norm
    dice = 1 - (2 * (prob * targets).sum(dim=1) + 1) / (prob.sum(dim=1) + targets.sum(dim=1) + 1)
    return MaskLosses(focal=focal, dice=dice.sum() / norm)

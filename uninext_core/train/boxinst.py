"""Box-supervised mask losses for box-only data (BoxInst, Tian et al. CVPR 2021; reference §6.3, stage 1).

* Projection term: dice of the predicted probabilities' max-projections onto the x and y axes against those of the
  box-filled GT mask (BoxInst Eq. 2), mean over instances.
* Pairwise term: for each pixel and its 8 neighbours on a 3×3 grid with dilation 2, −log P(same label) with
  P = p_i p_j + (1 − p_i)(1 − p_j) (BoxInst Eq. 4), kept where the pixel is inside the box and the LAB colour
  similarity exp(−‖Δlab‖ / 2) of the two pixels is at least 0.3; sum / max(#kept, 1). Its weight ramps up linearly
  over the first 10,000 loss calls (the counter counts calls, one per decoder layer, as official).

Targets (`boxinst_targets`) come from the input image: box-filled masks at the padded input resolution sampled every
4th pixel from offset 2, and the colour similarity of the stride-4 average-pooled image converted to CIE LAB. The
bottom `bottom_pixels_removed` pixels of the original image (scaled to the resized image) and the padding are
excluded from the pairwise term.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from uninext_core.train.losses import MASK_OUT_STRIDE, downsample_gt_masks

# sRGB (D65) -> CIE XYZ and the D65 / 2° reference white, as in scikit-image's rgb2lab.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                 (0.212671, 0.715160, 0.072169),
                 (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)


class BoxInstTargets(NamedTuple):
    """BoxInst supervision of one image.

    Attributes:
        box_masks: (N, H/4, W/4) float 0/1 box-filled masks sampled at stride 4 (offset 2) of the padded input.
        color_similarity: (K²−1, H/4, W/4) float colour similarity of each pixel with each neighbour, zero where
            the neighbour is padding or in the removed bottom rows.
    """

    box_masks: torch.Tensor
    color_similarity: torch.Tensor


class BoxInstLosses(NamedTuple):
    """`loss_prj` (projection) and `loss_pairwise` (already multiplied by the warm-up factor)."""

    projection: torch.Tensor
    pairwise: torch.Tensor


def rgb_to_lab(images_rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (0-255) -> CIE L*a*b* (D65, 2° observer), the formula of scikit-image's `rgb2lab`.

    Args:
        images_rgb: (..., 3, H, W) RGB values in [0, 255].

    Returns:
        (..., 3, H, W) float L in [0, 100], a and b roughly in [-128, 127].
    """
    rgb = images_rgb.float() / 255.0
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = torch.tensor(_XYZ_FROM_RGB, dtype=linear.dtype, device=linear.device)
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, linear)
    xyz = xyz / torch.tensor(_WHITE_D65, dtype=xyz.dtype, device=xyz.device)[:, None, None]
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def unfold_neighbours(x: torch.Tensor, *, kernel_size: int = 3, dilation: int = 2) -> torch.Tensor:
    """Values of the K²−1 neighbours of every pixel (centre left out; zero outside the map).

    Args:
        x: (B, C, H, W).
        kernel_size: odd K.
        dilation: neighbour spacing.

    Returns:
        (B, C, K²−1, H, W), neighbours in row-major kernel order without the centre.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W); got shape {tuple(x.shape)}")
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd; got {kernel_size}")
    B, C, H, W = x.shape
    padding = dilation * (kernel_size - 1) // 2
    unfolded = F.unfold(x, kernel_size=kernel_size, padding=padding, dilation=dilation)
    unfolded = unfolded.reshape(B, C, kernel_size * kernel_size, H, W)
    centre = kernel_size * kernel_size // 2
    return torch.cat([unfolded[:, :, :centre], unfolded[:, :, centre + 1:]], dim=2)


def color_similarity(images_lab: torch.Tensor, image_masks: torch.Tensor, *, kernel_size: int = 3,
                     dilation: int = 2) -> torch.Tensor:
    """exp(−‖lab_i − lab_j‖ / 2) for each pixel i and neighbour j, times the neighbour's validity.

    Args:
        images_lab: (B, 3, h, w) LAB images.
        image_masks: (B, h, w) 1 on valid pixels, 0 on padding / removed rows.

    Returns:
        (B, K²−1, h, w) similarity in [0, 1].
    """
    neighbours = unfold_neighbours(images_lab, kernel_size=kernel_size, dilation=dilation)
    similarity = torch.exp(-torch.linalg.vector_norm(images_lab[:, :, None] - neighbours, dim=1) * 0.5)
    valid = unfold_neighbours(image_masks[:, None].float(), kernel_size=kernel_size, dilation=dilation)[:, 0]
    return similarity * valid


def box_bitmasks(boxes_xyxy_px: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Box-filled masks: rows int(y1)..int(y2), columns int(x1)..int(x2) inclusive (official indexing).

    Args:
        boxes_xyxy_px: (N, 4) pixel boxes, non-negative.
        height: mask height (padded input).
        width: mask width.

    Returns:
        (N, height, width) float 0/1.
    """
    corners = boxes_xyxy_px.floor().long()
    rows = torch.arange(height, device=boxes_xyxy_px.device)
    cols = torch.arange(width, device=boxes_xyxy_px.device)
    in_rows = (rows[None] >= corners[:, 1:2]) & (rows[None] <= corners[:, 3:4])  # (N, H)
    in_cols = (cols[None] >= corners[:, 0:1]) & (cols[None] <= corners[:, 2:3])  # (N, W)
    return (in_rows[:, :, None] & in_cols[:, None, :]).float()


def boxinst_targets(images_rgb: torch.Tensor, boxes_xyxy_px: Sequence[torch.Tensor],
                    image_sizes_hw: Sequence[tuple[int, int]], original_heights: Sequence[int], *,
                    stride: int = MASK_OUT_STRIDE, kernel_size: int = 3, dilation: int = 2,
                    bottom_pixels_removed: int = 10) -> list[BoxInstTargets]:
    """BoxInst targets of a padded batch (official `add_bitmasks_from_boxes`).

    Args:
        images_rgb: (B, 3, H, W) un-normalised RGB in [0, 255], zero-padded to H, W multiples of `stride`.
        boxes_xyxy_px: B tensors (N_b, 4) GT boxes in pixels of the resized image.
        image_sizes_hw: B (h, w) un-padded sizes of the resized images.
        original_heights: B heights of the images before resizing (the removed bottom band scales with them).
        stride: mask output stride (4).
        kernel_size: pairwise neighbourhood (3).
        dilation: pairwise dilation (2).
        bottom_pixels_removed: rows at the bottom of the original image left out of the pairwise term (10).

    Returns:
        B BoxInstTargets.
    """
    B, _, H, W = images_rgb.shape
    if H % stride or W % stride:
        raise ValueError(f"padded image size {(H, W)} must be a multiple of the stride {stride}")
    if not len(boxes_xyxy_px) == len(image_sizes_hw) == len(original_heights) == B:
        raise ValueError(f"expected {B} box tensors, sizes and original heights; got {len(boxes_xyxy_px)}, "
                         f"{len(image_sizes_hw)}, {len(original_heights)}")
    image_masks = torch.zeros(B, H, W, device=images_rgb.device)
    for b, ((h, w), original_h) in enumerate(zip(image_sizes_hw, original_heights, strict=True)):
        image_masks[b, :h, :w] = 1.0
        removed = int(bottom_pixels_removed * float(h) / float(original_h))
        if removed > 0:
            image_masks[b, h - removed:h, :] = 0.0
    pooled = F.avg_pool2d(images_rgb.float(), kernel_size=stride, stride=stride)
    images_lab = rgb_to_lab(pooled.floor())  # official converts the pooled image to uint8 (truncation) first
    similarity = color_similarity(images_lab, downsample_gt_masks(image_masks, stride=stride),
                                  kernel_size=kernel_size, dilation=dilation)
    return [BoxInstTargets(box_masks=downsample_gt_masks(box_bitmasks(boxes, H, W), stride=stride),
                           color_similarity=similarity[b])
            for b, boxes in enumerate(boxes_xyxy_px)]


def dice_coefficient_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-instance 1 − 2Σxt / (Σx² + Σt² + 1e-5) (CondInst / BoxInst dice), (M, ...) -> (M,)."""
    x = x.flatten(1)
    target = target.flatten(1)
    return 1.0 - 2.0 * (x * target).sum(dim=1) / ((x**2).sum(dim=1) + (target**2).sum(dim=1) + 1e-5)


def projection_loss(mask_probs: torch.Tensor, box_masks: torch.Tensor) -> torch.Tensor:
    """`loss_prj`: dice of the max-projections on the y axis and on the x axis, summed, mean over instances.

    Args:
        mask_probs: (M, ..., h, w) predicted probabilities.
        box_masks: same shape, 0/1 box masks.

    Returns:
        Scalar.
    """
    along_y = dice_coefficient_loss(mask_probs.amax(dim=-2), box_masks.amax(dim=-2))
    along_x = dice_coefficient_loss(mask_probs.amax(dim=-1), box_masks.amax(dim=-1))
    return (along_x + along_y).mean()


def pairwise_log_disagreement(mask_logits: torch.Tensor, *, kernel_size: int = 3, dilation: int = 2) -> torch.Tensor:
    """−log(p_i p_j + (1 − p_i)(1 − p_j)) for every pixel i and neighbour j, computed in log space.

    Args:
        mask_logits: (M, h, w) logits.

    Returns:
        (M, K²−1, h, w).
    """
    log_fg = F.logsigmoid(mask_logits)[:, None]
    log_bg = F.logsigmoid(-mask_logits)[:, None]
    log_fg_nb = unfold_neighbours(log_fg, kernel_size=kernel_size, dilation=dilation)[:, 0]
    log_bg_nb = unfold_neighbours(log_bg, kernel_size=kernel_size, dilation=dilation)[:, 0]
    return -torch.logaddexp(log_fg + log_fg_nb, log_bg + log_bg_nb)


class BoxInstLoss(nn.Module):
    """Projection + pairwise losses with the pairwise warm-up counter (official `loss_masks_boxinst`).

    The call counter is a buffer (saved with the criterion's state, like the official `_iter`); it increases by one
    per call before the warm-up factor min(calls / warmup_iters, 1) is taken.

    Args:
        kernel_size: pairwise neighbourhood (3).
        dilation: pairwise dilation (2).
        color_threshold: minimum colour similarity for a pair to count (0.3).
        warmup_iters: loss calls over which the pairwise weight ramps from 0 to 1 (10,000).
        max_instances: at most this many matched instances (chosen at random) per call (64).
    """

    calls: torch.Tensor

    def __init__(self, *, kernel_size: int = 3, dilation: int = 2, color_threshold: float = 0.3,
                 warmup_iters: int = 10000, max_instances: int = 64) -> None:
        super().__init__()
        if warmup_iters < 1 or max_instances < 1:
            raise ValueError(f"warmup_iters and max_instances must be >= 1; got {warmup_iters}, {max_instances}")
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.color_threshold = color_threshold
        self.warmup_iters = warmup_iters
        self.max_instances = max_instances
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, mask_logits: torch.Tensor, box_masks: torch.Tensor, color_similarity: torch.Tensor,
                generator: torch.Generator | None = None) -> BoxInstLosses:
        """BoxInst losses of matched instances.

        Args:
            mask_logits: (M, h, w) stride-4 mask logits of matched queries.
            box_masks: (M, h, w) their box masks (`BoxInstTargets.box_masks` rows).
            color_similarity: (M, K²−1, h, w) colour similarity of each instance's image.
            generator: random source for the instance subset (None: torch's global one).

        Returns:
            BoxInstLosses; zeros when M = 0.
        """
        self.calls += 1
        if mask_logits.dim() != 3 or box_masks.shape != mask_logits.shape:
            raise ValueError(f"mask logits and box masks must both be (M, h, w); got {tuple(mask_logits.shape)} "
                             f"and {tuple(box_masks.shape)}")
        if color_similarity.shape[0] != mask_logits.shape[0] or color_similarity.shape[-2:] != mask_logits.shape[-2:]:
            raise ValueError(f"color_similarity must be (M, K²-1, h, w) for M = {mask_logits.shape[0]}; got "
                             f"{tuple(color_similarity.shape)}")
        if mask_logits.shape[0] == 0:
            zero = mask_logits.sum() * 0.0
            return BoxInstLosses(projection=zero, pairwise=zero.clone())
        if mask_logits.shape[0] > self.max_instances:
            keep = torch.randperm(mask_logits.shape[0], generator=generator)[: self.max_instances]
            keep = keep.to(mask_logits.device)
            mask_logits, box_masks, color_similarity = mask_logits[keep], box_masks[keep], color_similarity[keep]
        box_masks = box_masks.to(mask_logits.dtype)
        projection = projection_loss(mask_logits.sigmoid(), box_masks)
        pairwise = pairwise_log_disagreement(mask_logits, kernel_size=self.kernel_size, dilation=self.dilation)
        weights = (color_similarity >= self.color_threshold).to(mask_logits.dtype) * box_masks[:, None]
        pairwise = (pairwise * weights).sum() / weights.sum().clamp(min=1.0)
        warmup = min(float(self.calls.item()) / float(self.warmup_iters), 1.0)
        return BoxInstLosses(projection=projection, pairwise=pairwise * warmup)

"""Frame geometry both ways: RGB frame -> normalised, padded network input, and network outputs -> frame pixels.

Forward (`prepare_frame`): resize (detectron2 ResizeShortestEdge rule: short side to `short_side`, long side at most
`max_size`; or letterbox into a static-shape backend's fixed size), normalise with the model's pixel mean/std, zero-pad
bottom/right to a multiple of 32 (or to the fixed size) and build the pixel mask.

Backward (`PreparedFrame` methods): boxes_cxcywh (normalised to the un-padded resized image) -> boxes_xyxy_px of the
frame; stride-4 mask logits -> probabilities at the frame size (official order: bilinear ×4, crop the padding,
resize to the frame); and the 4-channel template crop of a target given in frame pixels (reference §2.2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from uninext_core.deploy.backend import ModelSpec
from uninext_core.model.template_crop import TemplateCrop, crop_template_with_padding
from uninext_core.ops.boxes import box_cxcywh_to_xyxy


def resized_size(height: int, width: int, *, short_side: int, max_size: int) -> tuple[int, int]:
    """(h, w) after scaling the short side to `short_side` with the long side capped at `max_size` (aspect kept)."""
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def letterbox_size(height: int, width: int, *, target_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the largest aspect-preserving resize that fits inside target_hw."""
    scale = min(target_hw[0] / height, target_hw[1] / width)
    return (min(target_hw[0], max(1, int(height * scale + 0.5))),
            min(target_hw[1], max(1, int(width * scale + 0.5))))


def normalized_boxes_to_frame(boxes_cxcywh: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 4) network boxes, cxcywh in [0, 1] of the un-padded image -> (N, 4) float32 xyxy frame pixels, clipped."""
    height, width = frame_hw
    scale = boxes_cxcywh.new_tensor([width, height, width, height], dtype=torch.float32)
    boxes = box_cxcywh_to_xyxy(boxes_cxcywh.float()) * scale
    return torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                        boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1)


class PreparedFrame(NamedTuple):
    """One frame as the network sees it, and the geometry to map outputs back.

    Attributes:
        images: (1, 3, H_p, W_p) float32 normalised, zero-padded bottom/right.
        pixel_mask: (1, H_p, W_p) bool, True on the (h, w) valid top-left region.
        frame_hw: (H, W) of the source frame.
        resized_hw: (h, w) of the resized frame inside the padded input.
        mask_stride: stride of the backend's mask logits (4).
    """

    images: torch.Tensor
    pixel_mask: torch.Tensor
    frame_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    mask_stride: int

    def boxes_to_frame(self, boxes_cxcywh: torch.Tensor) -> torch.Tensor:
        """(N, 4) cxcywh in [0, 1] of the un-padded image -> (N, 4) float32 xyxy pixels of the frame, clipped."""
        return normalized_boxes_to_frame(boxes_cxcywh, self.frame_hw)

    def mask_probs_to_frame(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(K, H_p/s, W_p/s) mask logits -> (K, H, W) float32 probabilities at the frame size.

        Bilinear ×s to the padded input, crop to the resized frame, bilinear to the frame size, sigmoid.
        """
        count = mask_logits.shape[0]
        if count == 0:
            return mask_logits.new_zeros(0, *self.frame_hw)
        logits = F.interpolate(mask_logits[:, None].float(), scale_factor=self.mask_stride, mode="bilinear",
                               align_corners=False)
        logits = logits[:, :, : self.resized_hw[0], : self.resized_hw[1]]
        if tuple(self.resized_hw) != tuple(self.frame_hw):
            logits = F.interpolate(logits, size=self.frame_hw, mode="bilinear", align_corners=False)
        return logits[:, 0].sigmoid()

    def low_res_masks(self, mask_logits: torch.Tensor) -> np.ndarray:
        """(K, H_p/s, W_p/s) logits -> (K, ceil(h/s), ceil(w/s)) bool masks on the stride-s grid of the valid region.

        What trackers compare (the official IDOL tracker uses the mask head's stride-4 output).
        """
        rows = math.ceil(self.resized_hw[0] / self.mask_stride)
        cols = math.ceil(self.resized_hw[1] / self.mask_stride)
        return (mask_logits[:, :rows, :cols] > 0).cpu().numpy()

    def template_crop(self, *, box_xyxy_px: tuple[float, float, float, float], mask: np.ndarray | None,
                      size: int, search_area_factor: float) -> TemplateCrop:
        """4-channel template crop of a target given in frame pixels (reference §2.2).

        Args:
            box_xyxy_px: target box in pixels of the frame.
            mask: (H, W) bool target mask at the frame size, or None for the box prior.
            size: crop side S.
            search_area_factor: crop side / sqrt(box area).

        Returns:
            TemplateCrop(crop (4, S, S), padding (S, S) bool) on the images' device.
        """
        height, width = self.frame_hw
        h, w = self.resized_hw
        sx, sy = w / width, h / height
        box = (box_xyxy_px[0] * sx, box_xyxy_px[1] * sy, box_xyxy_px[2] * sx, box_xyxy_px[3] * sy)
        mask_tensor = None
        if mask is not None:
            resized = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            mask_tensor = torch.zeros(self.images.shape[-2:], dtype=torch.float32, device=self.images.device)
            mask_tensor[:h, :w] = torch.from_numpy(resized).to(mask_tensor)
        return crop_template_with_padding(self.images[0], box_xyxy=box, mask=mask_tensor, size=size,
                                          search_area_factor=search_area_factor, valid_hw=(h, w))


def prepare_frame(frame: np.ndarray, *, spec: ModelSpec, short_side: int, max_size: int,
                  fixed_input_size: tuple[int, int] | None = None,
                  device: torch.device | str = "cpu") -> PreparedFrame:
    """Resize, normalise and pad one RGB frame.

    Args:
        frame: (H, W, 3) uint8 RGB (validated by the session).
        spec: the backend's ModelSpec (pixel mean/std, size divisibility, mask stride).
        short_side: target short side (ignored when fixed_input_size is given).
        max_size: bound of the long side (ignored when fixed_input_size is given).
        fixed_input_size: (H_f, W_f) of a static-shape backend: letterbox into it (aspect kept, padded).
        device: device of the returned tensors.

    Returns:
        PreparedFrame with (1, 3, H_p, W_p) images, H_p and W_p multiples of spec.size_divisibility (or fixed).
    """
    height, width = frame.shape[:2]
    if fixed_input_size is not None:
        h, w = letterbox_size(height, width, target_hw=fixed_input_size)
        padded_h, padded_w = fixed_input_size
    else:
        h, w = resized_size(height, width, short_side=short_side, max_size=max_size)
        d = spec.size_divisibility
        padded_h, padded_w = -(-h // d) * d, -(-w // d) * d
    resized = frame if (h, w) == (height, width) else cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    mean = torch.tensor(spec.pixel_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(spec.pixel_std, dtype=torch.float32).view(3, 1, 1)
    pixels = (torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float() - mean) / std
    images = torch.zeros(1, 3, padded_h, padded_w, dtype=torch.float32)
    images[0, :, :h, :w] = pixels
    pixel_mask = torch.zeros(1, padded_h, padded_w, dtype=torch.bool)
    pixel_mask[0, :h, :w] = True
    return PreparedFrame(images.to(device), pixel_mask.to(device), (height, width), (h, w), spec.mask_out_stride)

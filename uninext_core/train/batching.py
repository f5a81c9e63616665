"""Collating augmented training samples into network inputs and per-image targets (reference §2, §6, §8).

A `TrainSample` is one clip as the data side produces it: F frames (1 for image stages, 2 for stage 3: key frame
first, then the reference frame), one `Target` per frame, and the `PromptSpec` it is prompted with. `collate`
turns B samples of one dataset into a `TrainBatch`:

* images: RGB normalised with the model's pixel mean / std, zero-padded bottom/right to a common size that is a
  multiple of `size_divisibility` (32), with a pixel mask (True on valid pixels) and the un-normalised padded RGB
  (0–255) that BoxInst needs;
* targets per frame and image: boxes_cxcywh normalised to the un-padded image, boxes_xyxy_px, instance ids,
  masks padded to the batch size, and the token positive map (N, T) bool — the tokens of each instance's class
  name for category prompts, a single True column for expressions and templates (they are scored with the
  pooled-prompt logit);
* prompt: token ids padded to the longest prompt of the batch (BERT masks padding, so valid tokens get the same
  features as with the 256-token inference padding), or 4-channel template crops cut from the template frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch

from uninext_core.data.targets import Target
from uninext_core.model.template_crop import crop_template_with_padding
from uninext_core.prompts import build_category_caption, clean_expression

PromptKind = Literal["category", "expression", "template"]
MaskSupervision = Literal["none", "masks", "boxinst"]
PROMPT_KINDS: tuple[str, ...] = ("category", "expression", "template")


class PromptSpec(NamedTuple):
    """What one training sample is prompted with.

    Attributes:
        kind: "category", "expression" or "template".
        names: category prompts: class names in caption order.
        category_ids: category prompts: the category id of each name (instances are matched to names by
            `Target.labels`); every instance of every frame must have its id here.
        expression: expression prompts: the referring expression (every instance of the targets is the referent).
        template_frame: template prompts: index of the clip frame the template is cut from.
        template_box_xyxy_px: template prompts: (4,) box on that frame, pixels of the augmented frame.
        template_mask: template prompts: (H, W) bool mask on that frame, or None (box prior).
    """

    kind: PromptKind
    names: tuple[str, ...] = ()
    category_ids: tuple[int, ...] = ()
    expression: str | None = None
    template_frame: int = 1
    template_box_xyxy_px: np.ndarray | None = None
    template_mask: np.ndarray | None = None


class TrainSample(NamedTuple):
    """One augmented clip.

    Attributes:
        frames: F (H, W, 3) uint8 RGB frames (sizes may differ between samples, not within a clip's use).
        targets: F Targets (boxes_xyxy_px in pixels of the augmented frame).
        original_heights: F heights of the frames before resizing (BoxInst's removed bottom band).
        prompt: PromptSpec.
    """

    frames: list[np.ndarray]
    targets: list[Target]
    original_heights: list[int]
    prompt: PromptSpec


class FrameTargets(NamedTuple):
    """Ground truth of one image of a batch.

    Attributes:
        boxes_cxcywh: (N, 4) float32, normalised to the un-padded image.
        boxes_xyxy_px: (N, 4) float32, pixels of the (resized) image.
        positive_map: (N, T) bool; T = prompt tokens (category) or 1 (expression / template).
        masks: (N, H_pad, W_pad) bool masks padded to the batch size, or None for box-only data.
        ids: (N,) int64 instance ids (same id = same instance on every frame of the clip).
        image_size_hw: (h, w) un-padded size.
        original_height: height before resizing.
    """

    boxes_cxcywh: torch.Tensor
    boxes_xyxy_px: torch.Tensor
    positive_map: torch.Tensor
    masks: torch.Tensor | None
    ids: torch.Tensor
    image_size_hw: tuple[int, int]
    original_height: int


class FrameBatch(NamedTuple):
    """One frame of every clip of a batch.

    Attributes:
        images: (B, 3, H_pad, W_pad) float32 normalised RGB, zero on padding.
        pixel_mask: (B, H_pad, W_pad) bool, True on valid pixels.
        images_rgb: (B, 3, H_pad, W_pad) float32 RGB in [0, 255], zero on padding (BoxInst colour similarity).
        targets: B FrameTargets.
    """

    images: torch.Tensor
    pixel_mask: torch.Tensor
    images_rgb: torch.Tensor
    targets: list[FrameTargets]


class PromptBatch(NamedTuple):
    """Prompts of a batch (one kind per batch).

    Attributes:
        kind: "category", "expression" or "template".
        input_ids: (B, T) int64 token ids (text prompts), else None.
        attention_mask: (B, T) int64, 1 on real tokens (text prompts), else None.
        template_crops: (B, 4, S, S) float32 template crops (template prompts), else None.
        template_padding: (B, S, S) bool, True where the crop lies outside the frame, else None.
    """

    kind: PromptKind
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    template_crops: torch.Tensor | None = None
    template_padding: torch.Tensor | None = None


class TrainBatch(NamedTuple):
    """A collated batch: frames[0] is the key frame (losses), frames[1] (if any) the reference frame.

    Attributes:
        frames: F FrameBatch.
        prompt: PromptBatch.
        mask_supervision: "masks", "boxinst" or "none" for this batch's dataset.
        reid: train the re-ID embedding with the reference frame (stage-3 VIS / MOT clips).
        dataset: name of the dataset the batch came from.
    """

    frames: list[FrameBatch]
    prompt: PromptBatch
    mask_supervision: MaskSupervision
    reid: bool
    dataset: str

    @property
    def batch_size(self) -> int:
        """B."""
        return int(self.frames[0].images.shape[0])


class PixelNormalisation(NamedTuple):
    """RGB pixel mean and std on the 0–255 scale (the model's `InputConfig`)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _padded_size(sizes: Sequence[tuple[int, int]], divisibility: int) -> tuple[int, int]:
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    return -(-height // divisibility) * divisibility, -(-width // divisibility) * divisibility


def _positive_rows(sample: TrainSample, target: Target, spans: tuple[tuple[int, ...], ...] | None,
                   num_tokens: int) -> torch.Tensor:
    rows = torch.zeros(len(target), num_tokens, dtype=torch.bool)
    if sample.prompt.kind != "category":
        rows[:, 0] = True
        return rows
    assert spans is not None
    index = {c: k for k, c in enumerate(sample.prompt.category_ids)}
    for row, label in enumerate(target.labels.tolist()):
        if label not in index:
            raise ValueError(f"instance of category {label} is not in the prompt's categories "
                             f"{list(sample.prompt.category_ids)}")
        rows[row, list(spans[index[label]])] = True
    return rows


def _text_prompts(samples: Sequence[TrainSample], tokenizer, *, max_tokens: int
                  ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[tuple[int, ...], ...] | None]]:
    ids, masks, spans = [], [], []
    for sample in samples:
        prompt = sample.prompt
        if prompt.kind == "category":
            caption = build_category_caption(list(prompt.names), tokenizer, max_tokens=max_tokens)
            ids.append(caption.input_ids[0])
            masks.append(caption.attention_mask[0])
            spans.append(caption.token_spans)
        else:
            if not prompt.expression:
                raise ValueError("an expression prompt needs a non-empty expression, got "
                                 f"{prompt.expression!r}")
            encoded = tokenizer(clean_expression(prompt.expression), padding="max_length", truncation=True,
                                max_length=max_tokens, return_tensors="pt")
            ids.append(encoded["input_ids"][0].to(torch.int64))
            masks.append(encoded["attention_mask"][0].to(torch.int64))
            spans.append(None)
    input_ids = torch.stack(ids)
    attention_mask = torch.stack(masks)
    length = int(attention_mask.sum(dim=1).max())  # pad only to the longest prompt of the batch
    return input_ids[:, :length].contiguous(), attention_mask[:, :length].contiguous(), spans


def collate(samples: Sequence[TrainSample], *, tokenizer, pixel: PixelNormalisation, mask_supervision: MaskSupervision,
            reid: bool = False, dataset: str = "", size_divisibility: int = 32, max_tokens: int = 256,
            template_size: int = 256, template_factor: float = 2.0) -> TrainBatch:
    """Collate B samples of one dataset.

    Args:
        samples: B TrainSamples with the same prompt kind and frame count.
        tokenizer: the text encoder's fast tokenizer (text prompts).
        pixel: pixel normalisation.
        mask_supervision: "masks" keeps the targets' masks (all samples must have them), "boxinst" / "none" drop them.
        reid: whether the batch trains the re-ID embedding (needs 2 frames).
        dataset: dataset name carried to the batch.
        size_divisibility: padded sizes are multiples of this (32).
        max_tokens: text prompt budget (256).
        template_size: template crop side S.
        template_factor: template crop side / sqrt(box area).

    Returns:
        TrainBatch.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    kinds = {s.prompt.kind for s in samples}
    frame_counts = {len(s.frames) for s in samples}
    if len(kinds) != 1 or len(frame_counts) != 1:
        raise ValueError(f"a batch needs one prompt kind and one frame count, got kinds {sorted(kinds)} and frame "
                         f"counts {sorted(frame_counts)}")
    kind = samples[0].prompt.kind
    if kind not in PROMPT_KINDS:
        raise ValueError(f"prompt kind must be one of {PROMPT_KINDS}, got {kind!r}")
    num_frames = frame_counts.pop()
    if reid and num_frames < 2:
        raise ValueError(f"re-ID training needs clips of 2 frames, got {num_frames}")
    for s in samples:
        if len(s.targets) != num_frames or len(s.original_heights) != num_frames:
            raise ValueError(f"need one target and original height per frame ({num_frames}), got "
                             f"{len(s.targets)} and {len(s.original_heights)}")

    sizes = [f.shape[:2] for s in samples for f in s.frames]
    pad_h, pad_w = _padded_size(sizes, size_divisibility)
    mean = torch.tensor(pixel.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(pixel.std, dtype=torch.float32)[:, None, None]

    prompt = PromptBatch(kind=kind)
    spans: list = [None] * len(samples)
    num_tokens = 1
    if kind != "template":
        input_ids, attention_mask, spans = _text_prompts(samples, tokenizer, max_tokens=max_tokens)
        prompt = PromptBatch(kind=kind, input_ids=input_ids, attention_mask=attention_mask)
        num_tokens = input_ids.shape[1] if kind == "category" else 1

    frames: list[FrameBatch] = []
    for f in range(num_frames):
        rgb = torch.zeros(len(samples), 3, pad_h, pad_w)
        pixel_mask = torch.zeros(len(samples), pad_h, pad_w, dtype=torch.bool)
        targets: list[FrameTargets] = []
        for b, sample in enumerate(samples):
            image, target = sample.frames[f], sample.targets[f]
            h, w = image.shape[:2]
            rgb[b, :, :h, :w] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
            pixel_mask[b, :h, :w] = True
            boxes = torch.from_numpy(target.boxes_xyxy_px.astype(np.float32)).reshape(-1, 4)
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                                  boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)
            masks = None
            if mask_supervision == "masks":
                if target.masks is None:
                    raise ValueError(f"dataset {dataset!r} asks for mask supervision but a target has no masks")
                masks = torch.zeros(len(target), pad_h, pad_w, dtype=torch.bool)
                masks[:, :h, :w] = torch.from_numpy(target.masks)
            targets.append(FrameTargets(
                boxes_cxcywh=cxcywh / scale, boxes_xyxy_px=boxes,
                positive_map=_positive_rows(sample, target, spans[b], num_tokens), masks=masks,
                ids=torch.from_numpy(target.ids.astype(np.int64)), image_size_hw=(h, w),
                original_height=int(sample.original_heights[f])))
        images = (rgb - mean) / std * pixel_mask[:, None]
        frames.append(FrameBatch(images=images, pixel_mask=pixel_mask, images_rgb=rgb, targets=targets))

    if kind == "template":
        crops, paddings = [], []
        for b, sample in enumerate(samples):
            spec = sample.prompt
            if spec.template_box_xyxy_px is None or not 0 <= spec.template_frame < num_frames:
                raise ValueError(f"a template prompt needs a box and a template frame in [0, {num_frames}), got "
                                 f"{spec.template_box_xyxy_px} on frame {spec.template_frame}")
            frame = frames[spec.template_frame]
            h, w = frame.targets[b].image_size_hw
            mask = None
            if spec.template_mask is not None:
                mask = torch.zeros(pad_h, pad_w)
                mask[:h, :w] = torch.from_numpy(spec.template_mask.astype(np.float32))
            crop = crop_template_with_padding(frame.images[b], box_xyxy=spec.template_box_xyxy_px.tolist(),
                                              mask=mask, size=template_size, search_area_factor=template_factor,
                                              valid_hw=(h, w))
            crops.append(crop.crop)
            paddings.append(crop.padding)
        prompt = PromptBatch(kind=kind, template_crops=torch.stack(crops), template_padding=torch.stack(paddings))
    return TrainBatch(frames=frames, prompt=prompt, mask_supervision=mask_supervision, reid=reid, dataset=dataset)

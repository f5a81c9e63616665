"""Collating samples: padding to 32, pixel masks, normalised boxes, token positive maps, templates, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from uninext_core.data.targets import Target
from uninext_core.model.text_encoder import packaged_minilm_path
from uninext_core.train.batching import PixelNormalisation, PromptSpec, TrainSample, collate

PIXEL = PixelNormalisation(mean=(100.0, 100.0, 100.0), std=(50.0, 50.0, 50.0))


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(packaged_minilm_path()), local_files_only=True)


def _target(boxes: list[list[float]], labels: list[int], height: int, width: int, ids: list[int] | None = None
            ) -> Target:
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, int(y1):int(y2), int(x1):int(x2)] = True
    return Target(np.array(boxes, np.float32).reshape(-1, 4), masks, np.array(ids or list(range(1, len(boxes) + 1))),
                  np.array(labels, np.int64))


def _category_sample(height: int, width: int, value: int = 150) -> TrainSample:
    image = np.full((height, width, 3), value, dtype=np.uint8)
    target = _target([[10, 20, 50, 60], [0, 0, 20, 10]], [7, 3], height, width)
    prompt = PromptSpec("category", names=("circle", "square"), category_ids=(3, 7))
    return TrainSample([image], [target], [2 * height], prompt)


def test_category_batch_pads_to_32_and_normalises(tokenizer) -> None:
    batch = collate([_category_sample(100, 70), _category_sample(60, 130, value=50)], tokenizer=tokenizer, pixel=PIXEL,
                    mask_supervision="masks")
    frame = batch.frames[0]
    assert frame.images.shape == (2, 3, 128, 160)  # max 100 -> 128, max 130 -> 160
    assert frame.pixel_mask[0, :100, :70].all() and not frame.pixel_mask[0, 100:].any()
    assert not frame.pixel_mask[0, :, 70:].any()
    assert frame.images[0, 0, 0, 0].item() == pytest.approx(1.0)  # (150 - 100) / 50
    assert frame.images[1, 0, 0, 0].item() == pytest.approx(-1.0)
    assert frame.images[0, :, 100:].abs().sum() == 0  # padding is zero
    assert frame.images_rgb[1, 2, 59, 129].item() == 50.0
    target = frame.targets[0]
    # (10, 20, 50, 60) in a 70 wide, 100 high image: centre (30, 40), size (40, 40)
    torch.testing.assert_close(target.boxes_cxcywh[0], torch.tensor([30 / 70, 40 / 100, 40 / 70, 40 / 100]))
    assert target.image_size_hw == (100, 70) and target.original_height == 200
    assert target.masks.shape == (2, 128, 160) and target.masks[0, 20:60, 10:50].all()
    # caption "circle. square": [CLS] circle . square [SEP] -> tokens 1 and 3; label 7 = square, label 3 = circle
    assert batch.prompt.input_ids.shape == (2, 5)
    assert target.positive_map.tolist() == [[False, False, False, True, False], [False, True, False, False, False]]


def test_expression_batch_scores_the_pooled_logit(tokenizer) -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    target = _target([[4, 4, 30, 30]], [1], 64, 64)
    samples = [TrainSample([image], [target], [64], PromptSpec("expression", expression="The red circle, left!")),
               TrainSample([image], [target], [64], PromptSpec("expression", expression="a star"))]
    batch = collate(samples, tokenizer=tokenizer, pixel=PIXEL, mask_supervision="none")
    assert batch.prompt.kind == "expression"
    # "the red circle left" = 4 word pieces + [CLS] + [SEP]; the batch pads to the longest prompt only
    assert batch.prompt.attention_mask.sum(dim=1).tolist() == [6, 4]
    assert batch.prompt.input_ids.shape == (2, 6)
    assert batch.frames[0].targets[0].positive_map.tolist() == [[True]]
    assert batch.frames[0].targets[0].masks is None


def test_template_batch_crops_the_reference_frame(tokenizer) -> None:
    key = np.zeros((64, 96, 3), dtype=np.uint8)
    reference = np.full((64, 96, 3), 200, dtype=np.uint8)
    target = _target([[30, 20, 50, 40]], [1], 64, 96)
    prompt = PromptSpec("template", template_frame=1, template_box_xyxy_px=np.array([30, 20, 50, 40], np.float32),
                        template_mask=target.masks[0])
    batch = collate([TrainSample([key, reference], [target, target], [64, 64], prompt)], tokenizer=tokenizer,
                    pixel=PIXEL, mask_supervision="masks", template_size=64)
    crops = batch.prompt.template_crops
    assert crops.shape == (1, 4, 64, 64) and batch.prompt.template_padding.shape == (1, 64, 64)
    # crop side = ceil(sqrt(20 * 20) * 2) = 40, centred on the box: fully inside the frame, so no padding, and the
    # image channels hold the reference frame ((200 - 100) / 50 = 2), not the key frame
    assert not batch.prompt.template_padding.any()
    torch.testing.assert_close(crops[0, :3], torch.full((3, 64, 64), 2.0))
    assert crops[0, 3, 32, 32] == 1.0 and crops[0, 3, 2, 2] == 0.0  # mask prior: centre in, corner out
    assert len(batch.frames) == 2


def test_bad_batches_are_rejected(tokenizer) -> None:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    category = _category_sample(32, 32)
    expression = TrainSample([image], [_target([[1, 1, 5, 5]], [1], 32, 32)], [32],
                             PromptSpec("expression", expression="a star"))
    with pytest.raises(ValueError, match="one prompt kind"):
        collate([category, expression], tokenizer=tokenizer, pixel=PIXEL, mask_supervision="none")
    unknown = category._replace(prompt=PromptSpec("category", names=("circle",), category_ids=(3,)))
    with pytest.raises(ValueError, match="category 7 is not in the prompt"):
        collate([unknown], tokenizer=tokenizer, pixel=PIXEL, mask_supervision="none")
    box_only = category._replace(targets=[Target(category.targets[0].boxes_xyxy_px, None, category.targets[0].ids,
                                                 category.targets[0].labels)])
    with pytest.raises(ValueError, match="no masks"):
        collate([box_only], tokenizer=tokenizer, pixel=PIXEL, mask_supervision="masks")
    with pytest.raises(ValueError, match="2 frames"):
        collate([category], tokenizer=tokenizer, pixel=PIXEL, mask_supervision="none", reid=True)
    with pytest.raises(ValueError, match="empty"):
        collate([], tokenizer=tokenizer, pixel=PIXEL, mask_supervision="none")

"""Every trainable parameter of tiny receives a gradient through the full training loss (criterion), not only a sum."""

from __future__ import annotations

import copy

import torch

from uninext_core.config import tiny
from uninext_core.model.build import build_model
from uninext_core.train.batching import FrameTargets
from uninext_core.train.criterion import ReferenceFrame, SetCriterion


def _targets(height: int, width: int) -> list[FrameTargets]:
    boxes_xyxy = torch.tensor([[16.0, 24.0, 64.0, 80.0], [80.0, 20.0, 120.0, 60.0]])
    cxcywh = torch.stack([(boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2 / width, (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2
                          / height, (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) / width,
                          (boxes_xyxy[:, 3] - boxes_xyxy[:, 1]) / height], dim=1)
    masks = torch.zeros(2, height, width, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes_xyxy.int().tolist()):
        masks[i, y0:y1, x0:x1] = True
    return [FrameTargets(boxes_cxcywh=cxcywh, boxes_xyxy_px=boxes_xyxy, positive_map=torch.ones(2, 1, dtype=torch.bool),
                         masks=masks, ids=torch.tensor([3, 7]), image_size_hw=(height, width), original_height=height)]


def test_every_trainable_parameter_gets_a_gradient_from_the_training_loss(unblock_zero_inits) -> None:
    torch.manual_seed(0)
    cfg = tiny()
    model = unblock_zero_inits(copy.deepcopy(build_model(cfg)).train())
    criterion = SetCriterion(num_decoder_layers=cfg.transformer.num_decoder_layers)
    height, width = 128, 160
    images = torch.randn(1, 3, height, width)
    pixel_mask = torch.ones(1, height, width, dtype=torch.bool)
    targets = _targets(height, width)
    boxes = [t.boxes_cxcywh for t in targets]
    tokens = model.text_encoder.tokenize(["the red circle"])
    crops = torch.randn(1, 4, cfg.template.size, cfg.template.size)
    total = torch.zeros(())
    for kind, prompt in (("expression", model.encode_text(tokens.input_ids, tokens.attention_mask)),
                         ("template", model.encode_template(crops))):
        outputs = model(images, pixel_mask, prompt, targets=boxes)
        reference = ReferenceFrame(model(images, pixel_mask, prompt, targets=boxes, use_denoising=False), targets)
        result = criterion(outputs, targets, prompt_kind=kind, mask_supervision="masks", reference=reference)
        total = total + result.total
    total.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("text_encoder.") for n in trainable)  # frozen in the tiny preset
    missing = sorted(n for n, p in trainable.items() if p.grad is None or torch.count_nonzero(p.grad) == 0)
    assert missing == [n for n in sorted(trainable) if n.startswith("transformer.resizer.")]

"""Backends that plant known detections into real network outputs, for the session benchmark (bench/session.py).

Random weights give a random number of detections, so tracker and template-update costs would measure whatever the
initialisation happens to give. These wrappers run the wrapped backend for real (network and mask head, so their cost
is measured), then overwrite a few queries of the outputs so the task code sees exactly the detections wanted. They
wrap any `Backend` (torch, ONNX Runtime, ...): only the public contract is used, so both backends plant alike.

* `PlantedBackend` (MOT, MOTS, VIS): N queries on a non-overlapping grid, class score 0.9 for the first class,
  distinct re-ID embeddings, box-shaped masks; every other query scores 0.01.
* `PlantedTemplateBackend` (VOS): one confident query (pooled and IoU scores 0.9) per forward; consecutive forwards
  put it in consecutive cells of an N-cell grid. `VosRunner.step` runs one forward per object in prompt order, so
  object i gets cell i: disjoint box masks, every object above `vos_update_threshold`, so every object rebuilds its
  previous-frame template on every frame (the official rule's most expensive steady state). The box moves one
  pixel per frame so that no crop repeats within 40 frames (a repeated crop would be a prompt-cache hit).
"""

from __future__ import annotations

import math

import torch

from uninext_core.deploy.backend import Backend, ModelSpec
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.text_encoder import TokenizedText

LOW_LOGIT = -4.6  # sigmoid 0.01
HIGH_LOGIT = 2.2  # sigmoid 0.90


def grid_boxes_cxcywh(cells: torch.Tensor, *, side: int, shift: float) -> torch.Tensor:
    """Boxes in the cells of a side×side grid over the image.

    Args:
        cells: (N,) int64 cell indices, row-major.
        side: cells per row and per column.
        shift: added to cx (small motion between frames), in image widths.

    Returns:
        (N, 4) float32 boxes_cxcywh normalised: centred in their cell, 0.6 of the cell's side.
    """
    cx = (cells % side + 0.5) / side + shift
    cy = (cells // side + 0.5) / side
    size = torch.full_like(cx, 0.6 / side, dtype=torch.float32)
    return torch.stack([cx.float(), cy.float(), size, size], 1)


def box_mask_logits(logits: torch.Tensor, boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    """Replace (K, h, w) mask logits with +10 inside / -10 outside each row's box ((K, 4) boxes_cxcywh normalised)."""
    height, width = logits.shape[-2:]
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    out = logits.clone()  # inference tensors are read-only
    for row, (cx, cy, w, h) in enumerate(boxes_cxcywh.tolist()):
        inside = ((ys - cy).abs() < h / 2)[:, None] & ((xs - cx).abs() < w / 2)[None, :]
        out[row] = torch.where(inside, 10.0, -10.0)
    return out


class _Wrapped:
    """Delegates the Backend contract to `backend`; subclasses change `infer` and `mask_logits`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.name: str = backend.name
        self.device: torch.device = backend.device
        self.fixed_input_size: tuple[int, int] | None = backend.fixed_input_size
        self.spec: ModelSpec = backend.spec

    def encode_text(self, tokens: TokenizedText) -> PromptFeatures:
        return self._backend.encode_text(tokens)

    def encode_template(self, crops: torch.Tensor, padding: torch.Tensor | None = None) -> PromptFeatures:
        return self._backend.encode_template(crops, padding)


class PlantedBackend(_Wrapped):
    """`backend` with `count` planted detections per frame (MOT, MOTS, VIS; see the module docstring).

    Args:
        backend: the backend that really runs.
        count: planted detections N (<= the model's query count Q).
        class_tokens: token positions of the first class in the category caption; they get the high logit.
    """

    def __init__(self, backend: Backend, *, count: int, class_tokens: list[int]) -> None:
        super().__init__(backend)
        if not 1 <= count <= backend.spec.num_queries:
            raise ValueError(f"count must be in 1..{backend.spec.num_queries}, got {count}")
        self.count = count
        self.class_tokens = class_tokens
        self.frame = 0

    def mask_logits(self, raw: RawOutputs, query_idx: torch.Tensor) -> torch.Tensor:
        """The real mask head runs; planted queries then get their box as mask (random-weight masks overlap, and the
        VIS tracker's mask NMS would merge them)."""
        logits = self._backend.mask_logits(raw, query_idx)
        rows = [row for row, query in enumerate(query_idx.tolist()) if query < self.count]
        if not rows:
            return logits
        planted = box_mask_logits(logits[rows], raw.boxes_cxcywh[0, query_idx[rows]])
        logits = logits.clone()
        logits[rows] = planted
        return logits

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        raw = self._backend.infer(images, pixel_mask, prompt)
        queries = raw.boxes_cxcywh.shape[1]
        side = math.ceil(math.sqrt(self.count))
        boxes = raw.boxes_cxcywh.clone()
        boxes[0, : self.count] = grid_boxes_cxcywh(torch.arange(self.count), side=side,
                                                   shift=0.002 * (self.frame % 5))
        token_logits = torch.full_like(raw.token_logits, LOW_LOGIT)
        token_logits[0, : self.count, self.class_tokens] = HIGH_LOGIT
        embeddings = torch.randn(raw.embeddings.shape, generator=torch.Generator().manual_seed(self.frame))
        embeddings[0, : self.count] = torch.eye(queries, raw.embeddings.shape[-1])[: self.count] * 8.0
        self.frame += 1
        return raw._replace(token_logits=token_logits, boxes_cxcywh=boxes, embeddings=embeddings)


class PlantedTemplateBackend(_Wrapped):
    """`backend` whose forward k plants one confident query in cell k mod `objects` (VOS; see the module docstring).

    Args:
        backend: the backend that really runs.
        objects: number of objects of the VOS prompt (grid cells).
    """

    def __init__(self, backend: Backend, *, objects: int) -> None:
        super().__init__(backend)
        if objects < 1:
            raise ValueError(f"objects must be >= 1, got {objects}")
        self.objects = objects
        self.forwards = 0

    def mask_logits(self, raw: RawOutputs, query_idx: torch.Tensor) -> torch.Tensor:
        """The real mask head runs; query 0 (the planted one) then gets its box as mask."""
        logits = self._backend.mask_logits(raw, query_idx)
        rows = [row for row, query in enumerate(query_idx.tolist()) if query == 0]
        if not rows:
            return logits
        logits = logits.clone()
        logits[rows] = box_mask_logits(logits[rows], raw.boxes_cxcywh[0, :1].expand(len(rows), 4))
        return logits

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        raw = self._backend.infer(images, pixel_mask, prompt)
        side = math.ceil(math.sqrt(self.objects))
        cell = torch.tensor([self.forwards % self.objects])
        boxes = raw.boxes_cxcywh.clone()
        # One pixel (at 320 px) further right on every frame, so each frame's template crop differs (the prompt cache
        # is keyed by crop content: a repeated crop would be a cache hit, not an encoder run).
        frame = self.forwards // self.objects
        boxes[0, :1] = grid_boxes_cxcywh(cell, side=side, shift=(frame % 40) / 320.0)
        pooled = torch.full_like(raw.pooled_logits, LOW_LOGIT)
        pooled[0, 0] = HIGH_LOGIT
        iou = raw.iou_logits.clone()
        iou[0, 0] = HIGH_LOGIT
        self.forwards += 1
        return raw._replace(pooled_logits=pooled, iou_logits=iou, boxes_cxcywh=boxes)

"""Query colour: each query's box samples the input colour, and an MLP adds it to the query's retrieval features.

No official counterpart (reference §5.1: the retrieval heads see the decoder output alone). Why the `tiny` preset
has it: its MobileNetV3 is trained from scratch, and stage 1 prompts name only shape kinds, so the backbone learns to
drop colour. `training.diagnose_rec`'s probes along the shipped file's network (MODEL.md) recover an object's
colour from the input pixel at its centre at 0.83, from the backbone's stride-8 cell at 0.28, from the encoder
memory's at 0.24 and from the query the retrieval head reads at 0.15 (always answering the commonest colour: 0.14).
Expressions that tell objects apart by colour then pick a same-kind object of another colour (93 of 233 misses).
The colour skip (`colour_skip.py`) hands the encoder each cell's mean colour; 1,500 CPU steps took the 8-way colour
choice only from 0.11 to 0.23, because the colour has to survive two encoder and two decoder layers before it meets
the prompt. This path is one step from the prompt: the retrieval logit is ⟨q + colour(q), key(prompt)⟩. Trained
(`tiny_stage3_querycolour`, 1,200 steps), it took the colour choice to 0.80 and REC on the card from 0.443 to 0.566.

For every query, a G×G grid of points over the central `span` of its predicted box (detached: the colour term must
not pull boxes) samples the normalised image bilinearly; the 3·G² values go through Linear → ReLU → Linear (output
zero-initialised, so a model whose query colour is untrained computes exactly what it computed without one, and
training can continue from weights that predate it). Only the retrieval heads (`class_embed`) see the sum; the box,
IoU, mask and re-ID heads and the next decoder layer see the decoder output as before. Training scores every decoder
layer (and the denoising queries) with it; inference scores the last layer, so the exported graph gains one
GridSample node, an op the deformable attention already uses and TensorRT 10 supports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QueryColour(nn.Module):
    """Colour features of each query's box, (B, Q, d_model), to add to the query before the retrieval head.

    Args:
        d_model: query width.
        grid: G, points per box side (G² samples per query).
        span: fraction of the box width and height the grid covers, centred (the border is mostly background).
    """

    def __init__(self, *, d_model: int, grid: int = 4, span: float = 0.6) -> None:
        super().__init__()
        if d_model <= 0 or grid <= 0:
            raise ValueError(f"d_model and grid must be positive, got {d_model} and {grid}")
        if not 0.0 < span <= 1.0:
            raise ValueError(f"span must be in (0, 1], got {span}")
        steps = ((torch.arange(grid, dtype=torch.float32) + 0.5) / grid - 0.5) * span
        offset_y, offset_x = torch.meshgrid(steps, steps, indexing="ij")
        self.register_buffer("offsets", torch.stack([offset_x.flatten(), offset_y.flatten()], -1), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(3 * grid * grid, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def sample(self, images: torch.Tensor, valid_px: torch.Tensor, boxes_cxcywh: torch.Tensor) -> torch.Tensor:
        """The colour samples of every box.

        Args:
            images: (B, 3, H, W) normalised images, padded bottom/right.
            valid_px: (B, 2) valid (un-padded) width and height in pixels.
            boxes_cxcywh: (B, Q, 4) boxes normalised to the valid image.

        Returns:
            (B, Q, 3·G²) bilinear samples (zeros outside the padded image).
        """
        B, Q, _ = boxes_cxcywh.shape
        points = boxes_cxcywh[:, :, None, :2] + self.offsets.to(boxes_cxcywh.dtype) * boxes_cxcywh[:, :, None, 2:]
        # valid pixels -> [-1, 1] over the padded tensor (x by the padded width, y by the padded height; Python
        # divisors keep the op list free of host-to-device tensor creation, which CUDA-graph capture refuses)
        valid = valid_px[:, None, None, :].to(points.dtype)
        grid = torch.stack([points[..., 0] * valid[..., 0] / images.shape[-1],
                            points[..., 1] * valid[..., 1] / images.shape[-2]], -1) * 2.0 - 1.0  # (B, Q, G², 2)
        samples = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (B, 3, Q, G²)
        return samples.permute(0, 2, 1, 3).reshape(B, Q, -1)

    def embed(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, Q, 3·G²) samples from `sample` -> (B, Q, d_model) colour term (the trainable part)."""
        return self.mlp(samples.to(self.mlp[0].weight.dtype))

    def forward(self, images: torch.Tensor, valid_px: torch.Tensor, boxes_cxcywh: torch.Tensor) -> torch.Tensor:
        """(B, Q, d_model) colour term of each query (see `sample` for the arguments)."""
        return self.embed(self.sample(images, valid_px, boxes_cxcywh.detach()))

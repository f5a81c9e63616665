"""Visual-prompt (template) encoder for SOT/VOS (reference §2.2, official `ref_backbone` + `sot_fuser` +
`adjust_layer`).

A (B, 4, S, S) template crop (see template_crop.py) goes through the template backbone copy (4 input channels), the
main branch's *shared* input projection (P3..P6), a `FeatureFuser` that sums the four levels at P3 resolution, and a
Linear to the text width. The (S/8)² fused tokens (1024 for S = 256) then take the place of text tokens: the rest of
the network treats them exactly like an expression prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uninext_core.model.backbone import Backbone
from uninext_core.model.input_proj import InputProjection
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.ops.resize import aligned_bilinear


class FeatureFuser(nn.Module):
    """One 3×3 conv per level, levels 1.. upsampled to level 0 with `aligned_bilinear`, summed (official sot_fuser).

    Args:
        d_model: channels of every level (input and output).
        num_levels: number of levels (4: P3..P6).
    """

    def __init__(self, *, d_model: int, num_levels: int = 4) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        self.refine = nn.ModuleList([nn.Conv2d(d_model, d_model, kernel_size=3, padding=1) for _ in range(num_levels)])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse levels.

        Args:
            features: num_levels maps (B, d_model, H_l, W_l), H_0 / H_l = W_0 / W_l an integer.

        Returns:
            (B, d_model, H_0, W_0).
        """
        if len(features) != len(self.refine):
            raise ValueError(f"expected {len(self.refine)} feature levels, got {len(features)}")
        fused = self.refine[0](features[0])
        height, width = fused.shape[2], fused.shape[3]
        for refine, feature in zip(self.refine[1:], features[1:], strict=True):
            level = refine(feature)
            factor = height // level.shape[2]
            if factor * level.shape[2] != height or factor * level.shape[3] != width:
                raise ValueError(f"level of size {tuple(level.shape[2:])} does not divide the first level "
                                 f"{(height, width)} by one integer factor")
            fused = fused + aligned_bilinear(level, factor)
        return fused


class TemplateEncoder(nn.Module):
    """Template crops -> prompt tokens of the text width.

    Args:
        backbone: the template backbone copy (4 input channels).
        input_proj: the main branch's InputProjection, shared. It is held in a plain tuple, not registered as a
            submodule, so its parameters appear once in the model's state dict (under the main branch, official
            `input_proj.*`) and are not duplicated under this module; the owner of the main branch must register
            and move it (it does: the main branch uses it every frame).
        d_model: transformer width (channels of the projected levels).
        text_dim: width of the prompt tokens (768 for BERT-base, 384 for MiniLM-L6).
    """

    def __init__(self, *, backbone: Backbone, input_proj: InputProjection, d_model: int, text_dim: int) -> None:
        super().__init__()
        if backbone.in_channels != 4:
            raise ValueError(f"the template backbone must take 4 input channels, got {backbone.in_channels}")
        if input_proj.d_model != d_model or tuple(input_proj.in_channels) != tuple(backbone.out_channels):
            raise ValueError(f"input_proj maps {input_proj.in_channels} -> {input_proj.d_model}, expected "
                             f"{tuple(backbone.out_channels)} -> {d_model}")
        self.backbone = backbone
        self._shared_input_proj = (input_proj,)
        self.sot_fuser = FeatureFuser(d_model=d_model, num_levels=4)
        self.adjust_layer = nn.Linear(d_model, text_dim)
        self.d_model = d_model
        self.text_dim = text_dim

    @property
    def input_proj(self) -> InputProjection:
        """The shared (main-branch) input projection."""
        return self._shared_input_proj[0]

    def forward(self, crops: torch.Tensor, padding: torch.Tensor | None = None) -> PromptFeatures:
        """Encode template crops.

        Args:
            crops: (B, 4, S, S) float: normalised RGB + target prior, S a multiple of 64 (official 256).
            padding: optional (B, S, S) bool, True where the crop lies outside the image
                (`crop_template_with_padding`); those P3 tokens are masked out, as in the official model.
                None: all tokens valid.

        Returns:
            PromptFeatures(hidden (B, (S/8)², text_dim), mask (B, (S/8)²) bool).
        """
        levels = self.input_proj(self.backbone(crops))
        fused = self.sot_fuser(levels)  # (B, d_model, S/8, S/8)
        tokens = fused.flatten(2).transpose(1, 2)  # (B, (S/8)², d_model)
        hidden = self.adjust_layer(tokens)
        if padding is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        else:
            padding_p3 = F.interpolate(padding[:, None].float(), size=fused.shape[2:], mode="nearest")[:, 0] > 0.5
            mask = ~padding_p3.flatten(1)
        return PromptFeatures(hidden, mask)

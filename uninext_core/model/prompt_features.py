"""The prompt side's one output: token features and their validity mask.

Text prompts (BERT tokens), ROI templates (1024 visual tokens) and their concatenations (SOT online update) all reach
the fusion block in this form, so the network treats the three prompt kinds alike.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class PromptFeatures(NamedTuple):
    """Encoded prompt.

    Attributes:
        hidden: (B, T, D_text) float token features (D_text = the text encoder width, 768 for BERT-base).
        mask: (B, T) bool, True for valid tokens, False for padding.
    """

    hidden: torch.Tensor
    mask: torch.Tensor

    def concat(self, other: PromptFeatures) -> PromptFeatures:
        """Tokens of `self` followed by those of `other` (SOT/VOS: initial template + latest template)."""
        return PromptFeatures(torch.cat([self.hidden, other.hidden], dim=1), torch.cat([self.mask, other.mask], dim=1))

"""Trainable transformer layers on top of a frozen text encoder (a departure of the `tiny` preset; none officially).

Why it exists: the official model fine-tunes BERT in stages 1-2 (reference §8.1, LANG_LR 1e-5), so its token
features learn what a referring expression needs — which word is the head noun, which colour or order words bind to
it. The `tiny` preset keeps its packaged MiniLM-L6 frozen so that the shipped file (≤ 30 MB) can leave the 45 MB
encoder out, and its expressions are then scored with general-purpose sentence features. With the frozen encoder the
retrieval head ranked the referent first for 0.42 of the model card's expressions but among the ten best-scored
queries for 0.67 and among all 100 queries for 0.985 (MODEL.md): the proposals were there, the language side did not
separate them. A couple of small layers trained with the rest of the network give the prompt the task-specific
processing a fine-tuned encoder would have, at a few MB in the shipped file.

Each layer is a pre-norm transformer encoder layer (self-attention over the valid tokens, then a GELU MLP) whose two
output projections start at zero, so an untrained adapter is the identity: weights trained without it load and behave
exactly as before, and training starts from them. Written with plain matmul / softmax (no fused attention kernels) so
the ONNX exporter and TensorRT see ordinary ops; padded tokens are masked out as keys with a float16-safe value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uninext_core.model.prompt_features import PromptFeatures

# Key logit for padded tokens: finite in float16 (max 65504) and far below any real logit after the softmax shift.
PADDED_KEY_LOGIT = -3.0e4


class TextAdapterLayer(nn.Module):
    """One pre-norm transformer encoder layer over prompt tokens.

    Args:
        width: token width C_l (the text encoder's hidden size).
        num_heads: attention heads; must divide `width`.
        ffn_dim: hidden width of the MLP.
    """

    def __init__(self, *, width: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        if width <= 0 or num_heads <= 0 or width % num_heads:
            raise ValueError(f"width must be a positive multiple of num_heads, got width={width}, "
                             f"num_heads={num_heads}")
        if ffn_dim <= 0:
            raise ValueError(f"ffn_dim must be positive, got {ffn_dim}")
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.norm_attn = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)
        self.norm_ffn = nn.LayerNorm(width)
        self.ffn_in = nn.Linear(width, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, width)
        for layer in (self.out_proj, self.ffn_out):  # identity at initialisation (module docstring)
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) tokens and (B, T) bool validity -> (B, T, C) tokens."""
        batch, tokens, width = hidden.shape
        q, k, v = self.qkv(self.norm_attn(hidden)).chunk(3, dim=-1)
        q, k, v = (x.reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2) for x in (q, k, v))
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5  # (B, H, T, T)
        logits = logits.masked_fill(~mask[:, None, None, :], PADDED_KEY_LOGIT)
        attended = torch.matmul(logits.softmax(dim=-1), v).transpose(1, 2).reshape(batch, tokens, width)
        hidden = hidden + self.out_proj(attended)
        return hidden + self.ffn_out(F.gelu(self.ffn_in(self.norm_ffn(hidden))))


class TextAdapter(nn.Module):
    """`num_layers` TextAdapterLayers applied to the text encoder's PromptFeatures (mask unchanged).

    Args:
        width: token width C_l.
        num_layers: number of layers (≥ 1; a preset without an adapter builds none).
        num_heads: attention heads per layer.
        ffn_dim: MLP hidden width.
    """

    def __init__(self, *, width: int, num_layers: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.layers = nn.ModuleList(TextAdapterLayer(width=width, num_heads=num_heads, ffn_dim=ffn_dim)
                                    for _ in range(num_layers))

    def forward(self, prompt: PromptFeatures) -> PromptFeatures:
        hidden = prompt.hidden
        for layer in self.layers:
            hidden = layer(hidden, prompt.mask)
        return PromptFeatures(hidden, prompt.mask)

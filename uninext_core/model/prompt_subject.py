"""Prompt subject: a learnt attention pool over the prompt tokens, scored against the plain average (`tiny` only).

No official counterpart (reference §5.1: expressions and templates are scored against the prompt average-pooled over
its valid tokens). Why the `tiny` preset has it: in "the red triangle left of the orange ring" the average weighs
"ring" as much as "triangle", and on the card's first 400 expressions 58 of the shipped file's 137 misses picked an
object of another kind, mostly the object an expression names second or the extreme object of another kind
(MODEL.md). The same retrieval head tells kinds apart well when a class name is scored on its own token (box AP50 0.92
with category prompts), and scoring the referent's kind word alone beside the average showed how much is there: on
400 expressions of the seed-2 validation set, adding log σ of the kind token's logit to the shipped file's selection
score took REC from 0.665 to 0.715 (the kind word located by hand, a throw-away check). This module learns where
to look, without parsing:

    w_t = softmax_t(MLP(t))  over the valid fused prompt tokens t
    subject = Σ_t w_t · t
    logit = head(q, mean_t(t)) + gate · (head(q, subject) − head(q, mean_t(t)))

with `head` the layer's own `VLAlign`. The MLP's output layer starts at zero, so the weights start uniform, the
subject equals the average and the term is zero: a model whose subject pool is untrained computes exactly what it
computed without one, and training can go on from weights that predate it. The gate starts at 1 so that the
pool's scores get gradient from the first step (a zero gate would hold the pool at uniform: the gate's own gradient
is zero while the pool is uniform). The pool reads only the prompt, so it runs once per prompt, not per query; the
exported graph gains a small MLP and a softmax.
"""

from __future__ import annotations

import torch
from torch import nn

# Logit given to padded tokens before the softmax: finite (an all-padded prompt gives a uniform average instead of
# NaN) and far below any learnt score.
_PADDED_SCORE = -1.0e4


class PromptSubject(nn.Module):
    """Attention pool of the fused prompt tokens, and the gate that mixes its retrieval logit with the average's.

    Args:
        text_dim: C_l, prompt token width.
        hidden_dim: width of the token-scoring MLP.
    """

    def __init__(self, *, text_dim: int, hidden_dim: int = 128) -> None:
        super().__init__()
        if text_dim <= 0 or hidden_dim <= 0:
            raise ValueError(f"text_dim and hidden_dim must be positive, got {text_dim} and {hidden_dim}")
        self.score = nn.Sequential(nn.Linear(text_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        nn.init.zeros_(self.score[2].weight)
        nn.init.zeros_(self.score[2].bias)
        self.gate = nn.Parameter(torch.ones(1))

    def weights(self, prompt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) attention weights of the tokens (zero on padding; they sum to 1 over the valid tokens).

        Args:
            prompt: (B, T, C_l) fused prompt tokens.
            mask: (B, T) bool, True on valid tokens.
        """
        scores = self.score(prompt.to(self.score[0].weight.dtype))[..., 0].float()
        return scores.masked_fill(~mask, _PADDED_SCORE).softmax(dim=-1)

    def forward(self, prompt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C_l) subject feature of each prompt (arguments as `weights`)."""
        weights = self.weights(prompt, mask).to(prompt.dtype)
        return (weights[..., None] * prompt).sum(dim=1)

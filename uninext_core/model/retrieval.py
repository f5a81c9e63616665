"""Retrieval (classification) heads: query-prompt alignment `VLAlign` and the encoder objectness `StillClassifier`.

Reference §5.1 (GLIP dot-product head as used by UNINEXT): for query feature q (C) and fused prompt token t (C_l)

    t̂ = t / ‖t‖₂
    key = W_t (t̂ / 2) + b_t                              (dot_product_projection_text, C_l -> C)
    bias = ⟨t̂, bias_lang⟩ + bias0                          (bias_lang init 0, bias0 = −log((1 − π) / π), π = 0.01)
    logit = clamp(⟨q, key⟩ / exp(log_scale) + bias, ±50000)

Category prompts score each query against every token (B, Q, T); expressions and templates against the prompt
average-pooled over valid tokens (B, Q, 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOGIT_CLAMP = 50000.0


def prior_bias(prior_prob: float) -> float:
    """Focal-loss prior bias −log((1 − π) / π) (−4.595 for π = 0.01)."""
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
    return -math.log((1.0 - prior_prob) / prior_prob)


def pool_prompt(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the valid prompt tokens (official `agg_lang_feat`, "average").

    Args:
        hidden: (B, T, C_l) token features.
        mask: (B, T) bool, True for valid tokens.

    Returns:
        (B, C_l). A prompt without any valid token gives zeros (the official code divides by zero there).
    """
    weights = mask.to(hidden.dtype)
    return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1.0)


class VLAlign(nn.Module):
    """Query-to-prompt-token logits (official `VL_Align`, same parameter names).

    Args:
        d_model: C, query width.
        text_dim: C_l, prompt token width.
        prior_prob: initial foreground probability of the bias (0.01).
        log_scale: initial log temperature (0.0).
    """

    def __init__(self, *, d_model: int, text_dim: int, prior_prob: float = 0.01, log_scale: float = 0.0) -> None:
        super().__init__()
        self.dot_product_projection_text = nn.Linear(text_dim, d_model)
        self.log_scale = nn.Parameter(torch.tensor([float(log_scale)]))
        self.bias_lang = nn.Parameter(torch.zeros(text_dim))
        self.bias0 = nn.Parameter(torch.tensor([prior_bias(prior_prob)]))

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of every query against every token.

        Args:
            queries: (B, Q, C) decoder outputs.
            tokens: (B, T, C_l) fused prompt tokens (T = 1 for a pooled prompt).

        Returns:
            (B, Q, T) logits, clamped to ±50000. Padded tokens get logits too; mask them downstream.
        """
        tokens = F.normalize(tokens, p=2, dim=-1)
        keys = self.dot_product_projection_text(tokens / 2.0)  # (B, T, C)
        bias = torch.matmul(tokens, self.bias_lang) + self.bias0  # (B, T)
        logits = torch.matmul(queries, keys.transpose(-1, -2)) / self.log_scale.exp() + bias[:, None, :]
        return logits.clamp(min=-LOGIT_CLAMP, max=LOGIT_CLAMP)


class StillClassifier(nn.Module):
    """Prompt-agnostic objectness of the encoder proposals (§4.4): Linear(C -> 1) named `body`, bias −log(99).

    Args:
        d_model: C.
        prior_prob: initial foreground probability (0.01).
    """

    def __init__(self, *, d_model: int, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.body = nn.Linear(d_model, 1)
        nn.init.constant_(self.body.bias, prior_bias(prior_prob))

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, S, C) projected encoder memory -> (B, S, 1) objectness logits."""
        return self.body(memory)

"""What the network returns: `RawOutputs` (inference contract of every backend) and `TrainOutputs`.

Shape letters: B batch, Q matching queries, T prompt tokens, N_layers decoder layers, S encoder positions,
N_dn denoising queries, E embedding width. Boxes are (cx, cy, w, h) normalised to the un-padded image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from uninext_core.model.denoising import DenoisingMeta
from uninext_core.model.query_resample import MemoryView


class RawOutputs(NamedTuple):
    """Fixed-size network outputs of the last decoder layer, identical for the three prompt kinds.

    Attributes:
        token_logits: (B, Q, T) query-token logits (category prompts: average the logits of a class's tokens, then
            sigmoid; padded tokens carry values that must be ignored).
        pooled_logits: (B, Q, 1) query logit against the average-pooled prompt (expressions and templates).
        iou_logits: (B, Q, 1) IoU-quality logits.
        boxes_cxcywh: (B, Q, 4) boxes in [0, 1] of the un-padded image.
        embeddings: (B, Q, E) re-ID embeddings (not normalised) when the model has the video re-ID head; a model
            built with video=False returns an empty (B, Q, 0) tensor (there is no embedding to give).
        mask_params: (B, Q, P) dynamic mask-head parameters (P = 169 official).
        mask_features: (B, C_f, H/8, W/8) stride-8 mask features of the padded input (C_f = 8 official).
        mask_reference_px: (B, Q, 2) (x, y) pixels of the resized un-padded image: the relative-coordinate origin
            of each query's mask (centre of the last decoder layer's input reference box).
    """

    token_logits: torch.Tensor
    pooled_logits: torch.Tensor
    iou_logits: torch.Tensor
    boxes_cxcywh: torch.Tensor
    embeddings: torch.Tensor
    mask_params: torch.Tensor
    mask_features: torch.Tensor
    mask_reference_px: torch.Tensor


class RetrievalInputs(NamedTuple):
    """What the last decoder layer's retrieval head reads, for fitting that head on a frozen network
    (`uninext_core.train.retrieval_fit`): `Uninext.retrieval_logits` of these equals the forward's logits.

    Attributes:
        hidden: (B, Q, C) last decoder layer's query features.
        boxes_cxcywh: (B, Q, 4) its boxes.
        colour_samples: (B, Q, 3·G²) the query colour's input samples, or (B, Q, 0) without a query colour.
        prompt: (B, T, C_l) fused prompt tokens.
        pooled_prompt: (B, C_l) fused prompt pooled over its valid tokens.
        prompt_mask: (B, T) bool, True on valid tokens.
        iou_logits: (B, Q, 1) IoU-quality logits (the inference score multiplies by their sigmoid).
        memory: the encoder output the query resample reads, or None when the model has none.
    """

    hidden: torch.Tensor
    boxes_cxcywh: torch.Tensor
    colour_samples: torch.Tensor
    prompt: torch.Tensor
    pooled_prompt: torch.Tensor
    prompt_mask: torch.Tensor
    iou_logits: torch.Tensor
    memory: MemoryView | None = None


class HeadOutputs(NamedTuple):
    """Head outputs of every decoder layer for one set of queries.

    Attributes:
        token_logits: (N_layers, B, N, T).
        pooled_logits: (N_layers, B, N, 1).
        iou_logits: (N_layers, B, N, 1).
        boxes_cxcywh: (N_layers, B, N, 4).
    """

    token_logits: torch.Tensor
    pooled_logits: torch.Tensor
    iou_logits: torch.Tensor
    boxes_cxcywh: torch.Tensor


class EncoderOutputs(NamedTuple):
    """Two-stage proposals scored on the encoder output (matched one-to-one, labels = one "object" token).

    Attributes:
        logits: (B, S, 1) prompt-agnostic objectness logits (Still_Classifier).
        boxes_cxcywh: (B, S, 4) proposal boxes (invalid / padded positions are σ(+inf) = 1).
    """

    logits: torch.Tensor
    boxes_cxcywh: torch.Tensor


class DenoisingOutputs(NamedTuple):
    """Denoising part of the decoder output.

    Attributes:
        heads: HeadOutputs over the N_dn denoising queries.
        meta: layout of the denoising queries (positive / negative indices per ground truth).
    """

    heads: HeadOutputs
    meta: DenoisingMeta


class TrainOutputs(NamedTuple):
    """Everything the criterion needs (reference §6.1), denoising queries already split off.

    Attributes:
        layers: HeadOutputs of the Q matching queries for every decoder layer (last = final prediction).
        mask_params: (N_layers, B, Q, P) dynamic mask parameters per layer.
        mask_reference_px: (N_layers, B, Q, 2) relative-coordinate origins per layer (each layer's input
            reference centre, pixels of the resized un-padded image).
        mask_features: (B, C_f, H/8, W/8).
        encoder: EncoderOutputs.
        denoising: DenoisingOutputs (N_dn = 0 when no ground truth or denoising disabled).
        embeddings: (B, Q, E) re-ID embeddings from detached features (E = 0 without the re-ID head).
        prompt_mask: (B, T) bool valid prompt tokens (loss over valid tokens only).
    """

    layers: HeadOutputs
    mask_params: torch.Tensor
    mask_reference_px: torch.Tensor
    mask_features: torch.Tensor
    encoder: EncoderOutputs
    denoising: DenoisingOutputs
    embeddings: torch.Tensor
    prompt_mask: torch.Tensor

"""Contrastive re-ID embedding loss of stage 3 (IDOL, Wu et al. ECCV 2022, Eq. 2; reference §6.4).

A clip gives a key frame and a reference frame with the same instance order. For every instance valid in both:
* key embedding k: the key frame's embedding at its lowest-cost OTA query (`best_query_per_target`);
* positives: reference-frame queries in the instance's dynamic-k set with 10 IoU candidates;
* negatives: reference-frame queries outside its dynamic-k set with 100 candidates.

loss_reid = mean over instances of log(1 + Σ_pos Σ_neg exp(e_neg·k − e_pos·k)) (unnormalised dot products);
loss_reid_aux = mean over instances of the mean squared error between cos(e, k) and the label (1 positive, 0 negative)
over the positives and at most 10 × #positives randomly drawn negatives (10 when there is no positive).
Embeddings come from detached decoder features (the embedding head's job), so only the embedding head learns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from uninext_core.train.matcher import DynamicKMatcher, dynamic_k_assignment

POSITIVE_CANDIDATES = 10
NEGATIVE_CANDIDATES = 100
AUX_NEGATIVES_PER_POSITIVE = 10


class ReidSamples(NamedTuple):
    """Contrastive samples of a batch of clips, one row per instance valid in both frames.

    Attributes:
        image_idx: (G,) int64 clip of each instance.
        key_query_idx: (G,) int64 key-frame query giving the instance's key embedding.
        positive: (G, Q) bool reference-frame positive queries.
        negative: (G, Q) bool reference-frame negative queries.
    """

    image_idx: torch.Tensor
    key_query_idx: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


class ReidLosses(NamedTuple):
    """`loss_reid` (contrastive) and `loss_reid_aux` (cosine L2)."""

    contrastive: torch.Tensor
    aux: torch.Tensor


@torch.no_grad()
def select_reid_samples(matcher: DynamicKMatcher, *, key_query_idx: Sequence[torch.Tensor],
                        ref_logits: torch.Tensor, ref_boxes_cxcywh: torch.Tensor,
                        ref_target_boxes_cxcywh: Sequence[torch.Tensor], ref_positive_maps: Sequence[torch.Tensor],
                        valid: Sequence[torch.Tensor]) -> ReidSamples:
    """Positive and negative reference-frame queries per instance (official `select_pos_neg` / `get_pos_idx`).

    Args:
        matcher: gives the OTA cost (same weights as the decoder matcher).
        key_query_idx: B tensors (N_b,) int64, key-frame lowest-cost query of every instance.
        ref_logits: (B, Q, T) reference-frame logits of the last decoder layer.
        ref_boxes_cxcywh: (B, Q, 4) reference-frame boxes.
        ref_target_boxes_cxcywh: B tensors (N_b, 4), reference-frame GT boxes (same instance order as the key).
        ref_positive_maps: B bool tensors (N_b, T).
        valid: B bool tensors (N_b,), instance present in both frames.

    Returns:
        ReidSamples over the valid instances, image-major.
    """
    B, Q, _ = ref_logits.shape
    rows_image, rows_key, rows_pos, rows_neg = [], [], [], []
    for b in range(B):
        valid_b = valid[b].bool()
        if not bool(valid_b.any()):
            continue
        cost = matcher.cost(ref_logits[b], ref_boxes_cxcywh[b], ref_target_boxes_cxcywh[b][valid_b],
                            ref_positive_maps[b][valid_b])
        positive = dynamic_k_assignment(cost.cost, cost.iou, num_candidates=POSITIVE_CANDIDATES)
        near = dynamic_k_assignment(cost.cost, cost.iou, num_candidates=NEGATIVE_CANDIDATES)
        count = int(valid_b.sum())
        rows_image.append(torch.full((count,), b, dtype=torch.int64, device=ref_logits.device))
        rows_key.append(key_query_idx[b][valid_b].to(device=ref_logits.device, dtype=torch.int64))
        rows_pos.append(positive.T)
        rows_neg.append(~near.T)
    if not rows_image:
        empty = torch.zeros(0, dtype=torch.int64, device=ref_logits.device)
        no_rows = torch.zeros(0, Q, dtype=torch.bool, device=ref_logits.device)
        return ReidSamples(image_idx=empty, key_query_idx=empty.clone(), positive=no_rows, negative=no_rows.clone())
    return ReidSamples(image_idx=torch.cat(rows_image), key_query_idx=torch.cat(rows_key),
                       positive=torch.cat(rows_pos), negative=torch.cat(rows_neg))


def _masked_logsumexp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise log Σ_{mask} exp(x), −inf for rows without any True, with finite gradients everywhere."""
    filled = x.masked_fill(~mask, float("-inf"))
    row_max = filled.amax(dim=1, keepdim=True).detach()
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    total = (torch.exp(filled - row_max) * mask).sum(dim=1)
    return torch.where(total > 0, torch.log(total.clamp(min=torch.finfo(x.dtype).tiny)) + row_max[:, 0],
                       torch.full_like(total, float("-inf")))


def contrastive_reid_loss(key_embeddings: torch.Tensor, ref_embeddings: torch.Tensor, positive: torch.Tensor,
                          negative: torch.Tensor) -> torch.Tensor:
    """Multi-positive contrastive loss, mean over instances: log(1 + Σ_pos Σ_neg exp(e_neg·k − e_pos·k)).

    Uses Σ_pos Σ_neg exp(s_neg − s_pos) = exp(LSE_neg(s) + LSE_pos(−s)), so the loss is softplus of that sum of
    log-sum-exps; an instance without a positive or without a negative contributes 0 (and still counts).

    Args:
        key_embeddings: (G, E) key embedding per instance.
        ref_embeddings: (G, Q, E) reference-frame embeddings of each instance's clip.
        positive: (G, Q) bool.
        negative: (G, Q) bool, disjoint from `positive`.

    Returns:
        Scalar; zero (with graph) when G = 0.
    """
    if key_embeddings.shape[0] == 0:
        return key_embeddings.sum() * 0.0 + ref_embeddings.sum() * 0.0
    scores = torch.einsum("gqe,ge->gq", ref_embeddings, key_embeddings)  # (G, Q) e·k
    exponent = _masked_logsumexp(scores, negative) + _masked_logsumexp(-scores, positive)
    finite = torch.isfinite(exponent)
    per_instance = torch.where(finite, F.softplus(exponent.masked_fill(~finite, 0.0)), torch.zeros_like(exponent))
    return per_instance.mean()


def sample_aux_negatives(positive: torch.Tensor, negative: torch.Tensor, *,
                         per_positive: int = AUX_NEGATIVES_PER_POSITIVE,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Negatives kept for the auxiliary term: all when #neg ≤ 10·#pos, else 10·#pos random ones (10 with no positive).

    Args:
        positive: (G, Q) bool.
        negative: (G, Q) bool.
        per_positive: negatives per positive (10).
        generator: random source (None: torch's global one).

    Returns:
        (G, Q) bool subset of `negative`.
    """
    num_pos = positive.sum(dim=1)
    num_neg = negative.sum(dim=1)
    wanted = torch.where(num_pos == 0, torch.full_like(num_pos, per_positive), num_pos * per_positive)
    wanted = torch.minimum(wanted, num_neg)
    noise = torch.rand(negative.shape, generator=generator).to(negative.device)
    noise = noise.masked_fill(~negative, float("inf"))
    rank = noise.argsort(dim=1).argsort(dim=1)  # rank of each query among this instance's shuffled negatives
    return negative & (rank < wanted[:, None])


def cosine_aux_loss(key_embeddings: torch.Tensor, ref_embeddings: torch.Tensor, positive: torch.Tensor,
                    sampled_negative: torch.Tensor) -> torch.Tensor:
    """Mean over instances of mean((cos(e, k) − label)²) over positives (label 1) and sampled negatives (label 0).

    Args:
        key_embeddings: (G, E).
        ref_embeddings: (G, Q, E).
        positive: (G, Q) bool.
        sampled_negative: (G, Q) bool (`sample_aux_negatives`).

    Returns:
        Scalar; instances with no sample contribute 0; zero when G = 0.
    """
    if key_embeddings.shape[0] == 0:
        return key_embeddings.sum() * 0.0 + ref_embeddings.sum() * 0.0
    cosine = torch.einsum("gqe,ge->gq", F.normalize(ref_embeddings.float(), dim=-1),
                          F.normalize(key_embeddings.float(), dim=-1))
    used = positive | sampled_negative
    squared = (cosine - positive.float()) ** 2 * used
    count = used.sum(dim=1)
    per_instance = squared.sum(dim=1) / count.clamp(min=1)
    return per_instance.mean()


def reid_losses(key_embeddings: torch.Tensor, ref_embeddings: torch.Tensor, samples: ReidSamples,
                generator: torch.Generator | None = None) -> ReidLosses:
    """`loss_reid` and `loss_reid_aux` of a batch of clips.

    Args:
        key_embeddings: (B, Q, E) key-frame embeddings.
        ref_embeddings: (B, Q, E) reference-frame embeddings.
        samples: from `select_reid_samples`.
        generator: random source for the auxiliary negatives.

    Returns:
        ReidLosses; zeros (with graph) when there is no valid instance.
    """
    keys = key_embeddings[samples.image_idx, samples.key_query_idx]  # (G, E)
    refs = ref_embeddings[samples.image_idx]  # (G, Q, E)
    if keys.shape[0] == 0:
        zero = key_embeddings.sum() * 0.0 + ref_embeddings.sum() * 0.0
        return ReidLosses(contrastive=zero, aux=zero.clone())
    sampled = sample_aux_negatives(samples.positive, samples.negative, generator=generator)
    return ReidLosses(contrastive=contrastive_reid_loss(keys, refs, samples.positive, samples.negative),
                      aux=cosine_aux_loss(keys, refs, samples.positive, sampled))

"""Query-to-ground-truth assignment for training (reference §6.1, official `HungarianMatcherVL`).

Two matchers, both per image and without gradients:

* `DynamicKMatcher` — decoder layers (`OTA=True`): SimOTA-style dynamic-k assignment (Ge et al., YOLOX 2021, §2.3).
  cost = focal class cost + 3·(−GIoU) + 100·[query centre not inside the GT box *and* its centre region]
  + 10000 for queries whose centre lies in no GT box and no GT centre region. Each GT takes its
  k = max(1, ⌊Σ top-10 IoU⌋) cheapest queries; a query chosen by several GTs keeps only the GT with the lowest cost
  (over all GTs, as SimOTA); a GT left without a query then takes the cheapest free query. One GT → several queries.
* `HungarianMatcher` — encoder proposals: one-to-one `scipy.optimize.linear_sum_assignment` on
  2·class + 5·L1 + 2·(−GIoU); the encoder calls it with a single "object" token per GT.

Inputs are plain tensors. Shape letters: Q queries (or S encoder positions), T prompt tokens (1 for pooled prompts and
the encoder's objectness logit), N ground truths of the image. Boxes are `boxes_cxcywh`, normalised to [0, 1] of the
un-padded image. `positive_map` (N, T) bool marks the prompt tokens of each GT's name (one `True` for expressions,
templates and the encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, box_iou, generalized_box_iou

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
CENTER_RADIUS = 2.5 / 32  # ±2.5 strides of 32 px, in normalised image units (official `expanded_strides=32`)
_LOG_EPS = 1e-8


class Match(NamedTuple):
    """Assignment of one image: query `query_idx[i]` is trained towards ground truth `target_idx[i]`.

    Attributes:
        query_idx: (M,) int64 query indices, ascending and unique.
        target_idx: (M,) int64 ground-truth indices (repeated for dynamic-k, unique for Hungarian).
    """

    query_idx: torch.Tensor
    target_idx: torch.Tensor


class OtaCost(NamedTuple):
    """Dynamic-k inputs of one image.

    Attributes:
        cost: (Q, N) float assignment cost (lower is better).
        iou: (Q, N) float IoU of each predicted box with each GT box, in [0, 1].
    """

    cost: torch.Tensor
    iou: torch.Tensor


def empty_match(device: torch.device | None = None) -> Match:
    """A Match with no pairs (an image without ground truth)."""
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return Match(query_idx=empty, target_idx=empty.clone())


def _validate_image_inputs(logits: torch.Tensor, boxes_cxcywh: torch.Tensor, target_boxes_cxcywh: torch.Tensor,
                           positive_map: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be (Q, T); got shape {tuple(logits.shape)}")
    if boxes_cxcywh.shape != (logits.shape[0], 4):
        raise ValueError(f"boxes_cxcywh must be ({logits.shape[0]}, 4); got {tuple(boxes_cxcywh.shape)}")
    if target_boxes_cxcywh.dim() != 2 or target_boxes_cxcywh.shape[-1] != 4:
        raise ValueError(f"target boxes must be (N, 4); got {tuple(target_boxes_cxcywh.shape)}")
    if positive_map.shape != (target_boxes_cxcywh.shape[0], logits.shape[1]):
        raise ValueError(f"positive_map must be (N, T) = ({target_boxes_cxcywh.shape[0]}, {logits.shape[1]}); "
                         f"got {tuple(positive_map.shape)}")
    if positive_map.dtype != torch.bool:
        raise TypeError(f"positive_map must be torch.bool; got {positive_map.dtype}")
    tokens_per_gt = positive_map.sum(dim=1)
    if bool((tokens_per_gt == 0).any()):
        bad = torch.nonzero(tokens_per_gt == 0).flatten().tolist()
        raise ValueError(f"ground truths {bad} have no positive prompt token; expected at least one per GT")


def focal_class_cost(logits: torch.Tensor, positive_map: torch.Tensor, *, alpha: float = FOCAL_ALPHA,
                     gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Focal-style classification cost, averaged over each GT's name tokens (Deformable DETR matcher, GLIP tokens).

    With p = σ(logit): pos = α(1−p)^γ·(−log(p + 1e-8)), neg = (1−α)p^γ·(−log(1 − p + 1e-8));
    cost[q, n] = mean over tokens t with positive_map[n, t] of (pos − neg)[q, t].

    Args:
        logits: (Q, T) query-token logits.
        positive_map: (N, T) bool, at least one True per row.
        alpha: focal α.
        gamma: focal γ.

    Returns:
        (Q, N) float cost.
    """
    prob = logits.float().sigmoid()
    pos = alpha * (1 - prob) ** gamma * (-(prob + _LOG_EPS).log())
    neg = (1 - alpha) * prob**gamma * (-(1 - prob + _LOG_EPS).log())
    token_weight = positive_map.to(prob.dtype)
    token_weight = token_weight / token_weight.sum(dim=1, keepdim=True)  # (N, T) rows sum to 1
    return (pos - neg) @ token_weight.T


def center_prior(boxes_cxcywh: torch.Tensor, target_boxes_cxcywh: torch.Tensor,
                 *, radius: float = CENTER_RADIUS) -> tuple[torch.Tensor, torch.Tensor]:
    """Which query centres lie in a GT box and in its fixed centre region (SimOTA centre prior, strict inequalities).

    Args:
        boxes_cxcywh: (Q, 4) predicted boxes.
        target_boxes_cxcywh: (N, 4) GT boxes.
        radius: half side of the centre region around each GT centre, normalised units.

    Returns:
        candidate: (Q,) bool, centre inside at least one GT box or one centre region.
        in_box_and_center: (Q, N) bool, centre inside GT n's box and inside its centre region.
    """
    cx = boxes_cxcywh[:, 0:1]
    cy = boxes_cxcywh[:, 1:2]
    t_xyxy = box_convert(target_boxes_cxcywh, "cxcywh", "xyxy")
    in_box = (cx > t_xyxy[:, 0]) & (cx < t_xyxy[:, 2]) & (cy > t_xyxy[:, 1]) & (cy < t_xyxy[:, 3])
    tcx, tcy = target_boxes_cxcywh[:, 0], target_boxes_cxcywh[:, 1]
    in_center = (cx > tcx - radius) & (cx < tcx + radius) & (cy > tcy - radius) & (cy < tcy + radius)
    candidate = in_box.any(dim=1) | in_center.any(dim=1)
    return candidate, in_box & in_center


def ota_cost(logits: torch.Tensor, boxes_cxcywh: torch.Tensor, target_boxes_cxcywh: torch.Tensor,
             positive_map: torch.Tensor, *, cost_giou: float = 3.0, cost_center: float = 100.0,
             cost_outside: float = 10000.0) -> OtaCost:
    """Dynamic-k cost and IoU of one image (official `compute_cost`).

    Args:
        logits: (Q, T) query-token logits.
        boxes_cxcywh: (Q, 4) predicted boxes.
        target_boxes_cxcywh: (N, 4) GT boxes, N >= 1.
        positive_map: (N, T) bool name tokens of each GT.
        cost_giou: weight of −GIoU.
        cost_center: added where the query centre is not inside both the GT box and its centre region.
        cost_outside: added to queries whose centre is inside no GT box and no centre region.

    Returns:
        OtaCost with (Q, N) cost and IoU.
    """
    _validate_image_inputs(logits, boxes_cxcywh, target_boxes_cxcywh, positive_map)
    boxes_cxcywh = boxes_cxcywh.float()
    target_boxes_cxcywh = target_boxes_cxcywh.float()
    pred_xyxy = box_convert(boxes_cxcywh, "cxcywh", "xyxy")
    target_xyxy = box_convert(target_boxes_cxcywh, "cxcywh", "xyxy")
    candidate, in_box_and_center = center_prior(boxes_cxcywh, target_boxes_cxcywh)
    cost = (focal_class_cost(logits, positive_map)
            - cost_giou * generalized_box_iou(pred_xyxy, target_xyxy)
            + cost_center * (~in_box_and_center).float()
            + cost_outside * (~candidate).float()[:, None])
    return OtaCost(cost=cost, iou=box_iou(pred_xyxy, target_xyxy))


def _keep_cheapest_target(assigned: torch.Tensor, cost: torch.Tensor) -> None:
    """In place: a query assigned to several GTs keeps only the GT of lowest cost (argmin over all GTs)."""
    shared = assigned.sum(dim=1) > 1
    if bool(shared.any()):
        cheapest = cost[shared].argmin(dim=1)
        assigned[shared] = torch.nn.functional.one_hot(cheapest, cost.shape[1]).bool()


def dynamic_k_assignment(cost: torch.Tensor, iou: torch.Tensor, *, num_candidates: int = 10) -> torch.Tensor:
    """SimOTA dynamic-k assignment of one image (official `dynamic_k_matching`).

    k_n = max(1, ⌊Σ of the top-`num_candidates` IoUs of GT n⌋); GT n takes its k_n cheapest queries; a query taken
    by several GTs keeps the GT of lowest cost; every GT left empty then takes its cheapest query among those not yet
    assigned (again resolving shared queries by cost) until each GT has at least one query.

    Args:
        cost: (Q, N) assignment cost, N <= Q.
        iou: (Q, N) IoU in [0, 1].
        num_candidates: how many top IoUs set k (10 for matching; the re-ID sampler also uses 100).

    Returns:
        (Q, N) bool, at most one True per row and at least one per column.
    """
    num_queries, num_gt = cost.shape
    if num_gt > num_queries:
        raise ValueError(f"dynamic-k needs at least as many queries as ground truths; got Q={num_queries}, "
                         f"N={num_gt}")
    assigned = torch.zeros_like(cost, dtype=torch.bool)
    if num_gt == 0:
        return assigned
    top_iou = iou.topk(min(num_queries, num_candidates), dim=0).values
    dynamic_k = top_iou.sum(dim=0).int().clamp(min=1)  # (N,), ⌊Σ⌋ via truncation of a non-negative sum
    order = cost.argsort(dim=0, stable=True)  # (Q, N) queries by increasing cost per GT
    rank_selected = torch.arange(num_queries, device=cost.device)[:, None] < dynamic_k[None, :]
    assigned.scatter_(0, order, rank_selected)
    _keep_cheapest_target(assigned, cost)

    while True:
        empty_gt = torch.nonzero(~assigned.any(dim=0)).flatten()
        if empty_gt.numel() == 0:
            return assigned
        free = ~assigned.any(dim=1)
        if bool(free.any()):
            cost_free = cost[:, empty_gt].masked_fill(~free[:, None], float("inf"))
            assigned[cost_free.argmin(dim=0), empty_gt] = True
            _keep_cheapest_target(assigned, cost)
        else:
            # Every query is taken (only possible when N is close to Q): move the cheapest query away from a GT
            # that holds several.
            gt = int(empty_gt[0])
            spare = assigned[:, assigned.sum(dim=0) > 1].any(dim=1)
            query = int(cost[:, gt].masked_fill(~spare, float("inf")).argmin())
            assigned[query] = False
            assigned[query, gt] = True


def best_query_per_target(cost: torch.Tensor, assigned: torch.Tensor) -> torch.Tensor:
    """For each GT, its assigned query of lowest cost (the re-ID key query of §6.4).

    Args:
        cost: (Q, N) cost.
        assigned: (Q, N) bool from `dynamic_k_assignment` (at least one True per column).

    Returns:
        (N,) int64 query index per GT.
    """
    return cost.masked_fill(~assigned, float("inf")).argmin(dim=0)


def assignment_to_match(assigned: torch.Tensor) -> Match:
    """(Q, N) bool assignment (one True per row at most) -> Match sorted by query."""
    query_idx, target_idx = torch.nonzero(assigned, as_tuple=True)
    return Match(query_idx=query_idx.long(), target_idx=target_idx.long())


def _check_batch(logits: torch.Tensor, boxes_cxcywh: torch.Tensor, target_boxes_cxcywh: Sequence[torch.Tensor],
                 positive_maps: Sequence[torch.Tensor]) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, Q, T); got shape {tuple(logits.shape)}")
    if boxes_cxcywh.shape != (*logits.shape[:2], 4):
        raise ValueError(f"boxes_cxcywh must be {(*logits.shape[:2], 4)}; got {tuple(boxes_cxcywh.shape)}")
    batch = logits.shape[0]
    if len(target_boxes_cxcywh) != batch or len(positive_maps) != batch:
        raise ValueError(f"expected ground truth for {batch} images; got {len(target_boxes_cxcywh)} box tensors and "
                         f"{len(positive_maps)} positive maps")


class DynamicKMatcher:
    """Decoder-layer matcher: SimOTA dynamic-k per image (see module docstring; official `forward_ota`).

    Args:
        num_candidates: top IoUs summed for k (10).
        cost_giou: weight of −GIoU (3).
        cost_center: penalty outside box ∩ centre region (100).
        cost_outside: penalty for queries outside every box and centre region (10000).
    """

    def __init__(self, *, num_candidates: int = 10, cost_giou: float = 3.0, cost_center: float = 100.0,
                 cost_outside: float = 10000.0) -> None:
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1; got {num_candidates}")
        self.num_candidates = num_candidates
        self.cost_giou = cost_giou
        self.cost_center = cost_center
        self.cost_outside = cost_outside

    def cost(self, logits: torch.Tensor, boxes_cxcywh: torch.Tensor, target_boxes_cxcywh: torch.Tensor,
             positive_map: torch.Tensor) -> OtaCost:
        """`ota_cost` of one image with this matcher's weights ((Q, T), (Q, 4), (N, 4), (N, T) -> (Q, N))."""
        return ota_cost(logits, boxes_cxcywh, target_boxes_cxcywh, positive_map, cost_giou=self.cost_giou,
                        cost_center=self.cost_center, cost_outside=self.cost_outside)

    @torch.no_grad()
    def __call__(self, logits: torch.Tensor, boxes_cxcywh: torch.Tensor,
                 target_boxes_cxcywh: Sequence[torch.Tensor], positive_maps: Sequence[torch.Tensor]) -> list[Match]:
        """Assign queries to ground truths, image by image.

        Args:
            logits: (B, Q, T) query-token logits of one decoder layer (denoising queries removed).
            boxes_cxcywh: (B, Q, 4) predicted boxes of that layer.
            target_boxes_cxcywh: B tensors (N_b, 4), GT boxes per image (N_b may be 0).
            positive_maps: B bool tensors (N_b, T), GT name tokens per image.

        Returns:
            B Matches; an image without ground truth gets an empty Match.
        """
        _check_batch(logits, boxes_cxcywh, target_boxes_cxcywh, positive_maps)
        matches = []
        for logits_i, boxes_i, targets_i, positive_i in zip(logits, boxes_cxcywh, target_boxes_cxcywh,
                                                            positive_maps, strict=True):
            if targets_i.shape[0] == 0:
                matches.append(empty_match(logits.device))
                continue
            cost_i = self.cost(logits_i, boxes_i, targets_i, positive_i)
            assigned = dynamic_k_assignment(cost_i.cost, cost_i.iou, num_candidates=self.num_candidates)
            matches.append(assignment_to_match(assigned))
        return matches


class HungarianMatcher:
    """One-to-one matcher for the encoder proposals (DETR, Carion et al. 2020, Eq. 1; official `forward`).

    cost = cost_class·focal class cost + cost_l1·‖b − b̂‖₁ (cxcywh) + cost_giou·(−GIoU), solved per image with
    scipy's `linear_sum_assignment` on CPU.

    Args:
        cost_class: weight of the focal class cost (2).
        cost_l1: weight of the L1 box distance (5).
        cost_giou: weight of −GIoU (2).
    """

    def __init__(self, *, cost_class: float = 2.0, cost_l1: float = 5.0, cost_giou: float = 2.0) -> None:
        if cost_class == 0 and cost_l1 == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher needs at least one non-zero cost weight; got all three 0")
        self.cost_class = cost_class
        self.cost_l1 = cost_l1
        self.cost_giou = cost_giou

    def cost(self, logits: torch.Tensor, boxes_cxcywh: torch.Tensor, target_boxes_cxcywh: torch.Tensor,
             positive_map: torch.Tensor) -> torch.Tensor:
        """(Q, N) matching cost of one image from (Q, T) logits, (Q, 4) boxes, (N, 4) GT boxes, (N, T) tokens."""
        _validate_image_inputs(logits, boxes_cxcywh, target_boxes_cxcywh, positive_map)
        boxes_cxcywh = boxes_cxcywh.float()
        target_boxes_cxcywh = target_boxes_cxcywh.float()
        giou = generalized_box_iou(box_convert(boxes_cxcywh, "cxcywh", "xyxy"),
                                   box_convert(target_boxes_cxcywh, "cxcywh", "xyxy"))
        return (self.cost_class * focal_class_cost(logits, positive_map)
                + self.cost_l1 * torch.cdist(boxes_cxcywh, target_boxes_cxcywh, p=1)
                - self.cost_giou * giou)

    @torch.no_grad()
    def __call__(self, logits: torch.Tensor, boxes_cxcywh: torch.Tensor,
                 target_boxes_cxcywh: Sequence[torch.Tensor], positive_maps: Sequence[torch.Tensor]) -> list[Match]:
        """One-to-one assignment, image by image.

        Args:
            logits: (B, Q, T) logits (the encoder passes its (B, S, 1) objectness logits).
            boxes_cxcywh: (B, Q, 4) predicted boxes.
            target_boxes_cxcywh: B tensors (N_b, 4).
            positive_maps: B bool tensors (N_b, T) (the encoder passes all-True (N_b, 1)).

        Returns:
            B Matches of min(Q, N_b) pairs each, sorted by query index.
        """
        _check_batch(logits, boxes_cxcywh, target_boxes_cxcywh, positive_maps)
        matches = []
        for logits_i, boxes_i, targets_i, positive_i in zip(logits, boxes_cxcywh, target_boxes_cxcywh,
                                                            positive_maps, strict=True):
            if targets_i.shape[0] == 0:
                matches.append(empty_match(logits.device))
                continue
            cost_i = self.cost(logits_i, boxes_i, targets_i, positive_i)
            rows, cols = linear_sum_assignment(cost_i.cpu().numpy())
            matches.append(Match(query_idx=torch.as_tensor(rows, dtype=torch.int64, device=logits.device),
                                 target_idx=torch.as_tensor(cols, dtype=torch.int64, device=logits.device)))
        return matches

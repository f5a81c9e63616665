"""A Backend wrapper that keeps every candidate the network proposed, for tools that ask "what else could the session
have chosen?" (`tune_sot_prior` replays SOT choices, `diagnose_rec` ranks the REC candidates)."""

from __future__ import annotations

import torch

from uninext_core.deploy.backend import Backend
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.tasks.scoring import pooled_scores


class RecordingBackend:
    """A Backend that forwards every call and keeps (scores, normalised cxcywh boxes) of each `infer`.

    The scores are the session's own selection scores for expression and template prompts (pooled logit with the IoU
    branch, `pooled_scores`), one per query.
    """

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.records: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        raw = self._inner.infer(images, pixel_mask, prompt)
        self.records.append((pooled_scores(raw, use_iou=True).cpu(), raw.boxes_cxcywh[0].float().cpu()))
        return raw

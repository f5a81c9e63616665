"""The Backend methods both exported runtimes share (ONNX Runtime, TensorRT): they differ only in how one exported
part runs on a feed of numpy arrays (`_run`); padding to prompt buckets, stacking and turning outputs into RawOutputs
come from export_manifest, and the dynamic mask head runs on the host."""

from __future__ import annotations

import numpy as np
import torch

from uninext_core.deploy.backend import ModelSpec
from uninext_core.deploy.export_manifest import (
    ExportManifest,
    host_mask_logits,
    main_feed,
    raw_outputs,
    stack_prompt_features,
    template_feeds,
    text_feeds,
)
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.text_encoder import TokenizedText


class ExportedBackend:
    """Base of the backends that run an uninext-export folder; subclasses set `manifest`, `spec` and `_run`."""

    manifest: ExportManifest
    spec: ModelSpec

    def _run(self, part: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name of the exported `part` ("text_encoder", "template_encoder", "main") on `feed`."""
        raise TypeError(f"{type(self).__name__} must define _run(part, feed)")

    def encode_text(self, tokens: TokenizedText) -> PromptFeatures:
        """See Backend.encode_text: (B, T) ids and mask -> PromptFeatures (B, T, C_l) float32 on the CPU."""
        input_ids, attention_mask = tokens
        pieces = [(self._run("text_encoder", feed)["hidden"], feed["attention_mask"].astype(bool))
                  for feed in text_feeds(self.manifest, input_ids, attention_mask)]
        return stack_prompt_features(pieces)

    def encode_template(self, crops: torch.Tensor, padding: torch.Tensor | None = None) -> PromptFeatures:
        """See Backend.encode_template: (B, 4, S, S) crops (+ (B, S, S) padding) -> PromptFeatures."""
        pieces = []
        for feed in template_feeds(self.manifest, crops, padding):
            out = self._run("template_encoder", feed)
            pieces.append((out["hidden"], out["mask"]))
        return stack_prompt_features(pieces)

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        """See Backend.infer: (1, 3, H, W) at `fixed_input_size` + (1, H, W) mask + prompt -> RawOutputs."""
        feed, tokens = main_feed(self.manifest, images, pixel_mask, prompt)
        return raw_outputs(self.manifest, self._run("main", feed), tokens)

    def mask_logits(self, raw: RawOutputs, query_idx: torch.Tensor) -> torch.Tensor:
        """See Backend.mask_logits: (K,) query indices -> (K, H/4, W/4) float32 logits (host-side dynamic head)."""
        return host_mask_logits(self.spec, raw, query_idx)

"""The `Backend` contract: what the perception session needs from whatever runs the network.

A backend runs the three network pieces the session calls (reference §11.3): the text encoder, the template encoder
and the main network, plus the dynamic mask head on chosen queries. Everything else — resizing, normalising,
padding, the template crop, class averaging, NMS, top-k, template updates and trackers — is host-side task code in
`uninext_core.tasks`, shared by every backend (reference §11.1), so backends stay small and parity tests compare
them field by field on `RawOutputs`.

Implementations: `TorchBackend` (torch_backend.py); ONNX Runtime and TensorRT backends follow the same contract.

Device and dtype rules (every implementation):
* inputs may live on any device; the backend moves them to its own;
* every returned tensor is float32 (bool for masks) on `backend.device`; `PromptFeatures` returned by the encoders
  are passed back unchanged to `infer` (the session caches them per prompt);
* calls never build autograd graphs and never change the backend's state, so one backend can serve several
  sessions (one per camera) as long as calls are not made concurrently from several threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from uninext_core.config import UninextConfig, load_config
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.text_encoder import TokenizedText


@dataclass(frozen=True)
class ModelSpec:
    """Facts about the network behind a backend that host-side pre/post-processing needs.

    Attributes:
        name: preset / model name (e.g. "tiny").
        pixel_mean: RGB mean on the 0-255 scale subtracted before the network.
        pixel_std: RGB std on the 0-255 scale the image is divided by.
        size_divisibility: padded input sides are multiples of this (32).
        test_short_side: default inference short side in pixels (official 800; tiny 320).
        test_max_size: default bound of the long side after resizing (official 1333; tiny 384).
        max_text_tokens: T of text prompts, [CLS]/[SEP] included (official 256).
        template_size: side S of the (4, S, S) template crop, or None when the model has no template encoder.
        template_search_area_factor: template crop side / sqrt(box area) (official 2).
        num_queries: Q.
        embedding_dim: E of the re-ID embeddings, 0 without the re-ID head.
        mask_dynamic_channels: D of the dynamic mask convs (8).
        mask_dynamic_layers: number of dynamic mask convs (3).
        mask_out_stride: stride of `mask_logits` relative to the padded input (4).
    """

    name: str
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    size_divisibility: int
    test_short_side: int
    test_max_size: int
    max_text_tokens: int
    template_size: int | None
    template_search_area_factor: float
    num_queries: int
    embedding_dim: int
    mask_dynamic_channels: int
    mask_dynamic_layers: int
    mask_out_stride: int

    def __post_init__(self) -> None:
        for field_name in ("size_divisibility", "test_short_side", "test_max_size", "max_text_tokens",
                           "num_queries", "mask_out_stride"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelSpec.{field_name} must be a positive int, got {value!r}")
        if self.test_max_size < self.test_short_side:
            raise ValueError(f"ModelSpec.test_max_size {self.test_max_size} is below test_short_side "
                             f"{self.test_short_side}")
        if self.template_size is not None and self.template_size < 8:
            raise ValueError(f"ModelSpec.template_size must be None or >= 8, got {self.template_size}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError(f"ModelSpec needs 3 means and 3 positive stds, got {self.pixel_mean} and {self.pixel_std}")

    @property
    def has_template_encoder(self) -> bool:
        """True when template prompts (SOT/VOS) can be encoded."""
        return self.template_size is not None

    @property
    def has_embeddings(self) -> bool:
        """True when RawOutputs.embeddings carry re-ID embeddings (MOT/MOTS/VIS trackers need them)."""
        return self.embedding_dim > 0


def model_spec(preset_or_config: str | UninextConfig) -> ModelSpec:
    """The ModelSpec of a preset name, YAML path or UninextConfig (the one reader of the config here)."""
    cfg = preset_or_config if isinstance(preset_or_config, UninextConfig) else load_config(preset_or_config)
    return ModelSpec(
        name=cfg.name,
        pixel_mean=tuple(float(v) for v in cfg.input.pixel_mean),
        pixel_std=tuple(float(v) for v in cfg.input.pixel_std),
        size_divisibility=cfg.input.size_divisibility,
        test_short_side=cfg.input.test_short_side,
        test_max_size=cfg.input.test_max_size,
        max_text_tokens=cfg.text.max_tokens,
        template_size=cfg.template.size if cfg.template.enabled else None,
        template_search_area_factor=cfg.template.search_area_factor,
        num_queries=cfg.transformer.num_queries,
        embedding_dim=cfg.heads.reid_dim if cfg.heads.reid else 0,
        mask_dynamic_channels=cfg.heads.mask_dynamic_channels,
        mask_dynamic_layers=cfg.heads.mask_dynamic_layers,
        mask_out_stride=cfg.heads.mask_out_stride,
    )


@runtime_checkable
class Backend(Protocol):
    """Runs the UNINEXT network for the perception session (see the module docstring for device/dtype rules).

    Attributes:
        name: short backend name for logs and diagnostics ("torch", "onnxruntime", "tensorrt").
        device: torch device the outputs live on.
        fixed_input_size: (H, W) every `infer` input must have (static-shape engines), or None when any size that
            is a multiple of spec.size_divisibility works (torch). The session letterboxes into a fixed size.
        spec: the network facts pre/post-processing needs.
    """

    name: str
    device: torch.device
    fixed_input_size: tuple[int, int] | None
    spec: ModelSpec

    def encode_text(self, tokens: TokenizedText) -> PromptFeatures:
        """Text-encoder features of tokenised prompts.

        Args:
            tokens: (B, T) int64 input_ids and attention_mask (T = spec.max_text_tokens).

        Returns:
            PromptFeatures: hidden (B, T, C_l) float32, mask (B, T) bool (True on real tokens).
        """
        ...

    def encode_template(self, crops: torch.Tensor, padding: torch.Tensor | None = None) -> PromptFeatures:
        """Visual prompt tokens of 4-channel template crops (template_crop.crop_template_with_padding).

        Args:
            crops: (B, 4, S, S) float: normalised RGB + target prior in [0, 1] (S = spec.template_size).
            padding: optional (B, S, S) bool, True where the crop lies outside the frame.

        Returns:
            PromptFeatures: hidden (B, (S/8)², C_l) float32, mask (B, (S/8)²) bool.

        Raises:
            ValueError: the model has no template encoder (spec.template_size is None) or wrong shapes.
        """
        ...

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        """One forward of the main network.

        Args:
            images: (1, 3, H, W) float32, normalised, zero-padded bottom/right to multiples of
                spec.size_divisibility (or exactly fixed_input_size).
            pixel_mask: (1, H, W) bool, True on valid (un-padded) pixels, a top-left rectangle.
            prompt: PromptFeatures from encode_text / encode_template (or their concatenation), batch 1.

        Returns:
            RawOutputs of batch 1 (boxes_cxcywh normalised to the un-padded image).
        """
        ...

    def mask_logits(self, raw: RawOutputs, query_idx: torch.Tensor) -> torch.Tensor:
        """Dynamic mask head (CondInst, reference §5.4) on chosen queries of a batch-1 `infer` result.

        Args:
            raw: RawOutputs returned by `infer` (batch 1).
            query_idx: (K,) int64 query indices in [0, Q); K may be 0.

        Returns:
            (K, H / mask_out_stride, W / mask_out_stride) float32 mask logits over the padded input.
        """
        ...

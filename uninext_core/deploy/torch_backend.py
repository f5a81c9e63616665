"""`TorchBackend`: the Backend contract on an eager PyTorch `Uninext` (CPU or CUDA, optional FP16 autocast)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import torch

from uninext_core.config import UninextConfig, load_config
from uninext_core.deploy.backend import ModelSpec, model_spec
from uninext_core.model.build import build_model
from uninext_core.model.fusion import use_fp16_safe_mask
from uninext_core.model.mask_head import MASK_FEATURE_STRIDE, masks_for_queries
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.text_encoder import TokenizedText
from uninext_core.model.uninext import Uninext

logger = logging.getLogger(__name__)


class TorchBackend:
    """Runs an eager `Uninext` in eval mode under `torch.inference_mode` (Backend contract, backend.py).

    Args:
        model: the network (put in eval mode and moved to `device` here).
        spec: facts about the network (`model_spec(cfg)` of the config it was built from); checked against the
            model's query count, template branch and re-ID head.
        device: "cpu", "cuda", "cuda:1" or a torch.device.
        fp16: run the main network and the encoders under float16 autocast (CUDA only); outputs are float32. The
            model's fusion layers get the float16-safe prompt mask (`fusion.use_fp16_safe_mask`).

    Raises:
        ValueError: fp16 on a non-CUDA device, an unavailable CUDA device, or a spec that does not fit the model.

    Example:
        >>> backend = build_torch_backend("tiny")
        >>> raw = backend.infer(images, pixel_mask, backend.encode_text(tokens))
    """

    name = "torch"
    fixed_input_size: tuple[int, int] | None = None

    def __init__(self, model: Uninext, *, spec: ModelSpec, device: str | torch.device = "cpu",
                 fp16: bool = False) -> None:
        device = torch.device(device)
        if fp16 and device.type != "cuda":
            raise ValueError(f"fp16 autocast needs a CUDA device, got device {str(device)!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
        _check_spec(model, spec)
        if fp16:
            use_fp16_safe_mask(model)  # −9e15 overflows float16 (found on an H100); fp32 results stay the same
        self.model = model.eval().to(device)
        self.spec = spec
        self.device = device
        self.fp16 = fp16

    def _autocast(self) -> AbstractContextManager:
        if self.fp16:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return nullcontext()

    def encode_text(self, tokens: TokenizedText) -> PromptFeatures:
        """See Backend.encode_text: (B, T) ids and mask -> PromptFeatures (B, T, C_l) float32 on `device`."""
        input_ids, attention_mask = tokens
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"tokens must be (B, T) input_ids and attention_mask of the same shape, got "
                             f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_text(input_ids.to(self.device), attention_mask.to(self.device))
        return PromptFeatures(features.hidden.float(), features.mask.bool())

    def encode_template(self, crops: torch.Tensor, padding: torch.Tensor | None = None) -> PromptFeatures:
        """See Backend.encode_template: (B, 4, S, S) crops (+ (B, S, S) padding) -> PromptFeatures."""
        size = self.spec.template_size
        if size is None:
            raise ValueError(f"model {self.spec.name!r} has no template encoder (built with video=False); "
                             f"template prompts need a video model")
        if crops.dim() != 4 or tuple(crops.shape[1:]) != (4, size, size):
            raise ValueError(f"crops must be (B, 4, {size}, {size}), got {tuple(crops.shape)}")
        if padding is not None and tuple(padding.shape) != (crops.shape[0], size, size):
            raise ValueError(f"padding must be ({crops.shape[0]}, {size}, {size}), got {tuple(padding.shape)}")
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_template(crops.to(self.device, torch.float32),
                                                  None if padding is None else padding.to(self.device, torch.bool))
        return PromptFeatures(features.hidden.float(), features.mask.bool())

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        """See Backend.infer: (1, 3, H, W) image + (1, H, W) mask + prompt -> RawOutputs float32 on `device`."""
        if images.dim() != 4 or images.shape[:2] != (1, 3):
            raise ValueError(f"images must be (1, 3, H, W), got {tuple(images.shape)}")
        d = self.spec.size_divisibility
        if images.shape[2] % d or images.shape[3] % d:
            raise ValueError(f"image size {tuple(images.shape[2:])} is not padded to a multiple of {d}")
        with torch.inference_mode(), self._autocast():
            raw = self.model(images.to(self.device, torch.float32), pixel_mask.to(self.device, torch.bool),
                             PromptFeatures(prompt.hidden.to(self.device), prompt.mask.to(self.device)))
        return RawOutputs(*(field.float() for field in raw))

    def mask_logits(self, raw: RawOutputs, query_idx: torch.Tensor) -> torch.Tensor:
        """See Backend.mask_logits: (K,) query indices -> (K, H/4, W/4) float32 logits on `device`."""
        if query_idx.dim() != 1:
            raise ValueError(f"query_idx must be (K,), got shape {tuple(query_idx.shape)}")
        height8, width8 = raw.mask_features.shape[-2:]
        factor = MASK_FEATURE_STRIDE // self.spec.mask_out_stride
        if query_idx.numel() == 0:
            return torch.zeros(0, height8 * factor, width8 * factor, device=self.device)
        with torch.inference_mode():
            logits = masks_for_queries(raw, query_idx.to(self.device, torch.int64)[None],
                                       channels=self.spec.mask_dynamic_channels,
                                       num_layers=self.spec.mask_dynamic_layers,
                                       out_stride=self.spec.mask_out_stride)
        return logits[0].float()


def _check_spec(model: Uninext, spec: ModelSpec) -> None:
    problems = []
    if model.transformer.num_queries != spec.num_queries:
        problems.append(f"num_queries {model.transformer.num_queries} vs spec {spec.num_queries}")
    if (model.template_encoder is None) != (spec.template_size is None):
        problems.append(f"template encoder {'absent' if model.template_encoder is None else 'present'} vs spec "
                        f"template_size {spec.template_size}")
    if (model.reid_head is None) != (spec.embedding_dim == 0):
        problems.append(f"re-ID head {'absent' if model.reid_head is None else 'present'} vs spec embedding_dim "
                        f"{spec.embedding_dim}")
    if model.size_divisibility != spec.size_divisibility:
        problems.append(f"size_divisibility {model.size_divisibility} vs spec {spec.size_divisibility}")
    if model.text_encoder.max_tokens != spec.max_text_tokens:
        problems.append(f"text max_tokens {model.text_encoder.max_tokens} vs spec {spec.max_text_tokens}")
    if problems:
        raise ValueError(f"ModelSpec {spec.name!r} does not describe this model: " + "; ".join(problems))


def build_torch_backend(preset_or_config: str | UninextConfig, *, model: Uninext | None = None,
                        device: str | torch.device = "cpu", fp16: bool = False) -> TorchBackend:
    """A TorchBackend for a preset name, YAML path or config.

    Args:
        preset_or_config: "tiny", "r50", ..., a YAML path or a UninextConfig.
        model: the network built from that config (e.g. with loaded weights); None builds one with random weights.
        device: torch device.
        fp16: float16 autocast (CUDA only).
    """
    cfg = preset_or_config if isinstance(preset_or_config, UninextConfig) else load_config(preset_or_config)
    if model is None:
        logger.warning("building %s with random weights (no model given)", cfg.name)
        model = build_model(cfg)
    return TorchBackend(model, spec=model_spec(cfg), device=device, fp16=fp16)

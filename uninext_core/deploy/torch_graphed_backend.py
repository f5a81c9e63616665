"""`CudaGraphTorchBackend`: TorchBackend with the main network replayed from CUDA graphs (CUDA only).

Per-frame launch overhead of ~1,000 small kernels dominates the eager r50 forward on a fast GPU; a CUDA graph
replays the whole forward with one launch. Capture needs static shapes (the session letterboxes frames into
`fixed_input_size`; prompts are padded with masked tokens to a bucket, exactly as for the ONNX backends) and a
forward without host synchronisation or copies from pageable host memory: the level-size constants are filled on the
device (`deform_attn.level_sizes_wh`), never made with `torch.tensor(list, device=cuda)`, and
tests/core/deploy/test_torch_graphed_backend.py checks on the CPU that the forward makes no tensor from host data.
The forward is traced (`torch.jit.trace`) at the bucket's shapes, captured once per prompt bucket and replayed. FP16
autocast is traced in (the casts become part of the traced graph). Text and template encoders stay eager (they run
once per prompt change).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from typing import NamedTuple

import torch
from torch import nn

from uninext_core.deploy.backend import ModelSpec
from uninext_core.deploy.export_manifest import default_prompt_buckets
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.uninext import Uninext

logger = logging.getLogger(__name__)


class _Forward(nn.Module):
    def __init__(self, model: Uninext) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, pixel_mask: torch.Tensor, hidden: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(images, pixel_mask, PromptFeatures(hidden, mask)))


def trace_main_network(model: Uninext, example: Sequence[torch.Tensor], *,
                       autocast_dtype: torch.dtype | None = None) -> torch.jit.ScriptModule:
    """Trace the main network at the shapes of `example` = (images, pixel_mask, prompt_hidden, prompt_mask).

    The traced module returns the RawOutputs fields as a tuple; shape-derived constants are frozen, so it is valid
    only at the example's shapes. With `autocast_dtype`, tracing runs under autocast on the example's device and
    the casts are recorded: run the traced module without autocast.
    """
    device_type = example[0].device.type
    autocast = (torch.autocast(device_type=device_type, dtype=autocast_dtype) if autocast_dtype is not None
                else nullcontext())
    with torch.no_grad(), autocast:
        return torch.jit.trace(_Forward(model).eval(), tuple(example), check_trace=False)


class _CapturedForward(NamedTuple):
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]


class CudaGraphTorchBackend(TorchBackend):
    """TorchBackend whose `infer` replays a CUDA graph per prompt bucket (see the module docstring).

    Args:
        model: the network.
        spec: ModelSpec of the config it was built from.
        input_size: (H, W) every frame is letterboxed to (multiples of spec.size_divisibility).
        device: a CUDA device.
        fp16: float16 autocast (traced into the graphs).
        prompt_buckets: prompt lengths graphs are captured for (lazily, on first use); None: text tokens,
            template tokens and two templates.
        warmup: forwards run on a side stream before each capture.

    Raises:
        ValueError: a non-CUDA device, CUDA unavailable, or a bad input size.
    """

    def __init__(self, model: Uninext, *, spec: ModelSpec, input_size: tuple[int, int],
                 device: str | torch.device = "cuda", fp16: bool = False,
                 prompt_buckets: Sequence[int] | None = None, warmup: int = 3) -> None:
        if torch.device(device).type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got device {str(device)!r}")
        super().__init__(model, spec=spec, device=device, fp16=fp16)
        height, width = input_size
        d = spec.size_divisibility
        if height % d or width % d or height <= 0 or width <= 0:
            raise ValueError(f"input_size must be positive multiples of {d}, got {tuple(input_size)}")
        self.fixed_input_size = (int(height), int(width))
        self.prompt_buckets = tuple(sorted(prompt_buckets or default_prompt_buckets(spec)))
        self.warmup = warmup
        self._captured: dict[int, _CapturedForward] = {}

    def _capture(self, tokens: int) -> _CapturedForward:
        height, width = self.fixed_input_size
        text_dim = self.model.text_encoder.hidden_dim
        inputs = (torch.zeros(1, 3, height, width, device=self.device),
                  torch.ones(1, height, width, dtype=torch.bool, device=self.device),
                  torch.zeros(1, tokens, text_dim, device=self.device),
                  torch.ones(1, tokens, dtype=torch.bool, device=self.device))
        traced = trace_main_network(self.model, inputs, autocast_dtype=torch.float16 if self.fp16 else None)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.jit.optimized_execution(False):
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    traced(*inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    outputs = traced(*inputs)
            except RuntimeError as error:
                raise RuntimeError(f"CUDA graph capture of the main network failed at T={tokens}: {error}") from error
        logger.info("captured a CUDA graph of the main network at %dx%d, T=%d (fp16=%s)", height, width, tokens,
                    self.fp16)
        return _CapturedForward(graph=graph, inputs=inputs, outputs=tuple(outputs))

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        """See Backend.infer: (1, 3, H, W) at `fixed_input_size` + (1, H, W) mask + prompt -> RawOutputs."""
        height, width = self.fixed_input_size
        if tuple(images.shape) != (1, 3, height, width) or tuple(pixel_mask.shape) != (1, height, width):
            raise ValueError(f"images must be (1, 3, {height}, {width}) and pixel_mask (1, {height}, {width}), got "
                             f"{tuple(images.shape)} and {tuple(pixel_mask.shape)}")
        tokens = prompt.hidden.shape[1]
        bucket = next((b for b in self.prompt_buckets if tokens <= b), None)
        if bucket is None:
            raise ValueError(f"prompt has {tokens} tokens, longer than the largest CUDA-graph bucket "
                             f"{self.prompt_buckets[-1]} (buckets {list(self.prompt_buckets)})")
        captured = self._captured.get(bucket)
        if captured is None:
            captured = self._captured[bucket] = self._capture(bucket)
        static_images, static_mask, static_hidden, static_prompt_mask = captured.inputs
        with torch.no_grad():
            static_images.copy_(images)
            static_mask.copy_(pixel_mask)
            static_hidden.zero_()
            static_hidden[:, :tokens].copy_(prompt.hidden)
            static_prompt_mask.zero_()
            static_prompt_mask[:, :tokens].copy_(prompt.mask)
            captured.graph.replay()
            fields = [out.float().clone() for out in captured.outputs]
        fields[RawOutputs._fields.index("token_logits")] = fields[0][:, :, :tokens].contiguous()
        return RawOutputs(*fields)

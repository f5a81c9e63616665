"""Export the UNINEXT network (not the trackers) to ONNX in three parts (reference §11.3).

* `text_encoder.onnx`: BERT, then the text adapter where the preset has one; input_ids / attention_mask (1, T_text)
  int64 -> hidden (1, T_text, C_l) float32. The mask of the prompt is the attention mask itself and is made on the
  host.
* `template_encoder.onnx` (video models): crops (1, 4, S, S) float32 + padding (1, S, S) bool -> hidden
  (1, (S/8)², C_l) float32 and mask (1, (S/8)²) bool.
* `main.onnx`: images (1, 3, H, W) float32 + pixel_mask (1, H, W) bool + prompt_hidden (1, T, C_l) float32 +
  prompt_mask (1, T) bool -> the `RawOutputs` fields by name (`embeddings` only when the model has a re-ID head).

Choices, and why:
* **Static image size per export.** Level sizes, proposal anchors, `spatial_shapes` and the top-K all fold into
  constants (reference §11.1); the padding mask stays an input, so frames smaller than the export size are letterboxed
  with exactly the eager model's padding semantics (valid ratios, sine positions, invalid proposals).
* **Prompt length: one bounded dynamic axis (`prompt_tokens`) plus buckets, not one file per bucket.** The axis is
  bounded by the smallest and largest bucket (default: the text length, template tokens (S/8)² and two templates
  for the SOT/VOS online update — r50: 256, 1024, 2048; tiny: 64, 256, 512). Only per-token ops, matrix products,
  softmaxes and masked reductions touch that axis, so one graph serves every bucket; separate files would duplicate
  the main network's weights per bucket and multiply TensorRT build time. At run time the backends pad a prompt
  with masked tokens up to the smallest bucket (exactly zero attention weight, so valid outputs are unchanged),
  which keeps ONNX Runtime and TensorRT to 2-3 shapes (TensorRT: one optimisation profile min = first bucket,
  opt = text bucket, max = last bucket). A prompt longer than the last bucket is rejected with a ValueError.
  Image-only models have one bucket and a static axis.
* **torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`), opset 18.** On the `tiny` main network
  (MobileNetV3 preset, 320×384) it gives 1,348 nodes with a single Shape op (the dynamic prompt axis); the
  TorchScript exporter (`dynamo=False`) gives 3,783 nodes, 1,358 of them Constant nodes and 189 Shape ops feeding
  Gather -> Unsqueeze -> Concat chains for the same axis. Its optimiser folds every static shape, and TopK's K
  arrives as an initializer — which TensorRT 8.x parsers require (onnx-tensorrt operators.md: "K input must be an
  initializer"); the TorchScript path gives a Constant node. It is also torch's supported exporter (the TorchScript
  one is deprecated). Cost: export is slower (tiny main network ≈ 43 s vs 5 s on a shared core; r50 at 320×320
  ≈ 90 s). Opset 18 is the exporter's native opset and inside TensorRT 10's range (9-20).
* Every file passes `onnx.checker` (full check) and `onnx_ops_check.assert_tensorrt_compatible` (GridSample in the
  main network, TopK with a constant K, standard domain only, no Loop/If/Scan).

For fp16 TensorRT engines export a model built with `fusion.fp16_safe_mask: true` (the CLI does): padded prompt
tokens then get −6e4 instead of −9e15, which float16 can hold (fusion.py explains why the probabilities are equal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from uninext_core.config import UninextConfig, to_yaml
from uninext_core.deploy.backend import ModelSpec, model_spec
from uninext_core.deploy.export_manifest import (
    PART_NAMES,
    PROMPT_AXIS,
    ExportedPart,
    ExportManifest,
    TensorSpec,
    default_prompt_buckets,
    part_sha256,
)
from uninext_core.deploy.onnx_ops_check import assert_tensorrt_compatible
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.uninext import Uninext

logger = logging.getLogger(__name__)

EXPORT_OPSET = 18
# Above this many parameter bytes the weights go to an external data file (protobuf's 2 GiB limit).
EXTERNAL_DATA_BYTES = 1_800_000_000


class TextEncoderGraph(nn.Module):
    """Exported text encoder: (1, T) int64 ids and mask -> (1, T, C_l) hidden (mask made on the host)."""

    def __init__(self, model: Uninext) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask).hidden


class TemplateEncoderGraph(nn.Module):
    """Exported template encoder: (1, 4, S, S) crops + (1, S, S) padding -> hidden (1, N, C_l), mask (1, N)."""

    def __init__(self, model: Uninext) -> None:
        super().__init__()
        if model.template_encoder is None:
            raise ValueError("the model has no template encoder (built with video=False); cannot export it")
        self.template_encoder = model.template_encoder
        self.input_proj = model.input_proj  # shared with the main branch; registered here so export sees it

    def forward(self, crops: torch.Tensor, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.template_encoder(crops, padding)
        return features.hidden, features.mask


class MainGraph(nn.Module):
    """Exported main network: image + pixel mask + prompt tokens -> RawOutputs fields (see module docstring)."""

    def __init__(self, model: Uninext) -> None:
        super().__init__()
        self.model = model
        self.output_names = [name for name in RawOutputs._fields
                             if name != "embeddings" or model.reid_head is not None]

    def forward(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt_hidden: torch.Tensor,
                prompt_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.model(images, pixel_mask, PromptFeatures(prompt_hidden, prompt_mask))
        return tuple(getattr(raw, name) for name in self.output_names)


def export_onnx(
    model: Uninext,
    cfg: UninextConfig,
    out_dir: str | Path,
    *,
    image_size: tuple[int, int],
    prompt_buckets: Sequence[int] | None = None,
    parts: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportManifest:
    """Export the network's parts to `out_dir` and write manifest.json beside them.

    Args:
        model: the network built from `cfg` (weights loaded); its train/eval mode is restored afterwards.
        cfg: the config it was built from (stored in the manifest; the backends rebuild the ModelSpec from it).
        out_dir: output folder (created).
        image_size: (H, W) of the main network's static image input, multiples of cfg.input.size_divisibility.
        prompt_buckets: ascending prompt lengths; None: `default_prompt_buckets` (text, template, two templates).
        parts: subset of ("text_encoder", "template_encoder", "main"); None: all the model has.
        progress: called with a short message before each step (the CLI prints it).

    Returns:
        The written ExportManifest.

    Raises:
        ValueError: bad image size, buckets or part names, or an exported graph that fails onnx.checker or the
            TensorRT operator check.
    """
    spec = model_spec(cfg)
    height, width = _check_image_size(image_size, spec.size_divisibility)
    buckets = _check_buckets(default_prompt_buckets(spec) if prompt_buckets is None else prompt_buckets)
    available = [p for p in PART_NAMES if p != "template_encoder" or model.template_encoder is not None]
    parts = list(available if parts is None else parts)
    unknown = sorted(set(parts) - set(available))
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {available} for this model, got {parts}")
    if not cfg.fusion.fp16_safe_mask:
        logger.warning("exporting with fusion.fp16_safe_mask false: fine for fp32 runtimes, but fp16 TensorRT "
                       "engines need a model built with fusion.fp16_safe_mask true")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda message: logger.info("%s", message))
    was_training = model.training
    model.eval()
    exported: dict[str, ExportedPart] = {}
    try:
        for part in parts:
            say(f"exporting {part}")
            module, args, dynamic = _graph_and_inputs(part, model, spec, (height, width), buckets)
            names = _INPUT_NAMES[part]
            outputs = module.output_names if isinstance(module, MainGraph) else _OUTPUT_NAMES[part]
            path = out / f"{part}.onnx"
            _export_graph(module, args, path, names, outputs, dynamic)
            say(f"checking {part} (onnx.checker, TensorRT operator support)")
            exported[part] = _describe(path, require_grid_sample=part == "main")
    finally:
        model.train(was_training)
    manifest = ExportManifest(preset=cfg.name, config_yaml=to_yaml(cfg), image_size=(height, width),
                              prompt_buckets=buckets, opset=EXPORT_OPSET,
                              exporter=f"torch.onnx dynamo, torch {torch.__version__}, onnx {onnx.__version__}",
                              parts=exported)
    manifest.save(out)
    say(f"wrote {out / 'manifest.json'}")
    return manifest


_INPUT_NAMES = {"text_encoder": ["input_ids", "attention_mask"], "template_encoder": ["crops", "padding"],
                "main": ["images", "pixel_mask", "prompt_hidden", "prompt_mask"]}
_OUTPUT_NAMES = {"text_encoder": ["hidden"], "template_encoder": ["hidden", "mask"]}


def _check_image_size(image_size: Sequence[int], divisor: int) -> tuple[int, int]:
    if len(image_size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in image_size):
        raise ValueError(f"image_size must be (H, W) ints, got {image_size!r}")
    height, width = image_size
    if height < divisor * 2 or width < divisor * 2 or height % divisor or width % divisor:
        raise ValueError(f"image_size must be multiples of {divisor} of at least {divisor * 2}, got {(height, width)}")
    return height, width


def _check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    values = tuple(buckets)
    if (not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)
            or list(values) != sorted(set(values))):
        raise ValueError(f"prompt_buckets must be strictly ascending positive ints, got {list(values)}")
    return values


def _graph_and_inputs(part: str, model: Uninext, spec: ModelSpec, image_size: tuple[int, int],
                      buckets: tuple[int, ...]) -> tuple[nn.Module, tuple[torch.Tensor, ...], dict | None]:
    """The wrapper module, example inputs (fixed seed, partly padded) and dynamic-shape spec of one part."""
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    text_tokens = spec.max_text_tokens
    if part == "text_encoder":
        ids = torch.randint(1000, 2000, (1, text_tokens), generator=generator)
        mask = torch.zeros(1, text_tokens, dtype=torch.int64)
        mask[:, : max(2, text_tokens // 8)] = 1
        return TextEncoderGraph(model), (ids.to(device), mask.to(device)), None
    if part == "template_encoder":
        size = spec.template_size
        crops = torch.randn(1, 4, size, size, generator=generator)
        padding = torch.zeros(1, size, size, dtype=torch.bool)
        padding[:, :, size * 3 // 4:] = True
        return TemplateEncoderGraph(model), (crops.to(device), padding.to(device)), None
    height, width = image_size
    pixel_mask = torch.zeros(1, height, width, dtype=torch.bool)
    pixel_mask[:, : height * 3 // 4, : width * 7 // 8] = True
    images = torch.randn(1, 3, height, width, generator=generator) * pixel_mask[:, None]
    tokens = text_tokens if buckets[0] <= text_tokens <= buckets[-1] else buckets[0]
    hidden = torch.randn(1, tokens, model.text_encoder.hidden_dim, generator=generator)
    prompt_mask = torch.zeros(1, tokens, dtype=torch.bool)
    prompt_mask[:, : max(1, tokens // 8)] = True
    dynamic = None
    if len(buckets) > 1:
        axis = torch.export.Dim(PROMPT_AXIS, min=buckets[0], max=buckets[-1])
        dynamic = {"images": None, "pixel_mask": None, "prompt_hidden": {1: axis}, "prompt_mask": {1: axis}}
    args = tuple(t.to(device) for t in (images, pixel_mask, hidden, prompt_mask))
    return MainGraph(model), args, dynamic


def _export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                  output_names: list[str], dynamic_shapes: dict | None) -> None:
    parameter_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(module, args, None, dynamo=True, opset_version=EXPORT_OPSET,
                                    input_names=input_names, output_names=output_names,
                                    dynamic_shapes=dynamic_shapes, optimize=True, verbose=False)
    program.save(str(path), external_data=parameter_bytes > EXTERNAL_DATA_BYTES)


def _describe(path: Path, *, require_grid_sample: bool) -> ExportedPart:
    """Check one exported file and describe it for the manifest."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ValueError(f"{path} fails onnx.checker: {error}") from error
    graph_only = onnx.load(str(path), load_external_data=False)
    assert_tensorrt_compatible(path, require_grid_sample=require_grid_sample)
    data_files = sorted({entry.value for init in graph_only.graph.initializer for entry in init.external_data
                         if entry.key == "location"})
    if len(data_files) > 1:
        raise ValueError(f"{path} spreads its weights over {len(data_files)} external files; expected at most one")
    return ExportedPart(file=path.name, sha256=part_sha256(path, data_files[0] if data_files else None),
                        data_file=data_files[0] if data_files else None,
                        inputs=tuple(_tensor_specs(graph_only.graph.input)),
                        outputs=tuple(_tensor_specs(graph_only.graph.output)))


def _tensor_specs(values: Sequence[onnx.ValueInfoProto]) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = tuple(PROMPT_AXIS if dim.dim_param else int(dim.dim_value) for dim in tensor_type.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        specs.append(TensorSpec(name=value.name, shape=shape, dtype=dtype))
    return specs

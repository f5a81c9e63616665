"""The manifest beside exported ONNX parts, and the static I/O contract the exported backends share.

`uninext-export` writes `manifest.json` next to `text_encoder.onnx`, `template_encoder.onnx` and `main.onnx`. It
records, per part, the file, its SHA-256 and every input/output name, shape (ints, or a symbol for the prompt-length
axis) and dtype, plus the preset, the full config YAML, the exported image size and the prompt-length buckets. The
ONNX Runtime and TensorRT backends read only this file and the ONNX files; `ExportManifest.spec` rebuilds the
`ModelSpec` the session needs from the stored config.

The helpers at the bottom turn Backend-contract tensors into graph feeds and graph outputs back into `RawOutputs`,
identically for both runtimes: prompts are padded with masked tokens up to the smallest bucket that holds them (a
masked token contributes exactly zero attention, so valid outputs are unchanged) and the padded token columns are cut
from `token_logits` again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uninext_core.config import UninextConfig, from_yaml
from uninext_core.deploy.backend import ModelSpec, model_spec
from uninext_core.model.mask_head import MASK_FEATURE_STRIDE, masks_for_queries
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
PART_NAMES = ("text_encoder", "template_encoder", "main")
PROMPT_AXIS = "prompt_tokens"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output.

    Attributes:
        name: ONNX value name.
        shape: ints, or PROMPT_AXIS for the bounded dynamic prompt-length axis.
        dtype: numpy dtype name ("float32", "int64", "bool").
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str


@dataclass(frozen=True)
class ExportedPart:
    """One exported ONNX file.

    Attributes:
        file: file name relative to the manifest.
        sha256: hex SHA-256 of the file (`part_sha256`: with external weights, both digests joined by ":").
        inputs: graph inputs in order.
        outputs: graph outputs in order.
        data_file: external weight file beside it (models over ~1.8 GB of weights), or None.
    """

    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    data_file: str | None = None

    def input(self, name: str) -> TensorSpec:
        """The input called `name`."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise ValueError(f"exported part {self.file} has no input {name!r}; inputs are "
                         f"{[s.name for s in self.inputs]}")


@dataclass(frozen=True)
class ExportManifest:
    """What `uninext-export` wrote (see the module docstring).

    Attributes:
        preset: config name (e.g. "r50").
        config_yaml: the full UninextConfig as YAML (values only).
        image_size: (H, W) of the main network's static image input, multiples of 32.
        prompt_buckets: ascending prompt lengths T the main network is meant to run at (padded up to); the exported
            axis is bounded by the first and last bucket.
        opset: ONNX opset of the default domain.
        exporter: how the graphs were made (e.g. "torch.onnx dynamo, torch 2.14.1").
        parts: exported parts by name (subset of PART_NAMES).
    """

    preset: str
    config_yaml: str
    image_size: tuple[int, int]
    prompt_buckets: tuple[int, ...]
    opset: int
    exporter: str
    parts: dict[str, ExportedPart]

    @property
    def config(self) -> UninextConfig:
        """The UninextConfig the parts were exported from."""
        return from_yaml(self.config_yaml)

    @property
    def spec(self) -> ModelSpec:
        """ModelSpec of the exported network."""
        return model_spec(self.config)

    def part(self, name: str) -> ExportedPart:
        """The part called `name`, or ValueError naming the parts that were exported."""
        if name not in self.parts:
            raise ValueError(f"this export has no {name!r} part (exported: {sorted(self.parts)}); re-run "
                             f"uninext-export with --parts including {name}")
        return self.parts[name]

    def save(self, directory: str | Path) -> Path:
        """Write manifest.json into `directory`; returns its path."""
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps({"version": MANIFEST_VERSION, **dataclasses.asdict(self)}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ExportManifest:
        """Read and validate manifest.json in `directory` (ValueError naming the file and the problem)."""
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ValueError(f"{path} does not exist; expected a folder written by uninext-export")
        try:
            data = json.loads(path.read_text())
            if data.get("version") != MANIFEST_VERSION:
                raise ValueError(f"manifest version {data.get('version')!r}, expected {MANIFEST_VERSION}")
            parts = {name: ExportedPart(file=p["file"], sha256=p["sha256"],
                                        inputs=tuple(_tensor_spec(s) for s in p["inputs"]),
                                        outputs=tuple(_tensor_spec(s) for s in p["outputs"]),
                                        data_file=p.get("data_file"))
                     for name, p in data["parts"].items()}
            manifest = cls(preset=data["preset"], config_yaml=data["config_yaml"],
                           image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
                           prompt_buckets=tuple(int(b) for b in data["prompt_buckets"]), opset=int(data["opset"]),
                           exporter=str(data["exporter"]), parts=parts)
            manifest.config  # noqa: B018 -- parse the YAML now so a bad config fails here
        except (KeyError, TypeError, IndexError, json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{path} is not a valid uninext-export manifest: {error}") from error
        unknown = sorted(set(parts) - set(PART_NAMES))
        if unknown:
            raise ValueError(f"{path} names unknown parts {unknown}; expected some of {list(PART_NAMES)}")
        return manifest

    def verify_files(self, directory: str | Path) -> None:
        """Check every part's file exists and matches its recorded SHA-256 (catches truncated or swapped files)."""
        for name, part in self.parts.items():
            path = Path(directory) / part.file
            for needed in (path, None if part.data_file is None else path.with_name(part.data_file)):
                if needed is not None and not needed.is_file():
                    raise ValueError(f"exported part {name!r}: {needed} is missing")
            digest = part_sha256(path, part.data_file)
            if digest != part.sha256:
                raise ValueError(f"exported part {name!r}: {path} has SHA-256 {digest[:12]}…, the manifest records "
                                 f"{part.sha256[:12]}…; the file is truncated, corrupt or from another export — "
                                 f"re-run uninext-export")


def _tensor_spec(data: Mapping) -> TensorSpec:
    return TensorSpec(name=str(data["name"]), shape=tuple(data["shape"]), dtype=str(data["dtype"]))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(8 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def part_sha256(path: str | Path, data_file: str | None = None) -> str:
    """SHA-256 of an ONNX file, or of the file and its external data file (same folder) joined by ":"."""
    digest = file_sha256(path)
    if data_file is None:
        return digest
    return digest + ":" + file_sha256(Path(path).with_name(Path(data_file).name))


def default_prompt_buckets(spec: ModelSpec) -> tuple[int, ...]:
    """Text length, template tokens (S/8)² and two templates (SOT/VOS online update), ascending and unique."""
    buckets = {spec.max_text_tokens}
    if spec.template_size is not None:
        tokens = (spec.template_size // MASK_FEATURE_STRIDE) ** 2
        buckets |= {tokens, 2 * tokens}
    return tuple(sorted(buckets))


# --------------------------------------------------------------------------------------------------------------
# Backend-contract tensors <-> graph feeds / outputs (shared by the ONNX Runtime and TensorRT backends)
# --------------------------------------------------------------------------------------------------------------


def text_feeds(manifest: ExportManifest, input_ids: torch.Tensor, attention_mask: torch.Tensor
               ) -> list[dict[str, np.ndarray]]:
    """One feed per prompt of a (B, T) token batch; T must equal the exported text length."""
    exported = manifest.part("text_encoder").input("input_ids").shape[1]
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(f"tokens must be (B, T) input_ids and attention_mask of the same shape, got "
                         f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
    if input_ids.shape[1] != exported:
        raise ValueError(f"text prompt has {input_ids.shape[1]} tokens, the exported text encoder takes exactly "
                         f"{exported} (tokenize with max_tokens={exported})")
    ids, mask = input_ids.cpu().to(torch.int64).numpy(), attention_mask.cpu().to(torch.int64).numpy()
    return [{"input_ids": ids[i:i + 1], "attention_mask": mask[i:i + 1]} for i in range(ids.shape[0])]


def template_feeds(manifest: ExportManifest, crops: torch.Tensor, padding: torch.Tensor | None
                   ) -> list[dict[str, np.ndarray]]:
    """One feed per crop of a (B, 4, S, S) batch (padding None: all valid)."""
    size = manifest.spec.template_size
    if size is None:
        raise ValueError(f"model {manifest.preset!r} has no template encoder (built with video=False); template "
                         f"prompts need a video model")
    if crops.dim() != 4 or tuple(crops.shape[1:]) != (4, size, size):
        raise ValueError(f"crops must be (B, 4, {size}, {size}), got {tuple(crops.shape)}")
    if padding is None:
        padding = torch.zeros(crops.shape[0], size, size, dtype=torch.bool)
    if tuple(padding.shape) != (crops.shape[0], size, size):
        raise ValueError(f"padding must be ({crops.shape[0]}, {size}, {size}), got {tuple(padding.shape)}")
    crops_np = crops.detach().cpu().to(torch.float32).numpy()
    padding_np = padding.cpu().to(torch.bool).numpy()
    return [{"crops": crops_np[i:i + 1], "padding": padding_np[i:i + 1]} for i in range(crops_np.shape[0])]


def bucket_for(manifest: ExportManifest, tokens: int) -> int:
    """Smallest prompt bucket >= tokens, or ValueError when the prompt is longer than the largest bucket."""
    for bucket in manifest.prompt_buckets:
        if tokens <= bucket:
            return bucket
    raise ValueError(f"prompt has {tokens} tokens, longer than the largest exported prompt bucket "
                     f"{manifest.prompt_buckets[-1]} (buckets {list(manifest.prompt_buckets)}); re-export with a "
                     f"larger --prompt-buckets value")


def main_feed(manifest: ExportManifest, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures
              ) -> tuple[dict[str, np.ndarray], int]:
    """Graph feed of one frame and the prompt's own length T (before padding to its bucket).

    Raises:
        ValueError: image not (1, 3, H, W) at the exported size, mask not (1, H, W), prompt not batch 1 of the
            exported width, or longer than the largest bucket.
    """
    height, width = manifest.image_size
    if tuple(images.shape) != (1, 3, height, width):
        raise ValueError(f"images must be (1, 3, {height}, {width}) (the exported size), got {tuple(images.shape)}")
    if tuple(pixel_mask.shape) != (1, height, width):
        raise ValueError(f"pixel_mask must be (1, {height}, {width}), got {tuple(pixel_mask.shape)}")
    hidden, mask = prompt
    width_l = manifest.part("main").input("prompt_hidden").shape[2]
    if hidden.dim() != 3 or hidden.shape[0] != 1 or hidden.shape[2] != width_l or tuple(mask.shape) != hidden.shape[:2]:
        raise ValueError(f"prompt must be hidden (1, T, {width_l}) with mask (1, T), got {tuple(hidden.shape)} and "
                         f"{tuple(mask.shape)}")
    tokens = hidden.shape[1]
    bucket = bucket_for(manifest, tokens)
    hidden_np = np.zeros((1, bucket, width_l), dtype=np.float32)
    mask_np = np.zeros((1, bucket), dtype=bool)
    hidden_np[:, :tokens] = hidden.detach().cpu().to(torch.float32).numpy()
    mask_np[:, :tokens] = mask.cpu().to(torch.bool).numpy()
    feed = {"images": images.detach().cpu().to(torch.float32).numpy(),
            "pixel_mask": pixel_mask.cpu().to(torch.bool).numpy(), "prompt_hidden": hidden_np, "prompt_mask": mask_np}
    return feed, tokens


def raw_outputs(manifest: ExportManifest, outputs: Mapping[str, np.ndarray], tokens: int) -> RawOutputs:
    """RawOutputs (float32 CPU tensors) from the main graph's named outputs; token columns cut back to `tokens`.

    A model without the re-ID head exports no `embeddings` output; it is returned as an empty (1, Q, 0) tensor.
    """
    fields = {}
    for name in RawOutputs._fields:
        if name in outputs:
            fields[name] = torch.from_numpy(np.ascontiguousarray(outputs[name], dtype=np.float32))
    if "embeddings" not in fields:
        fields["embeddings"] = torch.zeros(1, manifest.spec.num_queries, 0)
    fields["token_logits"] = fields["token_logits"][:, :, :tokens].contiguous()
    return RawOutputs(**fields)


def host_mask_logits(spec: ModelSpec, raw: RawOutputs, query_idx: torch.Tensor) -> torch.Tensor:
    """Backend.mask_logits on the host (CPU torch): (K,) query indices -> (K, H/4, W/4) float32 logits."""
    if query_idx.dim() != 1:
        raise ValueError(f"query_idx must be (K,), got shape {tuple(query_idx.shape)}")
    height8, width8 = raw.mask_features.shape[-2:]
    factor = MASK_FEATURE_STRIDE // spec.mask_out_stride
    if query_idx.numel() == 0:
        return torch.zeros(0, height8 * factor, width8 * factor)
    with torch.inference_mode():
        logits = masks_for_queries(raw, query_idx.cpu().to(torch.int64)[None], channels=spec.mask_dynamic_channels,
                                   num_layers=spec.mask_dynamic_layers, out_stride=spec.mask_out_stride)
    return logits[0].float()


def stack_prompt_features(pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> PromptFeatures:
    """Batch per-prompt (hidden (1, T, C_l), mask (1, T)) graph results into PromptFeatures (B, T, C_l) float32."""
    hidden = torch.from_numpy(np.concatenate([np.asarray(h, dtype=np.float32) for h, _ in pieces], axis=0))
    mask = torch.from_numpy(np.concatenate([np.asarray(m).astype(bool) for _, m in pieces], axis=0))
    return PromptFeatures(hidden, mask)

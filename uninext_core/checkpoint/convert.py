"""Convert an official UNINEXT checkpoint (detectron2 `.pth`) into our state dict (reference §9).

Reading is safe: `torch.load(weights_only=True, map_location="cpu")` (memory-mapped for zip checkpoints), so a file
that needs pickled Python objects is refused instead of executed. The `model` dict is mapped key by key with
`official_keys.OfficialKeyMap`, every tensor is checked against the shape and dtype our model expects, and a
`ConversionReport` lists what was mapped, reshaped, cast, skipped (with the reason), missing and unexpected.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from uninext_core.checkpoint.official_keys import (
    POSITION_IDS_KEY,
    TEXT_ENCODER_PREFIX,
    OfficialKeyMap,
    detect_backbone_kind,
    is_video_checkpoint,
)
from uninext_core.config import UninextConfig, get_preset
from uninext_core.model.build import build_model
from uninext_core.model.uninext import Uninext

logger = logging.getLogger(__name__)

OFFICIAL_PRESETS = ("r50", "convnext_l", "vit_h")
OUR_TEXT_ENCODER_PREFIX = "text_encoder.model."
FIRST_KEYS = 5  # offending keys named in error messages


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, converted or loaded; the message names the file and the first offending
    keys."""


class TensorMismatch(NamedTuple):
    """An official tensor whose shape or dtype does not fit our parameter."""

    official: str
    ours: str
    got: str
    expected: str


class Reshape(NamedTuple):
    """An official tensor stored with another shape (ConvNeXt (1, C) Embedding weights -> (C,))."""

    official: str
    ours: str
    from_shape: tuple[int, ...]
    to_shape: tuple[int, ...]


class AliasCheck(NamedTuple):
    """A second official copy of a shared tensor (`transformer.decoder.{class,bbox}_embed.*`)."""

    alias: str
    canonical: str
    equal: bool


@dataclasses.dataclass
class ConversionReport:
    """What happened to every key. Lists keep checkpoint order; `ok` means nothing missing, unexpected or mismatched."""

    source: str
    preset: str
    video: bool
    backbone: str
    text_encoder: str = "checkpoint"
    mapped: dict[str, str] = dataclasses.field(default_factory=dict)  # official -> ours
    reshaped: list[Reshape] = dataclasses.field(default_factory=list)
    cast: list[TensorMismatch] = dataclasses.field(default_factory=list)  # float dtype converted (got -> expected)
    aliases: list[AliasCheck] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # official -> reason
    missing: list[str] = dataclasses.field(default_factory=list)  # ours
    unexpected: list[str] = dataclasses.field(default_factory=list)  # official
    mismatches: list[TensorMismatch] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    detected_backbone: str | None = None
    checkpoint_is_video: bool | None = None

    @property
    def ok(self) -> bool:
        """True when every parameter of our model got a tensor of the right shape and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatches)

    @property
    def alias_mismatches(self) -> list[str]:
        """Alias keys whose tensor differs from the canonical copy (the canonical copy is used)."""
        return [a.alias for a in self.aliases if not a.equal]

    def error_message(self) -> str:
        """One paragraph naming the file, the target and the first offending keys of each kind."""
        variant = "video" if self.video else "image"
        parts = []
        if self.mismatches:
            first = "; ".join(f"{m.official} -> {m.ours}: got {m.got}, expected {m.expected}"
                              for m in self.mismatches[:FIRST_KEYS])
            parts.append(f"{len(self.mismatches)} tensors of the wrong shape or dtype (first: {first})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys (first: {', '.join(self.unexpected[:FIRST_KEYS])})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing keys of our model (first: "
                         f"{', '.join(self.missing[:FIRST_KEYS])})")
        message = (f"{self.source}: cannot convert to preset {self.preset!r} ({variant}, backbone {self.backbone}): "
                   + "; ".join(parts))
        recognised = len(self.mapped) + len(self.aliases) + len(self.skipped)
        if recognised == 0:
            message += (f". None of its {len(self.unexpected)} keys is an official UNINEXT key: this is a checkpoint "
                        f"of another model")
        elif self.detected_backbone is not None and self.detected_backbone != self.backbone:
            message += (f". The checkpoint holds a {self.detected_backbone} backbone; choose the matching preset "
                        f"({', '.join(OFFICIAL_PRESETS)})")
        elif self.video and self.checkpoint_is_video is False:
            message += ". The checkpoint is an image-stage model (no template branch or re-ID head); convert it as an "\
                       "image model"
        return message

    def summary(self) -> str:
        """Counts in one line."""
        return (f"{len(self.mapped)} tensors mapped ({len(self.reshaped)} reshaped, {len(self.cast)} cast), "
                f"{len(self.aliases)} aliases checked ({len(self.alias_mismatches)} differ), "
                f"{len(self.skipped)} skipped, {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.mismatches)} shape/dtype mismatches; text encoder from {self.text_encoder}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (counts first, then every list)."""
        return {
            "source": self.source, "preset": self.preset, "video": self.video, "backbone": self.backbone,
            "detected_backbone": self.detected_backbone, "checkpoint_is_video": self.checkpoint_is_video,
            "text_encoder": self.text_encoder, "ok": self.ok,
            "counts": {"mapped": len(self.mapped), "reshaped": len(self.reshaped), "cast": len(self.cast),
                       "aliases": len(self.aliases), "alias_mismatches": len(self.alias_mismatches),
                       "skipped": len(self.skipped), "missing": len(self.missing),
                       "unexpected": len(self.unexpected), "mismatches": len(self.mismatches)},
            "missing": self.missing, "unexpected": self.unexpected,
            "mismatches": [m._asdict() for m in self.mismatches],
            "alias_mismatches": self.alias_mismatches, "warnings": self.warnings,
            "skipped": self.skipped, "reshaped": [r._asdict() for r in self.reshaped],
            "cast": [c._asdict() for c in self.cast], "aliases": [a._asdict() for a in self.aliases],
            "mapped": self.mapped,
        }


class Conversion(NamedTuple):
    """Result of a conversion.

    Attributes:
        state_dict: our key -> tensor (CPU; may be memory-mapped from the checkpoint file).
        report: what happened to every key.
        config: the configuration the state dict belongs to.
    """

    state_dict: dict[str, torch.Tensor]
    report: ConversionReport
    config: UninextConfig


def _describe(tensor: torch.Tensor) -> str:
    return f"{tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"


# ---------------------------------------------------------------------------------------------------------------
# Safe reading
# ---------------------------------------------------------------------------------------------------------------


def _unpickler_detail(error: Exception) -> str:
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(error), flags=re.DOTALL)
    detail = found.group(1) if found else _first_line(error)
    return " ".join(detail.split())[:300]


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def model_state_dict(checkpoint: Any, *, source: str) -> dict[str, torch.Tensor]:
    """The `model` dict of a loaded detectron2 checkpoint (or the object itself if it is a flat state dict).

    Raises:
        CheckpointError: no `model` mapping, or entries that are not name -> tensor (first ones named).
    """
    if isinstance(checkpoint, Mapping) and "model" in checkpoint:
        state = checkpoint["model"]
    elif isinstance(checkpoint, Mapping) and checkpoint and all(isinstance(v, torch.Tensor)
                                                                for v in checkpoint.values()):
        state = checkpoint
    else:
        found = (f"a mapping with keys {sorted(map(str, checkpoint))[:FIRST_KEYS]}" if isinstance(checkpoint, Mapping)
                 else type(checkpoint).__name__)
        raise CheckpointError(f"{source}: no 'model' state dict; expected a detectron2 checkpoint "
                              f"{{'model': {{name: tensor}}, ...}}, got {found}")
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{source}: 'model' must be a non-empty mapping of names to tensors, "
                              f"got {type(state).__name__} of length {len(state) if isinstance(state, Mapping) else 0}")
    bad = [f"{k!r} ({type(v).__name__})" for k, v in state.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} 'model' entries are not name -> tensor (first: "
                              f"{', '.join(bad[:FIRST_KEYS])})")
    empty = [k for k, v in state.items() if v.is_meta]
    if empty:
        raise CheckpointError(f"{source}: {len(empty)} tensors hold no data (meta device; first: "
                              f"{', '.join(empty[:FIRST_KEYS])})")
    return dict(state)


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the `model` state dict of an official `.pth` safely (tensors only; zip files memory-mapped).

    Args:
        path: a `torch.save` file (zip or legacy format) holding {"model": {name: tensor}, ...}.

    Returns:
        Official key -> CPU tensor.

    Raises:
        CheckpointError: missing, truncated or foreign file, pickled Python objects, or no `model` dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: truncated or corrupted checkpoint: a zip archive without its central "
                                  f"directory ({path.stat().st_size} bytes); download it again")
        mmap = True
    elif head[:1] == b"\x80":  # pickle protocol marker: legacy torch.save format
        mmap = False
    else:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (starts with {head!r}; expected a torch.save zip "
                              f"archive or pickle). Converted .safetensors files are read with "
                              f"uninext_core.checkpoint.load_model")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: the checkpoint contains pickled Python objects; only tensors are accepted "
                              f"({_unpickler_detail(error)})") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({_first_line(error)})") from error
    return model_state_dict(checkpoint, source=str(path))


# ---------------------------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------------------------


def expected_state_dict(config: UninextConfig) -> dict[str, torch.Tensor]:
    """Our state dict for `config` as meta tensors (keys, shapes, dtypes; no memory, built in about a second)."""
    shape_config = config.replace(text=dataclasses.replace(config.text, path=None))
    with torch.device("meta"):
        model = build_model(shape_config, allow_random_text_init=True)
    return model.state_dict()


def read_text_encoder_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """BERT weights of a local Hugging Face folder (e.g. bert-base-uncased) under our keys `text_encoder.model.*`.

    Raises:
        CheckpointError: the folder is missing or holds no loadable BertModel.
    """
    from transformers import BertModel

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"text-encoder folder {folder} does not exist; expected a local Hugging Face BERT "
                              f"folder such as bert-base-uncased")
    try:
        bert = BertModel.from_pretrained(str(folder), add_pooling_layer=False, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load a BertModel from text-encoder folder {folder}: {error}") from error
    return {OUR_TEXT_ENCODER_PREFIX + k: v for k, v in bert.state_dict().items()}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape, dtype and values (one tensor saved under two names is the same object after torch.load)."""
    if a is b:
        return True
    return a.shape == b.shape and a.dtype == b.dtype and not a.is_meta and not b.is_meta and torch.equal(a, b)


def _fit(tensor: torch.Tensor, expected: torch.Tensor) -> tuple[torch.Tensor | None, bool]:
    """`tensor` in the expected dtype (floats cast), and whether it was cast; None when it cannot fit."""
    if tuple(tensor.shape) != tuple(expected.shape):
        return None, False
    if tensor.dtype == expected.dtype:
        return tensor, False
    if tensor.is_floating_point() and expected.is_floating_point():
        return tensor.to(expected.dtype), True
    return None, False


def convert_state_dict(official: Mapping[str, torch.Tensor], *, expected: Mapping[str, torch.Tensor],
                       config: UninextConfig, source: str,
                       text_encoder_weights: Mapping[str, torch.Tensor] | None = None,
                       text_encoder_source: str = "") -> Conversion:
    """Map an official `model` dict onto our keys and check every tensor against `expected`.

    Args:
        official: official key -> tensor (see tests/data/official_state_dicts/*.tsv).
        expected: our key -> tensor (or meta tensor) giving each target shape and dtype, e.g.
            `expected_state_dict(config)` or `model.state_dict()`.
        config: the target configuration (backbone kind, video or image).
        source: file name for messages.
        text_encoder_weights: our `text_encoder.model.*` key -> tensor, used when the checkpoint has no text
            encoder (from `read_text_encoder_folder`); the checkpoint's own text encoder always takes precedence.
        text_encoder_source: where a user-given text encoder comes from ("folder ..."), for the report; "" if none.

    Returns:
        Conversion (state dict, report, config). Problems are listed in the report (`report.ok`), not raised.
    """
    keymap = OfficialKeyMap(backbone=config.backbone.kind, video=config.video)
    report = ConversionReport(source=source, preset=config.name, video=config.video, backbone=config.backbone.kind,
                              detected_backbone=detect_backbone_kind(official),
                              checkpoint_is_video=is_video_checkpoint(official))
    state: dict[str, torch.Tensor] = {}

    def put(official_key: str, tensor: torch.Tensor, ours: str, transform: str) -> None:
        if ours not in expected or ours in state:
            report.unexpected.append(official_key)
            return
        target = expected[ours]
        if transform == "squeeze_embedding":
            if tensor.dim() != 2 or tensor.shape[0] != 1:
                report.mismatches.append(TensorMismatch(official_key, ours, _describe(tensor),
                                                        f"(1, C) embedding weight for {_describe(target)}"))
                return
            report.reshaped.append(Reshape(official_key, ours, tuple(tensor.shape), tuple(tensor.shape[1:])))
            tensor = tensor[0]
        fitted, cast = _fit(tensor, target)
        if fitted is None:
            report.mismatches.append(TensorMismatch(official_key, ours, _describe(tensor), _describe(target)))
            return
        if cast:
            report.cast.append(TensorMismatch(official_key, ours, _describe(tensor), _describe(target)))
        state[ours] = fitted
        report.mapped[official_key] = ours

    mappings = {key: keymap.map(key) for key in official}
    for key, tensor in official.items():
        mapping = mappings[key]
        match mapping.kind:
            case "tensor":
                put(key, tensor, mapping.ours, mapping.transform)
            case "alias" if mapping.canonical in official:
                report.aliases.append(AliasCheck(key, mapping.canonical, _same(tensor, official[mapping.canonical])))
            case "alias":  # only the decoder's copy was saved: it carries the tensor
                canonical_mapping = keymap.map(mapping.canonical)
                if canonical_mapping.kind == "tensor":
                    put(key, tensor, canonical_mapping.ours, canonical_mapping.transform)
                else:
                    report.unexpected.append(key)
            case "skip" | "video_only":
                report.skipped[key] = mapping.reason
            case _:
                report.unexpected.append(key)

    if POSITION_IDS_KEY in official:
        ids = official[POSITION_IDS_KEY]
        if not torch.equal(ids.reshape(-1).long(), torch.arange(ids.numel())):
            report.warnings.append(f"{POSITION_IDS_KEY} is not arange({ids.numel()}); transformers recomputes it, "
                                   f"so the checkpoint's values are not used")
    for alias in report.alias_mismatches:
        report.warnings.append(f"{alias} differs from its canonical copy; the canonical copy was used")

    has_text = any(k.startswith(TEXT_ENCODER_PREFIX) and mappings[k].kind == "tensor" for k in official)
    if text_encoder_weights is not None and not has_text:
        report.text_encoder = text_encoder_source or "text-encoder folder"
        for ours, tensor in text_encoder_weights.items():
            put(f"[{report.text_encoder}] {ours}", tensor, ours, "copy")
    elif has_text and text_encoder_source:
        report.warnings.append(f"the checkpoint holds a text encoder; it is used instead of {text_encoder_source}")

    mismatched = {m.ours for m in report.mismatches}
    report.missing = [k for k in expected if k not in state and k not in mismatched]
    logger.info("%s -> %s (%s): %s", source, config.name, "video" if config.video else "image", report.summary())
    for warning in report.warnings:
        logger.warning("%s: %s", source, warning)
    return Conversion(state, report, config)


def official_config(preset: str, *, video: bool, text_encoder_path: str | Path | None = None) -> UninextConfig:
    """Configuration of an official model: preset `r50`, `convnext_l` or `vit_h`, image or video variant."""
    if preset not in OFFICIAL_PRESETS:
        raise ValueError(f"preset {preset!r} has no official checkpoint; expected one of {list(OFFICIAL_PRESETS)}")
    config = get_preset(preset, video=video)
    if text_encoder_path is not None:
        config = config.replace(text=dataclasses.replace(config.text, path=str(Path(text_encoder_path).expanduser())))
    return config


def _folder_text_weights(official: Mapping[str, torch.Tensor],
                         text_encoder_path: str | Path | None) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Weights of the text-encoder folder when the checkpoint has no text encoder, and the folder's description."""
    if text_encoder_path is None:
        return None, ""
    if any(k.startswith(TEXT_ENCODER_PREFIX) for k in official):
        return None, f"folder {text_encoder_path}"
    return read_text_encoder_folder(text_encoder_path), f"folder {text_encoder_path}"


def convert_official_checkpoint(path: str | Path, *, preset: str, video: bool | None = None,
                                text_encoder_path: str | Path | None = None, strict: bool = True) -> Conversion:
    """Read an official checkpoint safely and convert it for one of our official presets.

    Args:
        path: official `.pth`.
        preset: "r50", "convnext_l" or "vit_h".
        video: target variant; None follows the checkpoint (video when it holds video-stage modules).
        text_encoder_path: local BERT folder whose weights are used when the checkpoint has no text encoder.
        strict: raise when anything is missing, unexpected or of the wrong shape; False leaves that to the caller
            (`conversion.report.ok`).

    Returns:
        Conversion whose state dict loads into `build_model(conversion.config, allow_random_text_init=True)`.

    Raises:
        CheckpointError: unreadable file, or (strict) a report that is not ok, naming the first offending keys.
        ValueError: a preset without official checkpoints.
    """
    official = read_official_checkpoint(path)
    if video is None:
        video = is_video_checkpoint(official)
    config = official_config(preset, video=video, text_encoder_path=text_encoder_path)
    text_weights, text_source = _folder_text_weights(official, text_encoder_path)
    conversion = convert_state_dict(official, expected=expected_state_dict(config), config=config, source=str(path),
                                    text_encoder_weights=text_weights, text_encoder_source=text_source)
    if strict and not conversion.report.ok:
        raise CheckpointError(conversion.report.error_message())
    return conversion


def from_official(path: str | Path, *, preset: str, video: bool,
                  text_encoder_path: str | Path | None = None) -> Uninext:
    """Our model with the weights of an official UNINEXT checkpoint, in eval mode.

    Args:
        path: official `.pth` (detectron2 checkpoint with a `model` dict).
        preset: "r50", "convnext_l" or "vit_h".
        video: True for the video model (stage-3 checkpoints: template branch and re-ID head); False for the image
            model (a stage-3 checkpoint's video-only modules are then skipped, as the official image model does).
        text_encoder_path: local bert-base-uncased folder. Its tokenizer is used; its weights only when the
            checkpoint has no text encoder. Without it the tokenizer is the packaged uncased WordPiece vocabulary
            (the same 30,522 tokens as bert-base-uncased) and the BERT weights must come from the checkpoint.

    Raises:
        CheckpointError: unreadable checkpoint, or keys/shapes that do not fit (first offending keys named).
    """
    config = official_config(preset, video=video, text_encoder_path=text_encoder_path)
    official = read_official_checkpoint(path)
    model = build_model(config, allow_random_text_init=True)
    text_weights, text_source = _folder_text_weights(official, text_encoder_path)
    conversion = convert_state_dict(official, expected=model.state_dict(), config=config, source=str(path),
                                    text_encoder_weights=text_weights, text_encoder_source=text_source)
    if not conversion.report.ok:
        raise CheckpointError(conversion.report.error_message())
    model.load_state_dict(conversion.state_dict, strict=True)
    return model.eval()

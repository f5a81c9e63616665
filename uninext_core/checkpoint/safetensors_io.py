"""Our state dicts as safetensors files that know their preset.

The header metadata (string -> string, as safetensors allows) holds:
    uninext.format   "uninext-ros/1"
    uninext.preset   the preset name (`UninextConfig.name`, e.g. "r50")
    uninext.video    "true" / "false"
    uninext.config   the whole configuration as YAML (`uninext_core.config.to_yaml`)
plus any extra entries of the writer (the converter adds the source checkpoint). Reading checks the preset and
variant the caller asks for and refuses a file of another preset with a message naming both.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from uninext_core.checkpoint.convert import FIRST_KEYS, CheckpointError
from uninext_core.config import UninextConfig, from_yaml, to_yaml
from uninext_core.model.build import build_model
from uninext_core.model.uninext import Uninext

logger = logging.getLogger(__name__)

FORMAT = "uninext-ros/1"
KEY_FORMAT = "uninext.format"
KEY_PRESET = "uninext.preset"
KEY_VIDEO = "uninext.video"
KEY_CONFIG = "uninext.config"
TEXT_ENCODER_PREFIX = "text_encoder."


class StoredWeights(NamedTuple):
    """Contents of a weights file.

    Attributes:
        state_dict: our key -> CPU tensor.
        config: the configuration written with the weights.
        metadata: the whole header metadata (string -> string).
    """

    state_dict: dict[str, torch.Tensor]
    config: UninextConfig
    metadata: dict[str, str]


def _variant(video: bool) -> str:
    return "video" if video else "image"


def save_weights(path: str | Path, state_dict: Mapping[str, torch.Tensor], *, config: UninextConfig,
                 extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write `state_dict` and `config` to a safetensors file.

    Args:
        path: output file (conventionally `*.safetensors`); its folder must exist.
        state_dict: our key -> tensor (any device; written contiguous from the CPU).
        config: the configuration the weights belong to. Its `text.path` (a folder on this machine) is not stored:
            the file carries the text-encoder weights itself.
        extra_metadata: more string entries for the header (keys must not start with "uninext.").

    Returns:
        The path written.
    """
    path = Path(path)
    extra = dict(extra_metadata or {})
    clashes = sorted(k for k in extra if k.startswith("uninext."))
    if clashes:
        raise ValueError(f"extra_metadata keys must not start with 'uninext.', got {clashes}")
    bad = sorted(k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str))
    if bad:
        raise TypeError(f"extra_metadata must map strings to strings; bad entries {bad}")
    portable = config.replace(text=dataclasses.replace(config.text, path=None))
    metadata = {**extra, KEY_FORMAT: FORMAT, KEY_PRESET: config.name, KEY_VIDEO: str(config.video).lower(),
                KEY_CONFIG: to_yaml(portable)}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata=metadata)
    logger.info("wrote %d tensors of preset %s (%s) to %s", len(tensors), config.name, _variant(config.video), path)
    return path


def read_weights(path: str | Path, *, preset: str | None = None, video: bool | None = None) -> StoredWeights:
    """Read a file written by `save_weights`, checking its preset.

    Args:
        path: safetensors file.
        preset: the preset the caller expects (None: any).
        video: the variant the caller expects (None: any).

    Raises:
        CheckpointError: missing, truncated or foreign file, no uninext metadata, or another preset / variant.
    """
    return _read(Path(path), preset=preset, video=video, with_tensors=True)


def read_config(path: str | Path, *, preset: str | None = None, video: bool | None = None) -> UninextConfig:
    """The configuration stored in a weights file's header, without reading its tensors (same checks as
    `read_weights`)."""
    return _read(Path(path), preset=preset, video=video, with_tensors=False).config


def _read(path: Path, *, preset: str | None, video: bool | None, with_tensors: bool) -> StoredWeights:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            if metadata.get(KEY_FORMAT) != FORMAT or KEY_PRESET not in metadata or KEY_CONFIG not in metadata:
                raise CheckpointError(f"{path}: not a uninext-ros weights file (header metadata "
                                      f"{KEY_FORMAT}={metadata.get(KEY_FORMAT)!r}, expected {FORMAT!r} with "
                                      f"{KEY_PRESET} and {KEY_CONFIG}); convert official .pth checkpoints with "
                                      f"uninext-convert")
            stored_video = metadata.get(KEY_VIDEO) == "true"
            _check_preset(path, metadata[KEY_PRESET], stored_video, preset=preset, video=video)
            state_dict = ({key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
                          if with_tensors else {})
    except SafetensorError as error:
        raise CheckpointError(f"{path}: truncated or corrupted safetensors file ({error})") from error
    try:
        config = from_yaml(metadata[KEY_CONFIG])
    except ValueError as error:
        raise CheckpointError(f"{path}: the stored configuration is invalid: {error}") from error
    if config.name != metadata[KEY_PRESET] or config.video != stored_video:
        raise CheckpointError(f"{path}: metadata says preset {metadata[KEY_PRESET]!r} ({_variant(stored_video)}) but "
                              f"the stored configuration is {config.name!r} ({_variant(config.video)})")
    return StoredWeights(state_dict, config, metadata)


def _check_preset(path: Path, stored_preset: str, stored_video: bool, *, preset: str | None,
                  video: bool | None) -> None:
    if (preset is not None and preset != stored_preset) or (video is not None and video != stored_video):
        wanted = f"{preset if preset is not None else stored_preset!r} " \
                 f"({_variant(video if video is not None else stored_video)})"
        raise CheckpointError(f"{path} holds weights of preset {stored_preset!r} ({_variant(stored_video)}), "
                              f"but preset {wanted} was requested")


def load_model(path: str | Path, *, preset: str | None = None, video: bool | None = None,
               text_encoder_path: str | Path | None = None) -> Uninext:
    """Build the model a weights file describes and load its weights (strict), in eval mode.

    Args:
        path: file written by `save_weights` (e.g. by uninext-convert).
        preset, video: what the caller expects (None: whatever the file holds); a mismatch raises.
        text_encoder_path: local BERT folder for the tokenizer (its weights are replaced by the file's). None: the
            packaged uncased WordPiece tokenizer for 768-wide BERT models (same vocabulary as bert-base-uncased).
            A file with no text-encoder tensors and a frozen encoder (the shipped `tiny` weights) takes the
            encoder's weights from this folder, or from the preset's packaged encoder.

    Raises:
        CheckpointError: see `read_weights`, or tensors that do not fit the model (first offending keys named).
    """
    stored = read_weights(path, preset=preset, video=video)
    config = stored.config
    if text_encoder_path is not None:
        config = config.replace(text=dataclasses.replace(config.text, path=str(Path(text_encoder_path).expanduser())))
    text_from_package = carries_no_text_encoder(stored.state_dict) and config.text.frozen
    # A file without text-encoder tensors (the shipped `tiny` weights) gets them from the frozen encoder's own folder
    # (the packaged MiniLM by default), so the model must be built with real weights there.
    model = build_model(config, allow_random_text_init=not text_from_package)
    expected = model.state_dict()
    missing = [k for k in expected if k not in stored.state_dict
               and not (text_from_package and k.startswith(TEXT_ENCODER_PREFIX))]
    unexpected = [k for k in stored.state_dict if k not in expected]
    wrong = [f"{k}: got {tuple(v.shape)}, expected {tuple(expected[k].shape)}" for k, v in stored.state_dict.items()
             if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{len(items)} {what} (first: {', '.join(items[:FIRST_KEYS])})"
                 for what, items in (("tensors of the wrong shape", wrong), ("unexpected keys", unexpected),
                                     ("missing keys", missing)) if items]
        raise CheckpointError(f"{path}: the weights do not fit preset {config.name!r} ({_variant(config.video)}): "
                              + "; ".join(parts))
    model.load_state_dict(stored.state_dict, strict=not text_from_package)
    return model.eval()


def carries_no_text_encoder(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when a state dict leaves out every text-encoder tensor (weights shipped without the packaged encoder)."""
    return not any(key.startswith(TEXT_ENCODER_PREFIX) for key in state_dict)

"""Resumable training checkpoints: model weights in safetensors, trainer state in a separate torch file.

Layout under `<output_dir>/checkpoints/`:
    model_<step>.safetensors        model state dict (parameters and buffers) written with
                                    `uninext_core.checkpoint.save_weights` (preset, variant and config in the header,
                                    plus `training.step`); written by rank 0
    trainer_<step>_rank<r>.pt       optimizer, LR scheduler, AMP scaler, criterion state (BoxInst counter), RNG states
                                    of python / numpy / torch (/ CUDA), data-sampler position, step; one per rank,
                                    only tensors and plain types, read back with `torch.load(weights_only=True)`
    last_checkpoint                 the step of the newest complete checkpoint (written last, atomically)
Files are written to a temporary name and renamed, so an interrupted save never leaves a half checkpoint behind.

Loading checks the preset stored in the header: a checkpoint of another preset raises ValueError naming both.
`init_from_checkpoint` starts a stage from the previous one's weights; for stage 3 it builds the template backbone
from the image backbone with a zero-initialised 4th input channel (official `convert_3c_to_4c_pth`).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uninext_core.checkpoint.safetensors_io import StoredWeights, read_weights, save_weights
from uninext_core.config import UninextConfig

logger = logging.getLogger(__name__)

TEXT_ENCODER_PREFIX = "text_encoder."
TEMPLATE_BACKBONE_PREFIX = "template_encoder.backbone."
MAIN_BACKBONE_PREFIX = "backbone."
LAST_CHECKPOINT = "last_checkpoint"
STEP_KEY = "training.step"
TEXT_ENCODER_KEY = "training.text_encoder"


def _atomic_tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def save_model(model: nn.Module, path: str | Path, *, config: UninextConfig, step: int = 0,
               include_text_encoder: bool = True, dtype: torch.dtype | None = None,
               extra_metadata: dict[str, str] | None = None) -> Path:
    """Write the model's state dict with `save_weights` (config in the header), atomically.

    Args:
        model: the Uninext network (not wrapped in DDP).
        path: output file.
        config: the model's config (preset name and YAML go into the header).
        step: training iteration stored in the header (`training.step`).
        include_text_encoder: False leaves out every `text_encoder.*` tensor (the packaged text encoder is
            rebuilt from its own files).
        dtype: cast floating-point tensors to this dtype (e.g. torch.float16 for shipping), None keeps them.
        extra_metadata: more header entries (e.g. where shipped weights came from).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in model.state_dict().items():
        if not include_text_encoder and key.startswith(TEXT_ENCODER_PREFIX):
            continue
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.clone()  # no shared storage between entries (safetensors refuses it)
    tmp = _atomic_tmp(path)
    save_weights(tmp, tensors, config=config, extra_metadata={**(extra_metadata or {}), STEP_KEY: str(int(step)),
                                                             TEXT_ENCODER_KEY: str(include_text_encoder).lower()})
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, *, config: UninextConfig | None = None) -> StoredWeights:
    """A weights file's tensors, config and header; with `config`, a file of another preset raises ValueError."""
    return read_weights(path, preset=None if config is None else config.name)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a weights file, on the CPU."""
    return read_weights(path).state_dict


def load_model(model: nn.Module, path: str | Path, *, config: UninextConfig) -> int:
    """Load weights saved by `save_model` into a model of the same preset and variant (exact resume).

    Text-encoder tensors may be absent (checkpoints shipped without the packaged encoder); every other key must
    match in name and shape.

    Returns:
        The step stored in the header.

    Raises:
        ValueError: another preset or variant, missing / unexpected keys, or a shape mismatch.
    """
    stored = read_weights(path, preset=config.name, video=config.video)
    tensors = stored.state_dict
    own = model.state_dict()
    missing = [k for k in own if k not in tensors and not k.startswith(TEXT_ENCODER_PREFIX)]
    unexpected = [k for k in tensors if k not in own]
    wrong = [f"{k}: {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in tensors
             if k in own and tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} does not fit the {config.name} model (video={config.video}): "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                         f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, shape mismatches {wrong[:5]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)
    return int(stored.metadata.get(STEP_KEY, "0"))


def init_from_checkpoint(model: nn.Module, path: str | Path, *, config: UninextConfig,
                         template_from_backbone: bool = True) -> list[str]:
    """Start a stage from the previous stage's weights (same preset; image -> video model allowed).

    Keys the checkpoint lacks keep their fresh values (stage 3: template branch and re-ID head). With
    `template_from_backbone`, a template backbone missing from the checkpoint is copied from the image backbone,
    its first convolution widened to 4 input channels with a zero 4th-channel filter.

    Returns:
        The model keys left at their initial values.

    Raises:
        ValueError: another preset, unexpected keys, or shape mismatches.
    """
    tensors = dict(read_checkpoint(path, config=config).state_dict)
    own = model.state_dict()
    if template_from_backbone and not any(k.startswith(TEMPLATE_BACKBONE_PREFIX) for k in tensors):
        for key, value in list(tensors.items()):
            if not key.startswith(MAIN_BACKBONE_PREFIX):
                continue
            target = TEMPLATE_BACKBONE_PREFIX + key[len(MAIN_BACKBONE_PREFIX):]
            if target not in own:
                continue
            if value.dim() == 4 and own[target].shape[1] == value.shape[1] + 1:
                value = torch.cat([value, value.new_zeros(value.shape[0], 1, *value.shape[2:])], dim=1)
            tensors[target] = value
    unexpected = [k for k in tensors if k not in own]
    wrong = [f"{k}: {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in tensors
             if k in own and tensors[k].shape != own[k].shape]
    if unexpected or wrong:
        raise ValueError(f"cannot initialise the {config.name} model from {path}: unexpected keys {unexpected[:5]}, "
                         f"shape mismatches {wrong[:5]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)
    fresh = [k for k in own if k not in tensors and not k.startswith(TEXT_ENCODER_PREFIX)]
    logger.info("initialised from %s; %d tensors keep their initial values", path, len(fresh))
    return fresh


# ---------------------------------------------------------------------------------------------------------------
# Trainer state
# ---------------------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy (legacy global) and torch (CPU and CUDA), as tensors and plain types."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [str(np_name), torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(output_dir: str | Path) -> Path:
    """`<output_dir>/checkpoints`."""
    return Path(output_dir) / "checkpoints"


def model_path(output_dir: str | Path, step: int) -> Path:
    """Model file of a step."""
    return checkpoint_dir(output_dir) / f"model_{step:07d}.safetensors"


def trainer_path(output_dir: str | Path, step: int, rank: int) -> Path:
    """Trainer-state file of a step and rank."""
    return checkpoint_dir(output_dir) / f"trainer_{step:07d}_rank{rank}.pt"


def save_trainer_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a trainer-state dict (tensors and plain types only) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_tmp(path)
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """Read a trainer-state file with `weights_only=True` (no arbitrary objects are unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"trainer state {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def mark_complete(output_dir: str | Path, step: int, *, keep: int = 2) -> None:
    """Record `step` as the newest complete checkpoint and delete all but the newest `keep` ones."""
    folder = checkpoint_dir(output_dir)
    marker = folder / LAST_CHECKPOINT
    tmp = _atomic_tmp(marker)
    tmp.write_text(f"{step}\n")
    os.replace(tmp, marker)
    steps = sorted({int(p.stem.split("_")[1]) for p in folder.glob("model_*.safetensors")
                    if p.stem.split("_")[1].isdigit()})
    for old in steps[:-keep] if keep > 0 else []:
        for file in [model_path(output_dir, old), *folder.glob(f"trainer_{old:07d}_rank*.pt")]:
            file.unlink(missing_ok=True)


def last_complete_step(output_dir: str | Path) -> int | None:
    """The step of the newest complete checkpoint, or None when there is none."""
    marker = checkpoint_dir(output_dir) / LAST_CHECKPOINT
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    if not text.isdigit():
        raise ValueError(f"{marker} should hold a step number, got {text!r}")
    return int(text)

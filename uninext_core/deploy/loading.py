"""Loading a model for serving: weights or an export folder -> a `Backend`, its config and its tokenizer.

The ROS node's session provider, the offline evaluator (`uninext-eval`) and the rosbag tools all load models through
`load_backend`, so a checkpoint that works for one works for all of them, with the same errors:

* torch: `checkpoint` is a `.safetensors` file written by uninext-convert or the trainer (it knows its preset), an
  official UNINEXT `.pth` (converted on load; the video model, which serves every task), or "" for the weights the
  package ships for the preset (only `tiny` may have some).
* onnxruntime / tensorrt: `engine_path` is a folder written by uninext-export; its manifest names the preset.

Every mismatch (a checkpoint or export of another preset, a missing file) raises ValueError naming the file, the
preset found and the preset expected.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from uninext_core.config import UninextConfig
from uninext_core.deploy.backend import Backend

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = ["LoadedBackend", "load_backend", "shipped_weights"]

BACKEND_NAMES: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class LoadedBackend:
    """A backend ready for `Session(backend, tokenizer=...)`.

    Attributes:
        backend: runs the network.
        config: the model configuration (preset name in `config.name`).
        tokenizer: the fast tokenizer of the model's text encoder.
        description: one line for logs and reports, e.g. "tiny on torch (cpu), weights /path/model.safetensors".
        weights: the weights file or export folder that was loaded.
    """

    backend: Backend
    config: UninextConfig
    tokenizer: PreTrainedTokenizerBase
    description: str
    weights: str


def shipped_weights(preset: str) -> Path:
    """Where the package keeps the weights it ships for `preset` (only `tiny` may have some)."""
    import uninext_core

    return Path(uninext_core.__file__).resolve().parent / "assets" / f"uninext_{preset}.safetensors"


def _torch_network(*, preset: str, checkpoint: str, text_encoder_path: str) -> tuple[UninextConfig, object, str]:
    from uninext_core.checkpoint.convert import from_official, official_config
    from uninext_core.checkpoint.safetensors_io import load_model, read_config

    path = Path(checkpoint).expanduser() if checkpoint else shipped_weights(preset)
    if not path.is_file():
        if checkpoint:
            raise ValueError(f"checkpoint {path} does not exist")
        raise ValueError(f"no checkpoint given and no weights shipped for preset {preset!r} ({path} missing); "
                         f"give a checkpoint")
    text_path = text_encoder_path or None
    if path.suffix == ".pth":
        video = True  # stage-3 checkpoints serve every task; image-only checkpoints are converted with --image
        model = from_official(path, preset=preset, video=video, text_encoder_path=text_path)
        return official_config(preset, video=video, text_encoder_path=text_path), model, str(path)
    model = load_model(path, preset=preset, text_encoder_path=text_path)
    return read_config(path), model, str(path)


def load_backend(*, preset: str, checkpoint: str = "", backend: str = "torch", device: str = "cpu",
                 engine_path: str = "", text_encoder_path: str = "") -> LoadedBackend:
    """Load the model named by the arguments (the same ones as the node's parameters).

    Args:
        preset: the preset the weights must belong to ("tiny", "r50", "convnext_l", "vit_h").
        checkpoint: torch: `.safetensors` or official `.pth`; "" for the shipped weights of the preset.
        backend: "torch", "onnxruntime" or "tensorrt".
        device: torch: "cpu", "cuda", "cuda:1".
        engine_path: onnxruntime / tensorrt: the uninext-export folder.
        text_encoder_path: local Hugging Face BERT folder for the tokenizer; "" for the preset's default.

    Returns:
        The backend, config, tokenizer and a one-line description.

    Raises:
        ValueError: unknown backend, missing file or folder, weights or export of another preset (the checkpoint
            readers' CheckpointError is a ValueError).
    """
    from uninext_core.deploy.factory import make_backend
    from uninext_core.model.text_encoder import load_tokenizer

    if backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKEND_NAMES)}")
    if backend == "torch":
        config, model, weights = _torch_network(preset=preset, checkpoint=checkpoint,
                                                text_encoder_path=text_encoder_path)
        runner = make_backend("torch", config=config, model=model, device=device)
        where = device
    else:
        if not engine_path:
            raise ValueError(f"backend {backend!r} needs engine_path: a folder written by uninext-export")
        from uninext_core.deploy.export_manifest import ExportManifest

        if not Path(engine_path).is_dir():
            raise ValueError(f"engine_path {engine_path} is not a folder written by uninext-export")
        config = ExportManifest.load(engine_path).config
        if config.name != preset:
            raise ValueError(f"{engine_path} was exported from preset {config.name!r}, but preset {preset!r} is "
                             f"configured")
        runner = make_backend(backend, export_dir=engine_path)
        weights, where = str(engine_path), "exported"
    tokenizer = load_tokenizer(config.text if not text_encoder_path else
                               dataclasses.replace(config.text, path=text_encoder_path))
    description = f"{config.name} on {runner.name} ({where}), weights {weights}"
    logger.info("loaded %s", description)
    return LoadedBackend(backend=runner, config=config, tokenizer=tokenizer, description=description, weights=weights)

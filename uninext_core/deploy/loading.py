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

__all__ = ["LoadedBackend", "graph_input_size", "load_backend", "shipped_weights"]

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


def graph_input_size(config: UninextConfig, *, short_side: int | None = None,
                     max_size: int | None = None) -> tuple[int, int]:
    """The fixed (H, W) CUDA graphs are captured at: a landscape frame resized the way the session resizes frames
    (short side `short_side`, long side at most `max_size`; None: the preset's test sizes), each side rounded up to
    the size divisor. Landscape frames fill it; others are letterboxed into it with their aspect kept."""
    from uninext_core.deploy.backend import model_spec

    short = short_side or config.input.test_short_side
    longest = max(max_size or config.input.test_max_size, short)
    divisor = model_spec(config).size_divisibility
    return (-(-short // divisor) * divisor, -(-longest // divisor) * divisor)


def load_backend(*, preset: str, checkpoint: str = "", backend: str = "torch", device: str = "cpu",
                 engine_path: str = "", text_encoder_path: str = "", fp16: bool = False, cuda_graphs: bool = False,
                 input_short_side: int | None = None, input_max_size: int | None = None) -> LoadedBackend:
    """Load the model named by the arguments (the same ones as the node's parameters).

    Args:
        preset: the preset the weights must belong to ("tiny", "r50", "convnext_l", "vit_h").
        checkpoint: torch: `.safetensors` or official `.pth`; "" for the shipped weights of the preset.
        backend: "torch", "onnxruntime" or "tensorrt".
        device: torch: "cpu", "cuda", "cuda:1".
        engine_path: onnxruntime / tensorrt: the uninext-export folder.
        text_encoder_path: local Hugging Face BERT folder for the tokenizer; "" for the preset's default.
        fp16: torch on CUDA: float16 autocast.
        cuda_graphs: torch on CUDA: replay the main network from CUDA graphs at `graph_input_size` (on an H100 the
            tiny session's frame took 5.5-8.1 ms instead of 17.6-27.6 ms eager, bench/results/gpu_checks.txt).
        input_short_side, input_max_size: the session's resize settings (None: the preset's), which fix the
            CUDA-graph input size.

    Returns:
        The backend, config, tokenizer and a one-line description.

    Raises:
        ValueError: unknown backend, missing file or folder, weights or export of another preset (the checkpoint
            readers' CheckpointError is a ValueError), fp16 or cuda_graphs without torch on a CUDA device.
    """
    from uninext_core.deploy.factory import make_backend
    from uninext_core.model.text_encoder import load_tokenizer

    if backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKEND_NAMES)}")
    for name, wanted in (("fp16", fp16), ("cuda_graphs", cuda_graphs)):
        if wanted and (backend != "torch" or not device.startswith("cuda")):
            raise ValueError(f"{name} needs the torch backend on a CUDA device (got backend {backend!r}, device "
                             f"{device!r}); the exported backends choose their precision when the engine is built")
    if backend == "torch":
        config, model, weights = _torch_network(preset=preset, checkpoint=checkpoint,
                                                text_encoder_path=text_encoder_path)
        input_size = (graph_input_size(config, short_side=input_short_side, max_size=input_max_size)
                      if cuda_graphs else None)
        runner = make_backend("torch", config=config, model=model, device=device, fp16=fp16,
                              cuda_graphs=cuda_graphs, input_size=input_size)
        where = device + (", fp16" if fp16 else "") + (f", CUDA graphs at {input_size[0]}x{input_size[1]}"
                                                        if input_size else "")
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

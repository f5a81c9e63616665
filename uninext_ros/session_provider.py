"""How the node gets its sessions: a `SessionProvider` builds one session per camera (one model shared by all).

The node depends only on this small contract, so tests can hand it sessions of their own and deployments can swap
backends without touching the node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from uninext_ros.params import NodeParams


@dataclass
class SessionBundle:
    """Sessions keyed by camera namespace, a one-line description for logs/diagnostics, and how to free them.

    Each session follows uninext_core.tasks.session.Session: set_prompt, process, reset, update_config, and the
    prompt / prompt_id / task properties.
    """

    sessions: dict[str, Any]
    description: str
    release: Callable[[], None] = field(default=lambda: None)


class SessionProvider(Protocol):
    """Builds the sessions from the node parameters and maps run-time parameters to a session configuration."""

    def build(self, params: NodeParams) -> SessionBundle:
        """Load the model once and make one session per camera in params.cameras (raises with a clear reason)."""
        ...

    def session_config(self, params: NodeParams) -> Any:
        """The session configuration (thresholds, tracker settings, masks) for these parameter values."""
        ...


class ModelSessionProvider:
    """The node's default provider: one network (and its backend) for all cameras, one session per camera.

    Weights: `checkpoint` may be a `.safetensors` file written by uninext-convert or the trainer (it knows its
    preset), an official UNINEXT `.pth` (converted on load), or empty for the small model shipped with the package
    (tiny preset). The onnxruntime and tensorrt backends read an uninext-export folder (`engine_path`) instead.
    """

    def build(self, params: NodeParams) -> SessionBundle:
        import torch

        from uninext_core.deploy.factory import make_backend
        from uninext_core.model.text_encoder import load_tokenizer
        from uninext_core.tasks.prompt_cache import PromptCache
        from uninext_core.tasks.session import Session

        if params.backend == "torch":
            config, model, weights = _load_network(params)
            backend = make_backend("torch", config=config, model=model, device=params.device)
        else:
            if not params.engine_path:
                raise ValueError(f"backend {params.backend!r} needs engine_path: a folder written by uninext-export")
            backend = make_backend(params.backend, export_dir=params.engine_path)
            config, weights = _export_config(params.engine_path), params.engine_path
            if config.name != params.preset:
                raise ValueError(f"{params.engine_path} was exported from preset {config.name!r}, but preset "
                                 f"{params.preset!r} is configured")
        tokenizer = load_tokenizer(config.text if not params.text_encoder_path else
                                   dataclasses.replace(config.text, path=params.text_encoder_path))
        cache = PromptCache(backend)
        session_config = self.session_config(params)
        sessions = {camera: Session(backend, tokenizer=tokenizer, config=session_config, prompt_cache=cache)
                    for camera in params.cameras}

        def release() -> None:
            sessions.clear()
            if params.device.startswith("cuda") and torch.cuda.is_available():
                torch.cuda.empty_cache()

        where = params.device if params.backend == "torch" else "exported"
        description = f"{config.name} on {backend.name} ({where}), weights {weights}"
        return SessionBundle(sessions, description, release=release)

    def session_config(self, params: NodeParams) -> Any:
        from uninext_core.tasks.session_config import SessionConfig
        from uninext_core.tasks.trackers.config import IdolTrackerConfig, QuasiDenseTrackerConfig

        return SessionConfig(
            masks=params.publish_masks,
            score_threshold=params.score_threshold,
            max_instances=params.max_instances,
            nms_threshold=params.nms_threshold,
            input_short_side=params.input_short_side or None,
            input_max_size=params.input_max_size or None,
            frame_buffer_size=params.frame_buffer_size,
            quasi_dense=QuasiDenseTrackerConfig(init_score_thr=params.track_init_threshold,
                                                match_score_thr=params.track_match_threshold,
                                                memo_tracklet_frames=params.track_memory_frames),
            idol=IdolTrackerConfig(match_score_thr=params.track_match_threshold,
                                   memo_tracklet_frames=params.track_memory_frames),
            template_update_interval=params.template_update_interval,
            template_update_threshold=params.template_update_threshold,
        )


def shipped_weights(preset: str) -> Path:
    """Where the package keeps the weights it ships for `preset` (only `tiny` has some)."""
    import uninext_core

    return Path(uninext_core.__file__).resolve().parent / "assets" / f"uninext_{preset}.safetensors"


def _load_network(params: NodeParams) -> tuple[Any, Any, str]:
    from uninext_core.checkpoint.convert import from_official, official_config
    from uninext_core.checkpoint.safetensors_io import load_model, read_config

    path = Path(params.checkpoint).expanduser() if params.checkpoint else shipped_weights(params.preset)
    if not path.is_file():
        if params.checkpoint:
            raise ValueError(f"checkpoint {path} does not exist")
        raise ValueError(f"no checkpoint given and no weights shipped for preset {params.preset!r} ({path} missing); "
                         f"set the checkpoint parameter")
    text_path = params.text_encoder_path or None
    if path.suffix == ".pth":
        video = True  # stage-3 checkpoints serve every task; image-only checkpoints are converted with --image
        model = from_official(path, preset=params.preset, video=video, text_encoder_path=text_path)
        return official_config(params.preset, video=video, text_encoder_path=text_path), model, str(path)
    model = load_model(path, preset=params.preset, text_encoder_path=text_path)
    return read_config(path), model, str(path)


def _export_config(export_dir: str) -> Any:
    from uninext_core.deploy.export_manifest import ExportManifest

    return ExportManifest.load(export_dir).config

"""How the node gets its sessions: a `SessionProvider` builds one session per camera (one model shared by all).

The node depends only on this small contract, so tests can hand it sessions of their own and deployments can swap
backends without touching the node.
"""

from __future__ import annotations

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


def load_for_params(params: NodeParams) -> Any:
    """`load_backend` with the node's model parameters (the node and `uninext-bag-eval` load alike)."""
    from uninext_core.deploy.loading import load_backend

    return load_backend(preset=params.preset, checkpoint=params.checkpoint, backend=params.backend,
                        device=params.device, engine_path=params.engine_path,
                        text_encoder_path=params.text_encoder_path, fp16=params.torch_fp16,
                        cuda_graphs=params.cuda_graphs, input_short_side=params.input_short_side or None,
                        input_max_size=params.input_max_size or None)


class ModelSessionProvider:
    """The node's default provider: one network (and its backend) for all cameras, one session per camera.

    Weights: `checkpoint` may be a `.safetensors` file written by uninext-convert or the trainer (it knows its
    preset), an official UNINEXT `.pth` (converted on load), or empty for the small model shipped with the package
    (tiny preset). The onnxruntime and tensorrt backends read an uninext-export folder (`engine_path`) instead.
    Loading is `uninext_core.deploy.loading.load_backend`, shared with uninext-eval and the rosbag tools.
    """

    def build(self, params: NodeParams) -> SessionBundle:
        import torch

        from uninext_core.tasks.prompt_cache import PromptCache
        from uninext_core.tasks.session import Session

        loaded = load_for_params(params)
        cache = PromptCache(loaded.backend)
        session_config = self.session_config(params)
        sessions = {camera: Session(loaded.backend, tokenizer=loaded.tokenizer, config=session_config,
                                    prompt_cache=cache)
                    for camera in params.cameras}

        def release() -> None:
            sessions.clear()
            if params.device.startswith("cuda") and torch.cuda.is_available():
                torch.cuda.empty_cache()

        return SessionBundle(sessions, loaded.description, release=release)

    def session_config(self, params: NodeParams) -> Any:
        from uninext_core.tasks.session_config import SessionConfig
        from uninext_core.tasks.trackers.config import IdolTrackerConfig, QuasiDenseTrackerConfig

        return SessionConfig(
            masks=params.publish_masks,
            score_threshold=params.score_threshold,
            max_instances=params.max_instances,
            best_class_only=params.best_class_only,
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
            sot_motion_weight=params.sot_motion_weight,
            sot_motion_sigma=params.sot_motion_sigma,
        )


def shipped_weights(preset: str) -> Path:
    """Where the package keeps the weights it ships for `preset` (only `tiny` has some)."""
    from uninext_core.deploy.loading import shipped_weights as core_shipped_weights

    return core_shipped_weights(preset)

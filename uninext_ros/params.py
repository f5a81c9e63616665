"""Parameters of the perception node: one table of declarations (with descriptors and ranges) and `NodeParams`.

Every parameter is declared from `PARAMETERS`, read once into the frozen `NodeParams` at configure time, and the
ones marked `runtime=True` (thresholds, tracker settings) may change while the node runs: the on-set callback
validates them and the node applies them to its sessions. `config/perception.yaml` sets the same names, and
`launch/perception.launch.py` passes only names from this table (checked by a test).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from uninext_core.tasks.motion_prior import NODE_SOT_MOTION_SIGMA, NODE_SOT_MOTION_WEIGHT

PRESETS: tuple[str, ...] = ("tiny", "r50", "convnext_l", "vit_h")
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
DEVICES: tuple[str, ...] = ("cpu", "cuda")


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter: default, help text, optional range or choices, run-time changeable or not."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    runtime: bool = False

    def descriptor(self) -> ParameterDescriptor:
        text = self.description + (f" One of: {', '.join(self.choices)}." if self.choices else "")
        text += " Changeable at run time." if self.runtime else " Applies at configure."
        # Not read_only even when it applies at configure: a lifecycle node may be cleaned up, given a new value
        # and configured again; the node's on-set callback refuses changes while it is configured.
        descriptor = ParameterDescriptor(name=self.name, description=text, type=_parameter_type(self.default),
                                         additional_constraints="" if self.runtime else "applies at configure")
        if self.minimum is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(self.minimum),
                                                                  to_value=float(self.maximum), step=0.0)]
        elif self.minimum is not None and isinstance(self.default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(self.minimum), to_value=int(self.maximum), step=1)]
        return descriptor

    def check(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None when it is."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        if self.minimum is not None and not self.minimum <= value <= self.maximum:
            return f"{self.name}={value!r} is outside [{self.minimum}, {self.maximum}]"
        return None


def _parameter_type(default: Any) -> int:
    if isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(default, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if isinstance(default, list):
        return ParameterType.PARAMETER_STRING_ARRAY
    return ParameterType.PARAMETER_STRING


PARAMETERS: tuple[ParameterSpec, ...] = (
    # start-up
    ParameterSpec("autostart", True, "Configure and activate right after start (perception_node executable); "
                  "false leaves the transitions to a lifecycle manager."),
    # model and backend (read at configure)
    ParameterSpec("preset", "tiny", "Model preset.", choices=PRESETS),
    ParameterSpec("checkpoint", "", "Model weights (.safetensors, or an official .pth); empty: the shipped small "
                  "model of the tiny preset."),
    ParameterSpec("text_encoder_path", "", "Local Hugging Face BERT folder; empty: the preset's default."),
    ParameterSpec("backend", "torch", "Inference backend.", choices=BACKENDS),
    ParameterSpec("device", "cpu", "Device for the torch backend.", choices=DEVICES),
    ParameterSpec("torch_fp16", False, "torch backend on cuda: float16 autocast."),
    ParameterSpec("cuda_graphs", False, "torch backend on cuda: replay the network from CUDA graphs, every frame "
                  "letterboxed to one size (input_short_side x input_max_size, rounded up to 32)."),
    ParameterSpec("engine_path", "", "ONNX model folder (onnxruntime) or engine cache folder (tensorrt)."),
    ParameterSpec("input_short_side", 0, "Resize frames so the short side has this many pixels; 0: preset default.",
                  minimum=0, maximum=2048),
    ParameterSpec("input_max_size", 0, "Upper bound of the long side after resizing; 0: preset default.",
                  minimum=0, maximum=4096),
    # cameras and transport (read at configure)
    ParameterSpec("cameras", [""], "Camera namespaces served by this node; '' is the node's own namespace. Each "
                  "camera reads <camera>/<image_topic> and publishes <camera>/instances."),
    ParameterSpec("image_topic", "image", "Image topic name below each camera namespace."),
    ParameterSpec("use_compressed", False, "Subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage, "
                  "jpeg or png) instead of raw images."),
    ParameterSpec("image_reliability", "best_effort", "QoS reliability of the image subscription.",
                  choices=("best_effort", "reliable")),
    ParameterSpec("image_depth", 1, "QoS history depth of the image subscription.", minimum=1, maximum=100),
    ParameterSpec("publish_masks", True, "Fill Instance.mask (COCO RLE)."),
    ParameterSpec("frame_buffer_size", 30, "Recent frames kept per camera for template prompts.", minimum=1,
                  maximum=1000),
    ParameterSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", minimum=0.1, maximum=60.0),
    ParameterSpec("initial_classes", "", "Comma-separated class names prompted at activation; empty: wait for a "
                  "prompt."),
    # thresholds (changeable at run time)
    ParameterSpec("score_threshold", 0.3, "Instances below this score are not published.", minimum=0.0,
                  maximum=1.0, runtime=True),
    ParameterSpec("nms_threshold", 0.7, "Class-aware NMS IoU threshold (detection and segmentation).", minimum=0.0,
                  maximum=1.0, runtime=True),
    ParameterSpec("max_instances", 100, "Most instances per frame.", minimum=1, maximum=900, runtime=True),
    ParameterSpec("best_class_only", True, "One label per object: each detection query keeps only its best class "
                  "(false: every class scoring above the threshold, the official COCO rule).", runtime=True),
    ParameterSpec("track_init_threshold", 0.4, "Score needed to start a track (MOT/MOTS).", minimum=0.0,
                  maximum=1.0, runtime=True),
    ParameterSpec("track_match_threshold", 0.5, "Embedding similarity needed to continue a track.", minimum=0.0,
                  maximum=1.0, runtime=True),
    ParameterSpec("track_memory_frames", 10, "Frames a lost track is remembered.", minimum=1, maximum=1000,
                  runtime=True),
    ParameterSpec("template_update_interval", 200, "Frames between online template updates (SOT).", minimum=1,
                  maximum=100000, runtime=True),
    ParameterSpec("template_update_threshold", 0.7, "Score needed for an online template update (SOT/VOS).",
                  minimum=0.0, maximum=1.0, runtime=True),
    ParameterSpec("sot_motion_weight", NODE_SOT_MOTION_WEIGHT, "SOT: weight of the preference for candidates near "
                  "the target's last box when choosing it (0: the official full-frame top-1).", minimum=0.0,
                  maximum=1.0, runtime=True),
    ParameterSpec("sot_motion_sigma", NODE_SOT_MOTION_SIGMA, "SOT: width of that preference, in sizes of the last "
                  "box.", minimum=0.05, maximum=10.0, runtime=True),
)
SPECS: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeParams:
    """All parameter values, read once at configure time (names as in PARAMETERS)."""

    autostart: bool
    preset: str
    checkpoint: str
    text_encoder_path: str
    backend: str
    device: str
    torch_fp16: bool
    cuda_graphs: bool
    engine_path: str
    input_short_side: int
    input_max_size: int
    cameras: tuple[str, ...]
    image_topic: str
    use_compressed: bool
    image_reliability: str
    image_depth: int
    publish_masks: bool
    frame_buffer_size: int
    diagnostics_period: float
    initial_classes: str
    score_threshold: float
    nms_threshold: float
    max_instances: int
    best_class_only: bool
    track_init_threshold: float
    track_match_threshold: float
    track_memory_frames: int
    template_update_interval: int
    template_update_threshold: float
    sot_motion_weight: float
    sot_motion_sigma: float

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParams:
        """Validated NodeParams; raises ValueError naming every bad value."""
        problems = [problem for name, value in values.items() if name in SPECS
                    for problem in [SPECS[name].check(value)] if problem]
        cameras = tuple(values["cameras"])
        if len(set(cameras)) != len(cameras):
            problems.append(f"cameras {list(cameras)} contains a namespace twice")
        if not values["image_topic"].strip("/"):
            problems.append("image_topic is empty")
        for name in ("torch_fp16", "cuda_graphs"):
            if values[name] and (values["backend"] != "torch" or values["device"] != "cuda"):
                problems.append(f"{name} needs backend 'torch' and device 'cuda' (got {values['backend']!r} on "
                                f"{values['device']!r})")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**{f.name: (cameras if f.name == "cameras" else values[f.name]) for f in fields(cls)})


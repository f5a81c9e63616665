"""`SessionConfig`: every threshold and limit of the perception session, with the official UNINEXT test values
(uninext-reference.md §7) as defaults. Validated on construction by `validate_session_config` (ValueError naming the
field), so an invalid config cannot exist.

Thresholds may change while a session runs (`Session.update_config`): they apply from the next frame, trackers
included, without losing tracks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from uninext_core.tasks.trackers.config import IdolTrackerConfig, QuasiDenseTrackerConfig


@dataclass(frozen=True)
class SessionConfig:
    """Perception-session settings.

    Attributes:
        masks: return instance masks (N, H, W) at the frame size; False returns masks=None (VIS and VOS still
            compute low-resolution masks internally, their trackers need them).
        score_threshold: instances scoring below this are not returned (official: 0, every top-k result is kept;
            the ROS node publishes from 0.3). Tracker and template state is updated regardless.
        max_instances: top-k over (query, class) pairs for detection / instance segmentation (official 100).
        best_class_only: detection / instance segmentation: each query competes with its best class only, so one
            object gets one label (official: False, a query may appear with several classes, which COCO AP
            rewards; the ROS node publishes with True, as detectors for robots do).
        nms_threshold: class-aware box NMS IoU for detection / instance segmentation (official 0.7).
        input_short_side: resize frames so the short side has this many pixels; None: the model's test size.
        input_max_size: bound of the long side after resizing; None: the model's test bound.
        max_expression_chars: longest expression accepted (characters, before cleaning).
        max_categories: most class names in one category prompt.
        frame_buffer_size: recent frames kept (by stamp) for template prompts that refer to a past frame.
        mot_candidate_threshold: MOT/MOTS: queries whose best class score exceeds this are candidates (else top-1).
        mot_nms_threshold: MOT/MOTS class-aware NMS IoU (official 0.7).
        vis_candidate_threshold: VIS: candidate score bound (official 0.1).
        vis_nms_threshold: VIS class-aware NMS IoU (official 0.9).
        quasi_dense: QDTrack-style tracker thresholds (MOT/MOTS; official BDD values, init 0.4).
        idol: IDOL tracker thresholds (VIS).
        template_update_interval: SOT: frames between online template updates (official 200).
        template_update_threshold: SOT: the top score must exceed this for an update (official 0.7).
        sot_motion_weight: SOT: weight of the temporal-continuity window in choosing the top-1 (0: the official
            full-frame top-1; see uninext_core.tasks.motion_prior for why and how).
        sot_motion_sigma: SOT: width of that window, in units of the previous box's size sqrt(w · h) (> 0).
        vos_update_threshold: VOS: objects scoring at least this rebuild their previous-frame template (0.7).
        vos_min_score: VOS: objects scoring below this get an empty mask (official YT-VOS INST_THR_VOS 0.5).
    """

    masks: bool = True
    score_threshold: float = 0.0
    max_instances: int = 100
    best_class_only: bool = False
    nms_threshold: float = 0.7
    input_short_side: int | None = None
    input_max_size: int | None = None
    max_expression_chars: int = 1000
    max_categories: int = 100
    frame_buffer_size: int = 30
    mot_candidate_threshold: float = 0.1
    mot_nms_threshold: float = 0.7
    vis_candidate_threshold: float = 0.1
    vis_nms_threshold: float = 0.9
    quasi_dense: QuasiDenseTrackerConfig = field(default_factory=QuasiDenseTrackerConfig)
    idol: IdolTrackerConfig = field(default_factory=IdolTrackerConfig)
    template_update_interval: int = 200
    template_update_threshold: float = 0.7
    sot_motion_weight: float = 0.0
    sot_motion_sigma: float = 1.0
    vos_update_threshold: float = 0.7
    vos_min_score: float = 0.5

    def __post_init__(self) -> None:
        validate_session_config(self)

    def replace(self, **changes: object) -> SessionConfig:
        """A copy with fields replaced (`config.replace(score_threshold=0.3)`), validated."""
        return dataclasses.replace(self, **changes)


_UNIT_FIELDS = ("score_threshold", "nms_threshold", "mot_candidate_threshold", "mot_nms_threshold",
                "vis_candidate_threshold", "vis_nms_threshold", "template_update_threshold", "sot_motion_weight",
                "vos_update_threshold", "vos_min_score")
_POSITIVE_INT_FIELDS = ("max_instances", "max_expression_chars", "max_categories", "frame_buffer_size",
                        "template_update_interval")
_TRACKER_UNIT_FIELDS = {
    "quasi_dense": ("init_score_thr", "obj_score_thr", "match_score_thr", "memo_momentum", "nms_conf_thr",
                    "nms_backdrop_iou_thr", "nms_class_iou_thr"),
    "idol": ("init_score_thr", "addnew_score_thr", "match_score_thr", "mask_nms_thr", "backdrop_mask_iou_thr",
             "clip_class_score_thr"),
}
_TRACKER_INT_FIELDS = {
    "quasi_dense": (("memo_tracklet_frames", 1), ("memo_backdrop_frames", 0)),
    "idol": (("memo_tracklet_frames", 1), ("memo_backdrop_frames", 0), ("memory_len", 1),
             ("early_delete_after_frame", 1), ("early_delete_min_hits", 0)),
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_unit(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def validate_session_config(config: SessionConfig) -> SessionConfig:
    """Check every field; return `config` unchanged or raise ValueError naming the field, its value and the range.

    Raises:
        TypeError: `config` is not a SessionConfig (or a tracker section has the wrong type).
        ValueError: a field out of range.
    """
    if not isinstance(config, SessionConfig):
        raise TypeError(f"expected a SessionConfig, got {type(config).__name__}")
    if not isinstance(config.masks, bool):
        raise ValueError(f"masks must be true or false, got {config.masks!r}")
    for name in _UNIT_FIELDS:
        _check_unit(name, getattr(config, name))
    for name in _POSITIVE_INT_FIELDS:
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    sigma = config.sot_motion_sigma
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sot_motion_sigma must be a number > 0, got {sigma!r}")
    for name in ("input_short_side", "input_max_size"):
        value = getattr(config, name)
        if value is not None and (not _is_int(value) or value < 32):
            raise ValueError(f"{name} must be None (model default) or an integer >= 32, got {value!r}")
    if (config.input_short_side is not None and config.input_max_size is not None
            and config.input_max_size < config.input_short_side):
        raise ValueError(f"input_max_size {config.input_max_size} is below input_short_side "
                         f"{config.input_short_side}")
    for section, kind in (("quasi_dense", QuasiDenseTrackerConfig), ("idol", IdolTrackerConfig)):
        tracker = getattr(config, section)
        if not isinstance(tracker, kind):
            raise TypeError(f"{section} must be a {kind.__name__}, got {type(tracker).__name__}")
        for name in _TRACKER_UNIT_FIELDS[section]:
            _check_unit(f"{section}.{name}", getattr(tracker, name))
        for name, minimum in _TRACKER_INT_FIELDS[section]:
            value = getattr(tracker, name)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"{section}.{name} must be an integer >= {minimum}, got {value!r}")
    return config

"""Where one frame's time goes, split finer than `Instances.Timings` (the benchmark and `Session.stats` report it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

from uninext_core.instances import Timings


@dataclass
class FrameCost:
    """Milliseconds of one frame by stage.

    Attributes:
        preprocess_ms: validation, buffering, resize, normalise, pad.
        network_ms: backend.infer (every forward of the frame: SOT/VOS run one per target).
        postprocess_ms: scoring, NMS, top-k, mask head on chosen queries, masks at the frame size.
        tracking_ms: tracker update (MOT/MOTS/VIS), soft aggregation (VOS).
        template_ms: online template updates (crop + template encoder; SOT/VOS), 0 on most frames.
    """

    preprocess_ms: float = 0.0
    network_ms: float = 0.0
    postprocess_ms: float = 0.0
    tracking_ms: float = 0.0
    template_ms: float = 0.0

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Add the wall time of the `with` body to `stage` (one of the field names)."""
        if stage not in {f.name for f in fields(self)}:
            raise ValueError(f"unknown stage {stage!r}; expected one of {[f.name for f in fields(self)]}")
        start = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, stage, getattr(self, stage) + (time.perf_counter() - start) * 1e3)

    @property
    def total_ms(self) -> float:
        """Sum of every stage."""
        return sum(getattr(self, f.name) for f in fields(self))

    def timings(self) -> Timings:
        """The coarse split `Instances` carries: tracking and template updates count as post-processing."""
        return Timings(preprocess_ms=self.preprocess_ms, inference_ms=self.network_ms,
                       postprocess_ms=self.postprocess_ms + self.tracking_ms + self.template_ms)

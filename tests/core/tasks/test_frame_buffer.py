"""FrameBuffer: bounded by capacity, oldest dropped first, re-adding a stamp refreshes it."""

from __future__ import annotations

import numpy as np
import pytest

from uninext_core.tasks.frame_buffer import FrameBuffer


def test_buffer_keeps_the_newest_frames():
    buffer = FrameBuffer(capacity=2)
    assert buffer.describe() == "the frame buffer is empty"
    frames = {stamp: np.full((2, 2, 3), stamp, np.uint8) for stamp in (5, 6, 7)}
    for stamp, frame in frames.items():
        buffer.add(stamp, frame)
    assert buffer.stamps() == [6, 7] and 5 not in buffer and buffer.get(5) is None
    assert buffer.get(7) is frames[7]
    buffer.add(6, frames[6])  # refreshed: now the newest
    buffer.add(8, frames[5])
    assert buffer.stamps() == [6, 8] and buffer.describe() == "2 buffered frames, stamps 6..8"
    buffer.resize(1)
    assert buffer.stamps() == [8] and len(buffer) == 1
    buffer.clear()
    assert len(buffer) == 0
    with pytest.raises(ValueError, match="capacity must be an integer >= 1, got 0"):
        FrameBuffer(capacity=0)

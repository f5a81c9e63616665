"""`FrameBuffer`: the most recent frames by stamp, so a template prompt can refer to a frame already seen."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class FrameBuffer:
    """Bounded map stamp -> frame, oldest dropped first (insertion order).

    Args:
        capacity: frames kept, >= 1.

    Frames are stored by reference (the session never writes into a frame it was given); a frame added again under
    a stamp already held replaces it and becomes the newest.
    """

    def __init__(self, *, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self._capacity = capacity
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def capacity(self) -> int:
        """Most frames held."""
        return self._capacity

    def resize(self, capacity: int) -> None:
        """Change the capacity, dropping the oldest frames beyond it."""
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self._capacity = capacity
        while len(self._frames) > capacity:
            self._frames.popitem(last=False)

    def add(self, stamp_ns: int, frame: np.ndarray) -> None:
        """Keep `frame` ((H, W, 3) uint8) under `stamp_ns`."""
        self._frames.pop(stamp_ns, None)
        self._frames[stamp_ns] = frame
        while len(self._frames) > self._capacity:
            self._frames.popitem(last=False)

    def get(self, stamp_ns: int) -> np.ndarray | None:
        """The frame stamped `stamp_ns`, or None when it is not (or no longer) buffered."""
        return self._frames.get(stamp_ns)

    def __contains__(self, stamp_ns: object) -> bool:
        return stamp_ns in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def stamps(self) -> list[int]:
        """Buffered stamps, oldest first."""
        return list(self._frames)

    def describe(self) -> str:
        """One line for error messages: how many frames and which stamp range."""
        if not self._frames:
            return "the frame buffer is empty"
        stamps = self.stamps()
        return f"{len(stamps)} buffered frames, stamps {min(stamps)}..{max(stamps)}"

    def clear(self) -> None:
        """Drop every frame."""
        self._frames.clear()

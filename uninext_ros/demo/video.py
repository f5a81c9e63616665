"""The demo's footage: one seeded synthetic-world video, played back and forth, with its ground truth in memory.

Ground truth per frame is what the synthetic world annotates (`uninext_core.data.synthetic`): the tracks visible on
the frame, their kind (the class name), their tight visible-mask box and the attribute expressions that name each
track alone among the video's tracks (checked by the world's resolver).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uninext_core.data.synthetic.world import synth_video
from uninext_core.eval.overlaps import mask_areas_and_bounds

# Training data of the tiny model uses seed 0 (training/recipes/tiny_stage1.yaml): other seeds draw unseen videos.
DEFAULT_SEED = 1
DEFAULT_SIZE = 320
DEFAULT_FRAMES = 48
DEFAULT_DIFFICULTY = "medium"


@dataclass(frozen=True)
class FrameTruth:
    """Objects visible on one video frame.

    Attributes:
        track_indices: (M,) int64 positions into `DemoVideo.kinds` of the visible tracks.
        kinds: M class names.
        boxes_xyxy_px: (M, 4) float64 tight boxes of the visible masks, x_max / y_max exclusive, pixels.
    """

    track_indices: np.ndarray
    kinds: tuple[str, ...]
    boxes_xyxy_px: np.ndarray


@dataclass(frozen=True)
class DemoVideo:
    """A synthetic video and its annotations.

    Attributes:
        frames: T images (H, W, 3) uint8 RGB.
        kinds: N class names, one per track (drawing order).
        descriptions: N short descriptions ("large red striped star") for logs.
        boxes_xyxy_px: (T, N, 4) float64 visible-mask boxes, x_max / y_max exclusive; zeros where absent.
        present: (T, N) bool, the track shows on the frame.
        expressions: track index -> expressions that name that track alone (may be empty for some tracks).
    """

    frames: list[np.ndarray]
    kinds: tuple[str, ...]
    descriptions: tuple[str, ...]
    boxes_xyxy_px: np.ndarray
    present: np.ndarray
    expressions: dict[int, tuple[str, ...]]

    def __post_init__(self) -> None:
        num_frames, num_tracks = len(self.frames), len(self.kinds)
        if num_frames < 2:
            raise ValueError(f"a demo video needs at least 2 frames, got {num_frames}")
        if self.boxes_xyxy_px.shape != (num_frames, num_tracks, 4):
            raise ValueError(f"boxes_xyxy_px has shape {self.boxes_xyxy_px.shape}, expected "
                             f"{(num_frames, num_tracks, 4)}")
        if self.present.shape != (num_frames, num_tracks):
            raise ValueError(f"present has shape {self.present.shape}, expected {(num_frames, num_tracks)}")

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.frames[0].shape[0]), int(self.frames[0].shape[1])

    def playback_index(self, count: int) -> int:
        """Video frame shown as the `count`-th published frame (0-based): forward, backward, forward, ...

        The video plays back and forth (0, 1, ..., T-1, T-2, ..., 1, 0, 1, ...) so motion never jumps.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        period = 2 * (self.num_frames - 1)
        phase = count % period
        return phase if phase < self.num_frames else period - phase

    def truth(self, index: int) -> FrameTruth:
        """The objects visible on video frame `index`."""
        visible = np.flatnonzero(self.present[index])
        return FrameTruth(visible.astype(np.int64), tuple(self.kinds[n] for n in visible),
                          self.boxes_xyxy_px[index, visible].copy())


def make_demo_video(*, seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE, num_frames: int = DEFAULT_FRAMES,
                    difficulty: str = DEFAULT_DIFFICULTY) -> DemoVideo:
    """Draw the synthetic-world video `seed` (task "video", item 0) and keep boxes instead of masks.

    Args:
        seed: world seed (0 is the tiny model's training data).
        size: square frame side in pixels (the tiny model is trained on 320).
        num_frames: frames before the playback turns round.
        difficulty: "easy", "medium" or "hard" (objects, clutter, noise).
    """
    synth = synth_video(seed=seed, index=0, height=size, width=size, num_frames=num_frames, difficulty=difficulty,
                        task="video", with_expressions=True, max_expressions=3)
    num_tracks = len(synth.tracks)
    boxes = np.zeros((num_frames, num_tracks, 4), dtype=np.float64)
    for t in range(num_frames):
        _, bounds = mask_areas_and_bounds(synth.masks[t])  # (N, 4) half-open (y0, x0, y1, x1)
        boxes[t] = bounds[:, [1, 0, 3, 2]]
    boxes[~synth.present] = 0.0
    index_of_id = {track.id: n for n, track in enumerate(synth.tracks)}
    expressions = {index_of_id[track_id]: tuple(e.text for e in found) for track_id, found in synth.expressions.items()}
    descriptions = tuple(" ".join(w for w in (t.size, t.colour, "" if t.texture == "solid" else t.texture, t.kind) if w)
                         for t in synth.tracks)
    return DemoVideo(frames=list(synth.frames), kinds=tuple(t.kind for t in synth.tracks), descriptions=descriptions,
                     boxes_xyxy_px=boxes, present=synth.present.copy(), expressions=expressions)

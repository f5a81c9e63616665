"""Training samples of one recipe dataset: clip sampling, augmentation and the task's prompt (reference §2, §8).

`SampleSource.sample(index, rng)` returns one `TrainSample` (or None when the unit offers no valid sample, e.g. no
instance visible in both frames of a SOT clip after augmentation; the caller then takes another unit):

* frames: one frame (image stages), or two (stage 3: key frame + reference frame within ±window of each other,
  §8.3); a still image in a 2-frame recipe becomes a pseudo video (two independently cropped copies);
* category tasks (detection, vis, mot): the positives of the clip plus sampled negatives under the token budget
  (`data.prompt_sampling`), instances of dropped positives removed;
* expression tasks (grounding, rvos): one referral; its instance only, one of its sentences (left/right swapped
  with a flip);
* template tasks (sot, vos): one instance present in both augmented frames; template from the reference frame
  (frame 1), losses on the key frame (frame 0) with that instance only.

Every random choice comes from the `rng` passed in, so a sample is a pure function of (unit, rng seed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from uninext_core.data.clips import CLIP_WINDOWS, pseudo_video, sample_clip_indices, video_clip
from uninext_core.data.prompt_sampling import (
    apply_category_prompt,
    keep_instance,
    sample_category_prompt,
    sample_expression,
    sample_template,
)
from uninext_core.data.targets import Target
from uninext_core.data.transforms import AugmentationConfig, augment_clip
from uninext_core.train.batching import MaskSupervision, PromptSpec, TrainSample
from uninext_core.train.frame_stores import FrameStore
from uninext_core.train.recipe import REID_TASKS, DatasetSpec, InputSpec

CATEGORY_TASKS = ("detection", "vis", "mot")
EXPRESSION_TASKS = ("grounding", "rvos")
TEMPLATE_TASKS = ("sot", "vos")
ATTEMPTS = 4  # augmentation draws tried before a unit is given up for this step
_TASK_WINDOW = {"vis": "vis", "mot": "mot", "rvos": "rvos", "sot": "sot", "vos": "vos", "detection": "vis",
                "grounding": "rvos"}


def augmentation_for(spec: DatasetSpec, inputs: InputSpec) -> AugmentationConfig:
    """The dataset's augmentation: the recipe's input settings with the dataset's size overrides."""
    return AugmentationConfig(flip_prob=inputs.flip_prob, crop_prob=inputs.crop_prob,
                              pre_crop_short_sides=tuple(inputs.pre_crop_short_sides),
                              crop_range=inputs.crop_range,
                              short_sides=tuple(spec.short_sides or inputs.short_sides),
                              max_size=spec.max_size or inputs.max_size)


class SampleSource:
    """Samples of one dataset for one recipe.

    Args:
        spec: the recipe's dataset entry.
        store: its frames and targets.
        inputs: augmentation and clip settings.
        fits: token-budget check of a category name list (`data.prompt_sampling.caption_fits`).
    """

    def __init__(self, spec: DatasetSpec, store: FrameStore, *, inputs: InputSpec,
                 fits: Callable[[Sequence[str]], bool]) -> None:
        if spec.task in EXPRESSION_TASKS and not store.referrals:
            raise ValueError(f"dataset {spec.name!r}: task {spec.task} needs referring expressions, the data has none")
        if spec.mask_supervision == "masks" and not store.has_masks:
            raise ValueError(f"dataset {spec.name!r}: mask_supervision 'masks' but reader {spec.reader} has no masks; "
                             f"expected 'none' (or 'boxinst')")
        self.spec = spec
        self.store = store
        self.inputs = inputs
        self.fits = fits
        self.augmentation = augmentation_for(spec, inputs)
        self.clip_frames = inputs.clip_frames
        self.window = CLIP_WINDOWS[_TASK_WINDOW[spec.task]]
        if spec.task in EXPRESSION_TASKS:
            self.units = [r.unit for r in store.referrals]
        else:
            self.units = list(range(len(store)))

    @property
    def mask_supervision(self) -> MaskSupervision:
        """The dataset's mask supervision."""
        return self.spec.mask_supervision

    @property
    def reid(self) -> bool:
        """Whether batches of this dataset train the re-ID embedding (VIS / MOT clips of 2 frames)."""
        return self.spec.task in REID_TASKS and self.clip_frames == 2

    def __len__(self) -> int:
        return len(self.units)

    def landscape(self) -> np.ndarray:
        """(len,) bool aspect group of every sample index."""
        return self.store.landscape[np.asarray(self.units, dtype=np.int64)]

    def _frame_indices(self, unit: int, rng: np.random.Generator) -> list[int]:
        """Frames of one clip; a still unit gives [0] (its copies are made by `pseudo_video`)."""
        count = self.store.num_frames[unit]
        if count == 1:
            return [0]
        return sample_clip_indices(rng, count, window=self.window, length=self.clip_frames)

    def _load(self, unit: int, indices: list[int]) -> tuple[list[np.ndarray], list[Target]]:
        frames, targets = [], []
        with_masks = self.spec.mask_supervision == "masks" or self.spec.task == "vos"
        for t in indices:
            image, target = self.store.load(unit, t, with_masks=with_masks)
            frames.append(image)
            targets.append(target)
        return frames, targets

    def _augment(self, frames: list[np.ndarray], targets: list[Target], rng: np.random.Generator
                 ) -> tuple[list[np.ndarray], list[Target]]:
        if self.clip_frames == 1:
            return augment_clip(frames, targets, rng=rng, config=self.augmentation)
        if len(frames) == 1:  # a still image in a video recipe: two differently cropped copies (§8.3)
            clip = pseudo_video(frames[0], targets[0], rng=rng, config=self.augmentation, length=self.clip_frames)
        else:
            clip = video_clip(frames, targets, rng=rng, config=self.augmentation)
        return clip.frames, clip.targets

    def sample(self, index: int, rng: np.random.Generator) -> TrainSample | None:
        """The sample of index `index` (a unit, or a referral for expression tasks), or None (see module doc)."""
        task = self.spec.task
        referral = self.store.referrals[index] if task in EXPRESSION_TASKS else None
        unit = self.units[index]
        for _ in range(ATTEMPTS):
            frames, targets = self._load(unit, self._frame_indices(unit, rng))
            if referral is not None:
                expression = sample_expression(referral.sentences, rng)
                targets = [replace(t.select(t.ids == referral.instance_id), expression=expression) for t in targets]
            heights = [f.shape[0] for f in frames] * (self.clip_frames // len(frames))
            frames, targets = self._augment(frames, targets, rng)
            sample = self._prompted(frames, targets, heights, rng)
            if sample is not None:
                return sample
        return None

    def _prompted(self, frames: list[np.ndarray], targets: list[Target], heights: list[int],
                  rng: np.random.Generator) -> TrainSample | None:
        task = self.spec.task
        if task in CATEGORY_TASKS:
            positives = np.concatenate([t.labels for t in targets]).tolist()
            prompt = sample_category_prompt(positive_ids=positives, categories=self.store.categories, rng=rng,
                                            fits=self.fits)
            targets = [apply_category_prompt(t, prompt)[0] for t in targets]
            spec = PromptSpec("category", names=prompt.names, category_ids=prompt.category_ids)
            return TrainSample(frames, targets, heights, spec)
        if task in EXPRESSION_TASKS:
            if len(targets[0]) == 0:  # the referent was cropped out of the key frame
                return None
            expression = targets[0].expression
            return TrainSample(frames, targets, heights, PromptSpec("expression", expression=expression))
        template = sample_template(targets, rng=rng, reference_frame=1)
        if template is None:
            return None
        kept = keep_instance(targets, template.instance_id)
        spec = PromptSpec("template", template_frame=1, template_box_xyxy_px=template.box_xyxy_px,
                          template_mask=template.mask if task == "vos" else None)
        return TrainSample(frames, kept, heights, spec)

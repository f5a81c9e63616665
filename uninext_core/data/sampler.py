"""Multi-dataset batch sampling with ratios (reference §8.2, detectron2-style `MultiDatasetSampler`).

Every sample of dataset d has weight max_size / size_d · ratio_d / Σ ratio, so a dataset is drawn with probability
ratio_d / Σ ratio however large it is; samples are drawn with replacement. Each batch holds samples of one dataset
and one aspect-ratio group (landscape or portrait), filled as samples stream in. Indices are global: dataset d's
sample i is `offsets[d] + i`, as in `torch.utils.data.ConcatDataset`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np


class SampleIndex(NamedTuple):
    """A global index split into (dataset, index within it)."""

    dataset: int
    index: int


class MultiDatasetSampler:
    """Infinite stream of batches (lists of global indices).

    Args:
        sizes: number of samples of each dataset (all > 0).
        ratios: relative sampling ratio of each dataset (≥ 0, not all 0).
        batch_sizes: one batch size for all datasets, or one per dataset.
        seed: random seed; rank r of `world_size` processes draws its own stream (seed, r).
        landscape: optional per-dataset bool arrays (width ≥ height per sample) for aspect grouping;
            None puts every sample of a dataset in one group.
        rank, world_size: distributed training position.
    """

    def __init__(
        self, *, sizes: Sequence[int], ratios: Sequence[float], batch_sizes: int | Sequence[int], seed: int,
        landscape: Sequence[np.ndarray] | None = None, rank: int = 0, world_size: int = 1,
    ) -> None:
        if not sizes or len(sizes) != len(ratios):
            raise ValueError(f"need one ratio per dataset, got {len(sizes)} sizes and {len(ratios)} ratios")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"dataset sizes must be > 0, got {list(sizes)}")
        if any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(f"ratios must be ≥ 0 and not all 0, got {list(ratios)}")
        batch = [batch_sizes] * len(sizes) if isinstance(batch_sizes, int) else list(batch_sizes)
        if len(batch) != len(sizes) or any(b < 1 for b in batch):
            raise ValueError(f"batch sizes must be ≥ 1, one per dataset; got {batch_sizes}")
        if landscape is not None and [len(a) for a in landscape] != list(sizes):
            got = [len(a) for a in landscape]
            raise ValueError(f"landscape flags must match dataset sizes {list(sizes)}, got {got}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.sizes = [int(s) for s in sizes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.batch_sizes = batch
        self.landscape = None if landscape is None else [np.asarray(a, dtype=bool) for a in landscape]
        self.dataset_probs = np.asarray(ratios, dtype=np.float64) / float(sum(ratios))
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def sample_weights(self) -> np.ndarray:
        """(Σ sizes,) float64 per-sample weights max_size / size_d · ratio_d / Σ ratio (the reference formula)."""
        max_size = max(self.sizes)
        return np.concatenate([np.full(s, max_size / s * p) for s, p in zip(self.sizes, self.dataset_probs,
                                                                            strict=True)])

    def split(self, global_index: int) -> SampleIndex:
        """(dataset, local index) of a global index."""
        dataset = int(np.searchsorted(self.offsets, global_index, side="right") - 1)
        return SampleIndex(dataset, int(global_index - self.offsets[dataset]))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.rank, self.world_size])
        buckets: dict[tuple[int, bool], list[int]] = {}
        while True:
            datasets = rng.choice(len(self.sizes), size=256, p=self.dataset_probs)
            for d in datasets:
                local = int(rng.integers(self.sizes[d]))
                group = bool(self.landscape[d][local]) if self.landscape is not None else True
                bucket = buckets.setdefault((int(d), group), [])
                bucket.append(int(self.offsets[d] + local))
                if len(bucket) == self.batch_sizes[d]:
                    yield list(bucket)
                    bucket.clear()

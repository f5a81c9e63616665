from __future__ import annotations

import itertools

import numpy as np
import pytest

from uninext_core.data.sampler import MultiDatasetSampler, SampleIndex


def test_sample_weights_follow_the_reference_formula():
    sampler = MultiDatasetSampler(sizes=[2, 4], ratios=[1, 3], batch_sizes=1, seed=0)
    # max_size / size_d · ratio_d / Σ ratio: 4/2·0.25 = 0.5 and 4/4·0.75 = 0.75
    assert sampler.sample_weights().tolist() == [0.5, 0.5, 0.75, 0.75, 0.75, 0.75]
    assert sampler.split(0) == SampleIndex(0, 0) and sampler.split(5) == SampleIndex(1, 3)


def test_datasets_are_drawn_by_ratio_whatever_their_size():
    sampler = MultiDatasetSampler(sizes=[10, 1000, 100], ratios=[1, 1, 2], batch_sizes=1, seed=0)
    counts = np.zeros(3)
    for (index,) in itertools.islice(iter(sampler), 8000):
        counts[sampler.split(index).dataset] += 1
    assert np.allclose(counts / counts.sum(), [0.25, 0.25, 0.5], atol=0.02)


def test_each_batch_holds_one_dataset_and_one_aspect_group():
    landscape = [np.array([True, False] * 5), np.array([True] * 3 + [False] * 3)]
    sampler = MultiDatasetSampler(sizes=[10, 6], ratios=[1, 1], batch_sizes=[4, 2], seed=1, landscape=landscape)
    for batch in itertools.islice(iter(sampler), 200):
        parts = [sampler.split(i) for i in batch]
        dataset = parts[0].dataset
        assert all(p.dataset == dataset for p in parts)
        assert len(batch) == (4, 2)[dataset]
        assert len({bool(landscape[dataset][p.index]) for p in parts}) == 1


def test_streams_are_deterministic_per_seed_and_differ_per_rank():
    def first(seed, rank):
        s = MultiDatasetSampler(sizes=[50, 50], ratios=[1, 1], batch_sizes=2, seed=seed, rank=rank, world_size=2)
        return list(itertools.islice(iter(s), 20))

    assert first(0, 0) == first(0, 0)
    assert first(0, 0) != first(0, 1)


@pytest.mark.parametrize("kwargs", [dict(sizes=[1], ratios=[1, 2]), dict(sizes=[0], ratios=[1]),
                                    dict(sizes=[3], ratios=[0]), dict(sizes=[3], ratios=[1], rank=2)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MultiDatasetSampler(batch_sizes=1, seed=0, **kwargs)

"""Precise BatchNorm statistics: the plain average of the batches' statistics, momentum restored, frozen BN kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from uninext_core.train.precise_bn import batch_norms, update_bn_stats


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(2, momentum=0.01)
        self.frozen = FrozenBatchNorm2d(2)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.bn(x))


def test_running_statistics_become_the_average_over_the_batches() -> None:
    net = _Net().eval()
    batches = [torch.full((1, 2, 2, 2), 1.0), torch.full((1, 2, 2, 2), 3.0)]
    batches[1][0, 1] = torch.tensor([[0.0, 2.0], [4.0, 6.0]])  # channel 1: mean 3, unbiased variance 20/3
    frozen_before = net.frozen.running_mean.clone()
    assert update_bn_stats(net, lambda k: net(batches[k]), 2) == 1
    # running mean = mean of the two batch means; running var = mean of the unbiased batch variances
    torch.testing.assert_close(net.bn.running_mean, torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(net.bn.running_var, torch.tensor([0.0, 10.0 / 3.0]))
    assert net.bn.momentum == pytest.approx(0.01)
    assert not net.training  # mode restored
    assert torch.equal(net.frozen.running_mean, frozen_before)
    assert batch_norms(net) == [net.bn]


def test_nothing_to_do_without_batch_norms_or_batches() -> None:
    calls = []
    assert update_bn_stats(nn.Linear(2, 2), calls.append, 5) == 0
    assert update_bn_stats(_Net(), calls.append, 0) == 0
    assert calls == []

"""The SOT temporal-continuity prior: the window's values by hand, and the choice it makes."""

from __future__ import annotations

import math

import pytest
import torch

from uninext_core.tasks.motion_prior import choose_with_continuity, continuity_window
from uninext_core.tasks.session_config import SessionConfig


def test_window_is_a_gaussian_of_the_centre_distance_sized_by_the_previous_box() -> None:
    previous = torch.tensor([10.0, 10.0, 30.0, 50.0])  # centre (20, 30), size sqrt(20 · 40) = 28.28
    boxes = torch.tensor([[10.0, 10.0, 30.0, 50.0],  # same centre
                          [40.0, 10.0, 60.0, 50.0],  # 30 px to the right
                          [0.0, 0.0, 40.0, 20.0]])  # centre (20, 10): 20 px up
    sigma = 1.5 * math.sqrt(20 * 40)
    expected = [1.0, math.exp(-30 ** 2 / (2 * sigma ** 2)), math.exp(-20 ** 2 / (2 * sigma ** 2))]
    torch.testing.assert_close(continuity_window(boxes, previous, sigma_scale=1.5), torch.tensor(expected))


def test_choice_blends_score_and_window() -> None:
    previous = torch.tensor([0.0, 0.0, 10.0, 10.0])
    boxes = torch.tensor([[100.0, 100.0, 110.0, 110.0], [2.0, 0.0, 12.0, 10.0]])  # far distractor, near target
    scores = torch.tensor([0.8, 0.5])
    assert choose_with_continuity(scores, boxes, previous, weight=0.0, sigma_scale=1.0) == 0  # official top-1
    assert choose_with_continuity(scores, boxes, None, weight=0.5, sigma_scale=1.0) == 0  # no history
    # w = 0.5: far 0.5·0.8 + 0.5·~0 = 0.40; near 0.5·0.5 + 0.5·exp(-4/200) = 0.74.
    assert choose_with_continuity(scores, boxes, previous, weight=0.5, sigma_scale=1.0) == 1
    # A weak window does not outvote a clear score margin: w = 0.2 gives 0.64 against 0.596.
    assert choose_with_continuity(scores, boxes, previous, weight=0.2, sigma_scale=1.0) == 0


@pytest.mark.parametrize("changes, reason", [({"sot_motion_weight": 1.5}, "sot_motion_weight"),
                                             ({"sot_motion_sigma": 0.0}, "sot_motion_sigma must be a number > 0"),
                                             ({"sot_motion_sigma": float("nan")}, "sot_motion_sigma")])
def test_config_refuses_out_of_range_prior_settings(changes, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        SessionConfig(**changes)

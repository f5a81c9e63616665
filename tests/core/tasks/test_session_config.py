"""SessionConfig: official defaults and validation that names the field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from uninext_core.tasks.session_config import SessionConfig


def test_official_defaults():
    config = SessionConfig()
    assert (config.max_instances, config.nms_threshold, config.score_threshold) == (100, 0.7, 0.0)
    assert (config.mot_candidate_threshold, config.mot_nms_threshold) == (0.1, 0.7)
    assert (config.vis_candidate_threshold, config.vis_nms_threshold) == (0.1, 0.9)
    assert (config.template_update_interval, config.template_update_threshold) == (200, 0.7)
    assert (config.vos_update_threshold, config.vos_min_score) == (0.7, 0.5)
    assert config.quasi_dense.init_score_thr == 0.4 and config.idol.init_score_thr == 0.2


@pytest.mark.parametrize(("changes", "message"), [
    ({"score_threshold": 1.2}, r"score_threshold must be a number in \[0, 1\], got 1.2"),
    ({"nms_threshold": float("nan")}, r"nms_threshold must be a number in \[0, 1\], got nan"),
    ({"max_instances": 0}, "max_instances must be an integer >= 1, got 0"),
    ({"template_update_interval": 2.5}, "template_update_interval must be an integer >= 1, got 2.5"),
    ({"input_short_side": 16}, "input_short_side must be None .* or an integer >= 32, got 16"),
    ({"input_short_side": 400, "input_max_size": 300}, "input_max_size 300 is below input_short_side 400"),
    ({"masks": 1}, "masks must be true or false, got 1"),
])
def test_invalid_values_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        SessionConfig().replace(**changes)


def test_tracker_sections_are_checked():
    config = SessionConfig()
    with pytest.raises(ValueError, match=r"idol\.memory_len must be an integer >= 1, got 0"):
        config.replace(idol=replace(config.idol, memory_len=0))
    with pytest.raises(TypeError, match="quasi_dense must be a QuasiDenseTrackerConfig, got IdolTrackerConfig"):
        config.replace(quasi_dense=config.idol)

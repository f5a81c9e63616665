from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uninext_core.data.records import (
    ImageRecord,
    InstanceAnnotation,
    MotSequence,
    SotSequence,
    VideoRecord,
    VideoTrack,
)
from uninext_core.data.targets import (
    Target,
    target_from_image,
    target_from_label_map,
    target_from_mot,
    target_from_sot,
    target_from_video_frame,
)
from uninext_core.masks import encode_mask


def test_image_target_skips_crowd_and_decodes_masks():
    mask = np.zeros((4, 5), bool)
    mask[1, 1:3] = True
    record = ImageRecord(1, "a.jpg", 4, 5, [
        InstanceAnnotation(3, 2, (1.0, 1.0, 3.0, 2.0), encode_mask(mask)),
        InstanceAnnotation(4, 1, (0.0, 0.0, 5.0, 4.0), encode_mask(~mask), iscrowd=True),
        InstanceAnnotation(5, 1, (0.0, 0.0, 1.0, 1.0)),
    ])
    target = target_from_image(record)
    assert target.ids.tolist() == [3, 5] and target.labels.tolist() == [2, 1]
    assert np.array_equal(target.masks[0], mask) and not target.masks[1].any()
    assert len(target_from_image(record, include_crowd=True)) == 3
    assert target_from_image(record, with_masks=False).masks is None


def test_video_mot_sot_and_label_map_targets():
    video = VideoRecord(1, "v", ["a", "b"], 4, 5, [VideoTrack(9, 1, [None, (0.0, 0.0, 2.0, 2.0)], [None, None])])
    assert len(target_from_video_frame(video, 0)) == 0
    assert target_from_video_frame(video, 1).ids.tolist() == [9]
    seq = MotSequence("s", Path("."), "img1", ".jpg", 30.0, 2, 5, 4, np.array([1, 1, 2]), np.array([1, 2, 1]),
                      np.array([[0, 0, 1, 1], [1, 1, 2, 2], [0, 0, 2, 2]], float), np.array([True, False, True]),
                      np.array([1, 7, 1]), np.ones(3))
    assert target_from_mot(seq, 1).ids.tolist() == [1]
    sot = SotSequence("x", [Path("a"), Path("b")], np.array([[1, 1, 3, 3], [0, 0, 0, 0]], float),
                      np.array([True, False]), np.zeros(2, bool))
    assert target_from_sot(sot, 0).boxes_xyxy_px.tolist() == [[1, 1, 3, 3]] and len(target_from_sot(sot, 1)) == 0
    label_map = np.zeros((4, 5), np.uint8)
    label_map[2:4, 3:5] = 2
    target = target_from_label_map(label_map, [1, 2])
    assert target.ids.tolist() == [2] and target.boxes_xyxy_px.tolist() == [[3, 2, 5, 4]]


def test_target_checks_shapes():
    with pytest.raises(ValueError, match="boxes must be"):
        Target(np.zeros((2, 4), np.float32), None, np.zeros(1, np.int64), np.zeros(1, np.int64))

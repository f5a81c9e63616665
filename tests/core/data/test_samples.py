from __future__ import annotations

import numpy as np
import pytest

from uninext_core.data.errors import DataFormatError
from uninext_core.data.image_io import write_image_rgb
from uninext_core.data.records import DetectionDataset, ImageRecord, InstanceAnnotation, VideoDataset, VideoRecord
from uninext_core.data.samples import load_image_sample, load_video_sample


def test_image_sample_loads_and_checks_the_file(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :3] = (255, 0, 0)
    write_image_rgb(tmp_path / "a.png", image)
    dataset = DetectionDataset([], [ImageRecord(3, "a.png", 4, 6, [InstanceAnnotation(1, 1, (0.0, 0.0, 3.0, 4.0))]),
                                    ImageRecord(4, "b.png", 4, 6), ImageRecord(5, "a.png", 8, 6)], tmp_path)
    sample = load_image_sample(dataset, 0, source="instances.json")
    assert np.array_equal(sample.image, image)  # RGB order kept through OpenCV's BGR files
    assert sample.target.ids.tolist() == [1] and sample.target.masks.shape == (1, 4, 6)
    with pytest.raises(DataFormatError, match=r"instances.json: image id 4: image file .*b.png not found"):
        load_image_sample(dataset, 1, source="instances.json")
    with pytest.raises(DataFormatError, match=r"instances.json: image id 5: image a.png is 4×6, annotation says 8×6"):
        load_image_sample(dataset, 2, source="instances.json")


def test_video_sample_names_video_and_frame(tmp_path):
    dataset = VideoDataset([], [VideoRecord(2, "v", ["v/0.jpg"], 4, 6)], tmp_path)
    with pytest.raises(DataFormatError, match=r"train.json: video id 2 frame 0: image file .*0.jpg not found"):
        load_video_sample(dataset, 0, 0, source="train.json")
    write_image_rgb(tmp_path / "v" / "0.jpg", np.zeros((4, 6, 3), np.uint8))
    assert load_video_sample(dataset, 0, 0, source="train.json").image.shape == (4, 6, 3)
    with pytest.raises(ValueError, match="no image_root"):
        load_video_sample(VideoDataset([], dataset.videos), 0, 0, source="train.json")

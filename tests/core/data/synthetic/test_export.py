from __future__ import annotations

import json

import numpy as np
import pytest

from uninext_core.data.coco import read_coco_instances
from uninext_core.data.cocovid import read_cocovid
from uninext_core.data.motchallenge import read_mot_sequence
from uninext_core.data.palette_masks import read_palette_png
from uninext_core.data.refcoco import read_refcoco
from uninext_core.data.rvos import attach_expressions, read_rvos_expressions
from uninext_core.data.segmentation import PolygonMask, RleMask
from uninext_core.data.sot import list_sot_sequences, read_sot_sequence
from uninext_core.data.synthetic.__main__ import main
from uninext_core.data.synthetic.export import export_world
from uninext_core.data.synthetic.expressions import default_position_margin, resolve_expression
from uninext_core.data.synthetic.options import ExportOptions
from uninext_core.data.synthetic.scene import SceneObject
from uninext_core.data.synthetic.world import synth_image, synth_video
from uninext_core.data.vos import read_davis, read_youtube_vos
from uninext_core.data.ytvis import read_ytvis

SIZE = 128


def _options(tmp_path, task, **kwargs):
    return ExportOptions(out=tmp_path / task, task=task, count=kwargs.pop("count", 3), size=SIZE, num_frames=8,
                         difficulty="hard", **kwargs)


@pytest.mark.parametrize("mask_format", ["rle", "polygon"])
def test_detection_round_trip_keeps_boxes_masks_and_ids(tmp_path, mask_format):
    result = export_world(_options(tmp_path, "detection", mask_format=mask_format))
    read = read_coco_instances(result.files[0], image_root=tmp_path / "detection" / "images")
    assert read == result.records
    kinds = {type(a.segmentation) for im in read.images for a in im.annotations}
    assert kinds == ({RleMask} if mask_format == "rle" else {PolygonMask, RleMask} if any(
        a.attributes["kind"] == "ring" for im in read.images for a in im.annotations) else {PolygonMask})
    for index, image in enumerate(read.images):  # the masks are the world's exact visible masks
        synth = synth_image(seed=0, index=index, height=SIZE, width=SIZE, difficulty="hard", task="detection")
        assert [a.attributes["kind"] for a in image.annotations] == [o.kind for o in synth.objects]
        if mask_format == "rle":
            assert np.array_equal(np.stack([a.segmentation.decode() for a in image.annotations]), synth.masks)


def test_referring_round_trip_and_every_expression_resolves_from_the_files(tmp_path):
    result = export_world(_options(tmp_path, "referring", count=6))
    read = read_refcoco(result.files[1], result.files[0], image_root=tmp_path / "referring" / "images")
    assert read == result.records
    images = {im.id: im for im in read.detection.images}
    assert len(read.refs) >= 20
    for ref in read.refs:
        image = images[ref.image_id]
        objects = [SceneObject.from_attributes(a.id, a.attributes) for a in image.annotations]
        for sentence in ref.sentences:
            resolution = resolve_expression(sentence, objects,
                                            position_margin=default_position_margin(image.height, image.width))
            assert resolution.unique == ref.ann_id, sentence


def test_video_round_trip_with_expressions(tmp_path):
    result = export_world(_options(tmp_path, "video"))
    read = read_cocovid(result.files[0], image_root=tmp_path / "video" / "frames")
    attach_expressions(read, read_rvos_expressions(result.files[1]), source=result.files[1])
    assert read == result.records
    assert read.expressions
    for expression in read.expressions:
        video = next(v for v in read.videos if v.name == expression.video_name)
        objects = [SceneObject.from_attributes(t.id, t.attributes) for t in video.tracks]
        assert resolve_expression(expression.text, objects, position_margin=1.0).unique == expression.track_id
    # persistent ids: a track's masks are the world's masks of one object on every frame it shows
    synth = synth_video(seed=0, index=0, height=SIZE, width=SIZE, num_frames=8, difficulty="hard", task="video")
    matched = set()
    for track in read.videos[0].tracks:
        t0 = next(t for t, seg in enumerate(track.segmentations) if seg is not None)
        n = next(k for k in range(len(synth.tracks)) if np.array_equal(synth.masks[t0, k],
                                                                       track.segmentations[t0].decode()))
        assert synth.tracks[n].kind == track.attributes["kind"]
        matched.add(n)
        for t, seg in enumerate(track.segmentations):
            assert (seg is None) == (not synth.present[t, n])
            if seg is not None:
                assert np.array_equal(seg.decode(), synth.masks[t, n])
    assert matched == {k for k in range(len(synth.tracks)) if synth.present[:, k].any()}


def test_vis_round_trip(tmp_path):
    result = export_world(_options(tmp_path, "vis"))
    assert read_ytvis(result.files[0], image_root=tmp_path / "vis" / "train" / "JPEGImages") == result.records


def test_mot_round_trip(tmp_path):
    result = export_world(_options(tmp_path, "mot"))
    for seq in result.records:
        read = read_mot_sequence(seq.folder)
        assert (read.name, read.length, read.width, read.height) == (seq.name, 8, SIZE, SIZE)
        for name in ("frames", "track_ids", "boxes_xyxy_px", "consider", "class_ids", "visibility"):
            assert np.array_equal(getattr(read, name), getattr(seq, name)), name
        assert ((read.visibility > 0) & (read.visibility <= 1)).all()


@pytest.mark.parametrize("layout", ["lasot", "got10k"])
def test_sot_round_trip(tmp_path, layout):
    result = export_world(_options(tmp_path, "sot", sot_layout=layout))
    root = tmp_path / "sot" / ("train" if layout == "got10k" else "")
    folders = list_sot_sequences(root, layout=layout)
    assert len(folders) == 3
    for seq in result.records:
        read = read_sot_sequence(next(f for f in folders if f.name == seq.name))
        assert read.frame_paths == seq.frame_paths and (read.category, read.expression) == (seq.category,
                                                                                            seq.expression)
        assert np.array_equal(read.boxes_xyxy_px, seq.boxes_xyxy_px) and np.array_equal(read.visible, seq.visible)
        assert np.array_equal(read.out_of_view, seq.out_of_view) and read.visible[0]


@pytest.mark.parametrize("layout", ["davis", "youtube_vos"])
def test_vos_round_trip_keeps_label_maps(tmp_path, layout):
    result = export_world(_options(tmp_path, "vos", vos_layout=layout))
    read = read_davis(tmp_path / "vos") if layout == "davis" else read_youtube_vos(tmp_path / "vos")
    assert read == result.records
    for index, seq in enumerate(read):
        synth = synth_video(seed=0, index=index, height=SIZE, width=SIZE, num_frames=8, difficulty="hard", task="vos")
        for t, path in seq.mask_paths.items():
            labels = read_palette_png(path)
            for obj in seq.objects:
                assert np.array_equal(labels == obj, synth.masks[t, obj - 1] & synth.present[t, obj - 1])


def test_output_does_not_depend_on_worker_count(tmp_path):
    one = export_world(ExportOptions(out=tmp_path / "one", task="detection", count=6, size=96, workers=1))
    two = export_world(ExportOptions(out=tmp_path / "two", task="detection", count=6, size=96, workers=2))
    assert json.loads(one.files[0].read_text()) == json.loads(two.files[0].read_text())
    for k in range(6):
        assert (tmp_path / "one" / "images" / f"{k:06d}.jpg").read_bytes() == \
            (tmp_path / "two" / "images" / f"{k:06d}.jpg").read_bytes()


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "m"), "--task", "mot", "--num-videos", "1", "--num-frames", "3",
                 "--size", "64", "--seed", "4"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["task"] == "mot" and summary["count"] == 1
    assert read_mot_sequence(tmp_path / "m" / "train" / "SYN-001").length == 3
    assert main(["--out", str(tmp_path / "d"), "--task", "detection", "--num-videos", "2"]) == 2
    assert main(["--out", str(tmp_path / "d"), "--task", "detection", "--num-images", "0"]) == 2

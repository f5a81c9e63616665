"""Detection / instance segmentation rule on constructed outputs: sqrt(cls·iou), class-aware NMS on the best class,
then top-k over (query, class) pairs; and REC/RES top-1 by sqrt(cls·iou)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch

from uninext_core.prompts import build_category_caption
from uninext_core.tasks.detection import decode_detection
from uninext_core.tasks.grounding import decode_grounding
from uninext_core.tasks.preprocess import prepare_frame
from uninext_core.tasks.scoring import class_scores, select_candidates


def _load_fake():
    name = "uninext_test_fake_backend"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_backend.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake = _load_fake()

# (box, class probabilities (cat, dog), iou probability); scores below are sqrt(p_class · p_iou).
QUERIES = [
    ((10, 10, 30, 30), (0.9, 0.2), 0.9),  # q0: cat 0.9, dog sqrt(0.18) = 0.4243
    ((11, 10, 31, 30), (0.8, 0.1), 0.9),  # q1: IoU 0.905 with q0, same best class (cat) -> suppressed
    ((10, 11, 30, 31), (0.1, 0.8), 0.8),  # q2: overlaps q0 but its best class is dog -> kept; dog 0.8, cat 0.2828
    ((40, 40, 60, 60), (0.5, 0.6), 0.5),  # q3: cat 0.5, dog sqrt(0.3) = 0.5477
    ((40, 5, 60, 20), (0.05, 0.05), 0.2),  # q4: 0.1, 0.1
]


def category_raw():
    caption = build_category_caption(("cat", "dog"), fake.tokenizer(), max_tokens=fake.MAX_TOKENS)
    token_logits = np.full((len(QUERIES), fake.MAX_TOKENS), -10.0)
    for q, (_, probs, _) in enumerate(QUERIES):
        for c, span in enumerate(caption.token_spans):
            token_logits[q, list(span)] = fake.logit(probs[c])
    raw = fake.make_raw(boxes_xyxy=[q[0] for q in QUERIES], token_logits=token_logits, iou=[q[2] for q in QUERIES])
    return raw, caption


def prepared():
    return prepare_frame(fake.frame(), spec=fake.SPEC, short_side=64, max_size=64)


def test_class_scores_are_sqrt_of_class_times_iou():
    raw, caption = category_raw()
    scores = class_scores(raw, caption.class_token_matrix(), use_iou=True)
    expected = [[math.sqrt(p * iou) for p in probs] for _, probs, iou in QUERIES]
    torch.testing.assert_close(scores, torch.tensor(expected), atol=1e-5, rtol=0)
    without_iou = class_scores(raw, caption.class_token_matrix(), use_iou=False)
    torch.testing.assert_close(without_iou, torch.tensor([q[1] for q in QUERIES]), atol=1e-5, rtol=0)


def test_top_k_after_class_aware_nms_over_query_class_pairs():
    raw, caption = category_raw()
    backend = fake.FakeBackend()
    matrix = caption.class_token_matrix()
    result = decode_detection(raw, prepared=prepared(), backend=backend, class_token_matrix=matrix,
                              names=("cat", "dog"), max_instances=5, nms_threshold=0.7, score_threshold=0.0,
                              with_masks=False)
    # q1 is suppressed; the 8 remaining pairs sorted: q0 cat .9, q2 dog .8, q3 dog .5477, q3 cat .5, q0 dog .4243 ...
    np.testing.assert_allclose(result.scores, [0.9, 0.8, math.sqrt(0.3), 0.5, math.sqrt(0.18)], atol=1e-5)
    assert result.labels == ["cat", "dog", "dog", "cat", "dog"]
    np.testing.assert_array_equal(result.class_indices, [0, 1, 1, 0, 1])
    np.testing.assert_allclose(result.boxes_xyxy, [QUERIES[i][0] for i in (0, 2, 3, 3, 0)], atol=1e-4)
    np.testing.assert_array_equal(result.track_ids, [-1] * 5)
    assert result.masks is None

    thresholded = decode_detection(raw, prepared=prepared(), backend=backend,
                                   class_token_matrix=caption.class_token_matrix(), names=("cat", "dog"),
                                   max_instances=100, nms_threshold=0.7, score_threshold=0.45, with_masks=False)
    np.testing.assert_allclose(thresholded.scores, [0.9, 0.8, math.sqrt(0.3), 0.5], atol=1e-5)


def test_best_class_only_gives_each_query_one_label():
    raw, caption = category_raw()
    result = decode_detection(raw, prepared=prepared(), backend=fake.FakeBackend(),
                              class_token_matrix=caption.class_token_matrix(), names=("cat", "dog"), max_instances=100,
                              nms_threshold=0.7, score_threshold=0.0, with_masks=False, best_class_only=True)
    # q1 is suppressed by NMS; q0 cat .9, q2 dog .8, q3 dog .5477, q4 (a tie: argmax takes cat) .1. The second
    # classes of q0 (dog .4243) and q3 (cat .5) are gone.
    np.testing.assert_allclose(result.scores, [0.9, 0.8, math.sqrt(0.3), 0.1], atol=1e-5)
    assert result.labels == ["cat", "dog", "dog", "cat"]
    np.testing.assert_allclose(result.boxes_xyxy, [QUERIES[i][0] for i in (0, 2, 3, 4)], atol=1e-4)
    top2 = decode_detection(raw, prepared=prepared(), backend=fake.FakeBackend(),
                            class_token_matrix=caption.class_token_matrix(), names=("cat", "dog"), max_instances=2,
                            nms_threshold=0.7, score_threshold=0.0, with_masks=False, best_class_only=True)
    assert top2.labels == ["cat", "dog"]


def test_nms_threshold_is_applied_per_best_class():
    raw, caption = category_raw()
    loose = decode_detection(raw, prepared=prepared(), backend=fake.FakeBackend(),
                             class_token_matrix=caption.class_token_matrix(), names=("cat", "dog"), max_instances=100,
                             nms_threshold=0.95, score_threshold=0.0, with_masks=False)
    # With IoU 0.905 < 0.95, q1 survives: all 5 queries x 2 classes.
    assert len(loose.scores) == 10
    assert np.isclose(loose.scores, math.sqrt(0.8 * 0.9), atol=1e-5).any()  # q1 cat


def test_instance_masks_come_from_the_chosen_queries():
    raw, caption = category_raw()
    result = decode_detection(raw, prepared=prepared(), backend=fake.FakeBackend(),
                              class_token_matrix=caption.class_token_matrix(), names=("cat", "dog"), max_instances=5,
                              nms_threshold=0.7, score_threshold=0.0, with_masks=True)
    assert result.masks.shape == (5, 64, 64) and result.masks.dtype == bool
    assert result.masks[0, 20, 20] and not result.masks[0, 5, 5] and not result.masks[0, 50, 50]
    assert result.masks[2, 50, 50] and not result.masks[2, 20, 20]
    np.testing.assert_array_equal(result.masks[0], result.masks[4])  # q0 appears twice (cat and dog)


def test_candidates_fall_back_to_the_single_best_query():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([[0.05, 0.02], [0.01, 0.08]])
    assert select_candidates(boxes, scores, score_threshold=0.1, iou_threshold=0.7).tolist() == [1]
    scores = torch.tensor([[0.5, 0.02], [0.01, 0.3]])
    assert select_candidates(boxes, scores, score_threshold=0.1, iou_threshold=0.7).tolist() == [0, 1]


def test_grounding_takes_the_top_1_by_sqrt_of_class_times_iou():
    # q0 has the best pooled score but a poor IoU: sqrt(.95·.2) = .436; q1: sqrt(.7·.9) = .794; q2: .5
    raw = fake.make_raw(boxes_xyxy=[(0, 0, 20, 20), (30, 30, 50, 60), (5, 40, 25, 60)], pooled=[0.95, 0.7, 0.5],
                        iou=[0.2, 0.9, 0.5])
    result = decode_grounding(raw, prepared=prepared(), backend=fake.FakeBackend(), label="the tall one",
                              score_threshold=0.0, with_masks=True)
    np.testing.assert_allclose(result.scores, [math.sqrt(0.63)], atol=1e-5)
    np.testing.assert_allclose(result.boxes_xyxy, [(30, 30, 50, 60)], atol=1e-4)
    assert result.labels == ["the tall one"] and result.class_indices.tolist() == [-1]
    assert result.masks.shape == (1, 64, 64) and result.masks[0, 45, 40] and not result.masks[0, 10, 10]
    empty = decode_grounding(raw, prepared=prepared(), backend=fake.FakeBackend(), label="x", score_threshold=0.8,
                             with_masks=False)
    assert len(empty.scores) == 0 and empty.masks is None

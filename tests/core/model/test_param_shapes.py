"""Parameter counts and per-group multisets of state-dict shapes of the `r50` models against the official tables.

The tables (tests/data/official_state_dicts/sd_{vid,img}_r50.tsv) list every state-dict entry of the official
UNINEXT_VID / UNINEXT_IMG (key, shape, dtype). Compared here, per module group, is the multiset of shapes of the
state-dict entries that carry weights. Left out on both sides, because they are statistics or bookkeeping rather than
weights: BatchNorm running_mean / running_var, the BERT `position_ids` buffer (non-persistent in current
transformers), and the criterion's `_iter` counter (loss state, not part of the network). The official checkpoint also
stores `transformer.decoder.class_embed.*` / `.bbox_embed.*`, aliases of `class_embed.*` / `bbox_embed.*` (the same
tensors); they are dropped from the table, as the official parameter count does.

The parameter total compares `model.parameters()` with the official count (195.86 M video / 166.36 M image, reference
§9.2), which excludes the FrozenBN weight/bias (buffers in detectron2 and here). No r50 forward is run.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch

from uninext_core.config import r50
from uninext_core.model.build import build_model

TABLES = Path(__file__).resolve().parents[2] / "data" / "official_state_dicts"
STATISTICS = re.compile(r"(running_mean|running_var|num_batches_tracked|position_ids)$")
# (official prefix, our prefix or None to drop, group)
GROUPS = [
    ("criterion.", None, "loss state"),
    ("detr.detr.transformer.decoder.class_embed.", None, "alias of class_embed"),
    ("detr.detr.transformer.decoder.bbox_embed.", None, "alias of bbox_embed"),
    ("text_encoder.body.model.", "text_encoder.model.", "text_encoder"),
    ("detr.detr.backbone.0.backbone.", "backbone.body.", "backbone"),
    ("detr.detr.ref_backbone.0.backbone.", "template_encoder.backbone.body.", "template_backbone"),
    ("detr.detr.input_proj.", "input_proj.", "input_proj"),
    ("detr.detr.transformer.", "transformer.", "transformer"),
    ("detr.detr.class_embed.", "class_embed.", "class_embed"),
    ("detr.detr.bbox_embed.", "bbox_embed.", "bbox_embed"),
    ("detr.detr.iou_head.", "iou_head.", "iou_head"),
    ("detr.controller.", "controller.", "controller"),
    ("detr.mask_head.", "mask_head.", "mask_head"),
    ("detr.resizer.", "resizer.", "resizer"),
    ("detr.reid_embed_head.", "reid_head.", "reid_head"),
    ("detr.sot_fuser.", "template_encoder.sot_fuser.", "sot_fuser"),
    ("detr.adjust_layer.", "template_encoder.adjust_layer.", "adjust_layer"),
]


def group_of(key: str, *, official: bool) -> str | None:
    for official_prefix, our_prefix, group in GROUPS:
        prefix = official_prefix if official else our_prefix
        if prefix is not None and key.startswith(prefix):
            return group if our_prefix is not None else None
    raise AssertionError(f"key {key!r} belongs to no module group")


def official_table(name: str) -> tuple[dict[str, Counter], int]:
    """Per-group shape multisets and the official parameter count."""
    rows = [line.rstrip("\n").split("\t") for line in (TABLES / name).read_text().splitlines() if line.strip()]
    shapes = {key: tuple(ast.literal_eval(shape)) for key, shape, _ in rows}
    frozen_norms = {key[: -len("running_mean")] for key in shapes if key.endswith("running_mean")}
    groups: dict[str, Counter] = defaultdict(Counter)
    parameters = 0
    for key, shape in shapes.items():
        group = group_of(key, official=True)
        if group is None or STATISTICS.search(key):
            continue
        groups[group][shape] += 1
        frozen_affine = key.rsplit(".", 1)[0] + "." in frozen_norms and key.endswith((".weight", ".bias"))
        if not frozen_affine:  # FrozenBN weight/bias are buffers, not parameters
            parameters += math.prod(shape)
    return groups, parameters


def our_table(model: torch.nn.Module) -> dict[str, Counter]:
    groups: dict[str, Counter] = defaultdict(Counter)
    for key, tensor in model.state_dict().items():
        if STATISTICS.search(key):
            continue
        groups[group_of(key, official=False)][tuple(tensor.shape)] += 1
    return groups


@pytest.mark.parametrize(("video", "table", "official_millions"), [(True, "sd_vid_r50.tsv", 195.86),
                                                                   (False, "sd_img_r50.tsv", 166.36)])
def test_r50_shapes_and_parameter_count_match_the_official_model(video: bool, table: str, official_millions: float):
    torch.manual_seed(0)
    model = build_model(r50(video=video), allow_random_text_init=True)
    expected_groups, expected_parameters = official_table(table)
    ours = our_table(model)
    assert sorted(ours) == sorted(expected_groups)
    for group, expected in expected_groups.items():
        assert ours[group] == expected, f"shape multiset of {group} differs: {ours[group] - expected} extra, " \
                                        f"{expected - ours[group]} missing"
    total = sum(p.numel() for p in model.parameters())
    assert total == expected_parameters
    assert round(total / 1e6, 2) == official_millions

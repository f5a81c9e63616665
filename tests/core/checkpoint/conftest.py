"""Synthetic official UNINEXT checkpoints built from the state-dict tables (tests/data/official_state_dicts).

Every table row (key, shape, dtype) becomes a tensor of exactly that shape and dtype with random values, nested under
{"model": ...} as detectron2 saves it. Values are scaled so that forward passes stay finite: weights with fan-in n
~ N(0, 1/n), 1-D parameters ~ N(0, 0.1²), BatchNorm running_var in [0.5, 1.5], `position_ids` = arange, the
criterion's `_iter` a float count. The decoder's `class_embed` / `bbox_embed` aliases share the storage of the
top-level heads (as in the real module tree, so torch.save stores them once).

The ConvNeXt-L and ViT-H image models have no official table; `image_rows` derives one from the video table by
dropping the four video-only groups. That derivation is exact for R50 (checked in test_official_keys.py: the image
table equals the video table without those groups, in the same order).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

TABLES = Path(__file__).resolve().parents[2] / "data" / "official_state_dicts"
VIDEO_ONLY_PREFIXES = ("detr.detr.ref_backbone.", "detr.reid_embed_head.", "detr.adjust_layer.", "detr.sot_fuser.")
ALIAS_PREFIX = "detr.detr.transformer.decoder."
TABLE_OF = {"r50": "sd_vid_r50.tsv", "convnext_l": "sd_video_joint_convnext_large.tsv",
            "vit_h": "sd_video_joint_vit_huge.tsv"}


class Row(NamedTuple):
    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype


def read_table(name: str) -> list[Row]:
    rows = []
    for line in (TABLES / name).read_text().splitlines():
        if line.strip():
            key, shape, dtype = line.split("\t")
            rows.append(Row(key, tuple(ast.literal_eval(shape)), getattr(torch, dtype.removeprefix("torch."))))
    return rows


def image_rows(video_rows: list[Row]) -> list[Row]:
    return [row for row in video_rows if not row.key.startswith(VIDEO_ONLY_PREFIXES)]


def official_rows(preset: str, *, video: bool) -> list[Row]:
    if preset == "r50" and not video:
        return read_table("sd_img_r50.tsv")
    rows = read_table(TABLE_OF[preset])
    return rows if video else image_rows(rows)


def _alias_target(key: str) -> str | None:
    if key.startswith((ALIAS_PREFIX + "class_embed.", ALIAS_PREFIX + "bbox_embed.")):
        return "detr.detr." + key[len(ALIAS_PREFIX):]
    return None


def synthetic_tensor(row: Row, generator: torch.Generator) -> torch.Tensor:
    if row.key.endswith("position_ids"):
        return torch.arange(math.prod(row.shape), dtype=row.dtype).reshape(row.shape)
    if row.key == "criterion._iter":
        return torch.full(row.shape, 1234.0, dtype=row.dtype)
    if row.key.endswith("running_var"):
        return (torch.rand(row.shape, generator=generator) + 0.5).to(row.dtype)
    fan_in = math.prod(row.shape[1:]) if len(row.shape) >= 2 else 0
    scale = 1.0 / math.sqrt(fan_in) if fan_in > 1 else 0.1
    return (torch.randn(row.shape, generator=generator) * scale).to(row.dtype)


def synthetic_tensors(rows: list[Row], *, seed: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) of every non-alias row, one at a time: the values `synthetic_state_dict(rows, seed=seed)` holds,
    regenerated without keeping them all in memory."""
    generator = torch.Generator().manual_seed(seed)
    for row in rows:
        if _alias_target(row.key) is None:
            yield row.key, synthetic_tensor(row, generator)


def synthetic_state_dict(rows: list[Row], *, seed: int = 0, meta: bool = False) -> dict[str, torch.Tensor]:
    """Official-format state dict of `rows`; `meta` gives shape-only tensors (no memory) except `position_ids`."""
    if meta:
        state = {row.key: torch.arange(math.prod(row.shape), dtype=row.dtype).reshape(row.shape)
                 if row.key.endswith("position_ids") else torch.empty(row.shape, dtype=row.dtype, device="meta")
                 for row in rows if _alias_target(row.key) is None}
    else:
        state = dict(synthetic_tensors(rows, seed=seed))
    ordered = {}
    for row in rows:  # table order; an alias is a view of its canonical tensor, as in the official state_dict()
        target = _alias_target(row.key)
        if target is None:
            ordered[row.key] = state[row.key]
        else:
            ordered[row.key] = state[target] if meta else state[target].detach()
    return ordered


def save_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"model": state, "iteration": 179999}, path)
    return path


class Tables(NamedTuple):
    """The helpers above, handed to tests as the `tables` fixture (conftest modules are not importable)."""

    read_table: Callable[[str], list[Row]]
    image_rows: Callable[[list[Row]], list[Row]]
    official_rows: Callable[..., list[Row]]
    synthetic_state_dict: Callable[..., dict[str, torch.Tensor]]
    synthetic_tensors: Callable[..., Iterator[tuple[str, torch.Tensor]]]
    save_checkpoint: Callable[[Path, dict[str, torch.Tensor]], Path]


@pytest.fixture(scope="session")
def tables() -> Tables:
    return Tables(read_table, image_rows, official_rows, synthetic_state_dict, synthetic_tensors, save_checkpoint)


@pytest.fixture(scope="session")
def r50_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bool], Path]:
    """Path of a synthetic official R50 checkpoint (video or image table), written once per session."""
    paths: dict[bool, Path] = {}

    def get(video: bool) -> Path:
        if video not in paths:
            rows = official_rows("r50", video=video)
            folder = tmp_path_factory.mktemp("official")
            name = "video_joint_r50.pth" if video else "image_joint_r50.pth"
            paths[video] = save_checkpoint(folder / name, synthetic_state_dict(rows, seed=1 if video else 2))
        return paths[video]

    return get

"""Shared fixtures of the deploy tests: the tiny model exported once per test session (≈ 1 min on one core)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from uninext_core.config import UninextConfig, tiny
from uninext_core.deploy.export_manifest import ExportManifest
from uninext_core.deploy.onnx_export import export_onnx
from uninext_core.model.build import build_model
from uninext_core.model.uninext import Uninext

TINY_IMAGE_SIZE = (320, 384)  # tiny's test size: short side 320, long side <= 384


class TinyExport(NamedTuple):
    model: Uninext
    cfg: UninextConfig
    directory: Path
    manifest: ExportManifest


def tiny_fp16_safe() -> UninextConfig:
    """tiny with every optional part on (the text adapter, colour skip, query relation dedup and query resample the
    preset leaves off as well), so the export and parity tests cover each."""
    cfg = tiny()
    return cfg.replace(fusion=dataclasses.replace(cfg.fusion, fp16_safe_mask=True),
                       text=dataclasses.replace(cfg.text, adapter_layers=2),
                       backbone=dataclasses.replace(cfg.backbone, colour_skip=True),
                       heads=dataclasses.replace(cfg.heads, query_relation_layers=1, query_relation_dedup_iou=0.7,
                                                                query_resample_layers=1))


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> TinyExport:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        cfg = tiny_fp16_safe()
        model = build_model(cfg).eval()
        with torch.no_grad():  # an untrained text adapter, colour skip, query colour, relation or resample adds
            for parameter in [*model.text_adapter.parameters(), *model.colour_skip.parameters(),  # nothing; parity
                              *model.query_colour.parameters(), *model.query_relation.parameters(),  # must see them
                              *model.query_resample.parameters()]:  # work
                parameter.add_(0.05 * torch.randn(parameter.shape))
        directory = tmp_path_factory.mktemp("tiny_export")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter deprecation / constant-folding chatter
            manifest = export_onnx(model, cfg, directory, image_size=TINY_IMAGE_SIZE)
    finally:
        torch.set_num_threads(previous)
    return TinyExport(model, cfg, directory, manifest)

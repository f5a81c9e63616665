"""Shared fixtures of the training-tool tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import tiny
from uninext_core.model.build import build_model


@pytest.fixture(scope="session")
def random_tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny video model saved as a weights file (the tools under test only need it to run)."""
    torch.manual_seed(1)
    config = tiny()
    return save_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors", build_model(config).state_dict(),
                        config=config)

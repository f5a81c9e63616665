"""Checkpoints: official UNINEXT `.pth` conversion (safe loading, key mapping) and our safetensors files.

    from_official(path, preset="r50", video=True)     official .pth -> Uninext (eval mode)
    convert_official_checkpoint(path, preset="r50")   official .pth -> Conversion(state_dict, report, config)
    save_weights / read_weights / read_config / load_model   our safetensors files, which know their preset
    uninext-convert (cli.main)                         the same from the command line, with a JSON report
"""

from __future__ import annotations

from uninext_core.checkpoint.convert import (
    OFFICIAL_PRESETS,
    CheckpointError,
    Conversion,
    ConversionReport,
    convert_official_checkpoint,
    convert_state_dict,
    expected_state_dict,
    from_official,
    official_config,
    read_official_checkpoint,
)
from uninext_core.checkpoint.official_keys import OfficialKeyMap
from uninext_core.checkpoint.safetensors_io import StoredWeights, load_model, read_config, read_weights, save_weights

__all__ = [
    "OFFICIAL_PRESETS",
    "CheckpointError",
    "Conversion",
    "ConversionReport",
    "OfficialKeyMap",
    "StoredWeights",
    "convert_official_checkpoint",
    "convert_state_dict",
    "expected_state_dict",
    "from_official",
    "load_model",
    "official_config",
    "read_config",
    "read_official_checkpoint",
    "read_weights",
    "save_weights",
]

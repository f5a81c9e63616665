"""bench/gpu_checks.py (the prepared GPU script) refuses cleanly where there is no CUDA: exit 2, a one-line reason,
nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "gpu_checks.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the script would run for minutes")
def test_refuses_without_cuda(tmp_path):
    out = tmp_path / "gpu_checks.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ("gpu_checks: needs a CUDA GPU (torch.cuda.is_available() is False); nothing was "
                                     "measured or written")
    assert result.stdout == "" and not out.exists()

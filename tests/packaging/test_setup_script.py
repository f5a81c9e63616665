"""scripts/setup.sh (make setup): idempotent, and stops with a message naming what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP = REPO_ROOT / "scripts" / "setup.sh"
BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3.11"


def _run_setup(env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run([bash, str(SETUP)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_second_run_skips_every_step_when_nothing_changed() -> None:
    env = {**os.environ, "UNINEXT_VENV": sys.prefix}
    result = _run_setup(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dependencies up to date" in result.stdout
    assert "uninext_msgs up to date" in result.stdout
    assert "(development install) up to date" in result.stdout
    assert "installing" not in result.stdout and "building" not in result.stdout


def test_missing_compiler_and_cmake_are_named(tmp_path: Path) -> None:
    # A PATH with only what the script needs before its tool check: no cc, c++, cmake or make.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cat", "sha256sum", "cut"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHON": str(BASE_PYTHON),
           "UNINEXT_VENV": str(tmp_path / "venv")}
    result = _run_setup(env)
    assert result.returncode != 0
    assert "missing build tools: cc c++ cmake make" in result.stderr
    assert "build-essential cmake" in result.stderr
    assert not (tmp_path / "venv").exists(), "setup must stop before creating anything"


def test_wrong_python_version_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -c ]; then echo 3.9; fi\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "UNINEXT_VENV": str(tmp_path / "venv")}
    result = _run_setup(env)
    assert result.returncode != 0
    assert "needs Python 3.11" in result.stderr and "cp311" in result.stderr


@pytest.mark.slow
def test_unreachable_registry_is_reported_as_such(tmp_path: Path) -> None:
    # No configuration files, no local wheel folders, and an index on a closed loopback port: what pip sees when
    # the machine has no network to PyPI.
    env = {**os.environ, "PYTHON": str(BASE_PYTHON), "UNINEXT_VENV": str(tmp_path / "venv"),
           "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "",
           "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}
    result = _run_setup(env)
    assert result.returncode != 0
    assert "pip could not reach the package registry (PyPI)" in result.stderr, result.stderr[-3000:]
    assert "make setup again" in result.stderr

"""`colcon build` of a workspace holding this repository builds uninext_ros and uninext_msgs (venv's colcon)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _copy_tracked_files(destination: Path) -> None:
    """A clean checkout's files (tracked + untracked-but-not-ignored), like a user's `git clone` into src/."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.mark.slow
@pytest.mark.parametrize("merge_install", [True, False], ids=["merge-install", "isolated-install"])
def test_plain_colcon_build_finds_and_builds_both_packages(tmp_path: Path, merge_install: bool) -> None:
    workspace = tmp_path / "ws"
    _copy_tracked_files(workspace / "src" / "uninext-ros")
    env = os.environ.copy()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    env["AMENT_PREFIX_PATH"] = sys.prefix  # the ROS 2 underlay (here: the wheels in the venv)
    command = ["colcon", "--log-base", str(tmp_path / "log"), "build", "--event-handlers", "console_cohesion-"]
    if merge_install:
        command.append("--merge-install")
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "1 package finished" in result.stdout, result.stdout[-2000:]

    # A fresh shell that sources the workspace (as a user would) finds both packages' share folders and imports the
    # interfaces and the Python packages from the workspace install, not from the venv's development install.
    probe = (
        "import uninext_msgs, uninext_core; "
        "from ament_index_python.packages import get_package_share_directory as share; "
        "from uninext_msgs.msg import InstanceArray; from uninext_msgs.srv import SetPrompt; "
        "print(share('uninext_ros')); print(share('uninext_msgs')); print(uninext_msgs.__file__); "
        "print(uninext_core.__file__)"
    )
    install = workspace / "install"
    shell = f"source '{install}/setup.bash' && python -c \"{probe}\""
    env.pop("PYTHONPATH", None)
    probe_env = {**env, "AMENT_PREFIX_PATH": sys.prefix, "PYTHONNOUSERSITE": "1"}
    found = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=probe_env, capture_output=True, text=True,
                           timeout=120)
    assert found.returncode == 0, found.stdout + found.stderr
    ros_share, msgs_share, msgs_module, core_module = found.stdout.split()
    assert Path(ros_share).is_relative_to(install) and Path(ros_share).name == "uninext_ros"
    assert Path(msgs_share).is_relative_to(install) and Path(msgs_share).name == "uninext_msgs"
    assert Path(msgs_module).is_relative_to(install)
    assert Path(core_module).is_relative_to(install)
    assert (Path(ros_share) / "package.xml").is_file() and (Path(msgs_share) / "msg" / "Prompt.msg").is_file()
    assert (Path(ros_share) / "config" / "fastdds_large_shm.xml").is_file()
    assert (Path(ros_share) / "launch" / "perception.launch.py").is_file()
    executable = Path(ros_share).parents[1] / "lib" / "uninext_ros" / "perception_node"
    assert executable.is_file() and os.access(executable, os.X_OK), f"{executable} is not an installed executable"

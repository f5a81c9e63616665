"""The command line that starts the perception node in its own process (the demo and `uninext-bag-eval --replay`)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping


def perception_node_command(parameters: Mapping[str, str | int | float | bool], *,
                            namespace: str | None = None) -> list[str]:
    """The installed `perception_node` beside this interpreter (else its module) with `--ros-args`.

    Args:
        parameters: node parameters (names of uninext_ros/params.py); "" values are left out, so they keep their
            default; booleans are written as ROS expects them (true / false).
        namespace: remap the node into this namespace; None keeps the root.
    """
    executable = shutil.which("perception_node", path=os.path.dirname(sys.executable))
    command = [executable] if executable else [sys.executable, "-m", "uninext_ros.perception_node"]
    command.append("--ros-args")
    if namespace is not None:
        command += ["-r", f"__ns:={namespace}"]
    for name, value in parameters.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if text != "":
            command += ["-p", f"{name}:={text}"]
    return command

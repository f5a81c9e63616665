"""The perception node as a separate process for the demo: ROS isolation, start, wait until active, SIGINT stop.

The real `perception_node` executable runs (the console script next to this Python, else `python -m
uninext_ros.perception_node`), with its output in a log file whose tail every start-up error shows. Isolation keeps
the demo off other ROS users' graphs: discovery on this host only (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), a random
ROS_DOMAIN_ID unless one is given, and ROS logs in a temporary folder unless one is given.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lifecycle_msgs.srv import GetState
from rclpy.node import Node

from uninext_ros.node_command import perception_node_command

NODE_NAME = "uninext_perception"  # PerceptionNode's default name


class NodeStartError(RuntimeError):
    """The perception node did not become active; the message ends with the tail of its log."""


@dataclass(frozen=True)
class RosIsolation:
    """The ROS environment the demo set for itself and the node.

    Attributes:
        domain_id: ROS_DOMAIN_ID.
        log_dir: ROS_LOG_DIR.
        temporary_log_dir: the demo made log_dir and removes it at the end.
    """

    domain_id: int
    log_dir: Path
    temporary_log_dir: bool

    def cleanup(self) -> None:
        """Remove the temporary ROS log folder (nothing when the folder was given)."""
        if self.temporary_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)


def fastdds_profile() -> Path | None:
    """The package's Fast DDS profile with a camera-sized shared-memory segment (installed share, else the source)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("uninext_ros")) / "config" / "fastdds_large_shm.xml"
        if installed.is_file():
            return installed
    except (ImportError, LookupError, ValueError):
        pass
    source = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_shm.xml"
    return source if source.is_file() else None


def isolate_ros(*, domain_id: int | None = None, log_dir: str | Path | None = None) -> RosIsolation:
    """Set the isolation variables in this process's environment (call before rclpy.init; the node inherits them).

    Args:
        domain_id: ROS_DOMAIN_ID in [0, 101]; None draws one in [1, 101].
        log_dir: ROS_LOG_DIR; None makes a temporary folder (removed by `RosIsolation.cleanup`).
    """
    if domain_id is None:
        domain_id = random.randint(1, 101)
    if not 0 <= domain_id <= 101:
        raise ValueError(f"domain_id must be in [0, 101] (ROS 2 on Linux), got {domain_id}")
    temporary = log_dir is None
    folder = Path(tempfile.mkdtemp(prefix="uninext-demo-roslog-")) if temporary else Path(log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_LOG_DIR"] = str(folder)
    profile = fastdds_profile()
    if profile is not None:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the node loads its packaged text encoder; never the network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return RosIsolation(domain_id, folder, temporary)


class NodeProcess:
    """The perception node in its own process.

    Args:
        parameters: node parameters (names of uninext_ros/params.py); "" values are left at their default.
        log_path: file receiving the node's stdout and stderr.
        threads: torch intra-op threads of the node (OMP_NUM_THREADS); None leaves torch's default.
    """

    def __init__(self, *, parameters: dict[str, str | int | float | bool], log_path: Path,
                 threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be None or >= 1, got {threads}")
        self.command = perception_node_command({**parameters, "autostart": True})
        self.log_path = Path(log_path)
        self._threads = threads
        self._process: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    def start(self) -> None:
        """Start the process (configure and activate happen inside it: `autostart`)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
        if self._threads is not None:
            env["OMP_NUM_THREADS"] = str(self._threads)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w", encoding="utf-8")
        self._process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def exit_code(self) -> int | None:
        """The exit code once the process ended, else None."""
        return None if self._process is None else self._process.poll()

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the node's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _failure(self, what: str) -> NodeStartError:
        return NodeStartError(f"{what}\n--- last lines of {self.log_path} ---\n{self.log_tail()}")

    def wait_until_active(self, helper: Node, *, timeout_s: float) -> None:
        """Block until the node reports the lifecycle state `active` (another thread must spin `helper`).

        Raises:
            NodeStartError: the process exited, the node stayed unconfigured / inactive (configure or activate
                failed: a missing checkpoint, a broken export), or `timeout_s` passed.
        """
        client = helper.create_client(GetState, f"/{NODE_NAME}/get_state")
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                code = self.exit_code()
                if code is not None:
                    raise self._failure(f"perception_node exited with code {code} while starting")
                if not client.service_is_ready():
                    time.sleep(0.2)
                    continue
                future = client.call_async(GetState.Request())
                while not future.done() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not future.done():
                    break
                label = future.result().current_state.label
                if label == "active":
                    return
                raise self._failure(f"perception_node is {label!r} instead of 'active': configure or activate "
                                    f"failed")
            raise self._failure(f"perception_node did not become active within {timeout_s:.0f} s")
        finally:
            helper.destroy_client(client)

    def stop(self, *, timeout_s: float = 30.0) -> int:
        """SIGINT, then wait; kill after `timeout_s`. Returns the exit code (0: a clean stop)."""
        process = self._process
        if process is None:
            return 0
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return int(process.returncode)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

"""Test-wide setup: ROS 2 isolation even when pytest is started by hand instead of through `make test`.

Discovery stays on this host, a per-run domain id keeps concurrent runs apart, ROS logs go to a temporary folder, and
Hugging Face libraries never try the network. Values already set (by scripts/run_tests.sh) are kept.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="uninext-roslog-"))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds_large_shm.xml"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

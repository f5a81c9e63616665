"""`python -m uninext_ros.demo`: see uninext_ros/demo/cli.py."""

from __future__ import annotations

import sys

from uninext_ros.demo.cli import main

sys.exit(main())

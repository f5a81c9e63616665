#!/usr/bin/env bash
# Lint, then pytest with ROS 2 isolation: discovery stays on this host, a per-run domain id keeps parallel runs
# (and other ROS users on the network) apart, and ROS logs go to a temporary folder. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNINEXT_VENV:-$ROOT/.venv}"
cd "$ROOT"

echo "lint: ruff check"
"$VENV/bin/ruff" check .

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
ROS_LOG_DIR="$(mktemp -d -t uninext-roslog.XXXXXX)"
export ROS_LOG_DIR
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$ROOT/config/fastdds_large_shm.xml}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
trap 'rm -rf "$ROS_LOG_DIR"' EXIT
echo "tests: ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOG_DIR=$ROS_LOG_DIR"
exec "$VENV/bin/python" -m pytest "$@"

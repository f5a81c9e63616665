#!/usr/bin/env bash
# make setup: create .venv, install the pinned dependencies, build the uninext_msgs interfaces into the venv and
# install this repository in development mode. Idempotent: every step keeps a stamp (a hash of its inputs) and is
# skipped when the stamp still matches, so a second run finishes in seconds.
#
# Environment: PYTHON (interpreter to build the venv from, default python3.11 or python3), UNINEXT_VENV (default
# <repo>/.venv), UNINEXT_SETUP_FORCE=1 (ignore the stamps).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNINEXT_VENV:-$ROOT/.venv}"
STAMPS="$VENV/.uninext-setup"
BUILD="$STAMPS/build"  # logs and the uninext_msgs build tree live with the venv they belong to
SECONDS=0

say() { printf 'setup: %s\n' "$*"; }
die() {
    printf '\nsetup: ERROR: %s\n' "$1" >&2
    shift
    for line in "$@"; do printf '       %s\n' "$line" >&2; done
    exit 1
}

# ---------------------------------------------------------------------------------------------------------------
# 1. What the machine must already have. Checked first, so a missing tool is named instead of failing deep inside
#    pip or CMake.
# ---------------------------------------------------------------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter '$PYTHON' on PATH." \
    "Install Python 3.11 (the ROS 2 Kilted wheels are built for CPython 3.11), or set PYTHON=/path/to/python3.11."
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$PYVER" = "3.11" ] || die "Python $PYVER found at $(command -v "$PYTHON"); uninext-ros needs Python 3.11." \
    "The ROS 2 Kilted wheels on PyPI (ros-rclpy, ...) exist only for CPython 3.11 (cp311)." \
    "Install Python 3.11 and run: PYTHON=python3.11 make setup"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "Python $PYVER lacks the venv/ensurepip modules." \
    "On Debian/Ubuntu: apt-get install python3.11-venv"
PY_INCLUDE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
[ -f "$PY_INCLUDE/Python.h" ] || die "the Python C headers are missing ($PY_INCLUDE/Python.h)." \
    "They are needed to compile the uninext_msgs Python bindings. On Debian/Ubuntu: apt-get install python3.11-dev"
missing_tools=()
for tool in cc c++ cmake make; do
    command -v "$tool" >/dev/null 2>&1 || missing_tools+=("$tool")
done
[ ${#missing_tools[@]} -eq 0 ] || die "missing build tools: ${missing_tools[*]}" \
    "They compile the generated ROS interfaces (uninext_msgs). On Debian/Ubuntu: apt-get install build-essential cmake"

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ "${UNINEXT_SETUP_FORCE:-0}" != 1 ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }

# ---------------------------------------------------------------------------------------------------------------
# 2. The virtual environment.
# ---------------------------------------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON ($PYVER)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

# ---------------------------------------------------------------------------------------------------------------
# 3. Pinned dependencies (requirements.txt). pip's output goes to a log; on failure the log is read to say whether
#    the package registry could not be reached or a pin does not exist there.
# ---------------------------------------------------------------------------------------------------------------
REQ_HASH="$(hash_of "$ROOT/requirements.txt")"
if stamp_ok requirements "$REQ_HASH"; then
    say "dependencies up to date (requirements.txt unchanged)"
else
    say "installing the pinned dependencies (first time: a few minutes, about 7 GB with torch)"
    mkdir -p "$BUILD"
    LOG="$BUILD/pip-install.log"
    if ! "${PIP[@]}" install --disable-pip-version-check --progress-bar off -r "$ROOT/requirements.txt" >"$LOG" 2>&1; then
        tail -n 15 "$LOG" >&2
        if grep -qiE 'NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|Network is unreachable|Max retries exceeded|ProxyError|Connection refused|timed out' "$LOG"; then
            die "pip could not reach the package registry (PyPI)." \
                "Check the network connection or proxy settings (pip config list; HTTPS_PROXY), then run make setup again." \
                "Full pip log: $LOG"
        fi
        # With retries off pip reports an unreachable index only as "no matching distribution": ask again verbosely
        # for the first package it could not find, and read whether the index answered at all.
        failed_pin="$(grep -m1 -oiE 'No matching distribution found for [^ ]+' "$LOG" | awk '{print $NF}')"
        if [ -n "$failed_pin" ]; then
            "${PIP[@]}" download --disable-pip-version-check --no-deps -d "$BUILD/probe" -vv "$failed_pin" \
                >"$BUILD/pip-probe.log" 2>&1 || true
            if grep -qiE 'connection error|NewConnectionError|Max retries exceeded' "$BUILD/pip-probe.log"; then
                die "pip could not reach the package registry (PyPI) to fetch $failed_pin." \
                    "Check the network connection or proxy settings (pip config list; HTTPS_PROXY), then run make setup again." \
                    "Full pip logs: $LOG, $BUILD/pip-probe.log"
            fi
        fi
        if grep -qiE 'No matching distribution found|Could not find a version that satisfies' "$LOG"; then
            die "a pinned package is not available for this machine ($(grep -m1 -oiE 'No matching distribution found for [^ ]+' "$LOG"))." \
                "uninext-ros pins CPython 3.11 x86_64 wheels; see requirements.txt. Full pip log: $LOG"
        fi
        die "pip install -r requirements.txt failed; full log: $LOG"
    fi
    stamp_set requirements "$REQ_HASH"
fi

# ---------------------------------------------------------------------------------------------------------------
# 4. The ROS wheels' exported CMake files carry the include paths of the machine they were built on
#    (/opt/python/cp311-cp311/...); point them at this interpreter's headers and numpy. Safe to repeat.
# ---------------------------------------------------------------------------------------------------------------
NP_INCLUDE="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
mapfile -t foreign_cmake < <(grep -rl '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if [ ${#foreign_cmake[@]} -gt 0 ]; then
    say "fixing build-machine include paths in ${#foreign_cmake[@]} ROS CMake files"
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INCLUDE#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g" "${foreign_cmake[@]}"
fi

# ---------------------------------------------------------------------------------------------------------------
# 5. uninext_msgs: generate and compile the interfaces from msg/ and srv/ into the venv prefix.
# ---------------------------------------------------------------------------------------------------------------
MSGS_HASH="$(hash_of "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv "$ROOT"/uninext_msgs/CMakeLists.txt "$ROOT"/uninext_msgs/package.xml)"
if stamp_ok uninext_msgs "$MSGS_HASH" && [ -d "$VENV/share/uninext_msgs" ]; then
    say "uninext_msgs up to date"
else
    say "building uninext_msgs into $VENV"
    rm -rf "$BUILD/uninext_msgs"
    LOG="$BUILD/uninext_msgs-build.log"
    mkdir -p "$BUILD"
    if ! (
        export AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
        cmake -S "$ROOT/uninext_msgs" -B "$BUILD/uninext_msgs" -DCMAKE_INSTALL_PREFIX="$VENV" \
            -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF &&
            cmake --build "$BUILD/uninext_msgs" -j "$(nproc)" && cmake --install "$BUILD/uninext_msgs"
    ) >"$LOG" 2>&1; then
        tail -n 25 "$LOG" >&2
        die "building uninext_msgs failed; full log: $LOG"
    fi
    stamp_set uninext_msgs "$MSGS_HASH"
fi

# ---------------------------------------------------------------------------------------------------------------
# 6. This repository in development mode (edits take effect without reinstalling), plus its ament index entry
#    so ament_index_python finds share/uninext_ros (launch files, config) inside the venv.
# ---------------------------------------------------------------------------------------------------------------
PKG_HASH="$(hash_of "$ROOT/setup.py" "$ROOT/package.xml")"
if stamp_ok uninext_ros "$PKG_HASH" && "$VENV/bin/python" -c 'import uninext_core, uninext_ros' 2>/dev/null; then
    say "uninext_ros (development install) up to date"
else
    say "installing uninext_ros in development mode"
    LOG="$BUILD/uninext_ros-install.log"
    mkdir -p "$BUILD"
    "${PIP[@]}" install --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" >"$LOG" 2>&1 ||
        { tail -n 20 "$LOG" >&2; die "pip install -e . failed; full log: $LOG"; }
    stamp_set uninext_ros "$PKG_HASH"
fi
# ament_index_python looks packages up through AMENT_PREFIX_PATH; put the venv on it for every interpreter start
# (prepended, so a sourced /opt/ros setup still works beside it).
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat >"$SITE/uninext_ament_prefix.pth" <<'PTH'
import os, sys; _p = os.environ.get("AMENT_PREFIX_PATH", ""); sys.prefix in _p.split(os.pathsep) or os.environ.__setitem__("AMENT_PREFIX_PATH", os.pathsep.join(filter(None, [sys.prefix, _p])))
PTH
SHARE="$VENV/share/uninext_ros"
mkdir -p "$SHARE" "$VENV/share/ament_index/resource_index/packages"
touch "$VENV/share/ament_index/resource_index/packages/uninext_ros"
for item in package.xml launch config; do
    [ -L "$SHARE/$item" ] && [ "$(readlink "$SHARE/$item")" = "$ROOT/$item" ] && continue
    rm -rf "${SHARE:?}/$item"
    ln -s "$ROOT/$item" "$SHARE/$item"
done

if [ -n "${UNINEXT_SETUP_REPORT_SIZE:-}" ]; then
    say "venv size: $(du -sh "$VENV" 2>/dev/null | cut -f1)"
fi
# ros2 run / launch_ros look for executables in <prefix>/lib/<package>/: point them at the console scripts.
mkdir -p "$VENV/lib/uninext_ros"
for executable in perception_node; do
    ln -sfn "$VENV/bin/$executable" "$VENV/lib/uninext_ros/$executable"
done

say "ready in ${SECONDS} s: $VENV"

"""Every Python folder is a package, so `pip install .` and the colcon install ship all of it, not only the
development install (which finds folders without __init__.py through its path finder)."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("uninext_core", "uninext_ros", "training")


def test_every_folder_with_python_files_is_found_by_find_packages() -> None:
    found = set(find_packages(where=REPO_ROOT, include=[f"{p}*" for p in TOP_LEVEL]))
    folders = {
        ".".join(path.parent.relative_to(REPO_ROOT).parts)
        for top in TOP_LEVEL for path in (REPO_ROOT / top).rglob("*.py") if "__pycache__" not in path.parts
    }
    assert folders <= found, f"folders with Python files but no __init__.py: {sorted(folders - found)}"


def test_core_never_imports_ros() -> None:
    ros_modules = ("rclpy", "uninext_msgs", "sensor_msgs", "std_msgs", "geometry_msgs", "builtin_interfaces",
                   "diagnostic_msgs", "rosbags")
    offenders = []
    for path in (REPO_ROOT / "uninext_core").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                    stripped.split()[1].split(".")[0] == module for module in ros_modules):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {stripped}")
    assert not offenders, "uninext_core must not import ROS:\n" + "\n".join(offenders)


def test_every_console_script_points_at_a_callable() -> None:
    import ast
    import importlib

    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    scripts = [element.value for node in ast.walk(tree) if isinstance(node, ast.Dict)
               for key, value in zip(node.keys, node.values, strict=True)
               if isinstance(key, ast.Constant) and key.value == "console_scripts"
               for element in value.elts]
    assert len(scripts) >= 8, scripts
    for script in scripts:
        name, target = (part.strip() for part in script.split("="))
        module_name, function_name = target.split(":")
        function = getattr(importlib.import_module(module_name), function_name, None)
        assert callable(function), f"console script {name} points at {target}, which is not callable"

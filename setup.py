"""uninext_ros: the ROS 2 (ament_python) package at the repository root.

One distribution holds three import packages: ``uninext_core`` (model, data, tasks, deployment; no ROS
import), ``uninext_ros`` (rclpy adapters) and ``training`` (entry points and stage recipes). colcon builds it
as the ROS package ``uninext_ros``; ``make setup`` installs it into ``.venv`` in development mode.
"""

from __future__ import annotations

from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "uninext_ros"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="Promptable universal instance perception (UNINEXT) for ROS 2",
    license="MIT",
    maintainer="uninext-ros maintainers",
    maintainer_email="maintainers@uninext-ros.dev",
    python_requires=">=3.10",
    packages=find_packages(include=["uninext_core", "uninext_core.*", "uninext_ros", "uninext_ros.*",
                                    "training", "training.*"]),
    package_data={"training": ["recipes/*.yaml"], "uninext_core": ["assets/**/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    extras_require={"tensorrt": ["tensorrt>=10.3,<11", "pycuda>=2024.1"]},
    zip_safe=False,
    entry_points={"console_scripts": [
        "uninext-synth = uninext_core.data.synthetic.__main__:main",
        "perception_node = uninext_ros.perception_node:main",
        "uninext-convert = uninext_core.checkpoint.cli:main",
        "uninext-eval = uninext_core.eval.cli:main",
        "uninext-export = uninext_core.deploy.cli:export_main",
        "uninext-build-engine = uninext_core.deploy.cli:build_engine_main",
        "uninext-bag-eval = uninext_ros.bag_eval:main",
        "uninext-make-bag = uninext_ros.make_bag:main",
        "uninext-demo = uninext_ros.demo.cli:main",
    ]},
)

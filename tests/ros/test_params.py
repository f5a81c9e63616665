"""The node's parameter table: NodeParams, the table and config/perception.yaml agree; validation names the value."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from uninext_ros.params import PARAMETERS, SPECS, NodeParams

REPO_ROOT = Path(__file__).resolve().parents[2]


def _defaults() -> dict:
    return {spec.name: spec.default for spec in PARAMETERS}


def test_table_and_dataclass_list_the_same_names() -> None:
    assert {f.name for f in fields(NodeParams)} == set(SPECS)
    assert len(SPECS) == len(PARAMETERS)


def test_defaults_are_valid_and_every_descriptor_has_a_description() -> None:
    params = NodeParams.from_values(_defaults())
    assert params.cameras == ("",) and params.backend == "torch"
    for spec in PARAMETERS:
        descriptor = spec.descriptor()
        assert descriptor.description and descriptor.name == spec.name
        if spec.minimum is not None:
            assert descriptor.floating_point_range or descriptor.integer_range, spec.name


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("backend", "tflite", "backend='tflite' is not one of"),
    ("score_threshold", 1.5, "score_threshold=1.5 is outside [0.0, 1.0]"),
    ("cameras", ["front", "front"], "contains a namespace twice"),
    ("image_topic", "/", "image_topic is empty"),
])
def test_bad_values_are_named(name: str, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        NodeParams.from_values({**_defaults(), name: value})


@pytest.mark.parametrize("name", ["torch_fp16", "cuda_graphs"])
def test_gpu_options_need_torch_on_cuda(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} needs backend 'torch' and device 'cuda' \\(got 'torch' on 'cpu'\\)"):
        NodeParams.from_values({**_defaults(), name: True})
    with pytest.raises(ValueError, match=f"{name} needs backend 'torch' and device 'cuda' \\(got 'onnxruntime'"):
        NodeParams.from_values({**_defaults(), name: True, "backend": "onnxruntime", "device": "cuda"})
    params = NodeParams.from_values({**_defaults(), name: True, "device": "cuda"})
    assert getattr(params, name) is True


def test_config_file_sets_only_declared_parameters_with_valid_values() -> None:
    document = yaml.safe_load((REPO_ROOT / "config" / "perception.yaml").read_text())
    values = document["/**"]["ros__parameters"]
    unknown = sorted(set(values) - set(SPECS))
    assert not unknown, f"config/perception.yaml sets undeclared parameters {unknown}"
    NodeParams.from_values({**_defaults(), **values})


def test_launch_file_passes_only_declared_parameters() -> None:
    """launch is not importable here, so read the launch file's source: every launch argument it turns into a node
    parameter (PARAMETER_ARGUMENTS) must be a parameter the node declares, with the same type. (The launch file itself
    runs in tests/ros/test_launch_file.py wherever launch_ros is installed.)"""
    import ast

    tree = ast.parse((REPO_ROOT / "launch" / "perception.launch.py").read_text())
    tables = {target.id: node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name)}
    assert {"ARGUMENTS", "PARAMETER_ARGUMENTS"} <= set(tables), "the launch file's argument tables are missing"
    forwarded = {key.value: value.elts[0].id for key, value in zip(tables["PARAMETER_ARGUMENTS"].keys,
                                                                   tables["PARAMETER_ARGUMENTS"].values, strict=True)}
    assert forwarded, "no launch argument reaches a node parameter"
    assert set(forwarded) <= set(SPECS), f"launch passes undeclared parameters {sorted(set(forwarded) - set(SPECS))}"
    for name, type_name in forwarded.items():
        assert type_name == type(SPECS[name].default).__name__, f"launch argument {name} is typed {type_name}"
    plain = {key.value for key in tables["ARGUMENTS"].keys}
    assert plain == {"namespace", "image_topic"}, f"arguments that reach no parameter or remap: {plain}"


def test_readme_documents_every_parameter() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [spec.name for spec in PARAMETERS if f"| `{spec.name}` |" not in readme]
    assert not missing, f"README.md has no row for parameters {missing}"

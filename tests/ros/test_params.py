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


def test_config_file_sets_only_declared_parameters_with_valid_values() -> None:
    document = yaml.safe_load((REPO_ROOT / "config" / "perception.yaml").read_text())
    values = document["/**"]["ros__parameters"]
    unknown = sorted(set(values) - set(SPECS))
    assert not unknown, f"config/perception.yaml sets undeclared parameters {unknown}"
    NodeParams.from_values({**_defaults(), **values})


def test_launch_file_passes_only_declared_parameters() -> None:
    """launch is not importable here, so read the launch file's source: every key of the parameter dictionary it
    gives the node must be a declared parameter, and every argument that feeds one must default to a valid value."""
    import ast

    tree = ast.parse((REPO_ROOT / "launch" / "perception.launch.py").read_text())
    parameter_lists = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
                       if kw.arg == "parameters"]
    assert len(parameter_lists) == 1, "expected one node with a parameters=[...] list"
    passed = {key.value for node in ast.walk(parameter_lists[0]) if isinstance(node, ast.Dict) for key in node.keys}
    assert passed, "no parameter dictionary found in the launch file"
    assert passed <= set(SPECS), f"launch passes undeclared parameters {sorted(passed - set(SPECS))}"
    arguments = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                     and any(isinstance(t, ast.Name) and t.id == "ARGUMENTS" for t in node.targets))
    defaults = {key.value: ast.literal_eval(value)[0] for key, value in zip(arguments.keys, arguments.values,
                                                                            strict=True)}
    assert set(defaults) - passed <= {"namespace", "image_topic"}, "an argument reaches neither a parameter nor a remap"
    for name in passed:
        value = {"true": True, "false": False}.get(defaults[name], defaults[name])
        assert SPECS[name].check(value) is None, f"launch argument {name} defaults to an invalid {value!r}"
        assert type(value) is type(SPECS[name].default), f"launch argument {name} has the wrong type"


def test_readme_documents_every_parameter() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [spec.name for spec in PARAMETERS if f"| `{spec.name}` |" not in readme]
    assert not missing, f"README.md has no row for parameters {missing}"

"""The TensorRT operator check on hand-built graphs (every rule fires with a message naming the node) and on the
exported tiny parts (all pass; the main network has GridSample and a constant-K TopK)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from uninext_core.deploy.onnx_ops_check import (
    TENSORRT_SUPPORTED_OPS,
    assert_tensorrt_compatible,
    check_tensorrt_compatibility,
)


def graph_model(nodes, inputs, outputs, initializers=(), opset=18, functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))


def vector(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def k_const(value):
    return numpy_helper.from_array(np.array([value], dtype=np.int64), "k")


def topk_model(k_from_input=False, k=5, sorted_flag=1):
    inputs = [vector("x", [1, 10])] + ([helper.make_tensor_value_info("k", TensorProto.INT64, [1])]
                                       if k_from_input else [])
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1, sorted=sorted_flag, name="topk")
    outputs = [vector("values", [1, k]), helper.make_tensor_value_info("indices", TensorProto.INT64, [1, k])]
    return graph_model([node], inputs, outputs, [] if k_from_input else [k_const(k)])


def test_constant_k_topk_passes_and_counts_ops():
    report = check_tensorrt_compatibility(topk_model())
    assert report.ok and report.op_counts == {"TopK": 1} and report.opset == 18


def test_topk_with_k_from_a_graph_input_is_rejected():
    report = check_tensorrt_compatibility(topk_model(k_from_input=True))
    assert report.problems == ("node topk (TopK): input 1 (k) must be a constant initializer",)


def test_topk_limits_from_the_operator_table():
    assert "K = 4000 must be below 3840" in check_tensorrt_compatibility(topk_model(k=4000)).problems[0]
    assert "sorted must be 1" in check_tensorrt_compatibility(topk_model(sorted_flag=0)).problems[0]


def test_control_flow_custom_domains_functions_and_unsupported_ops_are_named():
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "body", [vector("x", [1])],
                             [vector("y", [1])])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    nodes = [
        helper.make_node("If", ["cond"], ["a"], then_branch=body, else_branch=body, name="branch"),
        helper.make_node("MultiScaleDeformableAttnPlugin_TRT", ["a"], ["b"], domain="trt.plugins", name="plugin"),
        helper.make_node("Unique", ["b"], ["c"], name="unique"),
        helper.make_node("StringNormalizer", ["c"], ["d"], name="strings"),
    ]
    function = helper.make_function("custom", "MyOp", ["x"], ["y"], [helper.make_node("Relu", ["x"], ["y"])],
                                    [helper.make_opsetid("", 18)])
    model = graph_model(nodes, [cond], [vector("d", [1])], functions=[function])
    problems = check_tensorrt_compatibility(model).problems
    assert problems == (
        "local function custom::MyOp (custom operators are not allowed)",
        "node branch (If): data-dependent control flow is not allowed",
        "node plugin (MultiScaleDeformableAttnPlugin_TRT) is in custom domain 'trt.plugins'",
        "node unique (Unique): data-dependent output shape is not allowed",
        "node strings (StringNormalizer) is not supported by TensorRT 10's ONNX parser",
    )


def test_opset_range_grid_sample_requirement_and_resize_modes():
    resize = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", name="up")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    model = graph_model([resize], [vector("x", [1, 1, 4, 4])], [vector("y", [1, 1, 8, 8])], [scales], opset=16)
    problems = check_tensorrt_compatibility(model, require_grid_sample=True).problems
    assert problems == (
        "opset 16 is below 17 (this project exports with opset >= 17)",
        "node up (Resize): mode 'cubic' not in ['linear', 'nearest']",
        "no GridSample node: the main network must use the exportable (grid_sample) deformable attention",
    )
    with pytest.raises(ValueError, match="is not TensorRT-compatible"):
        assert_tensorrt_compatible(model, require_grid_sample=True)


def test_grid_sample_must_be_4d():
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="sample5d")
    model = graph_model([node], [vector("x", [1, 1, 2, 4, 4]), vector("grid", [1, 2, 4, 4, 3])],
                        [vector("y", [1, 1, 2, 4, 4])], opset=20)
    problems = check_tensorrt_compatibility(model).problems
    assert problems == ("node sample5d (GridSample): input must be 4-D, got rank 5",)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(topk_model().SerializeToString()[:20])
    with pytest.raises(ValueError, match="is not a readable ONNX file"):
        check_tensorrt_compatibility(path)


def test_the_list_matches_the_table_for_the_ops_this_network_needs():
    # Spot checks against onnx-tensorrt operators.md (TensorRT 10): supported ... and not supported.
    assert {"GridSample", "TopK", "LayerNormalization", "InstanceNormalization", "Resize", "Einsum"} <= (
        TENSORRT_SUPPORTED_OPS)
    assert not {"Unique", "StringNormalizer", "AffineGrid", "SequenceAt", "Col2Im"} & TENSORRT_SUPPORTED_OPS


@pytest.mark.slow
def test_exported_tiny_parts_are_tensorrt_compatible(tiny_export):
    reports = {name: check_tensorrt_compatibility(tiny_export.directory / part.file,
                                                  require_grid_sample=name == "main")
               for name, part in tiny_export.manifest.parts.items()}
    assert set(reports) == {"text_encoder", "template_encoder", "main"}
    for name, report in reports.items():
        assert report.ok, (name, report.problems)
        assert report.opset == 18
    main = reports["main"].op_counts
    # One grid_sample per level in every deformable layer (encoder, decoder, re-ID head and query resample layers),
    # and the query colour's one on the last decoder layer's boxes (inference scores that layer only).
    t, h = tiny_export.cfg.transformer, tiny_export.cfg.heads
    layers = t.num_encoder_layers + t.num_decoder_layers + h.reid_layers + h.query_resample_layers
    query_colour = 1 if tiny_export.cfg.heads.query_colour_grid else 0
    assert main["GridSample"] == layers * t.num_levels + query_colour and main["TopK"] == 1
    assert not {"Loop", "If", "Scan", "NonZero"} & set(main)
    model = onnx.load(str(tiny_export.directory / "main.onnx"), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    (topk,) = [node for node in model.graph.node if node.op_type == "TopK"]
    assert topk.input[1] in initializers  # K is an initializer (what the TensorRT parser asks for)

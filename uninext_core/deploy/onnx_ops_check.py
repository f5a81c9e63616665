"""Check an exported ONNX graph against what TensorRT 10's ONNX parser supports.

The operator list below is the TensorRT 10 ONNX support matrix: `docs/operators.md` of onnx/onnx-tensorrt at the
"ONNX-TensorRT 10.1 GA release" commit (96e781103cfc4adf4a6bb557e94bac8e693f6f4c, June 2024; "TensorRT 10.0
supports operators in the inclusive range of opset 9 to opset 20"), every operator marked "Y". The restrictions
checked per node are the ones that table states for operators this network uses:

* TopK: K is a constant (initializer or Constant node; TensorRT 8.x: "K input must be an initializer"), K < 3840,
  `sorted` = 1;
* Slice, Squeeze, ReduceSum, ReduceMean, ReduceMax, Pad (`axes`) and CumSum (`axis`): must be initializers;
* Resize: modes nearest/linear, the listed coordinate-transformation and nearest-rounding modes;
* GridSample: 4-D input (checked through ONNX shape inference when shapes are known).

On top of the table, for the data-independent graphs this project exports: only the default ONNX domain (no custom
ops or plugins, no local functions), no Loop / If / Scan (data-dependent control flow), no NonZero / Unique /
Compress (data-dependent shapes), and — for the main network — GridSample must be present (the pure-PyTorch
multi-scale deformable attention, reference §11.2).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

TENSORRT_OPERATORS_SOURCE = ("onnx/onnx-tensorrt docs/operators.md @ 96e781103cfc4adf4a6bb557e94bac8e693f6f4c "
                             "(ONNX-TensorRT 10.1 GA; TensorRT 10.0 operator matrix)")
TENSORRT_MIN_OPSET = 9
TENSORRT_MAX_OPSET = 20
TENSORRT_TOPK_MAX_K = 3840

TENSORRT_SUPPORTED_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
    "BatchNormalization", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "ConvTranspose", "Cos", "Cosh", "CumSum", "DeformConv", "DepthToSpace", "DequantizeLinear", "Div", "Dropout",
    "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements",
    "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual",
    "GridSample", "GroupNormalization", "GRU", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
    "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
    "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean",
    "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot",
    "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal", "RandomNormalLike",
    "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu",
    "Reshape", "Resize", "ReverseSequence", "RNN", "RoiAlign", "Round", "ScaledTanh", "Scan", "Scatter",
    "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice",
    "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh",
    "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})

CONTROL_FLOW_OPS = frozenset({"Loop", "If", "Scan"})
DATA_DEPENDENT_SHAPE_OPS = frozenset({"NonZero", "Unique", "Compress"})
# Operator -> index of the input that must be a constant (operators.md restrictions).
CONSTANT_INPUTS = {"TopK": 1, "Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "ReduceSum": 1, "ReduceMean": 1,
                   "ReduceMax": 1, "ReduceMin": 1, "Pad": 3, "CumSum": 1}
RESIZE_MODES = frozenset({"nearest", "linear"})
RESIZE_COORDINATE_MODES = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                                     "align_corners"})
RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})


@dataclass(frozen=True)
class OpsReport:
    """Result of `check_tensorrt_compatibility`.

    Attributes:
        op_counts: operator type -> number of nodes (default domain and others).
        opset: opset of the default domain.
        problems: one human-readable line per violation (empty when TensorRT-compatible).
    """

    op_counts: dict[str, int]
    opset: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def check_tensorrt_compatibility(model: onnx.ModelProto | str | Path, *, require_grid_sample: bool = False
                                 ) -> OpsReport:
    """Walk every node of `model` and check it against TensorRT 10's ONNX parser support.

    Args:
        model: a loaded ModelProto or the path of an .onnx file (external weights are not loaded).
        require_grid_sample: report a problem when no GridSample node exists (the main network must use the
            exportable deformable attention).

    Returns:
        OpsReport.
    """
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # onnx raises DecodeError and friends for corrupt files
            raise ValueError(f"{path} is not a readable ONNX file ({type(error).__name__}: {error})") from error
    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not TENSORRT_MIN_OPSET <= opset <= TENSORRT_MAX_OPSET:
        problems.append(f"default-domain opset {opset} is outside TensorRT 10's range "
                        f"[{TENSORRT_MIN_OPSET}, {TENSORRT_MAX_OPSET}]")
    if opset < 17:
        problems.append(f"opset {opset} is below 17 (this project exports with opset >= 17)")
    problems += [f"local function {f.domain}::{f.name} (custom operators are not allowed)" for f in model.functions]

    constants = {init.name for init in model.graph.initializer}
    constant_values = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
            for attribute in node.attribute:
                if attribute.name == "value":
                    constant_values[node.output[0]] = attribute.t
    ranks = _ranks(model)
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        counts[node.op_type] += 1
        where = f"node {node.name or '<unnamed>'} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where} is in custom domain {node.domain!r}")
            continue
        if node.op_type in CONTROL_FLOW_OPS:
            problems.append(f"{where}: data-dependent control flow is not allowed")
        elif node.op_type in DATA_DEPENDENT_SHAPE_OPS:
            problems.append(f"{where}: data-dependent output shape is not allowed")
        elif node.op_type not in TENSORRT_SUPPORTED_OPS:
            problems.append(f"{where} is not supported by TensorRT 10's ONNX parser")
        index = CONSTANT_INPUTS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in constants:
            problems.append(f"{where}: input {index} ({node.input[index]}) must be a constant initializer")
        problems += _node_restrictions(node, where, constant_values, ranks)
    if require_grid_sample and counts["GridSample"] == 0:
        problems.append("no GridSample node: the main network must use the exportable (grid_sample) deformable "
                        "attention")
    return OpsReport(op_counts=dict(counts), opset=opset, problems=tuple(problems))


def assert_tensorrt_compatible(model: onnx.ModelProto | str | Path, *, require_grid_sample: bool = False) -> OpsReport:
    """`check_tensorrt_compatibility`, raising ValueError listing every problem."""
    report = check_tensorrt_compatibility(model, require_grid_sample=require_grid_sample)
    if not report.ok:
        name = model.graph.name if isinstance(model, onnx.ModelProto) else str(model)
        raise ValueError(f"{name} is not TensorRT-compatible ({TENSORRT_OPERATORS_SOURCE}):\n  "
                         + "\n  ".join(report.problems))
    return report


def _node_restrictions(node: onnx.NodeProto, where: str, constant_values: dict[str, onnx.TensorProto],
                       ranks: dict[str, int]) -> list[str]:
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    problems = []
    if node.op_type == "TopK":
        if attributes.get("sorted", 1) != 1:
            problems.append(f"{where}: sorted must be 1")
        k_value = constant_values.get(node.input[1]) if len(node.input) > 1 else None
        if k_value is not None:
            k = int(onnx.numpy_helper.to_array(k_value).reshape(-1)[0])
            if k >= TENSORRT_TOPK_MAX_K:
                problems.append(f"{where}: K = {k} must be below {TENSORRT_TOPK_MAX_K}")
    elif node.op_type == "Resize":
        mode = _text(attributes.get("mode", b"nearest"))
        coordinates = _text(attributes.get("coordinate_transformation_mode", b"half_pixel"))
        nearest = _text(attributes.get("nearest_mode", b"round_prefer_floor"))
        if mode not in RESIZE_MODES:
            problems.append(f"{where}: mode {mode!r} not in {sorted(RESIZE_MODES)}")
        if coordinates not in RESIZE_COORDINATE_MODES:
            problems.append(f"{where}: coordinate_transformation_mode {coordinates!r} not supported")
        if mode == "nearest" and nearest not in RESIZE_NEAREST_MODES:
            problems.append(f"{where}: nearest_mode {nearest!r} not supported")
        if attributes.get("antialias", 0):
            problems.append(f"{where}: antialiasing is not supported")
    elif node.op_type == "GridSample" and ranks.get(node.input[0], 4) != 4:
        problems.append(f"{where}: input must be 4-D, got rank {ranks[node.input[0]]}")
    return problems


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Value name -> rank from ONNX shape inference (empty where shapes are unknown)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort here; the rank check is skipped without it
        return {}
    ranks = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks

"""Tables of the session benchmark (bench/session.py): per backend with the stage split and the growth over the
group's baseline, then onnxruntime next to torch with the ratio per case, and the prompt-change costs."""

from __future__ import annotations

from collections.abc import Sequence

from session_cases import SIDE, STAGES

FRAME_GROUPS = ("tasks", "classes", "tracks", "vos")
BASELINES = {"tasks": "detection", "classes": "classes_1", "tracks": "the same task with 1 instance",
             "vos": "1 object (random or planted alike)"}
SHORT = {"onnxruntime": "ort"}


def _base(group: str, result: dict, rows: Sequence[dict]) -> dict | None:
    """The row `result` is compared with: same backend; tracks: same task and 1 instance; vos: same planting."""
    same = [r for r in rows if r["backend"] == result["backend"] and "median_ms" in r]
    if group == "tracks":
        same = [r for r in same if r["task"] == result["task"]]
    if group == "vos":
        same = [r for r in same if r["planted"] == result["planted"]]
    return same[0] if same else None


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"


def backend_table(group: str, rows: Sequence[dict], threads: int) -> list[str]:
    """Rows per (case, backend): median, p90, fps, CPU ms, stage medians, growth over the group baseline."""
    stage_names = [s.removesuffix("_ms") for s in STAGES]
    lines = [f"[{group}] per-frame ms (tiny, cpu, fp32, {SIDE}x{SIDE}, {threads} threads); growth = median / "
             f"median of {BASELINES[group]} on the same backend; inst = median instances returned, "
             "boxes = distinct boxes among them (queries)",
             f"{'case':<26}{'backend':<13}{'median':>8}{'p90':>8}{'fps':>7}{'cpu':>8}"
             + "".join(f"{n:>12}" for n in stage_names) + f"{'growth':>8}{'inst':>6}{'boxes':>6}"]
    for result in rows:
        label = f"{result['case']:<26}{result['backend']:<13}"
        if "median_ms" not in result:
            lines.append(label + f"rejected: {result.get('rejected', '?')}")
            continue
        base = _base(group, result, rows)
        stages = result["stages_median_ms"]
        lines.append(label + f"{result['median_ms']:>8.1f}{result['p90_ms']:>8.1f}{result['fps']:>7.2f}"
                     f"{result['cpu_ms']:>8.1f}" + "".join(f"{stages[s]:>12.1f}" for s in STAGES)
                     + f"{_ratio(result['median_ms'], base['median_ms'] if base else 0):>8}"
                     f"{result['instances']:>6g}{result['distinct_boxes']:>6g}")
    return lines


def comparison_table(group: str, rows: Sequence[dict], goal_fps: float) -> list[str]:
    """onnxruntime next to torch per case: wall and CPU ratios (onnxruntime / torch) and the frames/s goal."""
    by_case: dict[str, dict[str, dict]] = {}
    for result in rows:
        by_case.setdefault(result["case"], {})[result["backend"]] = result
    lines = [f"[{group}] onnxruntime vs torch: ratio = onnxruntime / torch (< 1: onnxruntime faster); goal "
             f"{goal_fps:g} fps = {1000.0 / goal_fps:.1f} ms per frame",
             f"{'case':<26}{'torch ms':>10}{'ort ms':>10}{'ort/torch':>11}{'cpu ort/torch':>15}{'torch fps':>11}"
             f"{'ort fps':>9}  goal met by"]
    for case, results in by_case.items():
        eager, onnx = results.get("torch"), results.get("onnxruntime")
        if eager is None or onnx is None or "median_ms" not in eager or "median_ms" not in onnx:
            continue
        met = [SHORT.get(name, name) for name, r in (("torch", eager), ("onnxruntime", onnx)) if r["fps"] >= goal_fps]
        lines.append(f"{case:<26}{eager['median_ms']:>10.1f}{onnx['median_ms']:>10.1f}"
                     f"{_ratio(onnx['median_ms'], eager['median_ms']):>11}"
                     f"{_ratio(onnx['cpu_ms'], eager['cpu_ms']):>15}{eager['fps']:>11.2f}{onnx['fps']:>9.2f}  "
                     f"{', '.join(met) or 'neither'}")
    return lines


def prompt_table(rows: Sequence[dict]) -> list[str]:
    """set_prompt ms per prompt and backend, with the ratio onnxruntime / torch."""
    by_case: dict[str, dict[str, dict]] = {}
    for result in rows:
        by_case.setdefault(result["case"], {})[result["backend"]] = result
    backends = [b for b in ("torch", "onnxruntime") if any(b in r for r in by_case.values())]
    lines = ["[prompt] set_prompt ms (cache miss, median of 3; *_cached: a cache hit); ratio = onnxruntime / torch",
             f"{'prompt':<26}" + "".join(f"{SHORT.get(b, b) + ' ms':>10}" for b in backends) + f"{'ratio':>8}  note"]
    for case, results in by_case.items():
        values = [results[b]["prompt_change_ms"] if b in results else float("nan") for b in backends]
        ratio = _ratio(values[1], values[0]) if len(values) == 2 else ""
        note = next((f"rejected: {r['rejected']}" for r in results.values() if "rejected" in r), "")
        lines.append(f"{case:<26}" + "".join(f"{v:>10.1f}" for v in values) + f"{ratio:>8}  {note}")
    return lines


def all_tables(results: dict[str, list[dict]], *, threads: int, goal_fps: float) -> str:
    """Every table of the run, groups in benchmark order."""
    blocks = []
    for group in FRAME_GROUPS:
        rows = results.get(group) or []
        if not rows:
            continue
        blocks.append("\n".join(backend_table(group, rows, threads)))
        if {r["backend"] for r in rows} >= {"torch", "onnxruntime"}:
            blocks.append("\n".join(comparison_table(group, rows, goal_fps)))
    if results.get("prompt"):
        blocks.append("\n".join(prompt_table(results["prompt"])))
    return "\n\n".join(blocks)

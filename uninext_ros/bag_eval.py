"""uninext-bag-eval (also `python -m uninext_ros.bag_eval`): accuracy and speed of the perception on recorded bags.

    uninext-bag-eval --bag bags/syn001 --task mot --image-topic /camera/image_raw --scenario scenario.yaml \\
        --gt data/synth/mot --categories circle,square --checkpoint model.safetensors --out runs/bag_syn001
    uninext-bag-eval --bag bags/star1 --task sot --image-topic /camera/image_raw/compressed \\
        --prompt-topic /uninext/prompt --reference-bag runs/earlier/output_bag --reference-topic /uninext/instances \\
        --checkpoint model.safetensors --out runs/bag_star1 --replay

Reads rosbag2 bags (mcap or sqlite3) with `rosbags`; prompts come from a uninext_msgs/Prompt topic of the bag or a
YAML scenario (bag_scenario.py); ground truth from annotation files in a format training reads or from the instance
arrays of a reference bag (bag_truth.py). The session runs offline (bag_offline.py: deterministic, as fast as
possible or `--rate bag`); `--replay` also plays the bag into the live perception_node (bag_replay.py) and the report
compares both. The output folder gets `output_bag/` (input topics + instance arrays, + overlays with
--debug-images), `replay_bag/` with --replay, result.json (metrics, latency summary, per-frame records), report.md,
report.html and PNG plots. Nothing is left looking complete after a failure: bags are moved into place when done and
result.json is written last. Exit status: 0, 2 for bad input (bag, topic, scenario, ground truth, model), 1 when
the session or the node fails during the run.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from uninext_core.eval.cli import resolve_preset
from uninext_core.eval.datasets import ALL_READERS, EVAL_TASKS
from uninext_core.eval.report import HTML_NAME, REPORT_NAME, RESULT_NAME, write_report
from uninext_core.eval.runner import PromptFailed, frame_timing, latency_summary
from uninext_ros.bag_io import STORAGES, BagOutput, bag_typestore, frame_headers, open_bag, prompt_messages
from uninext_ros.bag_offline import BagRun, OutputRecorder, run_bag, score_bag
from uninext_ros.bag_report import comparison_lines, frame_records, replay_summary
from uninext_ros.bag_scenario import bag_prompts, place_prompts, read_scenario
from uninext_ros.bag_truth import BagTruth, fill_reference, truth_from_annotations, truth_from_reference_bag

logger = logging.getLogger(__name__)
OUTPUT_BAG = "output_bag"
REPLAY_BAG = "replay_bag"


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="uninext-bag-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bag", required=True, help="rosbag2 folder (mcap or sqlite3)")
    parser.add_argument("--task", required=True, choices=EVAL_TASKS)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--image-topic", default="/camera/image_raw", help="sensor_msgs/Image or CompressedImage")
    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument("--prompt-topic", default=None, help="uninext_msgs/Prompt topic of the bag")
    prompts.add_argument("--scenario", default=None, help="YAML scenario (time -> prompt)")
    truth = parser.add_mutually_exclusive_group()
    truth.add_argument("--gt", default=None, help="annotation file or dataset folder (formats training reads)")
    truth.add_argument("--reference-bag", default=None, help="bag with reference instance arrays")
    parser.add_argument("--reference-topic", default="/uninext/instances")
    parser.add_argument("--gt-sequence", default="", help="sequence of --gt the bag shows")
    parser.add_argument("--reader", default=None, choices=ALL_READERS)
    parser.add_argument("--image-root", default=None)
    parser.add_argument("--refs", default=None)
    parser.add_argument("--expressions", default=None)
    parser.add_argument("--categories", default="", help="MOTChallenge class names, comma-separated")
    parser.add_argument("--split", default="")
    parser.add_argument("--checkpoint", default="", help=".safetensors or official .pth")
    parser.add_argument("--preset", default=None, help="default: the checkpoint's (tiny without a checkpoint: the "
                        "shipped model, as the node)")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--engine-path", default="")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", action="store_true", help="torch on cuda: float16 autocast (node: torch_fp16)")
    parser.add_argument("--cuda-graphs", action="store_true", help="torch on cuda: CUDA graphs (node: cuda_graphs)")
    parser.add_argument("--text-encoder-path", default="")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="as the node's parameter (eval: 0)")
    parser.add_argument("--best-class-only", action="store_true",
                        help="as the node's parameter (eval: off, every (query, class) pair competes as in COCO AP)")
    parser.add_argument("--short-side", type=int, default=0, help="input short side (0: the preset's)")
    parser.add_argument("--max-size", type=int, default=0, help="input long-side bound (0: the preset's)")
    parser.add_argument("--rate", choices=("max", "bag"), default="max", help="offline pace")
    parser.add_argument("--debug-images", action="store_true", help="also write overlay images")
    parser.add_argument("--output-topic", default="/uninext/instances")
    parser.add_argument("--debug-topic", default="/uninext/debug_image")
    parser.add_argument("--storage", choices=tuple(STORAGES), default="mcap", help="storage of the output bags")
    parser.add_argument("--replay", action="store_true", help="also play the bag into the live perception_node")
    parser.add_argument("--replay-speed", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def node_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The perception_node parameters equivalent to the options (the offline session uses the same values)."""
    return {"preset": args.preset, "checkpoint": args.checkpoint, "backend": args.backend, "device": args.device,
            "torch_fp16": args.fp16, "cuda_graphs": args.cuda_graphs,
            "engine_path": args.engine_path, "text_encoder_path": args.text_encoder_path,
            "score_threshold": args.score_threshold, "best_class_only": args.best_class_only,
            "input_short_side": args.short_side,
            "input_max_size": args.max_size}


def _resolve_preset(args: argparse.Namespace) -> str:
    if args.preset:
        return args.preset
    if args.backend == "torch" and not args.checkpoint:
        return "tiny"  # the node's default: the weights shipped with the package
    return resolve_preset(args)


def _session(args: argparse.Namespace) -> tuple[Any, str]:
    """A Session with the model and thresholds the node would use for these parameters, and its description."""
    from uninext_core.tasks.session import Session
    from uninext_ros.params import PARAMETERS, NodeParams
    from uninext_ros.session_provider import ModelSessionProvider, load_for_params

    values = {spec.name: spec.default for spec in PARAMETERS} | node_parameters(args)
    params = NodeParams.from_values(values)
    loaded = load_for_params(params)
    config = ModelSessionProvider().session_config(params)
    return Session(loaded.backend, tokenizer=loaded.tokenizer, config=config), loaded.description


def _clean(out: Path) -> None:
    """Remove what an earlier run wrote into `out`, so a failing run cannot leave it looking complete."""
    for name in (RESULT_NAME, REPORT_NAME, HTML_NAME):
        (out / name).unlink(missing_ok=True)
    for name in (OUTPUT_BAG, REPLAY_BAG):
        if (out / name).exists():
            shutil.rmtree(out / name)


def run(args: argparse.Namespace) -> int:
    """Evaluate as `args` say; returns the exit status (raises ValueError for bad input)."""
    bag = Path(args.bag)
    if args.out.exists():
        _clean(args.out)
    if args.gt is None and args.reference_bag is None and args.prompt_topic is None and args.scenario is None:
        logger.warning("no prompt and no ground truth: only the speed is measured")
    reader = open_bag(bag)
    try:
        headers = frame_headers(reader, bag, args.image_topic)
        if args.scenario:
            scheduled = read_scenario(args.scenario)
        elif args.prompt_topic:
            scheduled = bag_prompts(prompt_messages(reader, bag, args.prompt_topic), source=f"bag {bag} topic "
                                    f"{args.prompt_topic}")
        else:
            scheduled = []
        placed = place_prompts(scheduled, stamps_ns=[h.stamp_ns for h in headers],
                               log_times_ns=[h.log_time_ns for h in headers])
        truth: BagTruth | None = None
        if args.gt:
            categories = tuple(n.strip() for n in args.categories.split(",") if n.strip())
            truth = truth_from_annotations(args.gt, task=args.task, frames=headers, sequence=args.gt_sequence,
                                           reader=args.reader, image_root=args.image_root, refs=args.refs,
                                           expressions=args.expressions, categories=categories, split=args.split)
        elif args.reference_bag:
            truth = truth_from_reference_bag(args.reference_bag, topic=args.reference_topic, frames=headers)
        args.preset = _resolve_preset(args)
        torch.manual_seed(args.seed)
        if args.threads:
            torch.set_num_threads(args.threads)
        session, description = _session(args)
        args.out.mkdir(parents=True, exist_ok=True)
        recorder = OutputRecorder(output_topic=args.output_topic,
                                  debug_topic=args.debug_topic if args.debug_images else "")
        with tqdm(total=len(headers), unit="frame", desc=f"uninext-bag-eval {args.task}", file=sys.stderr) as bar:
            def on_frame(header: Any, rgb: Any, output: Any) -> None:
                recorder(header, rgb, output)
                bar.update(1)

            bag_run = run_bag(session, reader=reader, bag=bag, image_topic=args.image_topic, headers=headers,
                              placed=placed, task=args.task, rate=args.rate, on_frame=on_frame)
        scores = None
        if truth is not None:
            if truth.reference:
                fill_reference(truth, stamps_ns=[h.stamp_ns for h in headers], image_sizes=bag_run.image_sizes,
                               task=args.task)
            scores = score_bag(bag_run, truth, task=args.task, name=bag.name)
        output = BagOutput(args.out / OUTPUT_BAG, storage=args.storage, typestore=bag_typestore())
        try:
            written = recorder.write(reader, output)
        except BaseException:
            output.abort()
            raise
        output.commit()
        sections, replay_info = [], {}
        if args.replay:
            sections, replay_info = _replay(args, reader=reader, bag=bag, headers=headers, placed=placed,
                                            bag_run=bag_run, truth=truth, scores=scores)
    finally:
        reader.close()
    _write(args, bag=bag, headers=headers, bag_run=bag_run, scores=scores, truth=truth, description=description,
           written=written, placed=len(placed), sections=sections, replay_info=replay_info)
    return 0


def _replay(args: argparse.Namespace, *, reader: Any, bag: Path, headers: Any, placed: Any, bag_run: BagRun,
            truth: BagTruth | None, scores: Any) -> tuple[list[tuple[str, list[str]]], dict[str, Any]]:
    from uninext_ros.bag_replay import replay_bag

    replay = replay_bag(reader=reader, bag=bag, image_topic=args.image_topic, headers=headers, placed=placed,
                        task=args.task, image_sizes=bag_run.image_sizes, node_parameters=node_parameters(args),
                        out_bag=args.out / REPLAY_BAG, storage=args.storage, speed=args.replay_speed)
    duration_s = (headers[-1].log_time_ns - headers[0].log_time_ns) / 1e9 + 1e-9
    summary = replay_summary(replay, bag_duration_s=duration_s)
    replay_metrics = None
    if scores is not None and truth is not None and args.task != "vis":
        replayed = BagRun(bag_run.headers, replay.outputs, bag_run.segments, bag_run.image_sizes)
        replay_metrics = score_bag(replayed, truth, task=args.task, name=bag.name).metrics
    lines = comparison_lines(scores.metrics if scores is not None else {}, replay_metrics,
                             latency_summary([frame_timing(o) for o in bag_run.outputs]), summary, frames=len(headers))
    answers = [f"- {source}: {'accepted' if ok else 'refused: ' + reason}" for source, ok, reason in
               replay.prompt_answers]
    info = {"replay": summary, "replay_metrics": replay_metrics, "replay_prompts": answers,
            "replay_frames": frame_records(headers, replay.outputs)}
    return [("Replay into the live node vs offline", lines), ("Replay prompts", answers or ["(none)"])], info


def _write(args: argparse.Namespace, *, bag: Path, headers: Any, bag_run: BagRun, scores: Any, truth: Any,
           description: str, written: int, placed: int, sections: list, replay_info: dict[str, Any]) -> None:
    evaluated = {"task": args.task, "bag": str(bag), "image_topic": args.image_topic, "frames": len(headers),
                 "prompts": placed, "prompt_source": args.scenario or args.prompt_topic or "",
                 "ground_truth": truth.source if truth is not None else "", "segments_scored": len(bag_run.segments),
                 "checkpoint": args.checkpoint, "preset": args.preset, "backend": args.backend, "model": description,
                 "rate": args.rate, "seed": args.seed, "output_bag": str(args.out / OUTPUT_BAG),
                 "output_messages": written}
    latency = latency_summary([frame_timing(o) for o in bag_run.outputs])
    metrics = scores.metrics if scores is not None else {}
    files = write_report(args.out, title=f"uninext-bag-eval: {args.task} on {bag.name}", evaluated=evaluated,
                         metrics=metrics, curves=scores.curves if scores is not None else {}, latency=latency,
                         wall_ms=[o.wall_ms for o in bag_run.outputs if o.instances.prompt_id != 0],
                         sections=sections, extra={"frames": frame_records(headers, bag_run.outputs), **replay_info})
    headline = ", ".join(f"{k}={v:.4f}" for k, v in list(metrics.items())[:4]) or "no ground truth"
    print(f"{args.task}: {headline}; {len(headers)} frames, {latency.get('wall_ms_mean', 0.0):.1f} ms/frame -> "
          f"{files.result}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 1 failure during the run)."""
    from uninext_core.tasks.session import FrameRejected

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (PromptFailed, FrameRejected, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`python -m uninext_ros.demo` (`make demo`): the perception node, a synthetic camera and a scripted planner.

    python -m uninext_ros.demo                                  # the shipped small model, outputs/demo/
    python -m uninext_ros.demo --checkpoint runs/tiny/stage3/checkpoints/model_final.safetensors --rate 10
    python -m uninext_ros.demo --backend onnxruntime --engine-path exports/tiny --seconds-per-phase 30

The node runs as its own process (the real `perception_node` executable); this process holds the camera, the
planner and the recorder. The planner gives three prompts in turn (a class list, an expression, an ROI template);
each runs for --seconds-per-phase. Outputs in --out: demo.mp4 (annotated), frames/<phase>_<k>.png, summary.json,
summary.md and node.log. Exit codes: 0 done (the summary says what was found), 1 the node failed or did not stop
cleanly, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from uninext_ros.demo.camera import SyntheticCamera
from uninext_ros.demo.node_process import NodeProcess, NodeStartError, RosIsolation, isolate_ros
from uninext_ros.demo.planner import (
    PHASES,
    PROMPT_TOPICS,
    PlannedPrompt,
    PromptOutcome,
    ScriptedPlanner,
    choose_classes,
    choose_expression,
    choose_template,
)
from uninext_ros.demo.recorder import Recorder
from uninext_ros.demo.summary import PhaseRecord, PhaseSummary, format_table, summarize_phase, write_summary
from uninext_ros.demo.video import DEFAULT_SEED, DEFAULT_SIZE, DemoVideo, make_demo_video
from uninext_ros.params import BACKENDS, DEVICES

FIRST_FRAME_TIMEOUT_S = 60.0  # from camera start to the first instance array (the first forward pass is slow)
DRAIN_S = 1.0  # after the last phase: arrays of frames still in flight


class DemoError(RuntimeError):
    """The demo could not run to the end (the message says why)."""


class _Log:
    """Plain progress lines with the seconds since start (no colours, no progress bars)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[demo {time.monotonic() - self._start:5.1f}s] {message}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m uninext_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="", help="model weights (.safetensors or official .pth); default: "
                        "the small model shipped with the package")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (default: %(default)s)")
    parser.add_argument("--seconds-per-phase", type=float, default=15.0,
                        help="how long each prompt runs (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=5.0, help="camera frames per second (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="synthetic-world video seed; 0 is the tiny model's training data (default: %(default)s)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame side in pixels (default: %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (default: torch)")
    parser.add_argument("--engine-path", default="", help="uninext-export folder (onnxruntime) or engine cache "
                        "(tensorrt)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the node (default: torch's)")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a random one)")
    parser.add_argument("--ros-log-dir", default=None, help="ROS_LOG_DIR (default: a temporary folder)")
    parser.add_argument("--startup-timeout", type=float, default=180.0,
                        help="seconds the node may take to become active (default: %(default)s)")
    return parser


def _check_arguments(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot work, or None."""
    if args.seconds_per_phase <= 0 or not 0 < args.rate <= 60:
        return f"need --seconds-per-phase > 0 and --rate in (0, 60]; got {args.seconds_per_phase}, {args.rate}"
    if args.size < 64:
        return f"--size must be at least 64 pixels, got {args.size}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    if args.backend == "torch":
        if args.checkpoint and not Path(args.checkpoint).expanduser().is_file():
            return f"--checkpoint {args.checkpoint} does not exist"
        if not args.checkpoint:
            from uninext_core.deploy.loading import shipped_weights

            if not shipped_weights("tiny").is_file():
                return (f"the package ships no weights yet ({shipped_weights('tiny')} is missing); pass --checkpoint "
                        f"<model .safetensors>")
    elif not args.engine_path:
        return f"--backend {args.backend} needs --engine-path (a folder written by uninext-export)"
    return None


def _wait_for(condition: Callable[[], bool], timeout_s: float, node: NodeProcess) -> bool:
    """Whether `condition()` became true within `timeout_s`; raises DemoError as soon as the node process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _check_alive(node)
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _check_alive(node: NodeProcess) -> None:
    code = node.exit_code()
    if code is not None:
        raise DemoError(f"perception_node exited with code {code} while the demo was running\n--- last lines of "
                        f"{node.log_path} ---\n{node.log_tail()}")


def _plan_template(video: DemoVideo, camera: SyntheticCamera, recorder: Recorder, *,
                   avoid_track: int) -> PlannedPrompt:
    """A template on the newest processed frame that shows an object (the node buffers the frames it processed)."""
    for observation in reversed(recorder.observations()[-20:]):
        published = camera.lookup(observation.stamp_ns)
        if published is not None and video.present[published.video_index].any():
            return choose_template(video, video_index=published.video_index, stamp_ns=published.stamp_ns,
                                   avoid_track=avoid_track)
    raise DemoError("no recently processed frame shows an object to draw a template box on")


def run_phases(*, video: DemoVideo, camera: SyntheticCamera, planner: ScriptedPlanner, recorder: Recorder,
               node: NodeProcess, seconds_per_phase: float, log: _Log) -> list[PhaseRecord]:
    """Start the camera, then give the three prompts in turn; returns what happened in each phase."""
    if not planner.wait_for_node(30.0):
        raise DemoError("the node's prompt topics were not discovered within 30 s")
    camera.start()
    log(f"camera: {camera.rate_hz:g} Hz on {camera.topic}, {video.num_frames}-frame video played back and forth")
    if not _wait_for(lambda: bool(recorder.observations()), FIRST_FRAME_TIMEOUT_S, node):
        raise DemoError(f"no instance array arrived within {FIRST_FRAME_TIMEOUT_S:.0f} s of the first frame")
    log("frames flow: the node answers with empty instance arrays until a prompt arrives")
    records: list[PhaseRecord] = []
    expression_target = -1
    for number, phase in enumerate(PHASES, start=1):
        if phase == "detect":
            planned = choose_classes(video)
        elif phase == "refer":
            planned = choose_expression(video)
            expression_target = planned.target_track
        else:
            planned = _plan_template(video, camera, recorder, avoid_track=expression_target)
        title = f"{number}/{len(PHASES)} {phase}: {planned.text}"
        on_frame = f" (frame stamped {planned.frame_stamp_ns})" if planned.kind == "template" else ""
        log(f"phase {title}{on_frame}: publishing on {PROMPT_TOPICS[planned.kind]}")
        outcome: PromptOutcome = planner.send(planned)
        _check_alive(node)
        if not outcome.accepted:
            log(f"phase {phase}: the node REFUSED the prompt: {outcome.reason}")
            records.append(PhaseRecord(planned, outcome, frames_published=0))
            continue
        log(f"phase {phase}: accepted as prompt {outcome.prompt_id}, task {outcome.task}; running "
            f"{seconds_per_phase:g} s")
        recorder.begin_phase(prompt_id=outcome.prompt_id, name=phase, title=title, task=outcome.task)
        published_before = camera.published_count()
        _wait_for(lambda: False, seconds_per_phase, node)
        published = camera.published_count() - published_before
        recorder.end_phase()
        answered = sum(1 for o in recorder.observations() if o.prompt_id == outcome.prompt_id)
        log(f"phase {phase}: done, {answered} of {published} published frames processed")
        records.append(PhaseRecord(planned, outcome, frames_published=published))
    camera.stop()
    _wait_for(lambda: False, DRAIN_S, node)
    return records


def _run(args: argparse.Namespace, isolation: RosIsolation, video: DemoVideo, log: _Log) -> int:
    out: Path = args.out
    node = NodeProcess(parameters={"checkpoint": args.checkpoint, "backend": args.backend,
                                   "engine_path": args.engine_path, "device": args.device},
                       log_path=out / "node.log", threads=args.threads)
    node.start()
    log(f"perception_node started (pid {node.pid}; log {node.log_path}); waiting until it is active")
    summaries: list[PhaseSummary] = []
    failure = ""
    try:
        # Python's own SIGINT handling: Ctrl-C raises KeyboardInterrupt here and the cleanup below runs (rclpy's
        # handler would invalidate the context under the running phases instead).
        with rclpy.init(signal_handler_options=SignalHandlerOptions.NO):
            camera = SyntheticCamera(video, rate_hz=args.rate)
            planner = ScriptedPlanner()
            recorder = Recorder(camera, out_dir=out, video_fps=args.rate,
                                phase_seconds=args.seconds_per_phase)
            executor = MultiThreadedExecutor(num_threads=3)
            for ros_node in (camera, planner, recorder):
                executor.add_node(ros_node)
            spinner = threading.Thread(target=executor.spin, name="demo_executor", daemon=True)
            spinner.start()
            try:
                node.wait_until_active(planner, timeout_s=args.startup_timeout)
                log("perception_node is active")
                records = run_phases(video=video, camera=camera, planner=planner, recorder=recorder, node=node,
                                     seconds_per_phase=args.seconds_per_phase, log=log)
                observations = recorder.observations()
                summaries = [summarize_phase(record, observations, camera.truth) for record in records]
            except (NodeStartError, DemoError) as error:
                failure = str(error)
            finally:
                recording = recorder.close()
                executor.shutdown(timeout_sec=5.0)
                spinner.join(timeout=5.0)
                for ros_node in (camera, planner, recorder):
                    ros_node.destroy_node()
    except ExternalShutdownException:
        failure = failure or "interrupted"
    finally:
        log("stopping perception_node (SIGINT)")
        code = node.stop()
    if failure:
        print(f"demo failed: {failure}", file=sys.stderr, flush=True)
        return 1
    run_info: dict[str, object] = {
        "checkpoint": args.checkpoint or "shipped (uninext_core/assets/uninext_tiny.safetensors)",
        "backend": args.backend, "device": args.device, "seed": args.seed, "frame_size": f"{args.size}x{args.size}",
        "camera_rate_hz": args.rate, "seconds_per_phase": args.seconds_per_phase,
        "torch_threads": args.threads or "default", "ros_domain_id": isolation.domain_id,
        "node_exit_code": code,
    }
    json_path, md_path = write_summary(out, summaries, run=run_info)
    print("\n" + format_table(summaries) + "\n", flush=True)
    log(f"wrote {recording.video or '(no video: no frame was answered)'} ({recording.frames_written} frames), "
        f"{len(recording.pngs)} PNG frames in {out / 'frames'}, {json_path}, {md_path}")
    refused = [s.phase for s in summaries if not s.accepted]
    if refused:
        log(f"WARNING: the node refused the prompts of phases {refused} (reasons above)")
    if code != 0:
        print(f"demo: perception_node exited with code {code} on SIGINT (expected 0)\n{node.log_tail()}",
              file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the demo (see the module docstring); returns the exit code."""
    args = build_parser().parse_args(argv)
    problem = _check_arguments(args)
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log = _Log()
    video = make_demo_video(seed=args.seed, size=args.size)
    log(f"synthetic video: seed {args.seed}, {args.size}x{args.size}, objects: {', '.join(video.descriptions)}")
    isolation = isolate_ros(domain_id=args.domain_id, log_dir=args.ros_log_dir)
    log(f"ROS isolation: ROS_DOMAIN_ID={isolation.domain_id}, discovery LOCALHOST, ROS_LOG_DIR={isolation.log_dir}")
    try:
        return _run(args, isolation, video, log)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    finally:
        isolation.cleanup()


if __name__ == "__main__":
    sys.exit(main())

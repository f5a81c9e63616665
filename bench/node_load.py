"""The perception node under camera load (issue #8): a 30 Hz camera, a model slower than the camera, for 60 s.

The real PerceptionNode runs in a child process, shaped like the `perception_node` executable's main() (rclpy.init,
a 4-thread MultiThreadedExecutor, configure + activate, spin until SIGINT) but built with the test suite's stand-in
session (tests/ros/fake_session.py: FakeProvider(delay_s=0.15) sleeps 150 ms per frame and returns one instance with
a mask). This process is the camera and the planner: it publishes 640x480 rgb8 frames at 30 Hz, each with a unique
stamp; it receives the instance arrays and /diagnostics; it calls set_prompt every 5 s and times the answer; it
samples the node's VmRSS from /proc every 0.5 s. After the load it lets the node go idle and reads its final frame
counters, then publishes again and interrupts the node with SIGINT while a frame is in flight.

Figures: processed-frame rate per 10 s window, drops (counted by the node) against received - processed, output
latency, RSS curve (min, max, growth after a 10 s warm-up), prompt answer times, SIGINT exit. One JSON line and a
table are printed and appended to bench/results/node_load.txt. tests/ros/test_node_load.py runs the same `run_load`
and asserts on the report.

    .venv/bin/python bench/node_load.py [--duration 60] [--rate 30] [--delay 0.15] [--size 640x480]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FAKE_SESSION = REPO / "tests" / "ros" / "fake_session.py"
RESULTS = REPO / "bench" / "results" / "node_load.txt"
NODE_NAME = "uninext_perception"


@dataclass(frozen=True)
class LoadSettings:
    """What the load run does.

    Attributes:
        duration_s: seconds of camera load.
        rate_hz: camera frame rate.
        delay_s: seconds the stand-in session sleeps per frame (the model's cost).
        height, width: frame size in pixels (rgb8).
        prompt_period_s: seconds between set_prompt calls during the load.
        window_s: length of the windows the output rate is counted in.
        warmup_s: RSS growth is measured from the end of this first part of the load.
        rss_period_s: seconds between VmRSS samples.
        diagnostics_period_s: the node's diagnostics_period parameter.
        sigint_load_s: seconds of renewed load before the SIGINT.
    """

    duration_s: float = 60.0
    rate_hz: float = 30.0
    delay_s: float = 0.15
    height: int = 480
    width: int = 640
    prompt_period_s: float = 5.0
    window_s: float = 10.0
    warmup_s: float = 10.0
    rss_period_s: float = 0.5
    diagnostics_period_s: float = 0.5
    sigint_load_s: float = 1.5


@dataclass(frozen=True)
class FrameCounters:
    """The node's counters of one camera as /diagnostics reported them."""

    received: int
    processed: int
    dropped: int
    rejected: int

    @property
    def unaccounted(self) -> int:
        """Frames received but neither processed, dropped nor rejected: parked or in flight (0 to 2 when sound)."""
        return self.received - self.processed - self.dropped - self.rejected


@dataclass
class LoadReport:
    """What a load run measured (times in seconds from the start of the load unless a name says otherwise).

    Attributes:
        settings: the run's settings.
        published: frames published during the load.
        final: the node's counters once it went idle after the load (None: no diagnostics arrived).
        during_load: the counters of every diagnostics message received during the load.
        outputs: instance arrays received during the load and until idle.
        unpublished_stamps: outputs whose header stamp was never published (0 when sound).
        stamps_increasing: output stamps strictly increase (newest frame first, never an older one after).
        window_rates_hz: instance arrays received per second in each `window_s` window of the load.
        latency_ms: receive time minus header stamp of each output (wall clock, both processes on one host).
        rss_kb: (seconds, VmRSS kB) samples of the node process.
        prompt_answers: (seconds to answer, accepted, prompt id) of each set_prompt call during the load.
        prompts_applied: every accepted prompt id appeared on a later instance array.
        sigint_exit_code: the node's exit status after SIGINT under load (None: it did not exit in 20 s).
        sigint_exit_s: seconds from SIGINT to exit.
        load_avg: 1-minute load average of the machine at the start and at the end.
    """

    settings: LoadSettings
    published: int = 0
    final: FrameCounters | None = None
    during_load: list[FrameCounters] = field(default_factory=list)
    outputs: int = 0
    unpublished_stamps: int = 0
    stamps_increasing: bool = False
    window_rates_hz: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    prompt_answers: list[tuple[float, bool, int]] = field(default_factory=list)
    prompts_applied: bool = False
    sigint_exit_code: int | None = None
    sigint_exit_s: float = 0.0
    load_avg: tuple[float, float] = (0.0, 0.0)

    @property
    def mean_rate_hz(self) -> float:
        return statistics.fmean(self.window_rates_hz) if self.window_rates_hz else 0.0

    @property
    def rate_spread(self) -> float:
        """Largest relative deviation of a window's rate from the mean rate (0.1 = 10 %)."""
        mean = self.mean_rate_hz
        return max(abs(r - mean) / mean for r in self.window_rates_hz) if mean > 0 else float("inf")

    @property
    def rss_growth_kb(self) -> int:
        """Largest VmRSS after the warm-up minus VmRSS at the end of the warm-up."""
        warm = [kb for t, kb in self.rss_kb if t <= self.settings.warmup_s]
        after = [kb for t, kb in self.rss_kb if t > self.settings.warmup_s]
        return max(after) - warm[-1] if warm and after else 0

    def rss_every(self, period_s: float) -> list[int]:
        """VmRSS kB of the first sample at or after 0, period_s, 2 period_s, ... (the RSS curve, thinned)."""
        marks = np.arange(0.0, self.settings.duration_s + 1e-9, period_s)
        return [next(kb for t, kb in self.rss_kb if t >= mark) for mark in marks
                if any(t >= mark for t, _ in self.rss_kb)]

    def summary(self) -> dict[str, object]:
        """The figures as one flat JSON-able dict."""
        rss = [kb for _, kb in self.rss_kb]
        answers = [s for s, _, _ in self.prompt_answers]
        latency = sorted(self.latency_ms)
        return {
            "frame": f"{self.settings.width}x{self.settings.height}", "camera_hz": self.settings.rate_hz,
            "session_delay_ms": self.settings.delay_s * 1e3, "duration_s": self.settings.duration_s,
            "published": self.published, **(asdict(self.final) if self.final else {"final": None}),
            "unaccounted_idle": self.final.unaccounted if self.final else None,
            "outputs": self.outputs, "unpublished_stamps": self.unpublished_stamps,
            "stamps_increasing": self.stamps_increasing,
            "max_unaccounted_during_load": max((c.unaccounted for c in self.during_load), default=None),
            "rate_hz_mean": round(self.mean_rate_hz, 3), "window_rates_hz": [round(r, 2) for r in self.window_rates_hz],
            "rate_spread_pct": round(100 * self.rate_spread, 1),
            "latency_ms_median": round(statistics.median(latency), 1) if latency else None,
            "latency_ms_p90": round(latency[int(0.9 * (len(latency) - 1))], 1) if latency else None,
            "rss_mb_min": round(min(rss) / 1024, 1) if rss else None,
            "rss_mb_max": round(max(rss) / 1024, 1) if rss else None,
            "rss_growth_after_warmup_mb": round(self.rss_growth_kb / 1024, 2),
            "rss_mb_every_10s": [round(kb / 1024, 1) for kb in self.rss_every(10.0)],
            "prompts": len(self.prompt_answers), "prompts_accepted": sum(a for _, a, _ in self.prompt_answers),
            "prompt_answer_ms_median": round(1e3 * statistics.median(answers), 1) if answers else None,
            "prompt_answer_ms_max": round(1e3 * max(answers), 1) if answers else None,
            "prompts_applied": self.prompts_applied,
            "sigint_exit_code": self.sigint_exit_code, "sigint_exit_s": round(self.sigint_exit_s, 2),
            "load_avg_1m": list(self.load_avg),
        }


# ------------------------------------------------------------------------------------------------ node process
def serve(namespace: str, delay_s: float, diagnostics_period_s: float) -> None:
    """Child process: the real PerceptionNode with FakeProvider(delay_s), run as the executable's main() runs it."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.parameter import Parameter

    from uninext_ros.perception_node import PerceptionNode, serve

    spec = importlib.util.spec_from_file_location("uninext_test_fake_session", FAKE_SESSION)
    fake = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fake  # dataclasses look their module up while the file executes
    spec.loader.exec_module(fake)
    try:
        with rclpy.init():
            node = PerceptionNode(namespace=namespace, session_provider=fake.FakeProvider(delay_s=delay_s),
                                  parameter_overrides=[Parameter("initial_classes", value="cup"),
                                                       Parameter("diagnostics_period", value=diagnostics_period_s)])
            serve(node, start=True, require_active=True, on_active=lambda: print("ready", flush=True))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


# ----------------------------------------------------------------------------------------------- camera/planner
def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


class _Camera:
    """Publishes `template` with a fresh, strictly increasing stamp every 1/rate s from construction until stopped."""

    def __init__(self, publisher, template, rate_hz: float) -> None:
        self._publisher, self._template, self._period = publisher, template, 1.0 / rate_hz
        self.stamps: list[int] = []
        self.stopped_at = float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.stopped_at = time.monotonic()

    def _run(self) -> None:
        from uninext_ros.conversions import ns_to_stamp

        next_at = time.monotonic()
        while not self._stop.is_set():
            stamp = max(time.time_ns(), self.stamps[-1] + 1 if self.stamps else 0)
            self._template.header.stamp = ns_to_stamp(stamp)
            self._publisher.publish(self._template)
            self.stamps.append(stamp)
            next_at += self._period
            self._stop.wait(max(0.0, next_at - time.monotonic()))


def _counters(status) -> FrameCounters:
    values = {kv.key: kv.value for kv in status.values}
    return FrameCounters(*(int(values[f"frames_{k}"]) for k in ("received", "processed", "dropped", "rejected")))


class _Output(NamedTuple):
    received_at: float  # monotonic seconds
    stamp_ns: int
    prompt_id: int
    latency_ms: float  # receive wall time minus header stamp


def run_load(settings: LoadSettings) -> LoadReport:
    """Start the node process, load it as the module docstring says, stop it with SIGINT; the measured figures.

    Raises:
        RuntimeError: the node process did not start, or never offered its image subscription and set_prompt.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from uninext_msgs.msg import InstanceArray

    from uninext_ros.conversions import rgb_to_image, stamp_to_ns
    from uninext_ros.qos import output_qos

    report = LoadReport(settings=settings, load_avg=(os.getloadavg()[0], 0.0))
    namespace = f"/load{uuid.uuid4().hex[:6]}"
    log = tempfile.NamedTemporaryFile("w+", prefix="node_load_", suffix=".log", delete=False)  # noqa: SIM115
    child = subprocess.Popen([sys.executable, __file__, "--serve", namespace, "--delay", str(settings.delay_s),
                              "--diagnostics-period", str(settings.diagnostics_period_s)],
                             stdout=subprocess.PIPE, stderr=log, text=True)

    def fail(what: str) -> RuntimeError:
        log.flush()
        return RuntimeError(f"{what}; node log {log.name}:\n" + Path(log.name).read_text()[-3000:])

    outputs: list[_Output] = []
    diagnostics: list[tuple[float, FrameCounters]] = []
    status_name = f"{namespace}/{NODE_NAME}: camera /"

    def on_instances(msg: InstanceArray) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        outputs.append(_Output(time.monotonic(), stamp, msg.prompt_id, (time.time_ns() - stamp) / 1e6))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == status_name:
                diagnostics.append((time.monotonic(), _counters(status)))

    try:
        if child.stdout.readline().strip() != "ready":
            raise fail("the node process did not start")
        with rclpy.init():
            peer = rclpy.create_node("load_camera", namespace=namespace)
            images = peer.create_publisher(Image, "image", 10)
            peer.create_subscription(InstanceArray, "instances", on_instances, output_qos())
            peer.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, output_qos())
            planner = _Planner(peer)
            executor = SingleThreadedExecutor()
            executor.add_node(peer)
            spinner = threading.Thread(target=executor.spin, name="load_executor", daemon=True)
            spinner.start()
            try:
                deadline = time.monotonic() + 60.0
                while images.get_subscription_count() == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                if images.get_subscription_count() == 0 or not planner.client.wait_for_service(timeout_sec=30.0):
                    raise fail("the node never subscribed to its images or offered set_prompt")
                rgb = np.random.default_rng(0).integers(0, 255, (settings.height, settings.width, 3), dtype=np.uint8)
                template = rgb_to_image(rgb, Header(frame_id="camera"))

                started = time.monotonic()
                rss = _RssSampler(child.pid, settings.rss_period_s, started)
                camera = _Camera(images, template, settings.rate_hz)
                report.prompt_answers = planner.ask_every(settings.prompt_period_s, until=started + settings.duration_s)
                camera.stop()
                rss.stop()
                report.rss_kb = rss.samples
                report.during_load = [c for t, c in diagnostics if started <= t <= camera.stopped_at]
                _wait_until_idle(settings, outputs, diagnostics)
                report.final = diagnostics[-1][1] if diagnostics else None

                again = _Camera(images, template, settings.rate_hz)
                time.sleep(settings.sigint_load_s)
                sigint_at = time.monotonic()
                child.send_signal(signal.SIGINT)
                try:
                    report.sigint_exit_code = child.wait(timeout=20.0)
                except subprocess.TimeoutExpired:
                    report.sigint_exit_code = None
                report.sigint_exit_s = time.monotonic() - sigint_at
                again.stop()
            finally:
                executor.shutdown(timeout_sec=5.0)
                spinner.join(timeout=5.0)
                peer.destroy_node()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()
    _summarise(report, outputs, started, set(camera.stamps), set(camera.stamps) | set(again.stamps))
    report.load_avg = (report.load_avg[0], os.getloadavg()[0])
    return report


class _Planner:
    """Calls set_prompt (a category prompt, a different class each time) and times the answers."""

    NAMES = ("mug", "cup", "laptop", "person")

    def __init__(self, peer) -> None:
        from uninext_msgs.srv import SetPrompt

        self.client = peer.create_client(SetPrompt, "set_prompt")

    def ask_every(self, period_s: float, *, until: float) -> list[tuple[float, bool, int]]:
        """One call every `period_s` from now until `until` (monotonic), the last at least period_s/2 before it;
        then sleeps until `until`. (seconds to answer, accepted, prompt id) per call; inf when unanswered in 10 s."""
        from uninext_msgs.msg import Prompt
        from uninext_msgs.srv import SetPrompt

        answers = []
        started = time.monotonic()
        while (due := started + (len(answers) + 1) * period_s) < until - period_s / 2:
            time.sleep(max(0.0, due - time.monotonic()))
            name = self.NAMES[len(answers) % len(self.NAMES)]
            asked = time.monotonic()
            future = self.client.call_async(SetPrompt.Request(prompt=Prompt(kind=Prompt.KIND_CATEGORIES,
                                                                            categories=[name])))
            while not future.done() and time.monotonic() - asked < 10.0:
                time.sleep(0.001)
            answer = future.result() if future.done() else None
            answers.append((time.monotonic() - asked if answer else float("inf"), bool(answer and answer.accepted),
                            int(answer.prompt_id) if answer else 0))
        time.sleep(max(0.0, until - time.monotonic()))
        return answers


class _RssSampler:
    """Samples VmRSS of process `pid` every `period_s` into (seconds since `started`, kB) until stopped."""

    def __init__(self, pid: int, period_s: float, started: float) -> None:
        self.samples: list[tuple[float, int]] = []
        self._pid, self._period, self._started = pid, period_s, started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss_sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = _rss_kb(self._pid)
            if kb is not None:
                self.samples.append((time.monotonic() - self._started, kb))
            self._stop.wait(self._period)


def _wait_until_idle(settings: LoadSettings, outputs: list[_Output], diagnostics: list) -> None:
    """Until no output came for 3 frame times and two diagnostics messages arrived after that (at most 30 s)."""
    quiet_s = 3 * settings.delay_s + 0.5
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and outputs and time.monotonic() - outputs[-1].received_at < quiet_s:
        time.sleep(0.05)
    idle_at = time.monotonic()
    while time.monotonic() < deadline and sum(t > idle_at for t, _ in diagnostics) < 2:
        time.sleep(0.05)


def _summarise(report: LoadReport, outputs: list[_Output], started: float, load_stamps: set[int],
               all_stamps: set[int]) -> None:
    settings = report.settings
    report.published = len(load_stamps)
    in_load = [o for o in outputs if o.stamp_ns in load_stamps]
    report.outputs = len(in_load)
    report.unpublished_stamps = sum(o.stamp_ns not in all_stamps for o in outputs)
    report.stamps_increasing = all(a.stamp_ns < b.stamp_ns for a, b in itertools.pairwise(in_load))
    windows = int(settings.duration_s // settings.window_s)
    report.window_rates_hz = [
        sum(k * settings.window_s <= o.received_at - started < (k + 1) * settings.window_s for o in in_load)
        / settings.window_s for k in range(windows)]
    report.latency_ms = [o.latency_ms for o in in_load]
    accepted = [prompt_id for _, ok, prompt_id in report.prompt_answers if ok]
    seen = {o.prompt_id for o in in_load}
    report.prompts_applied = bool(accepted) and all(prompt_id in seen for prompt_id in accepted)


# --------------------------------------------------------------------------------------------------------- CLI
def _table(summary: dict[str, object]) -> str:
    rows = [
        ("frames published / received by the node", f"{summary['published']} / {summary.get('received')}"),
        ("processed / dropped / rejected", f"{summary.get('processed')} / {summary.get('dropped')} / "
                                           f"{summary.get('rejected')}"),
        ("received - processed - dropped - rejected (idle)", summary["unaccounted_idle"]),
        ("max parked + in flight during load", summary["max_unaccounted_during_load"]),
        ("output rate Hz: mean, per 10 s window", f"{summary['rate_hz_mean']}  {summary['window_rates_hz']}"),
        ("largest window deviation", f"{summary['rate_spread_pct']} %"),
        ("output latency ms: median, p90", f"{summary['latency_ms_median']}, {summary['latency_ms_p90']}"),
        ("node RSS MB: min, max, growth after warm-up", f"{summary['rss_mb_min']}, {summary['rss_mb_max']}, "
                                                      f"{summary['rss_growth_after_warmup_mb']}"),
        ("node RSS MB every 10 s", summary["rss_mb_every_10s"]),
        ("set_prompt answers ms: median, max", f"{summary['prompt_answer_ms_median']}, "
                                               f"{summary['prompt_answer_ms_max']} ({summary['prompts_accepted']}/"
                                               f"{summary['prompts']} accepted; applied {summary['prompts_applied']})"),
        ("SIGINT under load: exit code, seconds", f"{summary['sigint_exit_code']}, {summary['sigint_exit_s']}"),
    ]
    return "\n".join(f"{name:<52}{value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of camera load")
    parser.add_argument("--rate", type=float, default=30.0, help="camera frame rate (Hz)")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds per frame of the stand-in session")
    parser.add_argument("--size", default="640x480", help="frame WIDTHxHEIGHT")
    parser.add_argument("--no-save", action="store_true", help=f"do not append to {RESULTS.relative_to(REPO)}")
    parser.add_argument("--serve", default="", help=argparse.SUPPRESS)
    parser.add_argument("--diagnostics-period", type=float, default=0.5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.delay, args.diagnostics_period)
        return
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(np.random.default_rng().integers(1, 101)))
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_shm.xml"))
    width, height = (int(v) for v in args.size.split("x"))
    report = run_load(LoadSettings(duration_s=args.duration, rate_hz=args.rate, delay_s=args.delay, height=height,
                                   width=width))
    summary = {"date": datetime.datetime.now().isoformat(timespec="seconds"), **report.summary()}
    line, table = json.dumps(summary), _table(summary)
    print(line, "", table, sep="\n", flush=True)
    if not args.no_save:
        with RESULTS.open("a") as results:
            results.write(f"{line}\n{table}\n\n")


if __name__ == "__main__":
    main()

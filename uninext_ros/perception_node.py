"""The perception node: camera frames and prompts in, tracked instances out, for one or several cameras.

A lifecycle node (yolo_ros layout):
  configure  reads the parameters, loads the model once and builds one session per camera, creates publishers;
  activate   subscribes to the cameras and the prompt topics, offers the services, starts processing frames;
  deactivate stops processing (after the frame in flight; a parked frame is dropped and counted) and drops
             subscriptions and services (the model stays loaded);
  cleanup    releases the sessions and the model (GPU memory included).

Threads (spin the node with a multi-threaded executor, as main() does): an image callback parks the newest message
of its camera (an older unprocessed frame is dropped and counted); then, unless another image callback is already
processing, it processes the newest frame of each camera in turn until none is parked, in the executor thread it runs
in: one frame at a time, and no hand-off to another thread (the wake-up of a worker thread cost about 0.5 ms a frame
at 640x480 in bench/node_overhead.py on the shared 2-core machine). Prompt topics, services, parameter changes and
diagnostics run in their own callback group on the other executor threads, so they answer while a frame is being
processed (a prompt change waits at most for the frame in flight, then applies to the next one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PolygonStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from uninext_msgs.msg import InstanceArray, Prompt
from uninext_msgs.srv import Reset, SetPrompt

from uninext_core.prompts import TemplatePrompt
from uninext_core.visualize import draw_instances
from uninext_ros.camera_channel import CameraChannel, FrameSlot
from uninext_ros.conversions import compressed_to_rgb, image_to_rgb, instances_to_msg, rgb_to_image, stamp_to_ns
from uninext_ros.diagnostics import channel_status
from uninext_ros.params import PARAMETERS, SPECS, NodeParams
from uninext_ros.prompt_conversions import (
    PromptRequest,
    classes_from_string,
    expression_from_string,
    msg_from_request,
    request_from_msg,
    template_from_polygon,
)
from uninext_ros.qos import image_qos, latched_qos, output_qos, prompt_input_qos
from uninext_ros.session_provider import ModelSessionProvider, SessionBundle, SessionProvider


class PerceptionNode(LifecycleNode):
    """UNINEXT perception for ROS 2 (see the module docstring and the README for topics and parameters).

    Args:
        session_provider: builds the sessions from the parameters (uninext_ros.session_provider); tests inject
            their own.
        node_name, kwargs: passed to rclpy's Node (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str = "uninext_perception", *, session_provider: SessionProvider,
                 **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self._provider = session_provider
        self._params: NodeParams | None = None
        self._bundle: SessionBundle | None = None
        self._channels: dict[str, CameraChannel] = {}
        self._active_entities: list[Any] = []
        self._diagnostics_publisher = None
        self._diagnostics_timer = None
        self._stop = threading.Event()  # set while frames must not be processed (not active, or stopping)
        self._stop.set()
        self._processing = threading.Lock()  # held by the image callback that processes frames
        self._turn = 0  # round robin over the cameras
        self._last_prompt_error = ""
        self._image_group = ReentrantCallbackGroup()
        self._control_group = MutuallyExclusiveCallbackGroup()
        self.add_on_set_parameters_callback(self._validate_parameter_change)
        self.add_post_set_parameters_callback(self._apply_parameter_change)

    # ---------------------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._params = self._read_parameters()
            self._bundle = self._provider.build(self._params)
        except Exception as error:  # the node boundary: report, stay unconfigured, keep running
            self.get_logger().error(f"configure failed: {error}")
            self._params, self._bundle = None, None
            return TransitionCallbackReturn.FAILURE
        missing = [c for c in self._params.cameras if c not in self._bundle.sessions]
        if missing:
            self.get_logger().error(f"configure failed: the session provider built no session for cameras {missing}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        for camera in self._params.cameras:
            channel = CameraChannel(namespace=camera, session=self._bundle.sessions[camera])
            channel.instances_publisher = self.create_publisher(InstanceArray, channel.topic("instances"),
                                                                output_qos())
            channel.debug_publisher = self.create_publisher(Image, channel.topic("debug_image"), output_qos())
            channel.current_prompt_publisher = self.create_publisher(Prompt, channel.topic("prompt/current"),
                                                                     latched_qos())
            self._channels[camera] = channel
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", output_qos())
        self.get_logger().info(f"configured: {self._bundle.description}; cameras {list(self._params.cameras)}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        params = self._params
        assert params is not None  # activate follows a successful configure
        for channel in self._channels.values():
            channel.discard()  # a frame parked by a callback that ran after the last deactivation is stale now
        image_type = CompressedImage if params.use_compressed else Image
        image_topic = params.image_topic.strip("/") + ("/compressed" if params.use_compressed else "")
        qos = image_qos(reliability=params.image_reliability, depth=params.image_depth)
        for channel in self._channels.values():
            channel.subscription = self.create_subscription(
                image_type, channel.topic(image_topic), lambda msg, c=channel: self._on_image(c, msg), qos,
                callback_group=self._image_group)
            self._active_entities.append(channel.subscription)
        group = self._control_group
        self._active_entities += [
            self.create_subscription(Prompt, "prompt", self._on_prompt_msg, prompt_input_qos(), callback_group=group),
            self.create_subscription(String, "prompt/text", self._on_prompt_text, prompt_input_qos(),
                                     callback_group=group),
            self.create_subscription(String, "prompt/classes", self._on_prompt_classes, prompt_input_qos(),
                                     callback_group=group),
            self.create_subscription(PolygonStamped, "prompt/roi", self._on_prompt_roi, prompt_input_qos(),
                                     callback_group=group),
            self.create_service(SetPrompt, "set_prompt", self._on_set_prompt, callback_group=group),
            self.create_service(Reset, "reset", self._on_reset, callback_group=group),
        ]
        self._diagnostics_timer = self.create_timer(params.diagnostics_period, self._publish_diagnostics,
                                                    callback_group=group)
        self._stop.clear()
        if params.initial_classes.strip():
            initial = params.initial_classes
            accepted, reason, _ = self._handle_prompt_safely(lambda: classes_from_string(initial))
            if not accepted:
                self.get_logger().error(f"initial_classes rejected: {reason}")
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_processing()
        self._destroy_active_entities()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.stop()
        return TransitionCallbackReturn.SUCCESS

    def stop(self) -> None:
        """Stop processing and free everything (also used on SIGINT, where no transition runs)."""
        self._stop_processing()
        self._destroy_active_entities()
        self._release()

    # ------------------------------------------------------------------------------------------- internals
    def _read_parameters(self) -> NodeParams:
        return NodeParams.from_values({spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS})

    def _release(self) -> None:
        for channel in self._channels.values():
            for publisher in (channel.instances_publisher, channel.debug_publisher, channel.current_prompt_publisher):
                if publisher is not None:
                    self.destroy_publisher(publisher)
        self._channels = {}
        if self._diagnostics_publisher is not None:
            self.destroy_publisher(self._diagnostics_publisher)
            self._diagnostics_publisher = None
        if self._bundle is not None:
            self._bundle.release()
        self._bundle, self._params = None, None

    def _destroy_active_entities(self) -> None:
        for entity in self._active_entities:
            if hasattr(entity, "srv_type"):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._active_entities = []
        for channel in self._channels.values():
            channel.subscription = None
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None

    def _stop_processing(self) -> None:
        """No frame is processed after this returns: waits for the frame in flight, if any."""
        self._stop.set()
        if self._processing.acquire(timeout=30.0):
            self._processing.release()
        for channel in self._channels.values():
            channel.discard()  # counted as dropped, so received = processed + dropped + rejected once stopped

    # ---------------------------------------------------------------------------------------------- frames
    def _on_image(self, channel: CameraChannel, msg: Image | CompressedImage) -> None:
        channel.offer(msg)
        while not self._stop.is_set():
            if not self._processing.acquire(blocking=False):
                return  # the callback processing frames takes this one: it looks again after letting go
            try:
                self._process_parked()
            finally:
                self._processing.release()
            if not any(c.has_frame() for c in self._channels.values()):
                return
            # a frame was parked after the last look but before the release: process it here

    def _process_parked(self) -> None:
        """The newest parked frame of each camera in turn, until no camera has one (or processing stops)."""
        channels = list(self._channels.values())
        while True:
            took = False
            for offset in range(len(channels)):
                if self._stop.is_set():
                    return  # frames still parked are discarded (and counted) by _stop_processing
                channel = channels[(self._turn + offset) % len(channels)]
                slot = channel.take()
                if slot is not None:
                    took = True
                    self._process(channel, slot)
            self._turn += 1
            if not took:
                return

    def _process(self, channel: CameraChannel, slot: FrameSlot) -> None:
        msg = slot.msg
        stats = channel.stats
        try:
            frame = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ValueError as error:
            self._reject_frame(channel, f"frame {stamp_to_ns(msg.header.stamp)} rejected: {error}")
            return
        started = time.monotonic()
        try:
            with channel.session_lock:
                instances = channel.session.process(frame, stamp_to_ns(msg.header.stamp))
        except ValueError as error:
            self._reject_frame(channel, f"frame {stamp_to_ns(msg.header.stamp)} rejected: {error}")
            return
        except Exception as error:  # the node boundary: log with context, keep serving
            stats.rejected += 1
            stats.last_error = f"processing failed: {type(error).__name__}: {error}"
            self.get_logger().error(f"[{channel.namespace or '/'}] {stats.last_error}")
            return
        finished = time.monotonic()
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns > 0:
            latency_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
        else:  # no capture stamp: measure from arrival instead
            latency_ms = (finished - slot.received_at) * 1e3
        channel.instances_publisher.publish(instances_to_msg(instances, msg.header, latency_ms=latency_ms))
        if channel.debug_publisher.get_subscription_count() > 0:
            channel.debug_publisher.publish(rgb_to_image(draw_instances(frame, instances), msg.header))
        stats.processed += 1
        stats.processed_at.append(finished)
        stats.latency_ms.append(latency_ms)
        stats.session_ms.append((finished - started) * 1e3)

    def _reject_frame(self, channel: CameraChannel, reason: str) -> None:
        channel.stats.rejected += 1
        channel.stats.last_error = reason
        self.get_logger().warning(f"[{channel.namespace or '/'}] {reason}", throttle_duration_sec=2.0)

    # --------------------------------------------------------------------------------------------- prompts
    def _handle_prompt(self, request: PromptRequest) -> tuple[bool, str, int]:
        """Give the prompt to the camera(s) it names; (accepted, reason, prompt_id)."""
        if request.camera:
            if request.camera not in self._channels:
                return False, f"camera {request.camera!r} is not served; cameras: {list(self._channels)}", 0
            targets = [self._channels[request.camera]]
        else:
            targets = list(self._channels.values())
        if isinstance(request.prompt, TemplatePrompt) and len(targets) > 1:
            return False, (f"a template prompt refers to one camera's frame: set Prompt.camera to one of "
                           f"{list(self._channels)}"), 0
        prompt_id = request.prompt_id
        accepted_on: list[str] = []
        for channel in targets:
            try:
                with channel.session_lock:
                    prompt_id = channel.session.set_prompt(request.prompt, task=request.task, prompt_id=prompt_id)
                    task = channel.session.task
            except ValueError as error:
                done = f" (already applied on cameras {accepted_on})" if accepted_on else ""
                return False, f"{error}{done}", 0
            accepted_on.append(channel.namespace)
            header = self._header_now()
            channel.current_prompt_publisher.publish(msg_from_request(request, prompt_id=prompt_id, task=task,
                                                                      header=header))
        return True, "", int(prompt_id)

    def _handle_prompt_safely(self, make_request: Callable[[], PromptRequest]) -> tuple[bool, str, int]:
        try:
            request = make_request()
        except ValueError as error:
            accepted, reason, prompt_id = False, str(error), 0
        else:
            accepted, reason, prompt_id = self._handle_prompt(request)
        if accepted:
            self._last_prompt_error = ""
            self.get_logger().info(f"prompt {prompt_id} accepted")
        else:
            self._last_prompt_error = reason
            self.get_logger().warning(f"prompt rejected: {reason}")
        return accepted, reason, prompt_id

    def _on_prompt_msg(self, msg: Prompt) -> None:
        self._handle_prompt_safely(lambda: request_from_msg(msg))

    def _on_prompt_text(self, msg: String) -> None:
        self._handle_prompt_safely(lambda: expression_from_string(msg.data))

    def _on_prompt_classes(self, msg: String) -> None:
        self._handle_prompt_safely(lambda: classes_from_string(msg.data))

    def _on_prompt_roi(self, msg: PolygonStamped) -> None:
        self._handle_prompt_safely(lambda: template_from_polygon(msg))

    def _on_set_prompt(self, request: SetPrompt.Request, response: SetPrompt.Response) -> SetPrompt.Response:
        response.accepted, response.reason, response.prompt_id = self._handle_prompt_safely(
            lambda: request_from_msg(request.prompt))
        return response

    def _on_reset(self, request: Reset.Request, response: Reset.Response) -> Reset.Response:
        if request.camera and request.camera not in self._channels:
            response.success = False
            response.message = f"camera {request.camera!r} is not served; cameras: {list(self._channels)}"
            return response
        targets = [self._channels[request.camera]] if request.camera else list(self._channels.values())
        for channel in targets:
            with channel.session_lock:
                channel.session.reset(clear_prompt=request.clear_prompt)
        response.success = True
        response.message = (f"reset {len(targets)} camera(s)" + (", prompt cleared" if request.clear_prompt else ""))
        return response

    # ------------------------------------------------------------------------------------ parameters, status
    def _validate_parameter_change(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            spec = SPECS.get(parameter.name)
            if spec is None:
                continue
            if self._params is not None and not spec.runtime:
                return SetParametersResult(successful=False, reason=(
                    f"{parameter.name} takes effect at configure: deactivate and clean up the node first"))
            problem = spec.check(parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _apply_parameter_change(self, parameters: list[Parameter]) -> None:
        if self._params is None or not any(SPECS.get(p.name) and SPECS[p.name].runtime for p in parameters):
            return
        self._params = self._read_parameters()
        config = self._provider.session_config(self._params)
        for channel in self._channels.values():
            with channel.session_lock:
                channel.session.update_config(config)
        self.get_logger().info("thresholds updated: " + ", ".join(f"{p.name}={p.value}" for p in parameters))

    def _publish_diagnostics(self) -> None:
        if self._diagnostics_publisher is None or self._bundle is None:
            return
        array = DiagnosticArray(header=self._header_now())
        for channel in self._channels.values():
            array.status.append(channel_status(node_name=self.get_fully_qualified_name(), channel=channel,
                                               backend=self._bundle.description,
                                               last_prompt_error=self._last_prompt_error))
        self._diagnostics_publisher.publish(array)

    def _header_now(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg())


def serve(node: PerceptionNode, *, start: bool, require_active: bool = False,
          on_active: Callable[[], None] | None = None) -> None:
    """Spin `node` on a multi-threaded executor (inference on one thread, prompts and services on the others) until
    shutdown, then stop and destroy it.

    Args:
        node: the perception node.
        start: configure and activate it first (a failed configure leaves it unconfigured and still spinning, so the
            lifecycle services can retry, unless `require_active`).
        require_active: raise SystemExit when it cannot be brought up (benchmarks and tests).
        on_active: called once the node is active.
    """
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        if start:
            active = node.trigger_configure() == TransitionCallbackReturn.SUCCESS and \
                node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            if require_active and not active:
                raise SystemExit("the node did not configure and activate")
            if active and on_active is not None:
                on_active()
        spin_until_shutdown(executor, node.context)
    finally:
        node.stop()
        node.destroy_node()


def spin_until_shutdown(executor: Executor, context: Context) -> None:
    """`executor.spin()`, where a shutdown that lands while the executor builds its wait set is a normal stop.

    Why: SIGINT shuts the context down from the signal handler; when that happens between `spin`'s `context.ok()`
    check and the wait set's creation, rclpy raises RCLError ("the given context is not valid") instead of returning,
    and the node would exit with status 1 after a clean Ctrl-C (seen once in a 60 s load run). An RCLError while the
    context is still valid is a real error and propagates.
    """
    try:
        executor.spin()
    except _rclpy.RCLError:
        if context.ok():
            raise


def main(args: list[str] | None = None) -> None:
    """`ros2 run uninext_ros perception_node`: the node with the model named by its parameters; it configures and
    activates itself unless the `autostart` parameter is false. Stops cleanly on SIGINT."""
    try:
        with rclpy.init(args=args):
            node = PerceptionNode(session_provider=ModelSessionProvider())
            serve(node, start=node.get_parameter("autostart").value)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()

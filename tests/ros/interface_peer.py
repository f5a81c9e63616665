"""Second process for tests/ros/test_interfaces.py: echoes every uninext_msgs type and serves both services.

Run as `python interface_peer.py <namespace>`; it prints "ready" once everything is created and stops on SIGINT.
Topics: <ns>/<Type>/in -> <ns>/<Type>/out (the same message, unchanged). Services: <ns>/set_prompt answers
accepted=True with the prompt's id (or 100 when it is 0) for category prompts with at least one name, otherwise
accepted=False with a reason; <ns>/reset answers success=True and echoes the camera in its message.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from uninext_msgs.msg import BoundingBox, Instance, InstanceArray, Prompt, RleMask, RoiTemplate
from uninext_msgs.srv import Reset, SetPrompt

MESSAGE_TYPES = (BoundingBox, RleMask, RoiTemplate, Instance, InstanceArray, Prompt)


class InterfacePeer(Node):
    def __init__(self, namespace: str) -> None:
        super().__init__("uninext_interface_peer")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._echo_publishers = {}
        self._echo_subscriptions = []
        for msg_type in MESSAGE_TYPES:
            name = msg_type.__name__
            publisher = self.create_publisher(msg_type, f"{namespace}/{name}/out", qos)
            self._echo_publishers[name] = publisher
            self._echo_subscriptions.append(
                self.create_subscription(msg_type, f"{namespace}/{name}/in", publisher.publish, qos))
        self.create_service(SetPrompt, f"{namespace}/set_prompt", self._on_set_prompt)
        self.create_service(Reset, f"{namespace}/reset", self._on_reset)

    def _on_set_prompt(self, request: SetPrompt.Request, response: SetPrompt.Response) -> SetPrompt.Response:
        prompt = request.prompt
        if prompt.kind == Prompt.KIND_CATEGORIES and len(prompt.categories) > 0:
            response.accepted = True
            response.prompt_id = prompt.prompt_id or 100
        else:
            response.accepted = False
            response.reason = f"kind {prompt.kind} with {len(prompt.categories)} categories"
        return response

    def _on_reset(self, request: Reset.Request, response: Reset.Response) -> Reset.Response:
        response.success = True
        response.message = f"reset camera={request.camera!r} clear_prompt={request.clear_prompt}"
        return response


def main() -> None:
    namespace = sys.argv[1]
    try:
        with rclpy.init():
            node = InterfacePeer(namespace)
            print("ready", flush=True)
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()

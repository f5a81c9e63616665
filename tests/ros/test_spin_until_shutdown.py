"""`spin_until_shutdown`: a shutdown that lands while the executor builds its wait set (SIGINT racing rclpy's spin
loop, which raised RCLError and made the node exit with status 1 once under load) is a normal stop; the same error
on a live context is not swallowed. Real rclpy contexts; the executor stands in for the moment of the race."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.context import Context
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

from uninext_ros.perception_node import spin_until_shutdown


class _RaisingExecutor:
    """spin() raises the RCLError rclpy raises for an invalid context, optionally after shutting the context down."""

    def __init__(self, context: Context, *, shut_down_first: bool) -> None:
        self.context = context
        self.shut_down_first = shut_down_first

    def spin(self) -> None:
        if self.shut_down_first:
            rclpy.shutdown(context=self.context)
        raise _rclpy.RCLError("failed to initialize wait set: the given context is not valid")


def test_a_shutdown_during_spin_is_a_normal_stop() -> None:
    context = Context()
    rclpy.init(context=context)
    spin_until_shutdown(_RaisingExecutor(context, shut_down_first=True), context)  # returns, no exception
    assert not context.ok()


def test_the_error_on_a_live_context_propagates() -> None:
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(_rclpy.RCLError, match="context is not valid"):
            spin_until_shutdown(_RaisingExecutor(context, shut_down_first=False), context)
        assert context.ok()
    finally:
        rclpy.shutdown(context=context)

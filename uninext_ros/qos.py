"""QoS profiles of the perception node, made in one place so tests and the node agree.

Images: keep-last with a small depth, best effort by default (a late frame is worth nothing; the node always takes
the newest one). Prompt inputs: reliable and *volatile*: a transient-local subscription would be incompatible with
the volatile publishers most planners (and `rclpy` defaults) create, and the prompts would silently never arrive; a
volatile subscription matches every publisher. The node's own "current prompt" topic is transient-local (latched), so
late subscribers and tools see the prompt in force. Outputs: reliable, depth 10.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY_CHOICES: tuple[str, ...] = ("best_effort", "reliable")


def image_qos(*, reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Camera input: keep-last `depth`, best effort or reliable."""
    if reliability not in RELIABILITY_CHOICES:
        raise ValueError(f"image reliability {reliability!r} is not one of {list(RELIABILITY_CHOICES)}")
    if depth < 1:
        raise ValueError(f"image QoS depth must be >= 1, got {depth}")
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


def prompt_input_qos() -> QoSProfile:
    """Prompt topics the node listens to: reliable, volatile (matches volatile and transient-local publishers)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def latched_qos() -> QoSProfile:
    """The current prompt the node republishes: reliable, transient local, depth 1."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def output_qos() -> QoSProfile:
    """Instance arrays, debug images, diagnostics: reliable, volatile, depth 10."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)

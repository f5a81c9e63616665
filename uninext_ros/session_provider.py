"""How the node gets its sessions: a `SessionProvider` builds one session per camera (one model shared by all).

The node depends only on this small contract, so tests can hand it sessions of their own and deployments can swap
backends without touching the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from uninext_ros.params import NodeParams


@dataclass
class SessionBundle:
    """Sessions keyed by camera namespace, a one-line description for logs/diagnostics, and how to free them.

    Each session follows uninext_core.tasks.session.Session: set_prompt, process, reset, update_config, and the
    prompt / prompt_id / task properties.
    """

    sessions: dict[str, Any]
    description: str
    release: Callable[[], None] = field(default=lambda: None)


class SessionProvider(Protocol):
    """Builds the sessions from the node parameters and maps run-time parameters to a session configuration."""

    def build(self, params: NodeParams) -> SessionBundle:
        """Load the model once and make one session per camera in params.cameras (raises with a clear reason)."""
        ...

    def session_config(self, params: NodeParams) -> Any:
        """The session configuration (thresholds, tracker settings, masks) for these parameter values."""
        ...

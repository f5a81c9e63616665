"""diagnostic_msgs/DiagnosticStatus of one camera: rate, latency, drops, rejections, backend and prompt."""

from __future__ import annotations

import statistics

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from uninext_ros.camera_channel import CameraChannel


def channel_status(*, node_name: str, channel: CameraChannel, backend: str, last_prompt_error: str) -> DiagnosticStatus:
    """OK while frames flow; WARN when nothing was processed yet, frames are being rejected or a prompt was refused."""
    stats = channel.stats
    session = channel.session
    prompt_id = getattr(session, "prompt_id", 0) or 0
    latency = statistics.median(stats.latency_ms) if stats.latency_ms else 0.0
    session_ms = statistics.median(stats.session_ms) if stats.session_ms else 0.0
    values = {
        "rate_hz": f"{stats.rate_hz():.2f}",
        "latency_ms_median": f"{latency:.1f}",
        "session_ms_median": f"{session_ms:.1f}",
        "frames_received": str(stats.received),
        "frames_processed": str(stats.processed),
        "frames_dropped": str(stats.dropped),
        "frames_rejected": str(stats.rejected),
        "last_error": stats.last_error,
        "backend": backend,
        "task": str(getattr(session, "task", "") or ""),
        "prompt_id": str(prompt_id),
        "prompt": _describe_prompt(getattr(session, "prompt", None)),
        "last_prompt_error": last_prompt_error,
    }
    if stats.rejected and stats.last_error:
        level, message = DiagnosticStatus.WARN, stats.last_error
    elif last_prompt_error:
        level, message = DiagnosticStatus.WARN, f"prompt rejected: {last_prompt_error}"
    elif not prompt_id:
        level, message = DiagnosticStatus.OK, "waiting for a prompt"
    elif stats.processed == 0:
        level, message = DiagnosticStatus.WARN, "no frame processed yet"
    else:
        level, message = DiagnosticStatus.OK, f"{stats.rate_hz():.1f} Hz, {latency:.0f} ms"
    camera = channel.namespace or "/"
    return DiagnosticStatus(level=level, name=f"{node_name}: camera {camera}", message=message,
                            hardware_id=f"camera {camera}",
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def _describe_prompt(prompt: object) -> str:
    if prompt is None:
        return ""
    names = getattr(prompt, "names", None)
    if names is not None:
        return "classes: " + ", ".join(names)[:200]
    text = getattr(prompt, "text", None)
    if text is not None:
        return f"expression: {text[:200]}"
    targets = getattr(prompt, "targets", ())
    return f"template: {len(targets)} target(s) on frame {getattr(prompt, 'frame_stamp_ns', '?')}"

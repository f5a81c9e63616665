"""Prompt scenarios for bags: which prompt is in force from when, read from YAML or from a bag's prompt topic.

Scenario file (times in seconds after the first image's header stamp; every entry one prompt):

    prompts:
      - time: 0.0
        task: mot                        # optional: the kind's default otherwise
        classes: [person, red mug]       # a category prompt ...
      - time: 4.0
        expression: the red mug on the left   # ... or an expression ...
      - time: 6.5
        task: vos
        templates:                       # ... or targets on the frame at that time
          - {object_id: 1, box: [10, 20, 50, 80], label: mug}
          - {object_id: 2, mask: masks/00065.png, mask_value: 2}   # palette PNG (relative to this file)

A prompt applies from the first frame at or after its time. A template prompt refers to the first frame at or after
its time and takes effect right after that frame (the frame must be seen before a target can be drawn on it), as
when a prompt message arrives just after its frame on a robot. Errors name the file and the line of the entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from uninext_core.data.palette_masks import read_palette_png
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, TemplateTarget
from uninext_ros.prompt_conversions import PromptRequest, request_from_msg

KIND_TASKS = {"classes": ("detection", "instance_segmentation", "mot", "mots", "vis"),
              "expression": ("rec", "res", "rvos"), "templates": ("sot", "vos")}
_ENTRY_KEYS = {"time", "task", "classes", "expression", "templates", "prompt_id"}
_TARGET_KEYS = {"object_id", "box", "mask", "mask_value", "label"}


@dataclass(frozen=True)
class ScheduledPrompt:
    """A prompt and when it applies.

    Attributes:
        request: the prompt (templates: frame_stamp_ns filled by `place_prompts`).
        time_ns: when it was issued: scenario time after the first frame, or the bag's log time.
        source: "<file>:<line>" or "<bag> <topic> message <k>", named in errors.
        relative: time_ns counts from the first frame's stamp (scenario) rather than on the log clock (bag).
    """

    request: PromptRequest
    time_ns: int
    source: str
    relative: bool


def _line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _target(raw: Any, *, where: str, folder: Path) -> TemplateTarget:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a template must be a mapping with object_id, box and/or mask, got {raw!r}")
    unknown = sorted(set(raw) - _TARGET_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown template keys {unknown}; expected some of {sorted(_TARGET_KEYS)}")
    mask = None
    if "mask" in raw:
        path = folder / str(raw["mask"])
        label_map = read_palette_png(path, record=where)
        value = raw.get("mask_value")
        mask = label_map == int(value) if value is not None else label_map > 0
    box = raw.get("box")
    if box is not None and (not isinstance(box, list) or len(box) != 4):
        raise ValueError(f"{where}: box must be [x_min, y_min, x_max, y_max] in pixels, got {box!r}")
    return TemplateTarget(object_id=int(raw.get("object_id", 1)), box_xyxy=None if box is None else tuple(box),
                          mask=mask, label=str(raw.get("label", "")))


def _entry(raw: Any, *, where: str, folder: Path) -> ScheduledPrompt:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a prompt entry must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected time, task and one of classes / expression / "
                         f"templates")
    kinds = [k for k in ("classes", "expression", "templates") if k in raw]
    if len(kinds) != 1:
        raise ValueError(f"{where}: give exactly one of classes, expression, templates (got {kinds or 'none'})")
    time_s = raw.get("time")
    if isinstance(time_s, bool) or not isinstance(time_s, int | float) or not math.isfinite(time_s) or time_s < 0:
        raise ValueError(f"{where}: time must be a number of seconds >= 0, got {time_s!r}")
    task = raw.get("task")
    if task is not None and task not in KIND_TASKS[kinds[0]]:
        raise ValueError(f"{where}: task {task!r} does not fit a {kinds[0]} prompt; expected one of "
                         f"{list(KIND_TASKS[kinds[0]])}")
    if kinds[0] == "classes":
        names = raw["classes"]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        prompt: Any = CategoryPrompt(tuple(str(n) for n in names))
    elif kinds[0] == "expression":
        prompt = ExpressionPrompt(str(raw["expression"]))
    else:
        targets = raw["templates"]
        if not isinstance(targets, list) or not targets:
            raise ValueError(f"{where}: templates must be a non-empty list")
        prompt = TemplatePrompt(tuple(_target(t, where=where, folder=folder) for t in targets), frame_stamp_ns=0)
    prompt_id = raw.get("prompt_id")
    request = PromptRequest(prompt, task=task, prompt_id=None if prompt_id is None else int(prompt_id))
    return ScheduledPrompt(request, round(float(time_s) * 1e9), where, relative=True)


def read_scenario(path: str | Path) -> list[ScheduledPrompt]:
    """The prompts of a scenario file, in file order (validated: kinds, tasks, names, boxes, masks).

    Raises:
        ValueError: "<file>:<line>: reason" for the first bad entry, or a file that is no scenario.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"scenario {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"scenario {path}: not valid YAML: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list) or not data["prompts"]:
        raise ValueError(f"scenario {path}: expected a mapping with a non-empty `prompts` list")
    items = next(value for key, value in root.value if key.value == "prompts").value
    prompts = []
    for node, raw in zip(items, data["prompts"], strict=True):
        where = f"{path}:{_line_of(node)}"
        try:
            prompts.append(_entry(raw, where=where, folder=path.parent))
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from error
    return prompts


def bag_prompts(messages: Sequence[tuple[int, Any]], *, source: str) -> list[ScheduledPrompt]:
    """Prompts of a bag's uninext_msgs/Prompt topic ((log time, message) pairs), validated like the node does.

    Raises:
        ValueError: naming the message (index and log time) and the reason.
    """
    prompts = []
    for index, (log_time, msg) in enumerate(messages):
        where = f"{source} message {index} (log time {log_time} ns)"
        try:
            request = request_from_msg(msg)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        prompts.append(ScheduledPrompt(request, int(log_time), where, relative=False))
    return prompts


@dataclass(frozen=True)
class PlacedPrompt:
    """A prompt placed on the frame sequence: set before frame `before_frame` (len(frames): after the last)."""

    request: PromptRequest
    before_frame: int
    source: str


def place_prompts(prompts: Sequence[ScheduledPrompt], *, stamps_ns: Sequence[int],
                  log_times_ns: Sequence[int]) -> list[PlacedPrompt]:
    """Where each prompt goes among the frames (see the module docstring); template stamps are resolved.

    Raises:
        ValueError: a template prompt after the last frame, or a bag template whose stamp is no frame's stamp.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    logs = np.asarray(log_times_ns, dtype=np.int64)
    if stamps.size == 0:
        raise ValueError("no frame to place prompts on")
    placed = []
    for scheduled in prompts:
        clock, time_ns = (stamps, int(stamps[0]) + scheduled.time_ns) if scheduled.relative else \
            (logs, scheduled.time_ns)
        before = int(np.searchsorted(clock, time_ns, side="left"))
        request = scheduled.request
        if isinstance(request.prompt, TemplatePrompt):
            if scheduled.relative:
                if before >= stamps.size:
                    raise ValueError(f"{scheduled.source}: template time is after the last frame")
                frame = before
                request = replace(request, prompt=replace(request.prompt, frame_stamp_ns=int(stamps[frame])))
            else:
                matches = np.flatnonzero(stamps == request.prompt.frame_stamp_ns)
                if matches.size == 0:
                    raise ValueError(f"{scheduled.source}: template_stamp {request.prompt.frame_stamp_ns} ns is the "
                                     f"stamp of no frame of the image topic")
                frame = int(matches[0])
            before = max(before, frame + 1)
        placed.append(PlacedPrompt(request, before, scheduled.source))
    return sorted(placed, key=lambda p: p.before_frame)


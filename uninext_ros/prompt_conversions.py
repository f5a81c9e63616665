"""Prompt messages -> uninext_core prompt objects, and back for the latched "current prompt" topic.

Four ways in, one result (`PromptRequest`): the full `uninext_msgs/Prompt`, `std_msgs/String` on `prompt/text`
(an expression), `std_msgs/String` on `prompt/classes` (comma-separated names), and `geometry_msgs/PolygonStamped`
on `prompt/roi` (a box given by its corner points on the frame stamped `header.stamp`). Content errors raise
ValueError with a reason the node sends back (service reply, log line, diagnostics).
"""

from __future__ import annotations

from dataclasses import dataclass

from geometry_msgs.msg import PolygonStamped
from std_msgs.msg import Header
from uninext_msgs.msg import BoundingBox, Prompt, RleMask, RoiTemplate

from uninext_core.masks import Rle, decode_rle, encode_mask
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, TemplateTarget
from uninext_ros.conversions import image_to_rgb, ns_to_stamp, stamp_to_ns

CorePrompt = CategoryPrompt | ExpressionPrompt | TemplatePrompt

# Longest prompt text accepted from a topic before it reaches the session (which applies its own, tighter limit).
MAX_TEXT_BYTES = 65536


@dataclass(frozen=True)
class PromptRequest:
    """A prompt as the node hands it to its sessions.

    Attributes:
        prompt: the core prompt object (validated on construction).
        task: requested task, or None for the kind's default.
        prompt_id: requested id, or None to let the session assign one.
        camera: camera namespace it is for, or "" for every camera.
    """

    prompt: CorePrompt
    task: str | None = None
    prompt_id: int | None = None
    camera: str = ""


def _bounded_text(text: str, what: str) -> str:
    if len(text.encode("utf-8", errors="replace")) > MAX_TEXT_BYTES:
        raise ValueError(f"{what} is {len(text)} characters long; at most {MAX_TEXT_BYTES} bytes are accepted")
    return text


def classes_from_string(text: str) -> PromptRequest:
    """'person, red mug,laptop' -> a category prompt with three names."""
    names = [name.strip() for name in _bounded_text(text, "class list").split(",")]
    names = [name for name in names if name]
    return PromptRequest(CategoryPrompt(tuple(names)))


def expression_from_string(text: str) -> PromptRequest:
    """A free-form referring expression."""
    return PromptRequest(ExpressionPrompt(_bounded_text(text, "expression")))


def template_from_polygon(msg: PolygonStamped) -> PromptRequest:
    """The axis-aligned box around the polygon's points, on the frame stamped msg.header.stamp."""
    if len(msg.polygon.points) < 2:
        raise ValueError(f"prompt/roi needs at least two corner points, got {len(msg.polygon.points)}")
    xs = [float(p.x) for p in msg.polygon.points]
    ys = [float(p.y) for p in msg.polygon.points]
    target = TemplateTarget(object_id=1, box_xyxy=(min(xs), min(ys), max(xs), max(ys)))
    return PromptRequest(TemplatePrompt((target,), frame_stamp_ns=stamp_to_ns(msg.header.stamp)))


def request_from_msg(msg: Prompt) -> PromptRequest:
    """uninext_msgs/Prompt -> PromptRequest (kind, task, camera and id carried over)."""
    task = msg.task or None
    prompt_id = int(msg.prompt_id) or None
    if msg.kind == Prompt.KIND_CATEGORIES:
        for name in msg.categories:
            _bounded_text(name, "category name")
        prompt: CorePrompt = CategoryPrompt(tuple(msg.categories))
    elif msg.kind == Prompt.KIND_EXPRESSION:
        prompt = ExpressionPrompt(_bounded_text(msg.expression, "expression"))
    elif msg.kind == Prompt.KIND_TEMPLATE:
        prompt = _template_from_msg(msg)
    else:
        raise ValueError(f"prompt kind {msg.kind} is unknown; expected KIND_CATEGORIES (0), KIND_EXPRESSION (1) or "
                         f"KIND_TEMPLATE (2)")
    return PromptRequest(prompt, task=task, prompt_id=prompt_id, camera=msg.camera)


def _template_from_msg(msg: Prompt) -> TemplatePrompt:
    if not msg.templates:
        raise ValueError("template prompt has no target: fill Prompt.templates")
    image = image_to_rgb(msg.template_image) if len(msg.template_image.data) else None
    targets = []
    for index, roi in enumerate(msg.templates):
        if not roi.has_box and not roi.has_mask:
            raise ValueError(f"templates[{index}] sets neither has_box nor has_mask")
        box = (roi.box.x_min, roi.box.y_min, roi.box.x_max, roi.box.y_max) if roi.has_box else None
        mask = None
        if roi.has_mask:
            if not roi.mask.counts:
                raise ValueError(f"templates[{index}] has has_mask set but an empty RLE")
            mask = decode_rle(Rle(int(roi.mask.height), int(roi.mask.width), roi.mask.counts))
        object_id = int(roi.object_id) or index + 1
        targets.append(TemplateTarget(object_id=object_id, box_xyxy=box, mask=mask, label=roi.label))
    return TemplatePrompt(tuple(targets), frame_stamp_ns=stamp_to_ns(msg.template_stamp), image=image)


def msg_from_request(request: PromptRequest, *, prompt_id: int, task: str, header: Header) -> Prompt:
    """The prompt in force, as published on the latched `prompt/current` topic (template frames not repeated)."""
    msg = Prompt(header=header, prompt_id=prompt_id, task=task, camera=request.camera)
    prompt = request.prompt
    if isinstance(prompt, CategoryPrompt):
        msg.kind = Prompt.KIND_CATEGORIES
        msg.categories = list(prompt.names)
    elif isinstance(prompt, ExpressionPrompt):
        msg.kind = Prompt.KIND_EXPRESSION
        msg.expression = prompt.text
    else:
        msg.kind = Prompt.KIND_TEMPLATE
        msg.template_stamp = ns_to_stamp(prompt.frame_stamp_ns)
        for target in prompt.targets:
            roi = RoiTemplate(object_id=target.object_id, label=target.label)
            if target.box_xyxy is not None:
                roi.has_box = True
                roi.box = BoundingBox(x_min=target.box_xyxy[0], y_min=target.box_xyxy[1], x_max=target.box_xyxy[2],
                                      y_max=target.box_xyxy[3])
            if target.mask is not None:
                rle = encode_mask(target.mask)
                roi.has_mask = True
                roi.mask = RleMask(height=rle.height, width=rle.width, counts=rle.counts)
            msg.templates.append(roi)
    return msg

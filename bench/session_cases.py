"""The cases of the session benchmark (bench/session.py): one function per group, each returning `Case`s that run a
perception `Session` on any backend and return one result dict.

Frames are a 320×320 synthetic video (seed 0, medium difficulty); frame 0 is the template / VOS prompt frame, frames
1..5 are cycled for the timed frames. Timing per case: `warmup` frames, then `count` timed frames; median and p90 of
the wall time of `Session.process`, the median process CPU time (every thread, so ONNX Runtime's pool counts too),
and the median of each `FrameCost` stage the session measures itself.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
from session_planting import PlantedBackend, PlantedTemplateBackend

from uninext_core.data.coco_names import COCO_NAMES
from uninext_core.data.synthetic.scene import KINDS
from uninext_core.data.synthetic.world import synth_video
from uninext_core.deploy.backend import Backend
from uninext_core.prompts import (
    CategoryPrompt,
    ExpressionPrompt,
    TemplatePrompt,
    TemplateTarget,
    build_category_caption,
)
from uninext_core.tasks.prompt_cache import PromptCache
from uninext_core.tasks.session import PromptRejected, Session
from uninext_core.tasks.timing import FrameCost

SIDE = 320
STAGES = tuple(f.name for f in fields(FrameCost))
BDD = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
EXPRESSION = "the large red circle"
VOS_OBJECTS = (1, 2, 4)
TRACK_COUNTS = (1, 10, 50)


class Case(NamedTuple):
    """One benchmark case: `run(backend, tokenizer)` returns its measured values."""

    group: str
    name: str
    run: Callable[[Backend, object], dict]


@dataclass(frozen=True)
class Scene:
    """Inputs shared by every case.

    Attributes:
        frames: timed frames, (SIDE, SIDE, 3) uint8 RGB (video frames 1..5).
        template: SOT prompt: the box of the largest object on frame 0 (frame carried in the prompt).
        vos_prompts: objects N -> VOS prompt with the masks of the N largest objects on frame 0.
        warmup: untimed frames per case.
        count: timed frames per case.
    """

    frames: list[np.ndarray]
    template: TemplatePrompt
    vos_prompts: dict[int, TemplatePrompt]
    warmup: int
    count: int


def make_scene(*, warmup: int, count: int) -> Scene:
    """The synthetic 320×320 video and the template prompts on its frame 0."""
    video = synth_video(seed=0, index=0, height=SIDE, width=SIDE, num_frames=6, difficulty="medium")
    first = video.frames[0]
    masks = video.masks[0]  # (N_objects, H, W) bool on frame 0
    largest = np.argsort(-masks.reshape(len(masks), -1).sum(axis=1), kind="stable")
    if len(largest) < max(VOS_OBJECTS):
        raise ValueError(f"the synthetic video has {len(largest)} objects; the VOS cases need {max(VOS_OBJECTS)}")
    ys, xs = np.nonzero(masks[largest[0]])
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    template = TemplatePrompt((TemplateTarget(1, box),), frame_stamp_ns=0, image=first)
    vos_prompts = {n: TemplatePrompt(tuple(TemplateTarget(int(i) + 1, None, mask=masks[i]) for i in largest[:n]),
                                     frame_stamp_ns=0, image=first) for n in VOS_OBJECTS}
    return Scene(frames=list(video.frames[1:]), template=template, vos_prompts=vos_prompts, warmup=warmup,
                 count=count)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_frames(sessions: Sequence[Session], scene: Scene) -> dict:
    """Every session processes each frame (a split prompt runs one session per part); per-frame sums.

    Returns:
        median_ms, p90_ms, fps (1000 / median), cpu_ms (median process CPU time per frame), stages_median_ms,
        instances (median instances returned per frame, summed over the sessions) and distinct_boxes (median
        distinct boxes among them: detection returns (query, class) pairs, so this counts queries, each of which
        gets one mask-head run in instance segmentation).
    """
    totals, cpu, costs, counts = [], [], [], []
    for index in range(scene.warmup + scene.count):
        frame = scene.frames[index % len(scene.frames)]
        start, start_cpu = time.perf_counter(), time.process_time()
        answers = [session.process(frame, 1_000 + index) for session in sessions]
        total = (time.perf_counter() - start) * 1e3
        if index >= scene.warmup:
            totals.append(total)
            cpu.append((time.process_time() - start_cpu) * 1e3)
            costs.append({s: sum(getattr(session.stats().last_cost, s) for session in sessions) for s in STAGES})
            counts.append((sum(len(a) for a in answers),
                           sum(len(np.unique(a.boxes_xyxy, axis=0)) for a in answers if len(a))))
    median = statistics.median(totals)
    return {"median_ms": round(median, 1), "p90_ms": round(_percentile(totals, 0.9), 1),
            "fps": round(1000.0 / median, 2), "cpu_ms": round(statistics.median(cpu), 1),
            "stages_median_ms": {s: round(statistics.median(c[s] for c in costs), 2) for s in STAGES},
            "instances": statistics.median(c[0] for c in counts),
            "distinct_boxes": statistics.median(c[1] for c in counts)}


def _session(backend: Backend, tokenizer: object, prompt: object, task: str | None, **kwargs: object) -> Session:
    session = Session(backend, tokenizer=tokenizer, **kwargs)
    session.set_prompt(prompt, task=task)
    return session


def task_cases(scene: Scene) -> list[Case]:
    """One session per task: detection and instance segmentation (the 6 synthetic kinds), REC, RES, SOT, MOT (BDD)."""
    specs = [("detection", CategoryPrompt(KINDS), "detection"),
             ("instance_segmentation", CategoryPrompt(KINDS), "instance_segmentation"),
             ("rec", ExpressionPrompt(EXPRESSION), "rec"), ("res", ExpressionPrompt(EXPRESSION), "res"),
             ("sot", scene.template, "sot"), ("mot", CategoryPrompt(BDD), "mot")]

    def make(prompt: object, task: str) -> Callable[[Backend, object], dict]:
        return lambda backend, tokenizer: time_frames([_session(backend, tokenizer, prompt, task)], scene)

    return [Case("tasks", name, make(prompt, task)) for name, prompt, task in specs]


def names_that_fit(tokenizer: object, max_tokens: int) -> int:
    """How many of the first COCO names fit one caption of `max_tokens` tokens ([CLS]/[SEP] included)."""
    for count in range(1, len(COCO_NAMES) + 1):
        try:
            build_category_caption(COCO_NAMES[:count], tokenizer, max_tokens=max_tokens)
        except ValueError:
            return count - 1
    return len(COCO_NAMES)


def split_names(names: Sequence[str], tokenizer: object, max_tokens: int) -> list[tuple[str, ...]]:
    """The fewest near-equal consecutive parts of `names` whose captions each fit `max_tokens` tokens."""
    for parts in range(1, len(names) + 1):
        chunks = [tuple(c) for c in np.array_split(np.array(names, dtype=object), parts)]
        try:
            for chunk in chunks:
                build_category_caption(chunk, tokenizer, max_tokens=max_tokens)
        except ValueError:
            continue
        return chunks
    raise ValueError(f"a single name does not fit {max_tokens} tokens")


def _rejection(backend: Backend, tokenizer: object, prompt: object, task: str) -> dict:
    session = Session(backend, tokenizer=tokenizer)
    start = time.perf_counter()
    try:
        session.set_prompt(prompt, task=task)
    except PromptRejected as error:
        return {"rejected": str(error), "prompt_change_ms": round((time.perf_counter() - start) * 1e3, 1)}
    raise ValueError(f"expected the session to reject {prompt!r}, it accepted it")


def class_cases(scene: Scene, tokenizer: object, max_tokens: int) -> list[Case]:
    """Instance segmentation with 1, 10, the most that fit, and 80 COCO names: 80 is tried as one prompt (the session
    rejects a caption longer than the model's T) and run as the fewest equal parts that fit, one session per part
    on the same frames (what a caller has to do)."""
    fit = names_that_fit(tokenizer, max_tokens)
    cases = []
    for count in sorted({1, 10, fit} - {0}):
        prompt = CategoryPrompt(COCO_NAMES[:count])
        cases.append(Case("classes", f"classes_{count}", lambda b, t, p=prompt, n=count: {
            "class_names": n, "sessions": 1,
            **time_frames([_session(b, t, p, "instance_segmentation")], scene)}))
    everything = CategoryPrompt(COCO_NAMES)
    cases.append(Case("classes", "classes_80_one_prompt", lambda b, t: {
        "class_names": 80, **_rejection(b, t, everything, "instance_segmentation")}))
    parts = split_names(COCO_NAMES, tokenizer, max_tokens)
    cases.append(Case("classes", f"classes_80_in_{len(parts)}", lambda b, t: {
        "class_names": 80, "sessions": len(parts), "names_per_session": [len(p) for p in parts],
        **time_frames([_session(b, t, CategoryPrompt(p), "instance_segmentation") for p in parts], scene)}))
    return cases


def prompt_cases(scene: Scene, tokenizer: object, max_tokens: int) -> list[Case]:
    """set_prompt cost: cache misses (tokenise + encoder (+ crop)) as the median of 3 runs after clearing the cache,
    the rejected 80-name prompt, and a cache hit (the same category prompt again)."""
    fit = names_that_fit(tokenizer, max_tokens)
    specs = [(f"classes_{n}", CategoryPrompt(COCO_NAMES[:n]), None) for n in sorted({1, 10, fit})]
    specs += [("expression", ExpressionPrompt(EXPRESSION), None), ("template_sot", scene.template, "sot")]
    specs += [(f"template_vos_{n}", scene.vos_prompts[n], "vos") for n in VOS_OBJECTS]

    def measure(prompt: object, task: str | None, *, hit: bool) -> Callable[[Backend, object], dict]:
        def run(backend: Backend, tokenizer: object) -> dict:
            cache = PromptCache(backend)
            session = Session(backend, tokenizer=tokenizer, prompt_cache=cache)
            session.set_prompt(ExpressionPrompt("warm up the text encoder"))
            session.set_prompt(scene.vos_prompts[1], task="vos")  # template encoder warm-up (another crop)
            if hit:
                session.set_prompt(prompt, task=task)
            samples = []
            for _ in range(3):
                if not hit:
                    cache.clear()
                session.set_prompt(prompt, task=task)
                samples.append(session.stats().last_prompt_change_ms)
            return {"prompt_change_ms": round(statistics.median(samples), 1), "cache": cache.stats()._asdict()}
        return run

    cases = [Case("prompt", name, measure(prompt, task, hit=False)) for name, prompt, task in specs]
    cases.append(Case("prompt", "classes_80", lambda b, t: _rejection(b, t, CategoryPrompt(COCO_NAMES),
                                                                       "instance_segmentation")))
    cases.append(Case("prompt", f"classes_{fit}_cached", measure(CategoryPrompt(COCO_NAMES[:fit]), None, hit=True)))
    return cases


def track_cases(scene: Scene, tokenizer: object, max_tokens: int) -> list[Case]:
    """MOT, MOTS and VIS with 1, 10 and 50 planted detections (session_planting.PlantedBackend) on the BDD classes.
    `tracked` counts the instances returned on one more frame (should equal the planted count)."""
    class_tokens = list(build_category_caption(BDD, tokenizer, max_tokens=max_tokens).token_spans[0])

    def make(task: str, count: int) -> Callable[[Backend, object], dict]:
        def run(backend: Backend, tokenizer: object) -> dict:
            planted = PlantedBackend(backend, count=count, class_tokens=class_tokens)
            session = _session(planted, tokenizer, CategoryPrompt(BDD), task)
            measured = time_frames([session], scene)
            tracked = len(session.process(scene.frames[0], 99_999))
            return {"task": task, "planted": count, "tracked": tracked, **measured}
        return run

    return [Case("tracks", f"{task}_{count}", make(task, count)) for task in ("mot", "mots", "vis")
            for count in TRACK_COUNTS]


def vos_cases(scene: Scene) -> list[Case]:
    """VOS with 1, 2 and 4 mask-prompted objects: as the random weights give (no object reaches vos_min_score, so
    no masks and no template updates) and planted (session_planting.PlantedTemplateBackend: every object
    confident, one template update per object per frame). `template_updates_per_frame` counts encoder runs."""

    def make(objects: int, planted: bool) -> Callable[[Backend, object], dict]:
        def run(backend: Backend, tokenizer: object) -> dict:
            wrapped = PlantedTemplateBackend(backend, objects=objects) if planted else backend
            session = _session(wrapped, tokenizer, scene.vos_prompts[objects], "vos")
            before = session.stats().cache.template_encodings
            measured = time_frames([session], scene)
            updates = (session.stats().cache.template_encodings - before) / (scene.warmup + scene.count)
            return {"objects": objects, "planted": planted, "template_updates_per_frame": round(updates, 2),
                    **measured}
        return run

    return [Case("vos", f"vos_{n}{'_planted' if planted else ''}", make(n, planted)) for planted in (False, True)
            for n in VOS_OBJECTS]


def describe(case: Case, backend_name: str, threads: int, values: dict) -> dict:
    """One JSON-ready result line: case identity, setting, load and the measured values."""
    return {"group": case.group, "case": case.name, "backend": backend_name, "preset": "tiny", "device": "cpu",
            "precision": "fp32", "input_hw": [SIDE, SIDE], "threads": threads,
            "load_avg_1m": round(os.getloadavg()[0], 2), **values}


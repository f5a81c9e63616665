"""Per-frame cost of the `tiny` perception session on CPU, the prompt-change cost, and how the cost grows.

Cases (tiny preset, random weights, fp32, 320×320 synthetic frames, `--threads` torch threads):
* tasks: one session per task (detection and instance segmentation with 10 names, REC, RES, SOT, MOT with 8 names);
  per frame the session's own split: preprocess, network (backend.infer), postprocess (scoring, NMS, top-k, mask
  head, masks at frame size), tracking (tracker update / soft aggregation) and template updates; frames/s = 1000 /
  median total. Baseline for the ratios: detection.
* prompt: set_prompt cost for 1/10/80 class names, an expression and a SOT template (cache miss: tokenise + encoder
  + crop), and the same category prompt again (cache hit).
* classes: instance segmentation with 1, 10 and 80 class names (prompt length T stays 256; what grows is the class
  averaging, NMS and top-k over (query, class) pairs, and the masks of the kept instances). Baseline: 1 name.
* tracks: MOT, MOTS and VIS with 1, 10 and 50 tracked instances. The network and the mask head run for real, then
  N queries are planted (non-overlapping grid boxes, box-shaped masks, class score 0.9, distinct embeddings, every
  other query 0.01) so the trackers see exactly N detections per frame, whatever the random weights would give.
  Baseline: 1 instance. (Masks are at the padded input's grid; the frame fills it exactly at 320×320.)
Median and p90 wall time over the timed frames after a warm-up, and the median CPU time per frame (all threads of the
process): on a shared machine the wall time carries the other processes' load, the CPU time much less; on otherwise
idle cores wall time lies between cpu_ms / threads (perfect scaling) and cpu_ms. One JSON line per case, then
side-by-side tables.

    .venv/bin/python bench/session.py [--threads 2] [--frames 8] [--warmup 2] [--groups tasks prompt classes tracks]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import fields

import numpy as np
import torch

from uninext_core.data.synthetic.scene import KINDS
from uninext_core.data.synthetic.world import synth_video
from uninext_core.deploy.torch_backend import TorchBackend, build_torch_backend
from uninext_core.model.build import build_model
from uninext_core.model.outputs import RawOutputs
from uninext_core.prompts import (
    CategoryPrompt,
    ExpressionPrompt,
    TemplatePrompt,
    TemplateTarget,
    build_category_caption,
)
from uninext_core.tasks.prompt_cache import PromptCache
from uninext_core.tasks.session import Session
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.timing import FrameCost

SIDE = 320
STAGES = tuple(f.name for f in fields(FrameCost))
COCO_NAMES = (  # the 80 COCO class names in dataset order (caption spans tokens 1..192)
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
BDD = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


class PlantedBackend:
    """TorchBackend whose outputs get N planted detections (see the module docstring); the network still runs."""

    def __init__(self, backend: TorchBackend, *, count: int, class_tokens: list[int]) -> None:
        self._backend = backend
        self.name, self.device, self.fixed_input_size, self.spec = (backend.name, backend.device,
                                                                    backend.fixed_input_size, backend.spec)
        self.count = count
        self.class_tokens = class_tokens  # the first class's token position(s) get the high logit
        self.frame = 0

    def encode_text(self, tokens):
        return self._backend.encode_text(tokens)

    def encode_template(self, crops, padding=None):
        return self._backend.encode_template(crops, padding)

    def mask_logits(self, raw, query_idx):
        # The real mask head runs (its cost is measured); planted queries then get their box as mask (random weights
        # would give overlapping masks that the VIS tracker's mask NMS merges).
        logits = self._backend.mask_logits(raw, query_idx).clone()  # inference tensors are read-only
        height, width = logits.shape[-2:]
        ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
        for row, query in enumerate(query_idx.tolist()):
            if query < self.count:
                cx, cy, w, h = raw.boxes_cxcywh[0, query].tolist()
                inside = ((ys - cy).abs() < h / 2)[:, None] & ((xs - cx).abs() < w / 2)[None, :]
                logits[row] = torch.where(inside, 10.0, -10.0)
        return logits

    def infer(self, images, pixel_mask, prompt) -> RawOutputs:
        raw = self._backend.infer(images, pixel_mask, prompt)
        n, queries = self.count, raw.boxes_cxcywh.shape[1]
        side = int(np.ceil(np.sqrt(n)))
        cells = torch.arange(n)
        shift = 0.002 * (self.frame % 5)  # small motion between frames
        cx = (cells % side + 0.5) / side + shift
        cy = (cells // side + 0.5) / side
        boxes = raw.boxes_cxcywh.clone()
        boxes[0, :n] = torch.stack([cx, cy, torch.full_like(cx, 0.6 / side), torch.full_like(cy, 0.6 / side)], 1)
        token_logits = torch.full_like(raw.token_logits, -4.6)  # sigmoid 0.01
        token_logits[0, :n, self.class_tokens] = 2.2  # sigmoid 0.9
        embeddings = torch.randn(raw.embeddings.shape, generator=torch.Generator().manual_seed(self.frame))
        embeddings[0, :n] = torch.eye(queries, raw.embeddings.shape[-1])[:n] * 8.0
        self.frame += 1
        return raw._replace(token_logits=token_logits, boxes_cxcywh=boxes, embeddings=embeddings)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_frames(session: Session, frames: list[np.ndarray], *, warmup: int, count: int) -> dict:
    """Run warm-up + timed frames; per-stage medians and total median/p90 of the timed ones."""
    costs, cpu = [], []
    for index in range(warmup + count):
        frame = frames[index % len(frames)]
        start, start_cpu = time.perf_counter(), time.process_time()
        session.process(frame, 1_000 + index)
        total = (time.perf_counter() - start) * 1e3
        if index >= warmup:
            costs.append((total, session.stats().last_cost))
            cpu.append((time.process_time() - start_cpu) * 1e3)
    totals = [c[0] for c in costs]
    median = statistics.median(totals)
    return {"median_ms": round(median, 1), "p90_ms": round(_percentile(totals, 0.9), 1),
            "fps": round(1000.0 / median, 2), "cpu_ms": round(statistics.median(cpu), 1),
            "stages_median_ms": {s: round(statistics.median(getattr(c[1], s) for c in costs), 2) for s in STAGES}}


def _case(group: str, name: str, threads: int, **values) -> dict:
    return {"group": group, "case": name, "preset": "tiny", "device": "cpu", "precision": "fp32",
            "input_hw": [SIDE, SIDE], "threads": threads, "load_avg_1m": round(os.getloadavg()[0], 2), **values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8, help="timed frames per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--groups", nargs="+", default=["tasks", "prompt", "classes", "tracks"],
                        choices=["tasks", "prompt", "classes", "tracks"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("tiny")
    backend = build_torch_backend("tiny", model=model)
    tokenizer = model.text_encoder.tokenizer
    video = synth_video(seed=0, index=0, height=SIDE, width=SIDE, num_frames=6, difficulty="medium")
    frames = video.frames
    ys, xs = np.nonzero(video.masks[0, 0])
    template = TemplatePrompt((TemplateTarget(1, (float(xs.min()), float(ys.min()), float(xs.max() + 1),
                                                  float(ys.max() + 1))),), frame_stamp_ns=0, image=frames[0])
    timing = {"warmup": args.warmup, "count": args.frames}
    results: dict[str, list[dict]] = {g: [] for g in args.groups}

    def emit(group: str, result: dict) -> None:
        print(json.dumps(result), flush=True)
        results[group].append(result)

    if "tasks" in args.groups:
        cases = [("detection", CategoryPrompt(KINDS), "detection"),
                 ("instance_segmentation", CategoryPrompt(KINDS), "instance_segmentation"),
                 ("rec", ExpressionPrompt("the large red circle"), "rec"),
                 ("res", ExpressionPrompt("the large red circle"), "res"),
                 ("sot", template, "sot"), ("mot", CategoryPrompt(BDD), "mot")]
        for name, prompt, task in cases:
            session = Session(backend, tokenizer=tokenizer)
            session.set_prompt(prompt, task=task)
            emit("tasks", _case("tasks", name, args.threads, **time_frames(session, frames[1:], **timing)))

    if "prompt" in args.groups:
        session = Session(backend, tokenizer=tokenizer, prompt_cache=PromptCache(backend))
        session.process(frames[0], 0)
        prompts = [("classes_1", CategoryPrompt(COCO_NAMES[:1])), ("classes_10", CategoryPrompt(COCO_NAMES[:10])),
                   ("classes_80", CategoryPrompt(COCO_NAMES)), ("expression", ExpressionPrompt("the large red circle")),
                   ("template", template), ("classes_80_cached", CategoryPrompt(COCO_NAMES))]
        session.set_prompt(ExpressionPrompt("warm up the encoder"))
        for name, prompt in prompts:
            samples = []
            for _ in range(3 if name.endswith("cached") else 1):
                session.set_prompt(prompt)
                samples.append(session.stats().last_prompt_change_ms)
            emit("prompt", _case("prompt", name, args.threads, prompt_change_ms=round(statistics.median(samples), 1),
                                 cache=session.stats().cache._asdict()))

    if "classes" in args.groups:
        for count in (1, 10, 80):
            session = Session(backend, tokenizer=tokenizer, config=SessionConfig(score_threshold=0.0))
            session.set_prompt(CategoryPrompt(COCO_NAMES[:count]), task="instance_segmentation")
            emit("classes", _case("classes", f"classes_{count}", args.threads, class_names=count,
                                  **time_frames(session, frames[1:], **timing)))

    if "tracks" in args.groups:
        first_class_tokens = list(build_category_caption(BDD, tokenizer).token_spans[0])
        for task in ("mot", "mots", "vis"):
            for count in (1, 10, 50):
                planted = PlantedBackend(backend, count=count, class_tokens=first_class_tokens)
                session = Session(planted, tokenizer=tokenizer)
                session.set_prompt(CategoryPrompt(BDD), task=task)
                measured = time_frames(session, frames[1:], **timing)
                tracked = len(session.process(frames[1], 99_999))
                emit("tracks", _case("tracks", f"{task}_{count}", args.threads, task=task, planted=count,
                                     tracked=tracked, **measured))

    _tables(results)


def _row(label: str, result: dict, base: dict) -> str:
    stages = result["stages_median_ms"]
    ratio = result["median_ms"] / base["median_ms"] if base["median_ms"] else float("nan")
    return (f"{label:<24}{result['median_ms']:>9.1f}{result['p90_ms']:>9.1f}{result['fps']:>7.2f}"
            f"{result['cpu_ms']:>9.1f}" + "".join(f"{stages[s]:>11.1f}" for s in STAGES) + f"{ratio:>8.2f}x")


def _tables(results: dict[str, list[dict]]) -> None:
    header = (f"{'case':<24}{'median':>9}{'p90':>9}{'fps':>7}{'cpu':>9}"
              + "".join(f"{s.replace('_ms', ''):>11}" for s in STAGES) + f"{'ratio':>9}")
    for group in ("tasks", "classes", "tracks"):
        rows = results.get(group) or []
        if not rows:
            continue
        print(f"\n[{group}] per-frame ms (tiny, cpu, fp32, {SIDE}x{SIDE}); ratio to {rows[0]['case']}")
        print(header)
        for result in rows:
            base = rows[0] if group != "tracks" else next(r for r in rows if r["task"] == result["task"])
            print(_row(result["case"], result, base))
    if results.get("prompt"):
        print("\n[prompt] set_prompt ms")
        for result in results["prompt"]:
            print(f"{result['case']:<24}{result['prompt_change_ms']:>9.1f}")


if __name__ == "__main__":
    main()

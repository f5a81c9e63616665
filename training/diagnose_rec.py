"""Why does REC miss? Accuracy by wording, where the referent ranks, and what the query features know.

    python -m training.diagnose_rec --checkpoint uninext_core/assets/uninext_tiny.safetensors \
        --data data/synth_eval_seed1/ref --limit 400 --probe-limit 150 --out runs/rec_diagnosis.json

Runs the first `--limit` expressions of a synthetic referring set through the perception session (official REC
rule) and reports:

* accuracy (IoU ≥ 0.5) by the kind of wording: ordinal ("the second ... from the left"), relation ("... left of
  ..."), extreme ("the topmost ...", "the largest ..."), attribute (a colour word), name (none of these);
* the share of expressions whose referent is among the k best-scored queries (k = 1, 2, 3, 5, 10, all): a high
  "all" with a low "1" means the detector proposes the referent and the ranking by the prompt fails;
* what a miss picked instead: the annotated object its box overlaps best, as "same kind, other colour", "same kind
  and colour" (another size, texture or place), "other kind" or "no object" (no overlap ≥ 0.5), by wording;
* linear probes on what the last decoder layer's retrieval head sees (its query features, plus the query colour
  term where the model has one) for the first `--probe-limit` expressions: for every annotated object, the query
  whose box overlaps it best (IoU ≥ 0.5); logistic regression fitted on the first half of the images, scored on the
  second half, against the majority-class rate. A probe near its majority rate means the
  queries do not carry that attribute, and no prompt can select by it;
* the same probes, on the same objects, one step at a time along the network (`level_probes`): the input pixel at
  the object's centre, the backbone's stride-8 map, the encoder memory's stride-8 level (each at the cell under the
  centre), and the retrieval input above: where an attribute is lost.

Synthetic annotations only (the probes read each object's `attributes`: colour, kind, size, texture).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from training.recording_backend import RecordingBackend
from training.report_cli import add_common_arguments, inputs_exist, write_report
from uninext_core.data.synthetic.scene import COLOURS
from uninext_core.data.transforms import ORDINAL_WORDS
from uninext_core.eval.overlaps import box_iou_xyxy
from uninext_core.tasks.preprocess import normalized_boxes_to_frame

TOP_K = (1, 2, 3, 5, 10)
PROBED = ("colour", "kind", "size", "texture")
LEVELS = ("input pixel", "backbone stride 8", "encoder memory stride 8", "retrieval input")
STRIDE = 8  # the backbone's first level and the encoder's finest level
_ORDINAL = re.compile(r"\b(" + "|".join(ORDINAL_WORDS) + r")\b")
_RELATION = re.compile(r"\b(left of|right of|above|below)\b")
_EXTREME = re.compile(r"\b(leftmost|rightmost|topmost|bottommost|largest|smallest)\b")
_COLOUR = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")


def wording_kind(expression: str) -> str:
    """ordinal, relation, extreme, attribute or name (first that applies, in this order)."""
    text = expression.lower()
    for kind, pattern in (("ordinal", _ORDINAL), ("relation", _RELATION), ("extreme", _EXTREME),
                          ("attribute", _COLOUR)):
        if pattern.search(text):
            return kind
    return "name"


def miss_kind(referent: dict, chosen: dict | None) -> str:
    """How a wrongly chosen object differs from the referent (attribute dicts; None: the box matches no object)."""
    if chosen is None:
        return "no object"
    if chosen.get("kind") != referent.get("kind"):
        return "other kind"
    return "same kind and colour" if chosen.get("colour") == referent.get("colour") else "same kind, other colour"


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    """(held-out accuracy of a logistic-regression probe, majority-class rate on the held-out rows)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features[train])
    probe = LogisticRegression(max_iter=3000, C=0.1).fit(scaler.transform(features[train]), labels[train])
    held = ~train
    accuracy = float(probe.score(scaler.transform(features[held]), labels[held]))
    majority = max(float(np.mean(labels[held] == value)) for value in set(labels[held]))
    return accuracy, majority


def diagnose(checkpoint: Path, data: Path, *, limit: int, probe_limit: int, threads: int) -> dict:
    """Run the expressions and collect the three reports (see the module docstring)."""
    from uninext_core.checkpoint.safetensors_io import read_config
    from uninext_core.deploy.loading import load_backend
    from uninext_core.eval.datasets import open_data, resolve_data
    from uninext_core.eval.runner import run_unit
    from uninext_core.eval.units import build_units
    from uninext_core.tasks.session import Session
    from uninext_core.tasks.session_config import SessionConfig

    torch.set_num_threads(threads)
    annotations = data / "annotations" / "instances.json"
    attributes = {a["id"]: a.get("attributes", {}) for a in json.loads(annotations.read_text())["annotations"]}
    store = open_data(resolve_data(str(data), task="rec"))
    units = build_units(store, task="rec", limit=limit)
    loaded = load_backend(preset=read_config(checkpoint).name, checkpoint=str(checkpoint), backend="torch",
                          device="cpu", engine_path="", text_encoder_path="")
    model = loaded.backend.model
    last_hidden: dict[str, torch.Tensor] = {}
    # What the last decoder layer's retrieval head sees (B, Q, C): the query features, plus the query colour term
    # where the model has one (uninext_core.model.query_colour).
    retrieval_head = model.class_embed[model.num_decoder_layers - 1]
    retrieval_head.register_forward_hook(lambda _m, inputs, _o: last_hidden.update(h=inputs[0][0].detach()))
    # Earlier steps for the level probes: the (unpadded) input and its valid area, the backbone's stride-8 map, the
    # encoder memory (its first H8·W8 tokens are the stride-8 level).
    model.register_forward_pre_hook(lambda _m, inputs: last_hidden.update(image=inputs[0][0], valid=inputs[1][0]))
    model.backbone.register_forward_hook(lambda _m, _i, out: last_hidden.update(s8=out[0][0].detach()))
    model.transformer.encoder.register_forward_hook(lambda _m, _i, out: last_hidden.update(memory=out[0].detach()))
    recorder = RecordingBackend(loaded.backend)
    session = Session(recorder, tokenizer=loaded.tokenizer, config=SessionConfig())

    hits: dict[str, list[bool]] = defaultdict(list)
    misses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ranks: dict[int | str, list[bool]] = defaultdict(list)
    probe_rows: list[tuple[int, dict[str, np.ndarray], dict]] = []
    per_expression: list[dict] = []
    images: dict[str, int] = {}
    for index, unit in enumerate(units):
        recorder.records.clear()
        run = run_unit(session, store, unit)
        truth, output = run.truths[0], run.outputs[0]
        (referent,) = unit.referent_ids
        target = truth.boxes_xyxy_px[truth.index_of(referent)].astype(np.float64)
        image_name, expression = unit.name.split(": ", 1)
        chosen = output.instances.boxes_xyxy[:1].astype(np.float64)
        found = bool(len(chosen)) and bool(box_iou_xyxy(chosen, target[None])[0, 0] >= 0.5)
        hits[wording_kind(expression)].append(found)
        per_expression.append({"image": image_name, "expression": expression, "wording": wording_kind(expression),
                               "hit": found})
        if not found:
            chosen_object = None
            if len(chosen):
                overlap = box_iou_xyxy(chosen, truth.boxes_xyxy_px.astype(np.float64))[0]
                if overlap.size and overlap.max() >= 0.5:
                    chosen_object = attributes.get(int(truth.ids[int(overlap.argmax())]), {})
            missed = miss_kind(attributes.get(int(referent), {}), chosen_object)
            misses[wording_kind(expression)][missed] += 1
            per_expression[-1]["miss"] = missed
        scores, cxcywh = recorder.records[-1]
        boxes = normalized_boxes_to_frame(cxcywh, truth.image_size).numpy().astype(np.float64)
        overlaps = box_iou_xyxy(boxes[np.argsort(-scores.numpy(), kind="stable")], target[None])[:, 0] >= 0.5
        for k in TOP_K:
            ranks[k].append(bool(overlaps[:k].any()))
        ranks["all"].append(bool(overlaps.any()))
        if index < probe_limit:
            image = images.setdefault(image_name, len(images))
            hidden = last_hidden["h"].float().numpy()
            for object_id, box in zip(truth.ids, truth.boxes_xyxy_px.astype(np.float64), strict=True):
                overlap = box_iou_xyxy(boxes, box[None])[:, 0]
                if overlap.max() >= 0.5:
                    features = level_features(last_hidden, box, truth.image_size)
                    features["retrieval input"] = hidden[int(overlap.argmax())]
                    probe_rows.append((image, features, attributes.get(int(object_id), {})))

    everything = [hit for kind_hits in hits.values() for hit in kind_hits]
    report: dict = {
        "checkpoint": str(checkpoint), "data": str(data), "expressions": len(everything),
        "accuracy": float(np.mean(everything)) if everything else 0.0,
        "accuracy_by_wording": {k: {"accuracy": float(np.mean(v)), "count": len(v)} for k, v in sorted(hits.items())},
        "referent_in_top_k": {str(k): float(np.mean(v)) for k, v in ranks.items()},
        "misses_by_wording": {k: dict(sorted(v.items())) for k, v in sorted(misses.items())},
        "probes": {},
        "per_expression": per_expression,
    }
    if probe_rows:
        split_image = len(images) // 2
        train = np.array([image < split_image for image, _, _ in probe_rows])
        report["level_probes"] = {}
        for level in LEVELS:
            features = np.stack([row[1][level] for row in probe_rows])
            report["level_probes"][level] = {}
            for name in PROBED:
                labels = np.array([str(row[2].get(name, "")) for row in probe_rows])
                if train.all() or not train.any() or len(set(labels[train])) < 2:
                    continue
                accuracy, majority = probe_accuracy(features, labels, train)
                report["level_probes"][level][name] = {"accuracy": accuracy, "majority": majority}
        report["probes"] = report["level_probes"]["retrieval input"]
        report["probe_objects"] = len(probe_rows)
        report["probe_images"] = len(images)
    return report


def level_features(captured: dict[str, torch.Tensor], box_xyxy: np.ndarray, frame_size: tuple[int, int]
                   ) -> dict[str, np.ndarray]:
    """The input pixel, backbone stride-8 cell and encoder-memory stride-8 cell under a box's centre.

    Args:
        captured: the hooks' tensors of the last forward: `image` (3, H, W) as given to the network, `valid` (H, W)
            its pixel mask, `s8` (C, H8, W8) the backbone's first map, `memory` (S, d) the encoder output.
        box_xyxy: the object's box in frame pixels.
        frame_size: (height, width) of the frame.
    """
    valid = captured["valid"]
    valid_h, valid_w = int(valid[:, 0].sum()), int(valid[0, :].sum())
    x = (box_xyxy[0] + box_xyxy[2]) / 2 * valid_w / frame_size[1]
    y = (box_xyxy[1] + box_xyxy[3]) / 2 * valid_h / frame_size[0]
    s8 = captured["s8"]
    h8, w8 = s8.shape[-2:]
    row, col = min(int(y // STRIDE), h8 - 1), min(int(x // STRIDE), w8 - 1)
    memory = captured["memory"][: h8 * w8].reshape(h8, w8, -1)
    return {"input pixel": captured["image"][:, min(int(y), valid_h - 1), min(int(x), valid_w - 1)].float().numpy(),
            "backbone stride 8": s8[:, row, col].float().numpy(),
            "encoder memory stride 8": memory[row, col].float().numpy()}


def format_report(report: dict) -> str:
    """The report as a few readable lines."""
    lines = [f"REC accuracy {report['accuracy']:.3f} over {report['expressions']} expressions"]
    lines += [f"  {kind:9s} {v['accuracy']:.3f}  (n={v['count']})" for kind, v in report["accuracy_by_wording"].items()]
    lines.append("referent among the k best-scored queries: " + ", ".join(
        f"{k}: {v:.3f}" for k, v in report["referent_in_top_k"].items()))
    if report.get("misses_by_wording"):
        lines.append("what the misses picked:")
        lines += [f"  {kind:9s} " + ", ".join(f"{name} {count}" for name, count in counts.items())
                  for kind, counts in report["misses_by_wording"].items()]
    if report["probes"]:
        lines.append(f"query-feature probes ({report['probe_objects']} objects, {report['probe_images']} images; "
                     "held-out accuracy / majority class):")
        lines += [f"  {name:8s} {v['accuracy']:.3f} / {v['majority']:.3f}" for name, v in report["probes"].items()]
        lines.append("the same probes along the network (held-out accuracy; " + ", ".join(PROBED) + "):")
        lines += [f"  {level:24s} " + "  ".join(f"{probes[name]['accuracy']:.3f}" if name in probes else "  -  "
                                               for name in PROBED)
                  for level, probes in report.get("level_probes", {}).items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry. Exit 0, or 2 for bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.diagnose_rec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, data_help="synthetic referring set (RefCOCO layout)")
    parser.add_argument("--limit", type=int, default=400, help="expressions to run (first N)")
    parser.add_argument("--probe-limit", type=int, default=150, help="expressions whose query features are probed")
    args = parser.parse_args(argv)
    if not inputs_exist(args):
        return 2
    if args.limit < 1 or args.probe_limit < 0 or args.threads < 1:
        print("error: --limit and --threads must be >= 1 and --probe-limit >= 0", file=sys.stderr)
        return 2
    try:
        report = diagnose(args.checkpoint, args.data, limit=args.limit, probe_limit=args.probe_limit,
                          threads=args.threads)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_report(report, args.out)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

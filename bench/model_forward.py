"""CPU forward time of the UNINEXT network per stage, and its peak memory: tiny at 320×320 vs r50 at 640×640.

Stages are timed inside one forward with module hooks: backbone (+ input projection), fusion (Bi-XAtt), encoder,
two_stage (proposals, objectness, top-K: the rest of the transformer), decoder (incl. its box refinement), heads
(retrieval, IoU, controller, mask features, re-ID); `other` is the remainder (padding masks, flattening). The prompt
(a category caption padded to the preset's prompt length: tiny 64 tokens, official presets 256) is encoded once
outside the timed forward, as the session does. r50 uses a randomly initialised bert-base text encoder. Each case
runs in its own process so that peak RSS (ru_maxrss) is per case: peak_rss_mb is the process peak, forward_peak_mb
the increase over the built model. Median and p90 over the timed iterations after a warm-up, one JSON line per case,
then the stages side by side with the r50 / tiny ratio.

    .venv/bin/python bench/model_forward.py [--threads 2] [--iterations 3] [--cases tiny r50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import torch

from uninext_core import build_model
from uninext_core.model.uninext import Uninext

CASES = {"tiny": ("tiny", 320), "r50": ("r50", 640)}
STAGES = ("backbone", "fusion", "encoder", "two_stage", "decoder", "heads", "other")
CAPTION = "person. bicycle. car. motorcycle. bus. truck. traffic light. dog. cat. chair"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class StageTimer:
    """Accumulates wall time of module groups via forward pre/post hooks."""

    def __init__(self, model: Uninext) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._starts: dict[int, float] = {}
        groups = {
            "backbone": [model.backbone, model.input_proj],
            "fusion": [model.transformer.fusion],
            "encoder": [model.transformer.encoder],
            "decoder": [model.transformer.decoder],
            "transformer": [model.transformer],
            "heads": [*model.class_embed[:-1], *model.iou_head, model.controller, model.mask_head]
            + ([model.reid_head] if model.reid_head is not None else []),
        }
        for name, modules in groups.items():
            for module in modules:
                module.register_forward_pre_hook(self._pre)
                module.register_forward_hook(self._post(name))

    def _pre(self, module, args):
        self._starts[id(module)] = time.perf_counter()

    def _post(self, name):
        def hook(module, args, output):
            self.totals[name] += time.perf_counter() - self._starts.pop(id(module))
        return hook

    def reset(self) -> None:
        self.totals.clear()


def run_case(name: str, iterations: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    preset, side = CASES[name]
    rss_start = _rss_mb()
    model = build_model(preset, allow_random_text_init=True).eval()
    timer = StageTimer(model)
    images = torch.randn(1, 3, side, side)
    pixel_mask = torch.ones(1, side, side, dtype=torch.bool)
    with torch.inference_mode():
        tokens = model.text_encoder.tokenize([CAPTION])
        prompt_tokens = int(tokens.input_ids.shape[1])
        start = time.perf_counter()
        prompt = model.encode_text(tokens.input_ids, tokens.attention_mask)
        prompt_ms = (time.perf_counter() - start) * 1e3
        rss_model = _rss_mb()
        model(images, pixel_mask, prompt)  # warm-up
        totals, stages = [], defaultdict(list)
        for _ in range(iterations):
            timer.reset()
            start = time.perf_counter()
            model(images, pixel_mask, prompt)
            total = time.perf_counter() - start
            t = dict(timer.totals)
            inside = t["fusion"] + t["encoder"] + t["decoder"]
            t["two_stage"] = t.pop("transformer") - inside
            t["other"] = total - sum(t[s] for s in STAGES if s != "other")
            totals.append(total * 1e3)
            for stage in STAGES:
                stages[stage].append(t[stage] * 1e3)
    totals.sort()
    return {
        "case": name, "device": "cpu", "precision": "fp32", "input_hw": [side, side], "prompt_tokens": prompt_tokens,
        "threads": threads, "iterations": iterations, "load_avg_1m": round(os.getloadavg()[0], 2),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "median_ms": round(statistics.median(totals), 1),
        "p90_ms": round(totals[min(len(totals) - 1, int(0.9 * len(totals)))], 1),
        "stages_median_ms": {s: round(statistics.median(stages[s]), 1) for s in STAGES},
        "prompt_encode_ms": round(prompt_ms, 1),
        "model_rss_mb": round(rss_model - rss_start, 1), "peak_rss_mb": round(_rss_mb(), 1),
        "forward_peak_mb": round(_rss_mb() - rss_model, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.iterations, args.threads)))
        return
    results = []
    for case in args.cases:
        out = subprocess.run([sys.executable, __file__, "--child", case, "--iterations", str(args.iterations),
                              "--threads", str(args.threads)], check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    if len(results) < 2:
        return
    base, other = results[0], results[1]
    rows = [("total", base["median_ms"], other["median_ms"])]
    rows += [(s, base["stages_median_ms"][s], other["stages_median_ms"][s]) for s in STAGES]
    rows += [("forward peak MB", base["forward_peak_mb"], other["forward_peak_mb"]),
             ("model RSS MB", base["model_rss_mb"], other["model_rss_mb"])]
    print(f"\n{'median ms':<16}{base['case'] + ' ' + str(base['input_hw'][0]):>14}"
          f"{other['case'] + ' ' + str(other['input_hw'][0]):>14}{'ratio':>9}")
    for label, a, b in rows:
        ratio = f"{b / a:.1f}x" if a > 0 else "-"
        print(f"{label:<16}{a:>14.1f}{b:>14.1f}{ratio:>9}")


if __name__ == "__main__":
    main()

"""Writing a synthetic dataset for one task through the real-format writers.

| task      | layout under `out/`                                                 | writer                        |
|-----------|---------------------------------------------------------------------|-------------------------------|
| detection | images/000000.jpg, annotations/instances.json                       | COCO (RLE or polygons)        |
| referring | images/..., annotations/instances.json, annotations/refs.json       | COCO + RefCOCO refs           |
| video     | frames/<video>/00000.jpg, annotations/instances.json,               | COCO-video + Ref-YouTube-VOS  |
|           | annotations/meta_expressions.json                                   |                               |
| vis       | train/JPEGImages/<video>/00000.jpg, train.json                      | YouTube-VIS                   |
| mot       | train/SYN-001/{img1/000001.jpg, gt/gt.txt, seqinfo.ini}             | MOTChallenge                  |
| sot       | LaSOT <kind>/<kind>-<k>/img/00000001.jpg or GOT-10k train/<seq>/    | LaSOT / GOT-10k               |
| vos       | DAVIS JPEGImages/480p/<seq>/, Annotations/480p/<seq>/ or YouTube-VOS | palette PNGs (+ meta.json)    |

Items are made in parallel when `workers` > 1; every item depends only on (seed, task, index), so the output is
the same for any worker count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any

from uninext_core.data.synthetic import image_tasks, video_tasks
from uninext_core.data.synthetic.options import ExportOptions, ExportResult


def map_items(
    fn: Callable[[int], Any], count: int, *, workers: int, progress: Callable[[int], None] | None = None
) -> Iterator[Any]:
    """fn(0..count-1) in index order, in `workers` processes when > 1; `progress(1)` after each item."""
    if workers <= 1:
        for index in range(count):
            result = fn(index)
            if progress:
                progress(1)
            yield result
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(fn, range(count), chunksize=max(1, min(16, count // (4 * workers)))):
            if progress:
                progress(1)
            yield result


def export_world(options: ExportOptions, *, progress: Callable[[int], None] | None = None) -> ExportResult:
    """Generate and write one task's dataset; see the module table for layouts."""
    options.out.mkdir(parents=True, exist_ok=True)
    match options.task:
        case "detection" | "referring":
            items = map_items(partial(image_tasks.make_image_item, options), options.count, workers=options.workers,
                              progress=progress)
            return image_tasks.write_image_task(options, list(items))
        case _:
            items = map_items(partial(video_tasks.make_video_item, options), options.count, workers=options.workers,
                              progress=progress)
            return video_tasks.write_video_task(options, list(items))

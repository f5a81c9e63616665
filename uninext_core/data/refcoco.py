"""RefCOCO / RefCOCO+ / RefCOCOg referring expressions (the `refer` toolkit layout): reader and writer.

A refs file is a list of {"ref_id", "ann_id", "image_id", "category_id", "split", "file_name", "sent_ids",
"sentences": [{"sent_id", "raw", "sent", "tokens"}]} pointing into a COCO instances file (`instances.json`).
The original release ships it as a Python pickle (`refs(unc).p`); it is read with an unpickler that refuses every
class, so only plain lists, dicts, strings and numbers load. `.json` files with the same structure are read too, and
the writer writes JSON.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from uninext_core.data.coco import read_coco_instances, write_coco_instances
from uninext_core.data.errors import DataFormatError
from uninext_core.data.json_fields import field_of, load_json, write_json
from uninext_core.data.records import ReferringDataset, RefExpression


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads only built-in containers and scalars; any class reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: refs pickles hold plain data only")


def load_refs_file(path: str | Path) -> list[Any]:
    """The raw list of ref dicts from a `.p` pickle or a `.json` file."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "", "file not found")
    if path.suffix == ".json":
        data = load_json(path)
    else:
        try:
            with path.open("rb") as f:
                data = _PlainDataUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise DataFormatError(path, "", f"not a plain-data refs pickle: {exc}") from exc
    if not isinstance(data, list):
        raise DataFormatError(path, "", f"expected a list of refs, got {type(data).__name__}")
    return data


def read_refcoco(
    refs_path: str | Path, instances_path: str | Path, *, image_root: str | Path | None = None,
    check_images: bool = True,
) -> ReferringDataset:
    """Read referring expressions and the COCO instances they point into.

    Returns:
        ReferringDataset; each ref's `sentences` are the "raw" strings (falling back to "sent").

    Raises:
        DataFormatError: malformed refs, a ref without sentences, or an ann_id / image_id / category_id that
            disagrees with the instances file; plus everything `read_coco_instances` raises.
    """
    refs_path = Path(refs_path)
    detection = read_coco_instances(instances_path, image_root=image_root, check_images=check_images)
    annotations = {ann.id: (image.id, ann) for image in detection.images for ann in image.annotations}
    refs: list[RefExpression] = []
    seen: set[int] = set()
    for k, item in enumerate(load_refs_file(refs_path)):
        ref_id = field_of(item, "ref_id", int, path=refs_path, record=f"ref {k}")
        record = f"ref_id {ref_id}"
        if ref_id in seen:
            raise DataFormatError(refs_path, record, "duplicate ref_id")
        seen.add(ref_id)
        ann_id = field_of(item, "ann_id", int, path=refs_path, record=record)
        image_id = field_of(item, "image_id", int, path=refs_path, record=record)
        category_id = field_of(item, "category_id", int, path=refs_path, record=record)
        if ann_id not in annotations:
            raise DataFormatError(refs_path, record, f"ann_id {ann_id} is not in {Path(instances_path).name}")
        ann_image, ann = annotations[ann_id]
        if ann_image != image_id:
            raise DataFormatError(refs_path, record,
                                  f"image_id {image_id} but annotation {ann_id} is on image {ann_image}")
        if ann.category_id != category_id:
            raise DataFormatError(
                refs_path, record, f"category_id {category_id} but annotation {ann_id} has {ann.category_id}"
            )
        sentences = []
        for j, sentence in enumerate(field_of(item, "sentences", list, path=refs_path, record=record)):
            text = sentence.get("raw", sentence.get("sent")) if isinstance(sentence, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataFormatError(refs_path, f"{record} sentence {j}",
                                      f"needs a non-empty 'raw' or 'sent', got {sentence!r:.80}")
            sentences.append(text)
        if not sentences:
            raise DataFormatError(refs_path, record, "no sentences")
        split = item.get("split", "train")
        refs.append(RefExpression(ref_id, image_id, ann_id, category_id, sentences, str(split)))
    return ReferringDataset(detection, refs)


def normalise_sentence(text: str) -> str:
    """The `sent` spelling: lower case, punctuation removed, single spaces."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def refs_to_json(dataset: ReferringDataset) -> list[dict[str, Any]]:
    """Refs in the `refer` toolkit structure (sentence ids numbered across the file)."""
    file_names = {im.id: im.file_name for im in dataset.detection.images}
    out = []
    sent_id = 0
    for ref in dataset.refs:
        sentences = []
        for text in ref.sentences:
            sent = normalise_sentence(text)
            sentences.append({"sent_id": sent_id, "raw": text, "sent": sent, "tokens": sent.split()})
            sent_id += 1
        out.append({
            "ref_id": ref.ref_id, "ann_id": ref.ann_id, "image_id": ref.image_id, "category_id": ref.category_id,
            "split": ref.split, "file_name": file_names[ref.image_id], "sent_ids": [s["sent_id"] for s in sentences],
            "sentences": sentences,
        })
    return out


def write_refcoco(dataset: ReferringDataset, refs_path: str | Path, instances_path: str | Path) -> None:
    """Write the instances file and the refs JSON that `read_refcoco` reads back to an equal dataset."""
    write_coco_instances(dataset.detection, instances_path)
    write_json(refs_to_json(dataset), refs_path)

"""Typed access to JSON annotation fields; every failure names the file and the record."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from uninext_core.data.errors import DataFormatError
from uninext_core.data.records import BoxXyxy, Category


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing file or bad JSON raises DataFormatError naming the file (and line/column)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "", "file not found")
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}") from exc


def write_json(obj: Any, path: str | Path) -> None:
    """Write compact JSON (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))


def field_of(obj: Any, key: str, kind: type | tuple[type, ...], *, path: Path, record: str) -> Any:
    """`obj[key]`, checked to be a dict entry of the given type(s) (bool is never accepted as int)."""
    if not isinstance(obj, dict):
        raise DataFormatError(path, record, f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise DataFormatError(path, record, f"missing field {key!r}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise DataFormatError(path, record, f"field {key!r} must be {_names(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise DataFormatError(path, record, f"field {key!r} must be {_names(kinds)}, got {value!r:.80}")
    return value


def list_field(obj: Any, key: str, *, path: Path, record: str) -> list[Any]:
    """`obj[key]` checked to be a JSON list."""
    return field_of(obj, key, list, path=path, record=record)


def unique_records(obj: Any, key: str, *, path: Path, singular: str) -> Iterator[tuple[int, str, Any]]:
    """The items of the list `obj[key]` as (integer "id", record label "<singular> id N", item); a repeated id
    raises ("duplicate <singular> id") before its item is yielded."""
    seen: set[int] = set()
    for k, item in enumerate(list_field(obj, key, path=path, record=key)):
        item_id = field_of(item, "id", int, path=path, record=f"{singular} {k}")
        record = f"{singular} id {item_id}"
        if item_id in seen:
            raise DataFormatError(path, record, f"duplicate {singular} id")
        seen.add(item_id)
        yield item_id, record, item


def known_id(obj: Any, key: str, known: Collection[int], *, among: str, path: Path, record: str) -> int:
    """`obj[key]`, an integer reference that must be in `known` ("image_id 7 is not among the images")."""
    value = field_of(obj, key, int, path=path, record=record)
    if value not in known:
        raise DataFormatError(path, record, f"{key} {value} is not among the {among}")
    return value


def positive_int(obj: Any, key: str, *, path: Path, record: str) -> int:
    """`obj[key]` checked to be an integer > 0 (image heights and widths)."""
    value = field_of(obj, key, int, path=path, record=record)
    if value <= 0:
        raise DataFormatError(path, record, f"field {key!r} must be > 0, got {value}")
    return value


def box_from_xywh(value: Any, *, path: Path, record: str) -> BoxXyxy:
    """A COCO bbox [x, y, w, h] (w, h ≥ 0) as (x1, y1, x2, y2) pixels."""
    if not (isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)):
        raise DataFormatError(path, record, f"bbox must be [x, y, w, h] numbers, got {value!r:.80}")
    x, y, w, h = (float(v) for v in value)
    if w < 0 or h < 0:
        raise DataFormatError(path, record, f"bbox width and height must be ≥ 0, got {value!r}")
    return (x, y, x + w, y + h)


def box_to_xywh(box: BoxXyxy) -> list[float]:
    """(x1, y1, x2, y2) → COCO [x, y, w, h]."""
    x1, y1, x2, y2 = box
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def parse_categories(obj: Any, *, path: Path) -> list[Category]:
    """The `categories` list of a COCO-family file: non-empty, unique integer ids, string names."""
    items = list_field(obj, "categories", path=path, record="categories")
    if not items:
        raise DataFormatError(path, "categories", "empty category list (expected at least one category)")
    categories: list[Category] = []
    for cat_id, record, item in unique_records(obj, "categories", path=path, singular="category"):
        name = field_of(item, "name", str, path=path, record=record)
        supercategory = item.get("supercategory", "")
        categories.append(Category(cat_id, name, supercategory if isinstance(supercategory, str) else ""))
    return categories


def categories_to_json(categories: list[Category]) -> list[dict[str, Any]]:
    """Categories in COCO form."""
    return [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in categories]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)

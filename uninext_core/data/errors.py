"""The one error type of the readers: a ValueError that names the file and the record at fault."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """Malformed or inconsistent dataset input.

    The message reads ``"<file path>: <record>: <problem>"``, e.g.
    ``"data/instances_train.json: annotation id 17: segmentation RLE size [10, 20] does not match image 3 (480×640)"``.

    Attributes:
        path: the file (or folder) that holds the bad record.
        record: which record inside it ("annotation id 17", "line 4", "frame 00012.png"), or "" for the whole file.
        problem: what is wrong, with the value received and the one expected.
    """

    def __init__(self, path: str | Path, record: str, problem: str) -> None:
        self.path = Path(path)
        self.record = record
        self.problem = problem
        where = f"{self.path}: {record}" if record else str(self.path)
        super().__init__(f"{where}: {problem}")

"""Reading one events file: the shared shape of the JSONL, CSV and Parquet readers."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class FileReader(abc.ABC):
    """Iterates ``(offset, value)`` of one file from a start offset.

    ``offset`` is a position the reader can seek back to cheaply; the next
    record always has a larger one. ``value`` is raw JSON bytes or a row.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @abc.abstractmethod
    def read(self, start: int) -> Iterator[tuple[int, bytes | Mapping[str, Any]]]:
        """Yield records at or after ``start``. Blocks on disk reads only."""


def nest_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a flat row (``features.age``, ``probabilities.yes``) into an event mapping.

    Empty cells and NaN are dropped, so a missing feature reads as missing.

    >>> nest_row({"model": "m", "features.age": 41.0, "features.city": "", "score": 0.2})
    {'model': 'm', 'features': {'age': 41.0}, 'score': 0.2}
    """
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value == "" or (isinstance(value, float) and value != value):
            if key.startswith("features."):
                out.setdefault("features", {})
            continue
        head, dot, tail = key.partition(".")
        if dot and head in ("features", "probabilities"):
            out.setdefault(head, {})[tail] = value
        else:
            out[key] = value
    return out

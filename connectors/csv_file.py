"""CSV files: one event per row, nested columns as ``features.NAME``."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.file_reader import FileReader, nest_row


def _number(cell: str) -> Any:
    # Cells of numeric look become numbers; the schema decides what is valid.
    try:
        return float(cell)
    except ValueError:
        return cell


class CsvFile(FileReader):
    """Yields each row as an event mapping; the offset is the row index.

    Feature cells that parse as numbers become floats (a categorical feature
    coded ``01`` reads as category ``1``); an empty cell is a missing value.
    """

    def read(self, start: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
        with self.path.open(newline="", encoding="utf-8") as f:
            for index, row in enumerate(csv.DictReader(f)):
                if index < start:
                    continue
                flat = {
                    k: (_number(v) if k.startswith(("features.", "probabilities.")) and v else v)
                    for k, v in row.items()
                    if k is not None
                }
                yield index, nest_row(flat)

"""Parquet files: one event per row, nested columns as ``features.NAME``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.file_reader import FileReader, nest_row


class ParquetFile(FileReader):
    """Yields each row as an event mapping; the offset is the row index.

    Reads in record batches (bounded memory however large the file); a
    ``features`` struct column works as well as flat ``features.*`` columns.
    """

    batch_rows = 10_000

    def read(self, start: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
        import pyarrow.parquet as pq  # lazy: only replays of Parquet need it

        index = 0
        pf = pq.ParquetFile(self.path)
        for batch in pf.iter_batches(batch_size=self.batch_rows):
            if index + batch.num_rows <= start:
                index += batch.num_rows
                continue
            for row in batch.to_pylist():
                if index >= start:
                    yield index, nest_row(_flatten(row))
                index += 1


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and key in ("features", "probabilities"):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out

"""Replaying prediction and outcome files, merged in event time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from connectors.base import OUTCOMES, PREDICTIONS, Record, Source
from connectors.csv_file import CsvFile
from connectors.file_reader import FileReader
from connectors.jsonl_file import JsonlFile
from connectors.parquet_file import ParquetFile

READERS: Mapping[str, type[FileReader]] = {
    "jsonl": JsonlFile,
    "csv": CsvFile,
    "parquet": ParquetFile,
}
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class _Stamp(msgspec.Struct):
    timestamp: Any = None


_stamp = msgspec.json.Decoder(_Stamp)


def event_time(value: bytes | Mapping[str, Any]) -> float | None:
    """The event time of a raw record, or None if it has none we can read
    (a malformed record: it will be dead-lettered, its order does not matter)."""
    try:
        ts = _stamp.decode(value).timestamp if isinstance(value, bytes) else value.get("timestamp")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return float(ts)
    if isinstance(ts, str):
        try:
            return float(ts)
        except ValueError:
            pass
        try:
            from datetime import UTC, datetime

            dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            return None
    return None


def reader_for(path: str | Path, fmt: str = "auto") -> FileReader:
    p = Path(path)
    if fmt == "auto":
        found = _SUFFIXES.get(p.suffix.lower())
        if found is None:
            raise ValueError(
                f"{p}: cannot tell the format from the suffix; set format = jsonl, csv or parquet"
            )
        fmt = found
    return READERS[fmt](p)


class FileReplay(Source):
    """A finite source over a predictions file and/or an outcomes file.

    The two files are merged by event time, so outcomes meet their
    predictions as they did in production. ``speed`` 0 replays as fast as
    possible; ``speed`` s > 0 paces records so that s seconds of event time
    pass per wall second (poll blocks for the pacing). Partition names are
    ``file:<stream>:<file name>``; offsets are the readers' (byte offsets for
    JSONL, row indexes otherwise).
    """

    def __init__(
        self,
        name: str,
        predictions: str | Path | None,
        outcomes: str | Path | None,
        fmt: str = "auto",
        speed: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._files: list[tuple[str, FileReader]] = []
        for stream, path in ((PREDICTIONS, predictions), (OUTCOMES, outcomes)):
            if path is not None:
                reader = reader_for(path, fmt)
                if not reader.path.exists():
                    raise FileNotFoundError(f"{stream} file {reader.path} does not exist")
                self._files.append((stream, reader))
        self._speed = speed
        self._clock = clock
        self._sleep = sleep
        self._iters: list[Iterator[tuple[int, Any]]] = []
        self._heads: list[tuple[float, Record] | None] = []
        self._pace_origin: tuple[float, float] | None = None
        self._done = False

    @staticmethod
    def partition_name(stream: str, reader: FileReader) -> str:
        return f"file:{stream}:{reader.path.name}"

    def open(self, start: Mapping[str, int]) -> None:
        for stream, reader in self._files:
            part = self.partition_name(stream, reader)
            self._iters.append(iter(reader.read(start.get(part, 0))))
        self._heads = [self._next(i) for i in range(len(self._iters))]

    def _next(self, i: int) -> tuple[float, Record] | None:
        item = next(self._iters[i], None)
        if item is None:
            return None
        offset, value = item
        stream, reader = self._files[i]
        ts = event_time(value)
        record = Record(stream, value, self.partition_name(stream, reader), offset, 0)
        # Unreadable times sort first: they are dead letters and carry no order.
        return (float("-inf") if ts is None else ts, record)

    def poll(self, max_records: int, timeout_seconds: float) -> list[Record]:
        out: list[Record] = []
        heads = self._heads
        while len(out) < max_records:
            live = [(h[0], i) for i, h in enumerate(heads) if h is not None]
            if not live:
                self._done = True
                break
            ts, i = min(live)
            if (
                self._speed > 0
                and ts != float("-inf")
                and not self._pace(ts, timeout_seconds, bool(out))
            ):
                break
            head = heads[i]
            assert head is not None
            out.append(head[1])
            heads[i] = self._next(i)
        return out

    def _pace(self, ts: float, timeout: float, have_some: bool) -> bool:
        """Wait until ``ts`` is due; False if it is not due within this poll."""
        now = self._clock()
        if self._pace_origin is None:
            self._pace_origin = (ts, now)
        due = self._pace_origin[1] + (ts - self._pace_origin[0]) / self._speed
        wait = due - now
        if wait <= 0:
            return True
        if have_some or wait > timeout:
            if not have_some:
                self._sleep(timeout)
            return False
        self._sleep(wait)
        return True

    @property
    def exhausted(self) -> bool:
        return self._done

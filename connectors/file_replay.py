"""Replaying prediction and outcome files, merged in event time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from connectors.base import OUTCOMES, PREDICTIONS, Record, Source
from connectors.csv_file import CsvFile
from connectors.file_reader import FileReader
from connectors.jsonl_file import JsonlFile
from connectors.parquet_file import ParquetFile
from connectors.records import NO_TIME, STAMP, as_time, event_time, make_records

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


_FLOAT = {float}
# Rows of a CSV or Parquet file taken at a time (JSONL comes in blocks of bytes).
_ROWS_PER_CHUNK = 4096


def _times(values: list[Any], lines: bool) -> list[float]:
    """:func:`event_time` of each value, unreadable ones as -inf (they sort first).

    ``lines``: the values are JSON lines (bytes). They are decoded in one
    ``map`` (msgspec skims all but the timestamp); when all their times are
    floats, those are the answer.
    """
    if lines:
        try:
            times = [s.timestamp for s in map(STAMP.decode, values)]
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # one is malformed: each on its own below
        else:
            if {*map(type, times)} == _FLOAT:
                return times
            return [NO_TIME if t is None else t for t in map(as_time, times)]
    return [NO_TIME if t is None else t for t in map(event_time, values)]


class _Stream:
    """One file being replayed: a chunk of records and their event times, and
    the position of the next one. Read ahead by a chunk, so that whether a
    record is left is always known."""

    __slots__ = ("_chunks", "pos", "records", "times")

    def __init__(self, chunks: Iterator[tuple[list[float], list[Record]]]) -> None:
        self._chunks = chunks
        self.times: list[float] = []
        self.records: list[Record] = []
        self.pos = 0
        self.fill()

    def fill(self) -> None:
        """After taking records: load the next chunk if this one is used up."""
        while self.pos >= len(self.records):
            chunk = next(self._chunks, None)
            if chunk is None:
                self.times, self.records, self.pos = [], [], 0
                return
            self.times, self.records = chunk
            self.pos = 0

    def head_time(self) -> float:
        return self.times[self.pos]


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
        self._streams: list[_Stream] = []
        self._pace_origin: tuple[float, float] | None = None
        self._done = False

    @staticmethod
    def partition_name(stream: str, reader: FileReader) -> str:
        return f"file:{stream}:{reader.path.name}"

    def open(self, start: Mapping[str, int]) -> None:
        self._streams = [
            _Stream(self._chunks(stream, reader, start.get(self.partition_name(stream, reader), 0)))
            for stream, reader in self._files
        ]

    def _chunks(
        self, stream: str, reader: FileReader, start: int
    ) -> Iterator[tuple[list[float], list[Record]]]:
        """The file's records a chunk at a time, with their event times."""
        part = self.partition_name(stream, reader)
        chunks: Iterator[tuple[list[int], list[Any]]]
        if isinstance(reader, JsonlFile):  # blocks of lines
            chunks, lines = reader.read_chunks(start), True
        else:
            chunks, lines = _batched(reader.read(start), _ROWS_PER_CHUNK), False
        for offsets, values in chunks:
            yield _times(values, lines), make_records(stream, values, part, offsets)

    def poll(self, max_records: int, timeout_seconds: float) -> list[Record]:
        out: list[Record] = []
        streams = self._streams
        while len(out) < max_records:
            live = [s for s in streams if s.pos < len(s.records)]
            if not live:
                self._done = True
                break
            if self._speed <= 0 and len(live) <= 2:
                # Unpaced, one or two files (a replay has at most two): take
                # records in runs rather than one min() over the heads each.
                self._take(live, max_records - len(out), out)
                continue
            # The head with the smallest event time; on a tie the earlier file.
            head = min(live, key=_Stream.head_time)
            ts = head.times[head.pos]
            if self._speed > 0 and ts != NO_TIME and not self._pace(ts, timeout_seconds, bool(out)):
                break
            out.append(head.records[head.pos])
            head.pos += 1
            head.fill()
        return out

    @staticmethod
    def _take(live: list[_Stream], room: int, out: list[Record]) -> None:
        """Up to ``room`` records in event-time order, while the live files'
        current chunks last (then the caller looks again)."""
        if len(live) == 1:
            (s,) = live
            end = min(len(s.records), s.pos + room)
            out += s.records[s.pos : end]
            s.pos = end
            s.fill()
            return
        a, b = live
        ta, ra, pa, na = a.times, a.records, a.pos, len(a.records)
        tb, rb, pb, nb = b.times, b.records, b.pos, len(b.records)
        append = out.append
        while room and pa < na and pb < nb:
            # As min() over (time, file index): the later file only if strictly earlier.
            if tb[pb] < ta[pa]:
                append(rb[pb])
                pb += 1
            else:
                append(ra[pa])
                pa += 1
            room -= 1
        a.pos, b.pos = pa, pb
        a.fill()
        b.fill()

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


def _batched(items: Iterator[tuple[int, Any]], n: int) -> Iterator[tuple[list[int], list[Any]]]:
    """``(offset, value)`` pairs as ``(offsets, values)`` lists of up to ``n``."""
    while batch := list(islice(items, n)):
        offsets, values = zip(*batch, strict=True)
        yield list(offsets), list(values)

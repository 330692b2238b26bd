"""JSON Lines files: one event per line."""

from __future__ import annotations

from collections.abc import Iterator

from connectors.file_reader import FileReader


class JsonlFile(FileReader):
    r"""Yields each non-blank line as raw bytes; the offset is the byte position
    of its first character, so resuming seeks straight to it.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.jsonl"
    >>> _ = p.write_bytes(b'{"a":1}\n\n{"b":2}\n')
    >>> list(JsonlFile(p).read(0))
    [(0, b'{"a":1}'), (9, b'{"b":2}')]
    >>> list(JsonlFile(p).read(1))  # resume after the record at 0
    [(9, b'{"b":2}')]
    """

    def read(self, start: int) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as f:
            offset = 0
            if start > 0:
                # ``start`` is "after the record at start - 1": finish the line
                # that byte belongs to, landing on the next line's first byte.
                f.seek(start - 1)
                offset = start - 1 + len(f.readline())
            for line in f:
                here = offset
                offset += len(line)
                stripped = line.strip()
                if stripped:
                    yield here, stripped

"""JSON Lines files: one event per line."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate, repeat
from operator import add

from connectors.file_reader import FileReader

#: Bytes read at a time by :meth:`JsonlFile.read_chunks`: large enough that the
#: per-read cost vanishes, small enough to stay in a few MiB of memory.
CHUNK_BYTES = 1 << 20


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
        for offsets, lines in self.read_chunks(start):
            yield from zip(offsets, lines, strict=True)

    def read_chunks(
        self, start: int, size: int = CHUNK_BYTES
    ) -> Iterator[tuple[list[int], list[bytes]]]:
        r"""What :meth:`read` yields, as ``(offsets, lines)`` lists for each
        ``size`` bytes of the file: one ``read`` and one ``split`` per block
        rather than a Python step per line.

        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.jsonl"
        >>> _ = p.write_bytes(b'{"a":1}\r\n \n{"b":2}\n{"c":3}')
        >>> list(JsonlFile(p).read_chunks(0, size=4))
        [([0], [b'{"a":1}']), ([11], [b'{"b":2}']), ([19], [b'{"c":3}'])]
        >>> list(JsonlFile(p).read(1))  # the same records, one by one
        [(11, b'{"b":2}'), (19, b'{"c":3}')]
        """
        with self.path.open("rb") as f:
            offset = 0
            if start > 0:
                # ``start`` is "after the record at start - 1": finish the line
                # that byte belongs to, landing on the next line's first byte.
                f.seek(start - 1)
                offset = start - 1 + len(f.readline())
            tail = b""  # the unfinished last line of the blocks so far
            while block := f.read(size):
                lines = (tail + block if tail else block).split(b"\n")
                tail = lines.pop()
                if lines:
                    # Each line's first byte: the previous one's plus its length and "\n".
                    starts = list(accumulate(map(add, map(len, lines), repeat(1)), initial=offset))
                    offset = starts.pop()
                    chunk = _nonblank(starts, lines)
                    if chunk[0]:
                        yield chunk
            if tail:
                chunk = _nonblank([offset], [tail])
                if chunk[0]:
                    yield chunk


def _nonblank(offsets: list[int], lines: list[bytes]) -> tuple[list[int], list[bytes]]:
    # Stripped like ``line.strip()``; blank lines dropped with their offsets.
    stripped = list(map(bytes.strip, lines))
    if all(stripped):
        return offsets, stripped
    kept = [(o, line) for o, line in zip(offsets, stripped, strict=True) if line]
    return [o for o, _ in kept], [line for _, line in kept]

"""JSON Lines files: one event per line."""

from __future__ import annotations

from collections.abc import Iterator

from connectors.file_reader import FileReader


class JsonlFile(FileReader):
    """Yields each non-blank line as raw bytes; the offset is its byte position,
    so resuming seeks straight to it."""

    def read(self, start: int) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as f:
            f.seek(start)
            offset = start
            for line in f:
                here = offset
                offset += len(line)
                stripped = line.strip()
                if stripped:
                    yield here, stripped

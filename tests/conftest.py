"""Fixtures shared by every test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import pytest

from tests.helpers import Receiver, start_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec, server = start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int | None], tuple[Receiver, Callable[[], None]]]]:
    """Start receivers on demand (for example on a port that was down before)."""
    servers: list[ThreadingHTTPServer] = []

    def start(port: int | None = None) -> tuple[Receiver, Callable[[], None]]:
        rec, server = start_receiver(port)
        servers.append(server)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            servers.remove(server)

        return rec, stop

    yield start
    for s in list(servers):
        s.shutdown()
        s.server_close()

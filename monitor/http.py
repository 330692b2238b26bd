"""driftd's HTTP endpoint: /metrics, /healthz, /readyz, and the JSON API.

A stdlib threading server in a background thread: scrapes and probes never
wait for the run loop, and the run loop never waits for them. /api/v1/* and
/openapi.json go to an optional :class:`monitor.api.Api`; this module only
moves bytes (it reads a body only up to the API's size limit).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from monitor.api import Api, Response

log = logging.getLogger("driftd.http")

Probe = Callable[[], tuple[bool, str]]
PROBES = ("/metrics", "/healthz", "/readyz")


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/openapi.json"


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Probe,
        ready: Probe,
        *,
        api: Api | None = None,
    ) -> None:
        self.api = api

        class Handler(BaseHTTPRequestHandler):
            server_version = "driftd"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if api is not None and is_api_path(path):
                    self._api(api, "GET")
                elif path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, encoder(registry), content_type)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = (health if path == "/healthz" else ready)()
                    body = json.dumps({"ok": ok, "detail": detail}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b'{"error": "not found"}', "application/json")

            def __getattr__(self, name: str) -> Callable[[], None]:
                if name.startswith("do_"):  # any method but GET: see _other
                    return self._other
                raise AttributeError(name)

            def _other(self) -> None:
                path = urlsplit(self.path).path
                if api is not None and is_api_path(path):
                    self._api(api, self.command)
                    return
                self.close_connection = True  # any body is left unread
                if path in PROBES:
                    body = b'{"error": "method not allowed"}'
                    self._send(405, body, "application/json", {"Allow": "GET"})
                else:
                    self._send(404, b'{"error": "not found"}', "application/json")

            def _api(self, api: Api, method: str) -> None:
                resp: Response
                length = self.headers.get("Content-Length", "0").strip() or "0"
                if "Transfer-Encoding" in self.headers or not length.isdigit():
                    self.close_connection = True
                    body = b'{"error": "body: send it with a Content-Length"}'
                    self._send(411, body, "application/json")
                    return
                if int(length) > api.max_body_bytes:
                    self.close_connection = True  # the body stays unread
                    resp = api.too_large()
                else:
                    parts = urlsplit(self.path)
                    query = parse_qs(parts.query, keep_blank_values=True)
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    body = self.rfile.read(int(length))
                    resp = api.respond(method, parts.path, query, headers, body)
                extra = {"Cache-Control": "no-store", **resp.headers}
                self._send(resp.status, resp.body, resp.content_type, extra)

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.host = host
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="driftd-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        extra = ", /api/v1, /openapi.json" if self.api is not None else ""
        log.info(
            "serving /metrics, /healthz, /readyz%s on http://%s:%d", extra, self.host, self.port
        )

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

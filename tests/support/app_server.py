"""A stand-in for the developer's application: a loopback HTTP server that receives the OIDC callback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class AppServer:
    base_url: str
    received: list[str] = field(default_factory=list)

    @property
    def callback(self) -> str:
        return f"{self.base_url}/callback"


@contextmanager
def run_app_server() -> Iterator[AppServer]:
    app = AppServer(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/favicon.ico":  # the browser asks after showing the callback page: not a redirect
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            app.received.append(f"{app.base_url}{self.path}")
            body = b"<!doctype html><title>Signed in</title><p>Signed in.</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    app.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()

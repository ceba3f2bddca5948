"""The real server refuses an endless body at the token endpoint without reading it: its memory stays flat.

Measured on the server process's own high-water mark (VmHWM in /proc/<pid>/status): a server that buffered a
50 MB body before checking its size would raise it by at least that much.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import LiveServer, run_live_server

BODY_MB = 50
CHUNK = 64 * 1024
STREAMS = 3
#: Growth of the peak RSS allowed over the whole test: far below one body, far above noise.
BOUND_MB = 20


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def stream_chunked(server: LiveServer, path: str, total: int) -> tuple[int, bytes]:
    """POST ``total`` bytes chunked to ``path`` until the server stops taking them; (bytes sent, answer head)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk = f"{CHUNK:x}\r\n".encode() + b"a" * CHUNK + b"\r\n"
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += CHUNK
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed the connection: what we expect
        try:
            answer = sock.recv(4096)
        except OSError:
            answer = b""
    return sent, answer


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_an_endless_chunked_token_request_leaves_the_servers_memory_flat(tmp_path: Path, database_url: str) -> None:
    with run_live_server(tmp_path / "server", database_url) as server:
        assert server.process is not None
        pid = server.process.pid
        # Warm up the token endpoint's code path so its first use is not counted.
        httpx.post(f"{server.url}/oauth/token", data={"grant_type": "x"}, timeout=10)
        before = memory_kib(pid, "VmHWM")

        results = [stream_chunked(server, "/oauth/token", BODY_MB * 1024 * 1024) for _ in range(STREAMS)]

        grown_mb = (memory_kib(pid, "VmHWM") - before) / 1024
        rss_mb = memory_kib(pid, "VmRSS") / 1024
        healthy = httpx.get(f"{server.url}/healthz", timeout=10).status_code

    assert grown_mb < BOUND_MB, f"peak RSS grew by {grown_mb:.0f} MB (RSS now {rss_mb:.0f} MB)"
    for sent, answer in results:
        assert sent < BODY_MB * 1024 * 1024, "the server read the whole body"
        assert not answer or answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert healthy == 200

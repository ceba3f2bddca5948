"""The real server under uvicorn on a loopback port, in a subprocess, as a user would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ADMIN_EMAIL = "ada@example.com"
ADMIN_PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    port: int
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None  # for tests that kill it

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``idp-mcp`` with this server's settings."""
        return subprocess.run(
            [sys.executable, "-m", "idp_mcp.cli", *args], env=self.env, capture_output=True, text=True, timeout=60
        )


@contextmanager
def run_live_server(
    data_dir: Path,
    database_url: str,
    *,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    serve_args: tuple[str, ...] = (),
) -> Iterator[LiveServer]:
    """``idp-mcp serve`` on ``port`` (a free one by default) until the block ends. ``extra_env`` may set another
    IDP_MCP_PUBLIC_URL (replicas answering as one issuer); ``serve_args`` go to ``serve`` (e.g. --workers)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "IDP_MCP_PUBLIC_URL": url,
        "IDP_MCP_DATA_DIR": str(data_dir),
        "IDP_MCP_DATABASE_URL": database_url,
        "IDP_MCP_LOG_LEVEL": "DEBUG",
        # Database work on the event loop raises and is logged: assert_no_loop_blocking() finds it in the log.
        "IDP_MCP_DEBUG_LOOP_GUARD": "1",
        **(extra_env or {}),
    }
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "idp_mcp.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield LiveServer(url=url, port=port, log_path=log_path, env=env, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    assert_no_loop_blocking(log_path)


#: What the loop guard (idp_mcp.store.loop_guard) logs when it refuses database work on the event loop.
LOOP_GUARD_MESSAGE = "blocking database work on the event loop"


def assert_no_loop_blocking(log_path: Path) -> None:
    """The server never started database work on its event loop (the guard raised and logged it)."""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if LOOP_GUARD_MESSAGE in line]
    assert not lines, "the server ran database work on its event loop:\n" + "\n".join(lines[:5])

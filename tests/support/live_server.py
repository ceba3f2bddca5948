"""The real server under uvicorn on a loopback port, in a subprocess, as a user would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import answers, running

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
        "IDP_MCP_DEBUG_TRANSACTION_TALLY": "1",
        **(extra_env or {}),
    }
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "idp_mcp.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args]
    with running(command, what="the server", log_path=log_path, ready=answers(f"{url}/healthz"), env=env) as process:
        yield LiveServer(url=url, port=port, log_path=log_path, env=env, process=process)

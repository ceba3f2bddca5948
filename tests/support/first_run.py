"""What a new user does: ``idp-mcp`` commands and ``serve`` with no IDP_MCP_* settings but the ones a test names,
in a home directory of the test's own (so the default data directory is a fresh one and nothing leaks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import answers, running

REPO = Path(__file__).resolve().parents[2]
#: Kept from the test run's environment: the suite's own switches (loop guard, lifted registration limit).
KEPT = ("IDP_MCP_DEBUG_LOOP_GUARD", "IDP_MCP_DEBUG_TRANSACTION_TALLY", "IDP_MCP_REGISTRATION_MAX_PER_ADDRESS")
SETUP_CODE = re.compile(r"setup code ([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})")


def user_environment(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a user whose home is ``home``: no IDP_MCP_* variable but ``settings``, no XDG_DATA_HOME,
    and this checkout's code first on the path (the venv may hold an install of another checkout)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        name: value
        for name, value in os.environ.items()
        if (not name.startswith("IDP_MCP_") or name in KEPT) and name not in ("XDG_DATA_HOME", "PYTHONPATH")
    }
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO / "src")
    return {**env, **settings}


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``idp-mcp <args>`` as ``python -m idp_mcp.cli``, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "idp_mcp.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def advertised_mcp_url(self) -> str:
        match = re.search(r"MCP server URL:\s+(\S+)", self.output())
        assert match, self.output()
        return match.group(1)


@contextmanager
def serving(
    command: Sequence[str], env: dict[str, str], port: int, log_path: Path, *, cwd: Path | None = None
) -> Iterator[Served]:
    """Run ``command`` (a serve command) until the block ends; it is up once 127.0.0.1:``port`` answers /healthz."""
    ready = answers(f"http://127.0.0.1:{port}/healthz")
    with running(
        command, what="the server", log_path=log_path, ready=ready, env=env, cwd=cwd, start_timeout=60, stop_timeout=15
    ) as process:
        yield Served(process, log_path)


def serve_command(port: int, *args: str) -> list[str]:
    """``idp-mcp serve --port <port>``, as scripts/serve runs it after its install step."""
    return [sys.executable, "-m", "idp_mcp.cli", "serve", "--port", str(port), *args]

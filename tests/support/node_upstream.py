"""node-oidc-provider (pinned in tests/upstream/package-lock.json) as a real upstream OpenID provider on a loopback
port. Installs its packages with ``npm ci`` on first use (a fresh clone has no node_modules)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import answers, running

UPSTREAM_DIR = Path(__file__).resolve().parents[1] / "upstream"


def ensure_installed() -> None:
    if (UPSTREAM_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("Node.js and npm are needed for the connector tests: apt-get install nodejs npm")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(UPSTREAM_DIR)],
        check=True,
        timeout=300,
    )


@dataclass
class NodeProvider:
    issuer: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_node_provider(
    directory: Path, port: int, clients: list[dict[str, Any]], accounts: dict[str, dict[str, Any]]
) -> Iterator[NodeProvider]:
    """node-oidc-provider on ``port`` with these clients (client_id, client_secret, redirect_uris) and accounts (the
    claims of each login)."""
    ensure_installed()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"upstream-{port}.json"
    config.write_text(json.dumps({"port": port, "clients": clients, "accounts": accounts}))
    log_path = directory / f"upstream-{port}.log"
    issuer = f"http://127.0.0.1:{port}"
    command = ["node", str(UPSTREAM_DIR / "server.mjs"), str(config)]
    ready = answers(f"{issuer}/.well-known/openid-configuration")
    with running(command, what="node-oidc-provider", log_path=log_path, ready=ready):
        yield NodeProvider(issuer, log_path)

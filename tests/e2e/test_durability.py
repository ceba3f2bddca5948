"""Durability: the server is killed with SIGKILL in the middle of a stream of writes made through its real HTTP API,
one acknowledged at a time, then started again on the same database. Every acknowledged write is there, and
the database opens cleanly (SQLite: PRAGMA integrity_check; both: the server starts and serves)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from idp_mcp.store.tables import clients, tenants
from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.inprocess import register_client
from tests.support.live_flow import call_tool, http_client, wait_for
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port, run_live_server
from tests.support.mcp_http import McpSession
from tests.support.tokens import IssuedToken, obtain_access_token

pytestmark = pytest.mark.e2e

ROUNDS = 2
WRITES_BEFORE_KILL = 24  # acknowledged writes per round before the kill; the stream goes on until it


@dataclass
class Acknowledged:
    """Writes the server answered with success, in the order they were acknowledged."""

    dcr_clients: list[str] = field(default_factory=list)
    applications: list[str] = field(default_factory=list)
    tenant_names: list[int] = field(default_factory=list)
    ended_by: Exception | None = None  # what stopped the stream: after the kill, a connection error

    @property
    def count(self) -> int:
        return len(self.dcr_clients) + len(self.applications) + len(self.tenant_names)


def write_stream(
    server: LiveServer, token: IssuedToken, acked: Acknowledged, start: int, stop: threading.Event
) -> None:
    """Write until the server goes away: a DCR registration, an MCP createApplication and an MCP updateTenant in
    turn, each recorded only once its success response has arrived."""
    n = start
    try:
        with http_client(server) as client:
            session = McpSession(client, token.access_token)
            session.initialize()
            while not stop.is_set():
                n += 1
                acked.dcr_clients.append(register_client(client, client_name=f"Agent {n}")["client_id"])
                created = session.call_tool("createApplication", {"name": f"App {n}", "type": "m2m"})
                assert not created.get("isError"), created
                acked.applications.append(created["structuredContent"]["applicationId"])
                renamed = session.call_tool("updateTenant", {"name": f"Tenant {n}"})
                assert not renamed.get("isError"), renamed
                acked.tenant_names.append(n)
    except Exception as exc:  # the kill ends the stream with whatever error the client sees
        acked.ended_by = exc


def integrity_check(database_url: str) -> str:
    path = database_url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_every_acknowledged_write_survives_a_kill_9_and_the_database_opens_cleanly(
    tmp_path: Path, database_url: str
) -> None:
    # One port for every run: the public URL, so the issuer and the token, stay the same across restarts.
    port = free_port()
    acked = Acknowledged()
    token: IssuedToken | None = None

    for round_ in range(ROUNDS):
        with run_live_server(tmp_path / f"run-{round_}", database_url, port=port) as server:
            if token is None:
                created = server.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
                assert created.returncode == 0, created.stderr
                with http_client(server) as client:
                    token = obtain_access_token(client)
            before, acked.ended_by = acked.count, None
            stop = threading.Event()
            writer = threading.Thread(target=write_stream, args=(server, token, acked, round_ * 10_000, stop))
            writer.start()

            def enough_writes(before: int = before) -> bool:
                if acked.ended_by is not None:
                    raise AssertionError(f"the write stream stopped before the kill: {acked.ended_by!r}")
                return acked.count >= before + WRITES_BEFORE_KILL

            wait_for(enough_writes, timeout=60, what="acknowledged writes")
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)  # no shutdown, no flush: whatever is in flight is cut
            server.process.wait(timeout=10)
            stop.set()
            writer.join(timeout=30)
            assert not writer.is_alive()
            # The stream ended because the server vanished, not because it answered a write with an error.
            assert not isinstance(acked.ended_by, AssertionError), acked.ended_by
        assert_no_secrets_in_logs(server)
        if database_url.startswith("sqlite"):
            assert integrity_check(database_url) == "ok"

    assert token is not None
    with run_live_server(tmp_path / "final", database_url, port=port) as server:
        assert_everything_acknowledged_is_there(server, token, database_url, acked)
    assert_no_secrets_in_logs(server)


def assert_everything_acknowledged_is_there(
    server: LiveServer, token: IssuedToken, database_url: str, acked: Acknowledged
) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(select(clients.c.client_id)).scalars())
            tenant_name = conn.execute(select(tenants.c.name).where(tenants.c.id == "default")).scalar_one()
    finally:
        engine.dispose()
    assert set(acked.dcr_clients) <= stored, "an acknowledged registration was lost"
    assert set(acked.applications) <= stored, "an acknowledged application was lost"
    # The last acknowledged rename is there, or the one in flight when the server died (it may have committed).
    last = acked.tenant_names[-1]
    assert tenant_name in (f"Tenant {last}", f"Tenant {last + 1}"), tenant_name

    # The restarted server serves: the token issued before the kills still works, and sees every application.
    listed = call_tool(server, token.access_token, "listApplications")
    assert not listed.get("isError"), listed
    assert set(acked.applications) <= {app["applicationId"] for app in listed["structuredContent"]["applications"]}
    with http_client(server) as client:
        assert register_client(client, client_name="After the crash")["client_id"]

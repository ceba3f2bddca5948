"""createApplication is one use case: the application, its temporary secret and both audit rows are written in one
transaction (it was three hops and three write transactions, so a failure of the secret left an application without
its secret). The failure is a real one: the database itself refuses the secret row (a trigger on SQLite, a CHECK
constraint on PostgreSQL), nothing is mocked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.store.tables import audit_log, clients
from tests.support.mcp_http import McpSession
from tests.support.transactions import RecordedTransaction, TransactionRecorder, of_requests, summary

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
CALLBACK = "https://app.example.com/callback"


@pytest.fixture
def recorder(core: IdentityCore) -> Iterator[TransactionRecorder]:
    recorder = TransactionRecorder(core.db.engine)
    yield recorder
    recorder.close()


def refuse_new_secrets(core: IdentityCore) -> None:
    """Make the database itself refuse every new client secret."""
    with core.db.transaction() as conn:
        if core.db.dialect == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_secrets BEFORE INSERT ON client_secrets "
                    "BEGIN SELECT RAISE(ABORT, 'secrets refused by the test'); END"
                )
            )
        else:
            conn.execute(text("ALTER TABLE client_secrets ADD CONSTRAINT refuse_secrets CHECK (false) NOT VALID"))


def applications_named(core: IdentityCore, name: str) -> tuple[int, int]:
    """How many applications have ``name``, and how many application.create audit rows name it."""
    with core.db.read() as conn:
        apps = conn.execute(select(func.count()).select_from(clients).where(clients.c.name == name)).scalar_one()
        audited = [
            row.details
            for row in conn.execute(select(audit_log.c.details).where(audit_log.c.action == "application.create"))
        ]
    return int(apps), sum(1 for details in audited if (details or {}).get("name") == name)


def use_case_writes(transactions: list[RecordedTransaction]) -> list[RecordedTransaction]:
    """The write transactions of the request but the MCP server's own log of the tool call (a row of its own in
    audit_log, committed before a write tool answers, for every write tool) and the bearer token's reads."""
    return [
        t
        for t in of_requests(transactions)
        if not t.read_only and not all(s.lower().startswith("insert into audit_log") for s in t.statements)
    ]


def test_create_application_writes_app_secret_and_audit_rows_in_one_transaction(
    session: McpSession, core: IdentityCore, recorder: TransactionRecorder
) -> None:
    core.audit.flush()
    with recorder.recording() as transactions:
        result = session.call_tool(
            "createApplication", {"name": "Billing", "type": "traditional", "redirectUris": [CALLBACK]}
        )
    assert not result.get("isError"), result
    created = result["structuredContent"]
    assert created["temporarySecret"]["value"]
    writes = use_case_writes(transactions)
    assert len(writes) == 1, summary(transactions)
    statements = " ".join(writes[0].statements).lower()
    assert "insert into clients" in statements and "insert into client_secrets" in statements, summary(writes)
    assert statements.count("insert into audit_log") == 2, summary(writes)
    assert core.secrets.list(TENANT, created["applicationId"])


def test_a_public_application_gets_no_secret_and_still_one_transaction(
    session: McpSession, core: IdentityCore, recorder: TransactionRecorder
) -> None:
    core.audit.flush()
    with recorder.recording() as transactions:
        result = session.call_tool("createApplication", {"name": "Web", "type": "spa", "redirectUris": [CALLBACK]})
    assert not result.get("isError") and result["structuredContent"]["temporarySecret"] is None, result
    assert len(use_case_writes(transactions)) == 1, summary(transactions)


def test_when_the_secret_cannot_be_written_no_application_is_left_behind(core: IdentityCore) -> None:
    refuse_new_secrets(core)
    with pytest.raises(DBAPIError):
        core.applications.create_with_secret(TENANT, name="Orphan", app_type="m2m", actor=ACTOR)
    assert applications_named(core, "Orphan") == (0, 0)
    # A public application needs no secret: it is still created.
    created = core.applications.create_with_secret(
        TENANT, name="Public", app_type="spa", actor=ACTOR, redirect_uris=[CALLBACK]
    )
    assert created.temporary_secret is None and applications_named(core, "Public") == (1, 1)


def test_the_tool_fails_whole_when_the_secret_cannot_be_written(session: McpSession, core: IdentityCore) -> None:
    refuse_new_secrets(core)
    result = session.call_tool(
        "createApplication", {"name": "Orphan", "type": "traditional", "redirectUris": [CALLBACK]}
    )
    assert result.get("isError"), result
    assert applications_named(core, "Orphan") == (0, 0)

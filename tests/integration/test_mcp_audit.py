"""listAuditEvents: an agent reads what was done in its tenant, by whom and through which agent, with filters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from tests.support.clock import Clock
from tests.support.live_server import ADMIN_EMAIL
from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import obtain_access_token


@pytest.fixture
def session(client: TestClient) -> McpSession:
    mcp = McpSession(client, obtain_access_token(client, client_name="Audit Agent").access_token)
    mcp.initialize()
    return mcp


def events(session: McpSession, **arguments: Any) -> list[dict[str, Any]]:
    result = session.call_tool("listAuditEvents", arguments)
    assert not result.get("isError"), text_of(result)
    listed: list[dict[str, Any]] = result["structuredContent"]["events"]
    return listed


def create_and_rename(session: McpSession) -> str:
    created = session.call_tool("createApplication", {"name": "Invoices", "type": "spa", "redirectUris": [
        "http://127.0.0.1:5173/callback"
    ]})  # fmt: skip
    app_id: str = created["structuredContent"]["applicationId"]
    session.call_tool("updateApplication", {"applicationId": app_id, "name": "Invoices web"})
    return app_id


def test_a_change_shows_what_changed_who_made_it_and_through_which_agent(session: McpSession) -> None:
    app_id = create_and_rename(session)

    rows = events(session, targetId=app_id)

    update = next(row for row in rows if row["action"] == "application.update")
    assert update["outcome"] == "success"
    assert "name" in update["details"]["changed"]
    assert update["actor"]["agentName"] == "Audit Agent"
    assert update["actor"]["userId"]
    assert [row["action"] for row in rows] == ["application.update", "application.create"]  # newest first


def test_tool_filter_returns_only_that_tools_calls_with_their_arguments(session: McpSession) -> None:
    create_and_rename(session)

    rows = events(session, tool="updateApplication")

    assert [row["action"] for row in rows] == ["tool.updateApplication"]
    assert rows[0]["details"]["arguments"]["name"] == "Invoices web"


def test_actor_filter_takes_an_email_or_a_user_id(session: McpSession, core: IdentityCore) -> None:
    create_and_rename(session)
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None

    by_email = events(session, actor=ADMIN_EMAIL.upper(), tool="createApplication")
    by_id = events(session, actor=admin.id, tool="createApplication")

    assert len(by_email) == 1 and by_email == by_id
    assert events(session, actor="someone-else@example.com") == []


def test_agent_filter_takes_the_client_name_or_id(session: McpSession) -> None:
    create_and_rename(session)
    client_id = events(session, agent="Audit Agent", tool="createApplication")[0]["actor"]["agentClientId"]

    assert events(session, agent=client_id, tool="createApplication")[0]["actor"]["agentName"] == "Audit Agent"
    assert events(session, agent="Another Agent") == []


def test_since_leaves_out_older_events(session: McpSession, clock: Clock) -> None:
    create_and_rename(session)
    clock.advance(60)
    later = clock.now
    session.call_tool("createApplication", {"name": "Later", "type": "m2m"})

    rows = events(session, since=(later - timedelta(seconds=1)).isoformat(), tool="createApplication")

    assert len(rows) == 1 and rows[0]["details"]["arguments"]["name"] == "Later"


def test_limit_and_has_more(session: McpSession) -> None:
    create_and_rename(session)

    result = session.call_tool("listAuditEvents", {"limit": 1})

    assert len(result["structuredContent"]["events"]) == 1
    assert result["structuredContent"]["hasMore"] is True


def test_another_tenants_events_are_not_listed(session: McpSession, core: IdentityCore) -> None:
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    core.tenants.create("other", "Other", owner_user_id=admin.id, actor=Actor(tenant_id="other", sub=admin.id))
    other = core.applications.create(
        "other", name="Elsewhere", app_type="m2m", actor=Actor(tenant_id="other", sub=admin.id)
    )

    assert events(session, targetId=other.id) == []
    assert all(row["targetId"] != other.id for row in events(session, limit=200))


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"since": "2026-12-01T00:00:00"}, "timezone"),
        ({"since": "yesterday"}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": 1000}, "limit"),
        ({"tool": "drop table"}, "tool"),
    ],
)
def test_bad_filters_say_what_to_fix(session: McpSession, arguments: dict[str, Any], says: str) -> None:
    result = session.call_tool("listAuditEvents", arguments)

    assert result.get("isError") is True
    assert says in text_of(result)

"""The console's audit log page: filters by human, agent, tool, target and time, each row's who, what and what
changed, an "older" link that pages without overlap, and the tenant checks."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor
from tests.support.clock import Clock
from tests.support.console import (
    READER_EMAIL,
    READER_PASSWORD,
    STRANGER_EMAIL,
    STRANGER_PASSWORD,
    XSS,
    Cast,
    cast,
    signed_in,
    text_of,
)
from tests.support.live_server import ADMIN_EMAIL

AUDIT = f"/console/t/{DEFAULT_TENANT_ID}/audit"


@pytest.fixture
def people(core: IdentityCore, clock: Clock) -> Cast:
    """The cast, and a small history in the default tenant: the owner through two agents, and the reader alone."""
    people = cast(core)
    claude = Actor(tenant_id=DEFAULT_TENANT_ID, sub=people.owner_id, client_id="client-claude", client_name="Claude")
    cursor = Actor(tenant_id=DEFAULT_TENANT_ID, sub=people.owner_id, client_id="client-cursor", client_name="Cursor")
    core.audit.enqueue(
        claude, "tool.createApplication", target_type="application", target_id="app-1", details={"name": "Shop"}
    )
    clock.advance(60)
    core.audit.enqueue(
        cursor, "tool.updateApplication", target_type="application", target_id="app-1",
        details={"changed": ["redirect_uris"]},
    )  # fmt: skip
    clock.advance(60)
    core.audit.enqueue(
        Actor(tenant_id=DEFAULT_TENANT_ID, sub=people.reader_id), "tool.deleteUser", target_type="user",
        target_id="user-9", outcome="failure", details={"error": "tenant.read_only"},
    )  # fmt: skip
    core.audit.enqueue(
        Actor(tenant_id="acme", sub=people.stranger_id, client_id="client-acme", client_name="Acme agent"),
        "tool.createApplication", target_id="acme-secret-app",
    )  # fmt: skip
    return people


def _actions(html: str) -> list[str]:
    return re.findall(r'<span class="mono">(tool\.[A-Za-z]+|agent\.[a-z_]+)</span>', html)


def _page(client: TestClient, **filters: str) -> str:
    response = client.get(f"{AUDIT}?{urlencode(filters)}")
    assert response.status_code == 200, response.text
    return response.text


def test_each_row_shows_time_action_outcome_who_target_and_what_changed(client: TestClient, people: Cast) -> None:
    html = signed_in(client).get(AUDIT).text
    assert _actions(html) == ["tool.deleteUser", "tool.updateApplication", "tool.createApplication"]
    text = text_of(html)
    for expected in (
        "UTC", "success", "failure", ADMIN_EMAIL, "via Claude", "via Cursor", READER_EMAIL, "application app-1",
        "user user-9", 'changed ["redirect_uris"]', "name Shop", "error tenant.read_only",
    ):  # fmt: skip
        assert expected in text, expected
    assert "acme-secret-app" not in html and "Acme agent" not in html  # another tenant's rows never show
    assert 'aria-current="page">Audit log' in html


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"actor": ADMIN_EMAIL}, ["tool.updateApplication", "tool.createApplication"]),
        ({"actor": READER_EMAIL.upper()}, ["tool.deleteUser"]),
        ({"agent": "Cursor"}, ["tool.updateApplication"]),
        ({"agent": "client-claude"}, ["tool.createApplication"]),
        ({"tool": "deleteUser"}, ["tool.deleteUser"]),
        ({"target": "app-1", "agent": "Claude"}, ["tool.createApplication"]),
        ({"tool": "listUsers"}, []),
    ],
)
def test_the_filters_narrow_the_rows(
    client: TestClient, people: Cast, filters: dict[str, str], expected: list[str]
) -> None:
    html = _page(signed_in(client), **filters)
    assert _actions(html) == expected
    for value in filters.values():
        assert f'value="{value}"' in html  # the form keeps what was asked
    if not expected:
        assert "No events match these filters." in html


def test_the_since_filter_takes_the_form_s_utc_time(client: TestClient, people: Cast, clock: Clock) -> None:
    signed_in(client)
    since = clock().strftime("%Y-%m-%dT%H:%M:%S")  # a datetime-local value: no zone, read as UTC
    assert _actions(_page(client, since=since)) == ["tool.deleteUser"]
    assert _actions(_page(client, since=clock().isoformat())) == ["tool.deleteUser"]


def test_the_older_link_pages_through_every_row_once(client: TestClient, core: IdentityCore, people: Cast) -> None:
    owner = Actor(tenant_id=DEFAULT_TENANT_ID, sub=people.owner_id)
    for number in range(30):  # all at the same instant: the cursor orders ties by id
        core.audit.enqueue(owner, "tool.getUser", target_id=f"u{number}")
    signed_in(client)
    first = _page(client, tool="getUser", limit="25")
    older = re.search(r'href="([^"]+)">Older events', first)
    assert older, "no link to older events"
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert "Older events" not in second
    shown = re.findall(r">(u\d+)<", first) + re.findall(r">(u\d+)<", second)
    assert sorted(shown) == sorted(f"u{n}" for n in range(30))


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"since": "yesterday"}, "Since is a date and time"),
        ({"tool": "drop table"}, "A tool is its MCP name"),
        ({"agent": "x" * 600}, "too long"),
    ],
)
def test_bad_filters_get_a_clear_400(client: TestClient, people: Cast, filters: dict[str, str], message: str) -> None:
    response = signed_in(client).get(f"{AUDIT}?{urlencode(filters)}")
    assert response.status_code == 400
    assert message in response.text


def test_a_read_only_member_reads_the_log_and_a_stranger_gets_403(client: TestClient, people: Cast) -> None:
    signed_in(client, READER_EMAIL, READER_PASSWORD)
    assert _actions(_page(client)) == ["tool.deleteUser", "tool.updateApplication", "tool.createApplication"]
    signed_in(client, STRANGER_EMAIL, STRANGER_PASSWORD)
    response = client.get(AUDIT)
    assert response.status_code == 403 and "app-1" not in response.text
    assert "acme-secret-app" in client.get("/console/t/acme/audit").text


def test_markup_in_names_and_details_is_shown_as_text(client: TestClient, core: IdentityCore, people: Cast) -> None:
    core.audit.enqueue(
        Actor(tenant_id=DEFAULT_TENANT_ID, sub=people.owner_id, client_id=XSS, client_name=XSS),
        "tool.updateUser", target_id=XSS, details={"name": XSS},
    )  # fmt: skip
    html = _page(signed_in(client), agent=XSS)
    assert XSS not in html
    assert html.count("&lt;script&gt;") >= 3

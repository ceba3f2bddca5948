"""setUserPassword and sendPasswordReset over /mcp with a real token, the email going through a real SMTP server on
loopback: the password changes (and the user's grants and sessions end) without its value in any result or audit
row; the reset email carries a working code and the hosted page's link; refusals say what to do and change nothing;
a read-only connection cannot call either; a server without an email connector says so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import Actor, User
from idp_mcp.errors import InvalidCredentials
from idp_mcp.settings import Settings
from tests.integration.test_mcp_users import make_user, ok
from tests.support.inprocess import PUBLIC_URL
from tests.support.mcp_http import McpSession, text_of
from tests.support.smtp import SmtpSink, body_of, code_in, smtp_fixtures
from tests.support.tokens import obtain_access_token, obtain_tenant_token

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
PASSWORD = "violet staple horizon 7"
NEW = "support picked this 88"

smtp, settings = smtp_fixtures()


@pytest.fixture
def session(client: TestClient) -> McpSession:
    mcp = McpSession(client, obtain_access_token(client, client_name="Support agent").access_token)
    mcp.initialize()
    return mcp


@pytest.fixture
def bob(core: IdentityCore) -> User:
    return make_user(core)


def password_works(core: IdentityCore, password: str) -> bool:
    try:
        core.users.authenticate_sync(TENANT, "bob", password)
    except InvalidCredentials:
        return False
    return True


def audit_text(core: IdentityCore) -> str:
    return json.dumps([(e.action, e.details) for e in core.audit.recent(TENANT, limit=200)])


def test_set_user_password_changes_it_ends_the_users_access_and_never_shows_the_value(
    client: TestClient, session: McpSession, core: IdentityCore, bob: User
) -> None:
    token = obtain_tenant_token(client, core, identifier="bob", password=PASSWORD)
    result = session.call_tool("setUserPassword", {"userId": bob.id, "password": NEW})

    assert ok(result) == {"userId": bob.id, "passwordSet": True, "revokedGrants": 1}
    assert password_works(core, NEW) and not password_works(core, PASSWORD)
    refreshed = client.post(
        f"/t/{TENANT}/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token.refresh_token, "client_id": token.client_id},
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    entry = next(e for e in core.audit.recent(TENANT, limit=50) if e.action == "user.set_password")
    assert entry.target_id == bob.id and entry.details == {"revoked_grants": 1}
    assert NEW not in json.dumps(result) and NEW not in audit_text(core)
    call = next(e for e in core.audit.recent(TENANT, limit=50) if e.action == "tool.setUserPassword")
    assert call.outcome == "success" and call.details["arguments"]["password"] == "[redacted]"


@pytest.mark.parametrize(
    ("password", "message"),
    [("short", "at least 8 characters"), ("password123", "common password"), ("bob@example.com!", "must not contain")],
)
def test_set_user_password_refuses_a_weak_password_and_changes_nothing(
    session: McpSession, core: IdentityCore, bob: User, password: str, message: str
) -> None:
    result = session.call_tool("setUserPassword", {"userId": bob.id, "password": password})

    assert result["isError"] is True and message in text_of(result)
    assert password_works(core, PASSWORD)
    assert not any(e.action == "user.set_password" for e in core.audit.recent(TENANT, limit=50))


def test_set_user_password_of_an_unknown_user_is_refused(session: McpSession, core: IdentityCore) -> None:
    result = session.call_tool("setUserPassword", {"userId": "nobody", "password": NEW})
    assert result["isError"] is True and "listUsers" in text_of(result)


def test_send_password_reset_emails_a_code_and_the_hosted_link_that_work(
    client: TestClient, session: McpSession, core: IdentityCore, bob: User, smtp: SmtpSink
) -> None:
    sent = ok(session.call_tool("sendPasswordReset", {"userId": bob.id}))

    link = f"{PUBLIC_URL}/t/{TENANT}/forgot-password/reset?email=bob%40example.com"
    assert sent["email"] == "bob@example.com" and sent["delivered"] is True and sent["resetUrl"] == link
    message = smtp.wait_for("bob@example.com")
    code = code_in(message)
    assert link in body_of(message) and code not in json.dumps(sent) and code not in audit_text(core)
    page = client.get(link.removeprefix(PUBLIC_URL))
    assert page.status_code == 200 and 'value="bob@example.com"' in page.text
    anyio.run(lambda: anyio.to_thread.run_sync(core.password_recovery.reset, TENANT, "bob@example.com", code, NEW))
    assert password_works(core, NEW)
    send = next(e for e in core.audit.recent(TENANT, limit=50) if e.action == "verification_code.send")
    assert send.actor_sub is not None and send.details == {"purpose": "password_reset"}  # the administrator's act


def test_send_password_reset_says_why_it_cannot(
    session: McpSession, core: IdentityCore, bob: User, smtp: SmtpSink
) -> None:
    no_email = make_user(core, email=None, username="nomail")
    assert "no email address" in text_of(session.call_tool("sendPasswordReset", {"userId": no_email.id}))
    core.tenant_users.update(TENANT, bob.id, UserChanges(suspended=True), ACTOR)
    assert "suspended" in text_of(session.call_tool("sendPasswordReset", {"userId": bob.id}))
    core.tenant_users.update(TENANT, bob.id, UserChanges(suspended=False), ACTOR)
    core.sign_in_experiences.update_sign_in(
        TENANT, {"methods": [{"identifier": "email", "verificationCode": True}]}, ACTOR
    )
    assert "do not sign in with passwords" in text_of(session.call_tool("sendPasswordReset", {"userId": bob.id}))
    assert smtp.messages == []


def test_a_read_only_connection_can_call_neither(client: TestClient, core: IdentityCore, bob: User) -> None:
    read_only = McpSession(client, obtain_access_token(client, allow_write=False).access_token)
    read_only.initialize()
    names = {tool["name"] for tool in read_only.list_tools()}
    assert not names & {"setUserPassword", "sendPasswordReset"}
    result = read_only.call_tool("setUserPassword", {"userId": bob.id, "password": NEW})
    assert result["isError"] is True and password_works(core, PASSWORD)


@pytest.fixture
def plain_client(tmp_path: Path, database_url: str, core: IdentityCore) -> Iterator[TestClient]:
    """The same database served by a server without an email connector."""
    plain = Settings(public_url=PUBLIC_URL, data_dir=tmp_path / "plain", database_url=database_url)
    plain_core = IdentityCore.from_settings(plain, core.clock)
    with TestClient(create_app(plain, plain_core), base_url=PUBLIC_URL) as test_client:
        yield test_client
    plain_core.close()


def test_without_an_email_connector_there_is_no_reset_and_the_tool_says_how_to_get_one(
    plain_client: TestClient, bob: User
) -> None:
    mcp = McpSession(plain_client, obtain_access_token(plain_client).access_token)
    mcp.initialize()
    result = mcp.call_tool("sendPasswordReset", {"userId": bob.id})
    assert result["isError"] is True and "IDP_MCP_SMTP_HOST" in text_of(result) and "setUserPassword" in text_of(result)
    assert plain_client.get(f"/t/{TENANT}/forgot-password").status_code == 404
    assert ok(mcp.call_tool("setUserPassword", {"userId": bob.id, "password": NEW}))["passwordSet"] is True


RECOVERY_SECTIONS = {
    ("sign-in-and-sign-up-methods", "4. Forgotten passwords (recovery)"),
    ("test-users", "Set or reset a password"),
}


@pytest.mark.parametrize(
    "query",
    ["user forgot their password", "forgot password reset email code", "set a test user's password",
     "setUserPassword", "sendPasswordReset link"],
)  # fmt: skip
def test_search_docs_finds_the_recovery_guides(session: McpSession, query: str) -> None:
    results = ok(session.call_tool("searchDocs", {"query": query, "limit": 3}))["results"]
    first = (results[0]["citation"]["guideId"], results[0]["citation"]["heading"]) if results else None
    assert first in RECOVERY_SECTIONS, [r["citation"] for r in results]

"""Account recovery end to end on the real server, with a real SMTP server (aiosmtpd on loopback) and a person in
Chromium: "Forgot password?" on the hosted sign-in page, the emailed code, a new password; then the old password
fails, the new one signs in, and a refresh token issued before the reset is refused at the token endpoint. Unknown
addresses get the same page; requests are limited; wrong, expired and replayed codes and weak passwords are refused
with the password unchanged. An agent, through the MCP SDK's own client, sets a password and sends a reset email
whose link leads to the tenant's hosted reset page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx
import pytest
from mcp import Client
from playwright.async_api import Page
from sqlalchemy import create_engine, update

from idp_mcp.store.tables import verification_codes
from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.app_server import AppServer
from tests.support.axe import axe_violations, describe
from tests.support.browser import BrowserAuthorizer
from tests.support.inprocess import csrf_from, pkce_pair
from tests.support.live_flow import call_tool, http_client
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.mcp_client import MemoryTokenStorage, connect
from tests.support.mcp_http import text_of
from tests.support.smtp import SmtpSink, body_of, code_in
from tests.support.tokens import obtain_access_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DANA = "dana@example.com"
OLD = "a long secret passphrase 9"
NEW = "brand new passphrase 31"
SET = "support chose this 77"


@pytest.fixture
def server(tmp_path: Path, database_url: str, smtp: SmtpSink) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "server", database_url, extra_env=smtp.env()) as live:
        created = live.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield live
    assert_no_secrets_in_logs(live)
    for secret in (OLD, NEW, SET):
        assert secret not in live.logs()


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("isError"), text_of(result)
    return dict(result["structuredContent"])


def _tenant_setup(server: LiveServer, callback: str) -> tuple[str, str]:
    """Dana (with a password) and a single-page application, made by an agent; returns (client id, user id)."""
    with http_client(server) as client:
        agent = obtain_access_token(client, client_name="Recovery agent")
    user = _ok(call_tool(server, agent.access_token, "createUser", {"email": DANA, "password": OLD}))
    app = _ok(call_tool(server, agent.access_token, "createApplication",
                        {"name": "Dana's app", "type": "spa", "redirectUris": [callback]}))  # fmt: skip
    return app["clientId"], user["userId"]


def _refresh_token(server: LiveServer, client_id: str, callback: str, password: str) -> str:
    """Dana signs in to the application (the hosted page over HTTP, a browser of her own) and it gets a refresh
    token."""
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": callback, "state": "st",
        "scope": "openid email offline_access", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    with http_client(server) as client:
        start = client.get(f"/t/default/oidc/authorize?{urlencode(query)}", follow_redirects=False)
        sign_in = client.get(start.headers["location"])
        interaction = re.search(r'name="interaction" value="([^"]+)"', sign_in.text)
        assert interaction, sign_in.text
        done = client.post(
            "/t/default/sign-in",
            data={"csrf_token": csrf_from(sign_in.text), "interaction": interaction.group(1), "identifier": DANA,
                  "password": password},
            follow_redirects=False,
        )  # fmt: skip
        assert done.status_code == 303, done.text
        code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
        tokens = client.post(
            "/t/default/oidc/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": callback,
                  "code_verifier": verifier, "client_id": client_id},
        )  # fmt: skip
    assert tokens.status_code == 200, tokens.text
    return str(tokens.json()["refresh_token"])


def _refresh_status(server: LiveServer, client_id: str, refresh_token: str) -> tuple[int, str]:
    with http_client(server) as client:
        response = client.post(
            "/t/default/oidc/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
        )
    return response.status_code, response.json().get("error", "")


def _authorize_url(server: LiveServer, client_id: str, callback: str) -> str:
    _verifier, challenge = pkce_pair()
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": callback, "scope": "openid email",
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    return f"{server.url}/t/default/oidc/authorize?{urlencode(query)}"


async def _no_violations(page: Page, name: str, found: dict[str, str]) -> None:
    if problems := await axe_violations(page):
        found[name] = describe(problems)


async def test_a_person_resets_a_forgotten_password_by_email_code_and_old_tokens_stop_working(
    server: LiveServer, page: Page, app_server: AppServer, smtp: SmtpSink
) -> None:
    client_id, _user_id = await anyio.to_thread.run_sync(_tenant_setup, server, app_server.callback)
    old_refresh = await anyio.to_thread.run_sync(_refresh_token, server, client_id, app_server.callback, OLD)
    ARTIFACTS.mkdir(exist_ok=True)
    found: dict[str, str] = {}
    with anyio.fail_after(120):
        await page.goto(_authorize_url(server, client_id, app_server.callback))
        await page.click("text=Forgot password?")
        assert await page.locator("h1").inner_text() == "Reset your password"
        await _no_violations(page, "forgot-password", found)
        await page.fill("input[name=email]", DANA)
        await page.click("button:has-text('Email me a code')")
        assert await page.locator("h1").inner_text() == "Choose a new password"
        await _no_violations(page, "reset-password", found)
        message = await smtp.receive(DANA)
        code = code_in(message)
        assert "/t/default/forgot-password/reset?email=dana%40example.com" in body_of(message)

        await page.fill("input[name=code]", code)
        await page.fill("#new-password", NEW)
        await page.fill("#new-password-confirm", NEW + "!")
        await page.click("button:has-text('Change password')")
        assert "not the same" in await page.inner_text("[role=alert]")
        await _no_violations(page, "reset-password-error", found)
        await page.fill("input[name=code]", code)
        await page.fill("#new-password", NEW)
        await page.fill("#new-password-confirm", NEW)
        await page.click("button:has-text('Change password')")
        await page.wait_for_url("**/forgot-password/done?*")
        assert "Sign in with your new password" in await page.inner_text("[role=status]")
        assert await page.input_value("input[name=identifier]") == DANA
        await page.screenshot(path=str(ARTIFACTS / "password-reset-done.png"), full_page=True)

        await page.fill("input[name=password]", OLD)
        await page.click("form[action$='/sign-in'] button.primary")
        assert "incorrect" in await page.inner_text("[role=alert]")
        await page.fill("input[name=identifier]", DANA)
        await page.fill("input[name=password]", NEW)
        await page.click("form[action$='/sign-in'] button.primary")
        await page.wait_for_url(f"{app_server.callback}?*")
    assert "code=" in app_server.received[-1]
    assert await anyio.to_thread.run_sync(_refresh_status, server, client_id, old_refresh) == (400, "invalid_grant")
    assert not found, found


def _age_codes(database_url: str) -> None:
    """Move the codes' expiry into the past: the server's clock cannot be moved, so the code is aged instead."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(update(verification_codes).values(expires_at=verification_codes.c.created_at))
    engine.dispose()


async def test_unknown_addresses_limits_and_bad_codes_leave_the_password_unchanged(
    server: LiveServer, page: Page, app_server: AppServer, smtp: SmtpSink, database_url: str
) -> None:
    client_id, _user_id = await anyio.to_thread.run_sync(_tenant_setup, server, app_server.callback)
    forgot = f"{server.url}/t/default/forgot-password"

    async def ask(email: str) -> str:
        await page.goto(forgot)
        await page.fill("input[name=email]", email)
        await page.click("button:has-text('Email me a code')")
        return await page.inner_text("main")

    async def enter(code: str, password: str) -> str:
        await page.fill("input[name=code]", code)
        await page.fill("#new-password", password)
        await page.fill("#new-password-confirm", password)
        await page.click("button:has-text('Change password')")
        return await page.inner_text("main")

    with anyio.fail_after(180):
        known = await ask(DANA)
        code = code_in(await smtp.receive(DANA))
        unknown = await ask("nobody@example.com")
        assert known.replace(DANA, "X") == unknown.replace("nobody@example.com", "X")
        assert "Too many" not in known
        assert "not right" in await enter("000000" if code != "000000" else "111111", NEW)  # nobody's code

        await ask(DANA)  # a new code replaces the first one
        second = code_in(await smtp.receive(DANA, count=2))
        wrong = "000000" if second != "000000" else "111111"
        assert "4 attempts left" in await enter(wrong, NEW)
        assert "too weak" in await enter(second, "password123")
        if code != second:  # the replaced code is no longer the one checked
            assert "3 attempts left" in await enter(code, NEW)
        await anyio.to_thread.run_sync(_age_codes, database_url)
        assert "expired or was already used" in await enter(second, NEW)

        await ask(DANA)
        third = code_in(await smtp.receive(DANA, count=3))
        await enter(third, NEW)
        assert "Password changed" in await page.inner_text("h1")
        await page.goto(f"{forgot}/reset?email={DANA}")
        assert "expired or was already used" in await enter(third, SET)  # replayed

        for _ in range(2):
            await ask(DANA)
        limited = await ask(DANA)  # the sixth request for this address in the window
        assert "Too many" in limited
    # The first change stands: the wrong, weak, expired and replayed attempts changed nothing.
    await anyio.to_thread.run_sync(_refresh_token, server, client_id, app_server.callback, NEW)
    assert len(smtp.to("nobody@example.com")) == 0


async def test_an_agent_sets_a_password_and_sends_a_reset_email_through_the_mcp_sdk(
    server: LiveServer, page: Page, callback_uri: str, app_server: AppServer, smtp: SmtpSink
) -> None:
    client_id, user_id = await anyio.to_thread.run_sync(_tenant_setup, server, app_server.callback)
    old_refresh = await anyio.to_thread.run_sync(_refresh_token, server, client_id, app_server.callback, OLD)
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(150):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            weak = await mcp.call_tool("setUserPassword", {"userId": user_id, "password": "dana@example.com1"})
            assert weak.is_error and "must not contain your email" in _text(weak)
            result = await _tool(mcp, "setUserPassword", {"userId": user_id, "password": SET})
            assert result == {"userId": user_id, "passwordSet": True, "revokedGrants": 1}
            sent = await _tool(mcp, "sendPasswordReset", {"userId": user_id})
            assert sent["email"] == DANA and sent["delivered"] is True
            assert sent["resetUrl"] == f"{server.url}/t/default/forgot-password/reset?email=dana%40example.com"
            nobody = await mcp.call_tool("sendPasswordReset", {"userId": "no-such-user"})
            assert nobody.is_error and "listUsers" in _text(nobody)

        assert await anyio.to_thread.run_sync(_refresh_status, server, client_id, old_refresh) == (400, "invalid_grant")
        await anyio.to_thread.run_sync(
            _refresh_token, server, client_id, app_server.callback, SET
        )  # the password support set works

        message = await smtp.receive(DANA)
        link = next(line for line in body_of(message).splitlines() if "/forgot-password/reset?" in line).strip()
        await page.goto(link)
        await page.fill("input[name=code]", code_in(message))
        await page.fill("#new-password", NEW)
        await page.fill("#new-password-confirm", NEW)
        await page.click("button:has-text('Change password')")
        await page.wait_for_url("**/forgot-password/done*")
        assert await page.locator("h1").inner_text() == "Password changed"
        found: dict[str, str] = {}
        await _no_violations(page, "password-changed", found)
        assert not found, found
    await anyio.to_thread.run_sync(_refresh_token, server, client_id, app_server.callback, NEW)
    async with httpx.AsyncClient() as http:  # the reset page of a tenant that does not exist
        assert (await http.get(f"{server.url}/t/nope/forgot-password")).status_code == 404


async def _tool(mcp: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await mcp.call_tool(name, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)

"""Setting a user's password from the console, in headless Chromium against a real server: mistyped and weak
passwords are refused on the page with the password unchanged, a good one is set (POST-redirect-GET, a notice), the
user's refresh token from before is refused at once and the new password signs in; the page passes axe-core."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import pytest
from playwright.async_api import Page

from tests.support.axe import axe_violations, describe
from tests.support.inprocess import csrf_from, pkce_pair
from tests.support.live_flow import call_tool, http_client
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer
from tests.support.mcp_http import text_of
from tests.support.tokens import obtain_access_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

LINUS = "linus@example.com"
OLD = "a user's long passphrase"
NEW = "console chose this 42"
CALLBACK = "https://shop.example.com/callback"


def _user_and_app(server: LiveServer) -> tuple[str, str]:
    with http_client(server) as client:
        agent = obtain_access_token(client, client_name="Console agent")
    user = call_tool(server, agent.access_token, "createUser", {"email": LINUS, "password": OLD})
    app = call_tool(server, agent.access_token, "createApplication",
                    {"name": "Shop", "type": "spa", "redirectUris": [CALLBACK]})  # fmt: skip
    assert not user.get("isError") and not app.get("isError"), (text_of(user), text_of(app))
    return user["structuredContent"]["userId"], app["structuredContent"]["clientId"]


def _sign_in(server: LiveServer, client_id: str, password: str) -> tuple[int, str]:
    """Linus signs in to the application over HTTP: (status of the sign-in form, refresh token if it worked)."""
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "state": "st",
        "scope": "openid offline_access", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    with http_client(server) as client:
        start = client.get(f"/t/default/oidc/authorize?{urlencode(query)}", follow_redirects=False)
        page = client.get(start.headers["location"])
        interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
        assert interaction, page.text
        done = client.post(
            "/t/default/sign-in",
            data={"csrf_token": csrf_from(page.text), "interaction": interaction.group(1), "identifier": LINUS,
                  "password": password},
            follow_redirects=False,
        )  # fmt: skip
        if done.status_code != 303:
            return done.status_code, ""
        code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
        tokens = client.post(
            "/t/default/oidc/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                  "code_verifier": verifier, "client_id": client_id},
        )  # fmt: skip
    assert tokens.status_code == 200, tokens.text
    return 303, str(tokens.json()["refresh_token"])


def _refresh_status(server: LiveServer, client_id: str, refresh_token: str) -> int:
    with http_client(server) as client:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
        return client.post("/t/default/oidc/token", data=data).status_code


async def test_an_administrator_sets_a_users_password_from_the_console(live_server: LiveServer, page: Page) -> None:
    user_id, client_id = await anyio.to_thread.run_sync(_user_and_app, live_server)
    _status, old_refresh = await anyio.to_thread.run_sync(_sign_in, live_server, client_id, OLD)
    found: dict[str, str] = {}

    async def check(name: str) -> None:
        if problems := await axe_violations(page):
            found[name] = describe(problems)

    async def set_password(password: str, confirm: str) -> None:
        await page.fill("#new-password", password)
        await page.fill("#new-password-confirm", confirm)
        await page.click("button:has-text('Set password')")

    with anyio.fail_after(120):
        await page.goto(f"{live_server.url}/sign-in?next=/console/t/default/users/{user_id}")
        await page.fill("input[name=identifier]", ADMIN_EMAIL)
        await page.fill("input[name=password]", ADMIN_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"**/users/{user_id}")
        await check("user")

        await set_password(NEW, NEW + "x")
        assert "not the same" in await page.inner_text("#password-error")
        await set_password("linus-forever", "linus-forever")
        assert "must not contain your email or username" in await page.inner_text("#password-error")
        await check("user-password-error")
        assert (await anyio.to_thread.run_sync(_sign_in, live_server, client_id, OLD))[0] == 303  # unchanged

        await set_password(NEW, NEW)
        await page.wait_for_url(f"**/users/{user_id}?password=set*")
        assert "Password set" in await page.inner_text("[role=status]")
        await check("user-password-set")
        await page.reload()  # a GET: reloading sets nothing again
        assert "Password set" in await page.inner_text("[role=status]")

    assert await anyio.to_thread.run_sync(_refresh_status, live_server, client_id, old_refresh) == 400
    assert (await anyio.to_thread.run_sync(_sign_in, live_server, client_id, OLD))[0] == 401
    assert (await anyio.to_thread.run_sync(_sign_in, live_server, client_id, NEW))[0] == 303
    assert NEW not in live_server.logs()
    assert not found, found

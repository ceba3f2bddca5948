"""Passkeys end to end in Chromium with its virtual authenticator (CDP WebAuthn): after a password sign-in the user
adds a passkey, then signs in with it alone and the ID token's amr says how; a passkey of one tenant is refused by
another tenant of the same server (same RP id, the host of the public URL). The server answers as
http://localhost:<port>: browsers refuse WebAuthn on IP addresses, and localhost is a secure context over http."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from playwright.async_api import Page

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.app_server import AppServer
from tests.support.axe import axe_violations, describe
from tests.support.browser import launch_browser
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port, run_live_server
from tests.support.virtual_authenticator import VirtualAuthenticator, add_virtual_authenticator

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

USER_EMAIL = "pat@example.com"
USER_PASSWORD = "a long secret passphrase 9"


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    port = free_port()
    public_url = f"http://localhost:{port}"
    env = {"IDP_MCP_PUBLIC_URL": public_url}
    with run_live_server(tmp_path / "server", database_url, port=port, extra_env=env) as live:
        created = live.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        live.url = public_url
        yield live
    assert_no_secrets_in_logs(live)
    assert USER_PASSWORD not in live.logs()


@pytest.fixture
def core(server: LiveServer, database_url: str, tmp_path: Path) -> Iterator[IdentityCore]:
    """The server's database, for setting up tenants, users and applications as an administrator would."""
    direct = IdentityCore.from_settings(
        Settings(public_url=server.url, database_url=database_url, data_dir=tmp_path / "direct")
    )
    yield direct
    direct.close()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with launch_browser() as browser:
        context = await browser.new_context()
        yield await context.new_page()
        await context.close()


def _allow_passkey_first(core: IdentityCore, tenant: str) -> None:
    core.sign_in_experiences.update_mfa(
        tenant, {"factors": ["totp", "passkey"], "passkeyFirst": True}, Actor(tenant_id=tenant, sub=None)
    )


async def _tenant_with_user_and_app(core: IdentityCore, tenant: str, callback: str) -> tuple[str, str]:
    """(client id, user id) of an application and a user with a password, in a tenant that allows passkey-first."""
    actor = Actor(tenant_id=tenant, sub=None)
    await anyio.to_thread.run_sync(_allow_passkey_first, core, tenant)
    app = await anyio.to_thread.run_sync(
        lambda: core.applications.create(tenant, name="Shop", app_type="spa", actor=actor, redirect_uris=[callback])
    )
    user = await core.tenant_users.create(tenant, password=USER_PASSWORD, actor=actor, email=USER_EMAIL)
    return app.id, user.id


class Sign:
    """One authorization request of the application (code + PKCE) and the ID token it ends with."""

    def __init__(self, server: LiveServer, tenant: str, client_id: str, app_server: AppServer) -> None:
        self.issuer = f"{server.url}/t/{tenant}/oidc"
        self.client_id = client_id
        self.app_server = app_server
        self.oidc = AsyncOAuth2Client(
            client_id=client_id, redirect_uri=app_server.callback, scope="openid email",
            code_challenge_method="S256", token_endpoint_auth_method="none",
        )  # fmt: skip
        self.verifier = generate_token(48)

    async def start(self, page: Page) -> None:
        url, self.state = self.oidc.create_authorization_url(f"{self.issuer}/authorize", code_verifier=self.verifier)
        await page.goto(url)

    async def id_token(self) -> dict[str, Any]:
        callback = next(u for u in reversed(self.app_server.received) if u.startswith(self.app_server.callback))
        token = await self.oidc.fetch_token(
            f"{self.issuer}/token", authorization_response=callback, code_verifier=self.verifier, state=self.state
        )
        async with httpx.AsyncClient() as http:
            jwks = (await http.get(f"{self.issuer}/jwks")).json()
        kid = jwt.get_unverified_header(token["id_token"])["kid"]
        key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))
        return dict(jwt.decode(token["id_token"], key.key, algorithms=[key.algorithm_name], audience=self.client_id))


async def _no_axe_violations(page: Page) -> None:
    violations = await axe_violations(page)
    assert not violations, describe(violations)


async def _register_after_password(page: Page, sign: Sign, authenticator: VirtualAuthenticator) -> None:
    await sign.start(page)
    await page.fill("input[name=identifier]", USER_EMAIL)
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.get_by_role("heading", name="Sign in faster next time").wait_for()
    await _no_axe_violations(page)
    await page.fill("input[name=name]", "Test laptop")
    await page.get_by_role("button", name="Add a passkey").click()
    await page.wait_for_url(f"{sign.app_server.callback}**")
    assert len(await authenticator.credentials()) == 1


async def test_a_user_adds_a_passkey_then_signs_in_with_it_alone(
    server: LiveServer, core: IdentityCore, page: Page, app_server: AppServer
) -> None:
    with anyio.fail_after(120):
        client_id, user_id = await _tenant_with_user_and_app(core, "default", app_server.callback)
        authenticator = await add_virtual_authenticator(page)
        await _register_after_password(page, Sign(server, "default", client_id, app_server), authenticator)
        [passkey] = await anyio.to_thread.run_sync(core.passkeys.of_user, "default", user_id)
        assert passkey.name == "Test laptop" and passkey.transports == ("internal",)

        await page.context.clear_cookies()  # a new visit: no session, only the passkey on the device
        sign = Sign(server, "default", client_id, app_server)
        await sign.start(page)
        await _no_axe_violations(page)
        await page.get_by_role("button", name="Sign in with a passkey").click()
        await page.wait_for_url(f"{app_server.callback}**")
        claims = await sign.id_token()
        assert claims["sub"] == user_id
        # A device-bound passkey (the virtual authenticator does not back up) with the user verified.
        assert {"hwk", "user", "mfa"} <= set(claims["amr"]) and "pwd" not in claims["amr"]

        # The tenant turns passwordless off while the page is open: the button says why it does nothing.
        await page.context.clear_cookies()
        await Sign(server, "default", client_id, app_server).start(page)
        await anyio.to_thread.run_sync(
            lambda: core.sign_in_experiences.update_mfa(
                "default", {"passkeyFirst": False}, Actor(tenant_id="default", sub=None)
            )
        )
        await page.get_by_role("button", name="Sign in with a passkey").click()
        status = page.locator("[data-passkey-status]")
        await page.wait_for_function(
            "el => el.textContent.includes('not offered here')", arg=await status.element_handle()
        )


async def test_a_passkey_of_another_tenant_is_refused(
    server: LiveServer, core: IdentityCore, page: Page, app_server: AppServer
) -> None:
    created = server.cli("tenant", "create", "--id", "other", "--name", "Other", "--admin", ADMIN_EMAIL)
    assert created.returncode == 0, created.stderr
    with anyio.fail_after(120):
        client_id, _ = await _tenant_with_user_and_app(core, "default", app_server.callback)
        other_client, other_user = await _tenant_with_user_and_app(core, "other", app_server.callback)
        authenticator = await add_virtual_authenticator(page)
        await _register_after_password(page, Sign(server, "default", client_id, app_server), authenticator)

        await page.context.clear_cookies()
        received = len(app_server.received)
        await Sign(server, "other", other_client, app_server).start(page)
        await page.get_by_role("button", name="Sign in with a passkey").click()
        alert = page.get_by_role("alert")
        await alert.wait_for()
        assert "not registered for this account here" in await alert.inner_text()
        assert len(app_server.received) == received  # the application got nothing
        assert await anyio.to_thread.run_sync(core.passkeys.of_user, "other", other_user) == []


async def test_a_passkey_as_the_second_factor_enrolled_under_a_required_policy(
    server: LiveServer, core: IdentityCore, page: Page, app_server: AppServer
) -> None:
    actor = Actor(tenant_id="default", sub=None)
    with anyio.fail_after(150):
        client_id, user_id = await _tenant_with_user_and_app(core, "default", app_server.callback)
        await anyio.to_thread.run_sync(
            lambda: core.sign_in_experiences.update_mfa(
                "default", {"policy": "required", "factors": ["passkey"], "passkeyFirst": False}, actor
            )
        )
        authenticator = await add_virtual_authenticator(page)

        async def password(sign: Sign) -> None:
            await sign.start(page)
            await page.fill("input[name=identifier]", USER_EMAIL)
            await page.fill("input[name=password]", USER_PASSWORD)
            await page.get_by_role("button", name="Sign in", exact=True).click()

        sign = Sign(server, "default", client_id, app_server)
        await password(sign)  # no factor yet: the policy has the user add one before the application gets a code
        await page.get_by_role("heading", name="Add a passkey").wait_for()
        assert await page.locator("#totp-secret").count() == 0  # only passkeys are allowed here
        await _no_axe_violations(page)
        await page.get_by_role("button", name="Add a passkey").click()
        await page.get_by_role("heading", name="Save your backup codes").wait_for()
        assert await page.locator("#backup-codes li").count() == 10
        assert len(await authenticator.credentials()) == 1
        await page.get_by_role("button", name="I saved them, continue").click()
        await page.wait_for_url(f"{app_server.callback}**")
        claims = await sign.id_token()
        assert {"pwd", "hwk", "mfa"} <= set(claims["amr"]) and claims["sub"] == user_id

        await page.context.clear_cookies()
        sign = Sign(server, "default", client_id, app_server)
        await password(sign)  # now the passkey is asked for after the password
        button = page.get_by_role("button", name="Use your passkey")
        await button.wait_for()
        await _no_axe_violations(page)
        await button.click()
        await page.wait_for_url(f"{app_server.callback}**")
        claims = await sign.id_token()
        assert {"pwd", "hwk", "mfa"} <= set(claims["amr"]) and claims["sub"] == user_id

        factors = await anyio.to_thread.run_sync(core.mfa.factors, "default", user_id)
        assert "passkey" in [f.kind for f in factors]
        await anyio.to_thread.run_sync(core.mfa.reset, "default", user_id, actor)  # resetUserMfa
        assert await anyio.to_thread.run_sync(core.passkeys.of_user, "default", user_id) == []

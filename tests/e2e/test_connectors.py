"""Social and enterprise sign-in end to end, with real upstream providers and no stubs: node-oidc-provider (pinned
in tests/upstream/) as an ``oidc`` connector and a second tenant of the same idp-mcp server as an ``oauth2``
connector (its authorize, token and userinfo endpoints). An agent sets the connectors up through the MCP SDK client,
the administrator pastes the client secrets on the console page in Chromium, and a user in Chromium clicks
"Continue with …" (or types an address of an enterprise domain), signs in upstream and comes back; the application
(authlib) gets an ID token whose ``sub`` is the tenant's user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from playwright.async_api import Browser, Page

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.app_server import AppServer
from tests.support.browser import BrowserAuthorizer, launch_browser
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port, run_live_server
from tests.support.mcp_client import MemoryTokenStorage, call_ok, connect
from tests.support.node_upstream import run_node_provider

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

NODE_SECRET = "node-client-secret-5a1b"
ACME_SECRET = "acme-client-secret-7c2d"
USER_PASSWORD = "a long secret passphrase 9"
ACCOUNTS = {
    "alice": {"email": "alice@example.com", "email_verified": True, "name": "Alice"},
    "bob": {"email": "bob@example.com", "email_verified": True, "name": "Bob Upstream"},
    "carl": {"email": "carl@example.com", "email_verified": False, "name": "Not Carl"},
    "dana": {"email": "dana@acme.test", "email_verified": True, "name": "Dana"},
}


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    # The tests-only setting lets the server reach loopback upstreams over plain http.
    env = {"IDP_MCP_CIMD_ALLOW_PRIVATE_ADDRESSES": "true"}
    with run_live_server(tmp_path / "server", database_url, extra_env=env) as live:
        created = live.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield live
    assert_no_secrets_in_logs(live)
    logs = live.logs()
    for secret in (NODE_SECRET, ACME_SECRET, USER_PASSWORD):
        assert secret not in logs, "a connector secret or a password was written to the server log"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


@pytest.fixture
async def admin_page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    yield await context.new_page()
    await context.close()


async def _set_secret(page: Page, secret_url: str, secret: str) -> None:
    """The administrator, signed in already, pastes the secret on the console page."""
    await page.goto(secret_url)
    await page.fill("input[name=clientSecret]", secret)
    await page.click("button[type=submit].primary")
    assert "Saved" in await page.content()


class Application:
    """The developer's application: authlib's OAuth client, signing users in at the tenant's issuer."""

    def __init__(self, app: dict[str, Any], app_server: AppServer) -> None:
        self.app = app
        self.app_server = app_server

    async def sign_in(self, browser: Browser, steps: Any) -> dict[str, Any]:
        """One user, in a browser of their own, from the application to its callback; the checked ID token claims."""
        async with httpx.AsyncClient() as http:
            discovery = (await http.get(self.app["discoveryUrl"])).json()
            jwks = (await http.get(discovery["jwks_uri"])).json()
        oidc = AsyncOAuth2Client(
            client_id=self.app["clientId"], redirect_uri=self.app_server.callback, scope="openid email profile",
            code_challenge_method="S256", token_endpoint_auth_method="none",
        )  # fmt: skip
        verifier = generate_token(48)
        url, state = oidc.create_authorization_url(
            discovery["authorization_endpoint"], code_verifier=verifier, nonce=generate_token(16)
        )
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(url)
            await steps(page)
            await page.wait_for_url(f"{self.app_server.callback}**", timeout=20000)
            callback = page.url
        finally:
            await context.close()
        token = await oidc.fetch_token(
            discovery["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
        )
        key = jwt.PyJWK(
            next(k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(token["id_token"])["kid"])
        )
        return dict(
            jwt.decode(token["id_token"], key.key, algorithms=[key.algorithm_name], audience=self.app["clientId"])
        )


def node_sign_in(login: str, *, typed_email: str | None = None, issuer: str) -> Any:
    """The user's steps: "Continue with Node" (or an enterprise email typed), then node-oidc-provider's login and
    consent pages."""

    async def steps(page: Page) -> None:
        if typed_email:
            await page.fill("#identifier", typed_email)
            await page.click("form[aria-label='Sign in with a password'] button[type=submit]")
        else:
            await page.click("button:has-text('Continue with Node')")
        await page.wait_for_url(f"{issuer}/interaction/**")
        await page.fill("input[name=login]", login)
        await page.fill("input[name=password]", "any password")
        await page.click("button[type=submit]")
        await page.wait_for_load_state()
        if page.url.startswith(f"{issuer}/interaction/"):  # the consent page
            await page.click("button[type=submit]")

    return steps


async def test_sign_in_with_node_oidc_provider_and_enterprise_sso(
    server: LiveServer, browser: Browser, admin_page: Page, app_server: AppServer, tmp_path: Path
) -> None:
    callback_uri = f"http://127.0.0.1:{free_port()}/callback"
    authorizer = BrowserAuthorizer(admin_page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    issuer = f"http://127.0.0.1:{free_port()}"
    with anyio.fail_after(240):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            node = await call_ok(
                mcp, "createConnector",
                {"kind": "oidc", "name": "Node", "clientId": "node-client", "issuer": issuer, "linkByEmail": True},
            )  # fmt: skip
            acme = await call_ok(
                mcp, "createConnector",
                {"kind": "oidc", "name": "Acme SSO", "clientId": "acme-client", "issuer": issuer,
                 "emailDomains": ["acme.test"]},
            )  # fmt: skip
            assert node["waitingForSecret"] and node["callbackUrl"].endswith(
                f"/connectors/{node['connectorId']}/callback"
            )
            clients = [
                {"client_id": "node-client", "client_secret": NODE_SECRET, "redirect_uris": [node["callbackUrl"]]},
                {"client_id": "acme-client", "client_secret": ACME_SECRET, "redirect_uris": [acme["callbackUrl"]]},
            ]
            with run_node_provider(tmp_path / "upstream", int(issuer.rsplit(":", 1)[1]), clients, ACCOUNTS):
                await _set_secret(admin_page, node["secretUrl"], NODE_SECRET)
                await _set_secret(admin_page, acme["secretUrl"], ACME_SECRET)
                tested = await call_ok(mcp, "testConnector", {"connectorId": node["connectorId"]})
                assert tested["ok"] is True and tested["signingKeys"] >= 1, tested
                await call_ok(mcp, "updateSignInMethod", {"social": [node["connectorId"]]})
                await call_ok(mcp, "updateSignUpMethod", {"enabled": True})
                shop = {"name": "Shop", "type": "spa", "redirectUris": [app_server.callback]}
                app = Application(await call_ok(mcp, "createApplication", shop), app_server)
                bob = await call_ok(mcp, "createUser", {"email": "bob@example.com", "password": USER_PASSWORD})
                carl = await call_ok(mcp, "createUser", {"email": "carl@example.com", "password": USER_PASSWORD})

                # A new user, then the same user again.
                alice = await app.sign_in(browser, node_sign_in("alice", issuer=issuer))
                again = await app.sign_in(browser, node_sign_in("alice", issuer=issuer))
                assert again["sub"] == alice["sub"]
                shown = await call_ok(mcp, "getUser", {"userId": alice["sub"]})
                assert shown["email"] == "alice@example.com" and shown["name"] == "Alice"
                assert [(i["connectorId"], i["subject"], i["emailVerified"]) for i in shown["identities"]] == [
                    (node["connectorId"], "alice", True)
                ]
                # A verified email links to the existing user; an unverified one never does.
                assert (await app.sign_in(browser, node_sign_in("bob", issuer=issuer)))["sub"] == bob["userId"]
                assert (await app.sign_in(browser, node_sign_in("carl", issuer=issuer)))["sub"] != carl["userId"]
                # Enterprise SSO: an address of acme.test goes straight to Acme's provider.
                dana = await app.sign_in(browser, node_sign_in("dana", typed_email="dana@acme.test", issuer=issuer))
                identities = (await call_ok(mcp, "getUser", {"userId": dana["sub"]}))["identities"]
                assert [i["connectorId"] for i in identities] == [acme["connectorId"]]
            everything = await call_ok(mcp, "listConnectors", {})
            assert NODE_SECRET not in str(everything) and ACME_SECRET not in str(everything)


async def test_sign_in_with_another_idp_mcp_tenant_as_an_oauth2_connector(
    server: LiveServer, browser: Browser, admin_page: Page, app_server: AppServer, database_url: str, tmp_path: Path
) -> None:
    created = server.cli("tenant", "create", "--id", "upstream", "--name", "Upstream", "--admin", ADMIN_EMAIL)
    assert created.returncode == 0, created.stderr
    callback_uri = f"http://127.0.0.1:{free_port()}/callback"
    authorizer = BrowserAuthorizer(admin_page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD, tenant="default")
    with anyio.fail_after(240):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            base = f"{server.url}/t/upstream/oidc"
            connector = await call_ok(
                mcp, "createConnector",
                {"kind": "oauth2", "name": "Upstream Corp", "clientId": "pending",
                 "endpoints": {"authorization": f"{base}/authorize", "token": f"{base}/token",
                               "userinfo": f"{base}/userinfo"},
                 "scopes": ["openid", "email", "profile"]},
            )  # fmt: skip
            # The upstream tenant's side, as its administrator would set it up: an application whose redirect is the
            # connector's callback, with a secret, and a user.
            upstream = IdentityCore.from_settings(
                Settings(public_url=server.url, database_url=database_url, data_dir=tmp_path / "direct")
            )
            try:
                actor = Actor(tenant_id="upstream", sub=None)
                # Database work off the event loop, as the loop guard requires.
                upstream_app = await anyio.to_thread.run_sync(
                    lambda: upstream.applications.create(
                        "upstream", name="Downstream sign-in", app_type="traditional", actor=actor,
                        redirect_uris=[connector["callbackUrl"]],
                    )
                )  # fmt: skip
                secret = await anyio.to_thread.run_sync(
                    lambda: upstream.secrets.create("upstream", upstream_app.id, "production", actor).value
                )
                erin = await upstream.tenant_users.create(
                    "upstream", password=USER_PASSWORD, actor=actor, email="erin@example.com", name="Erin"
                )
            finally:
                upstream.close()
            await call_ok(
                mcp, "updateConnector", {"connectorId": connector["connectorId"], "clientId": upstream_app.id}
            )
            await _set_secret(admin_page, connector["secretUrl"], secret)
            await call_ok(mcp, "updateSignInMethod", {"social": [connector["connectorId"]]})
            await call_ok(mcp, "updateSignUpMethod", {"enabled": True})
            shop = {"name": "Shop", "type": "spa", "redirectUris": [app_server.callback]}
            app = Application(await call_ok(mcp, "createApplication", shop), app_server)

            async def steps(page: Page) -> None:
                await page.click("button:has-text('Continue with Upstream Corp')")
                await page.wait_for_url(f"{server.url}/t/upstream/interaction/**")
                await page.fill("#identifier", "erin@example.com")
                await page.fill("#password", USER_PASSWORD)
                await page.click("form[aria-label='Sign in with a password'] button[type=submit]")

            first = await app.sign_in(browser, steps)
            second = await app.sign_in(browser, steps)
            assert first["sub"] == second["sub"]
            shown = await call_ok(mcp, "getUser", {"userId": first["sub"]})
            assert [(i["connectorId"], i["subject"]) for i in shown["identities"]] == [
                (connector["connectorId"], erin.id)
            ]
            assert secret not in server.logs()


async def test_a_cancelled_or_unreachable_upstream_ends_on_a_clear_page_with_nothing_created(
    server: LiveServer, browser: Browser, admin_page: Page, app_server: AppServer, tmp_path: Path
) -> None:
    callback_uri = f"http://127.0.0.1:{free_port()}/callback"
    authorizer = BrowserAuthorizer(admin_page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    issuer = f"http://127.0.0.1:{free_port()}"
    with anyio.fail_after(180):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            node = await call_ok(mcp, "createConnector", {"kind": "oidc", "name": "Node", "clientId": "node-client",
                                                        "issuer": issuer})  # fmt: skip
            clients = [
                {"client_id": "node-client", "client_secret": NODE_SECRET, "redirect_uris": [node["callbackUrl"]]}
            ]
            await call_ok(mcp, "updateSignUpMethod", {"enabled": True})
            shop = {"name": "Shop", "type": "spa", "redirectUris": [app_server.callback]}
            app = await call_ok(mcp, "createApplication", shop)
            async with httpx.AsyncClient() as http:
                discovery = (await http.get(app["discoveryUrl"])).json()
            oidc = AsyncOAuth2Client(client_id=app["clientId"], redirect_uri=app_server.callback, scope="openid",
                                     code_challenge_method="S256")  # fmt: skip
            url, _state = oidc.create_authorization_url(
                discovery["authorization_endpoint"], code_verifier=generate_token(48)
            )
            context = await browser.new_context()
            page = await context.new_page()
            # A second provider that is down: nothing listens on its port.
            gone = await call_ok(mcp, "createConnector", {"kind": "oidc", "name": "Gone", "clientId": "gone-client",
                                                        "issuer": f"http://127.0.0.1:{free_port()}"})  # fmt: skip
            with run_node_provider(tmp_path / "upstream", int(issuer.rsplit(":", 1)[1]), clients, ACCOUNTS):
                await _set_secret(admin_page, node["secretUrl"], NODE_SECRET)
                await _set_secret(admin_page, gone["secretUrl"], "gone-client-secret")
                await call_ok(mcp, "updateSignInMethod", {"social": [node["connectorId"], gone["connectorId"]]})
                await page.goto(url)
                await page.click("button:has-text('Continue with Node')")
                await page.wait_for_url(f"{issuer}/interaction/**")
                await page.click("text=[ Cancel ]")  # the user gives up at the provider: error=access_denied
                await page.wait_for_url(f"{server.url}/t/default/oidc/connectors/**")
                await page.wait_for_selector("text=Signing in with Node was cancelled")
                await page.click("button:has-text('Continue with Gone')")
                await page.wait_for_selector("text=Signing in with Gone is not possible right now")
                assert "refused the connection" in await page.content()
            await context.close()
            listed = await call_ok(mcp, "listUsers", {})
            assert listed["total"] == 0

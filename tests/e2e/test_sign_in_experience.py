"""The sign-in experience end to end: an agent changes it through the MCP SDK client, and a person in Chromium sees
and uses the tenant's hosted page on the real server: the branding, signing in with a code that arrives over SMTP
(aiosmtpd on loopback), and signing up with exactly the fields the tenant asks for."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from playwright.async_api import Page, Route

from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.app_server import AppServer
from tests.support.browser import BrowserAuthorizer
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.mcp_client import MemoryTokenStorage, call_ok, connect
from tests.support.smtp import SmtpSink, code_in

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LOGO = "https://cdn.acme.example/logo.png"
USER_EMAIL = "dana@example.com"
USER_PASSWORD = "a long secret passphrase 9"


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain-coloured PNG, made here: the browser has no network, so the logo is served by the test."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture
def server(tmp_path: Path, database_url: str, smtp: SmtpSink) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "server", database_url, extra_env=smtp.env()) as live:
        created = live.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield live
    assert_no_secrets_in_logs(live)
    assert USER_PASSWORD not in live.logs()


def _callback(app_server: AppServer) -> str:
    """The last redirect the application received (the browser also asks it for /favicon.ico)."""
    return next(url for url in reversed(app_server.received) if url.startswith(app_server.callback))


async def _discovery(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return dict((await http.get(url)).json())


def _oidc(app: dict[str, Any], app_server: AppServer) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=app["clientId"], redirect_uri=app_server.callback, scope="openid email profile",
        code_challenge_method="S256", token_endpoint_auth_method="none",
    )  # fmt: skip


async def _id_token_claims(oidc: AsyncOAuth2Client, app: dict[str, Any], discovery: dict[str, Any], callback: str,
                           verifier: str, state: str) -> dict[str, Any]:  # fmt: skip
    token = await oidc.fetch_token(
        discovery["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
    )
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(discovery["jwks_uri"])).json()
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(token["id_token"])["kid"]))
    return dict(jwt.decode(token["id_token"], key.key, algorithms=[key.algorithm_name], audience=app["clientId"]))


async def test_branding_set_by_an_agent_shows_on_the_hosted_page(
    server: LiveServer, page: Page, callback_uri: str, app_server: AppServer
) -> None:
    logo = _png(160, 48, (255, 85, 0))

    async def serve_logo(route: Route) -> None:
        await route.fulfill(status=200, body=logo, content_type="image/png")

    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(120):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            branded = await call_ok(
                mcp,
                "updateBranding",
                {"displayName": "Acme", "logoUrl": LOGO, "primaryColor": "#ff5500", "darkMode": "off",
                 "termsOfUseUrl": "https://acme.example/terms", "privacyPolicyUrl": "https://acme.example/privacy"},
            )  # fmt: skip
            assert branded["version"] == 1 and branded["changed"]
            app = await call_ok(
                mcp, "createApplication", {"name": "Acme web", "type": "spa", "redirectUris": [app_server.callback]}
            )

        await page.route("https://cdn.acme.example/**", serve_logo)
        async with _oidc(app, app_server) as oidc:
            discovery = await _discovery(app["discoveryUrl"])
            url, _state = oidc.create_authorization_url(
                discovery["authorization_endpoint"], code_verifier=generate_token(48)
            )
            for address in (branded["previewUrl"], url):
                await page.goto(address)
                assert await page.locator("h1").inner_text() == "Sign in to Acme"
                image = page.locator("img.brand-logo")
                assert await image.get_attribute("alt") == "Acme"
                assert await image.evaluate("img => img.complete && img.naturalWidth") == 160
                button = page.locator("form[action$='/sign-in'] button.primary")
                assert await button.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(255, 85, 0)"
                assert await button.evaluate("el => getComputedStyle(el).color") == "rgb(27, 27, 31)"  # readable ink
                terms = page.get_by_role("link", name="Terms of use")
                assert await terms.get_attribute("href") == "https://acme.example/terms"
                assert await page.get_by_role("link", name="Privacy policy").is_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "branding.png"), full_page=True)


async def test_after_email_code_is_enabled_a_user_signs_in_with_a_code_from_smtp(
    server: LiveServer, page: Page, callback_uri: str, app_server: AppServer, smtp: SmtpSink
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(120):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            methods = await call_ok(
                mcp, "updateSignInMethod", {"methods": [{"identifier": "email", "verificationCode": True}]}
            )
            assert methods["signIn"]["methods"] == [
                {"identifier": "email", "password": False, "verificationCode": True}
            ]
            await call_ok(mcp, "createUser", {"email": USER_EMAIL, "password": USER_PASSWORD})
            app = await call_ok(
                mcp, "createApplication", {"name": "Code app", "type": "spa", "redirectUris": [app_server.callback]}
            )

        async with _oidc(app, app_server) as oidc:
            discovery = await _discovery(app["discoveryUrl"])
            verifier = generate_token(48)
            url, state = oidc.create_authorization_url(discovery["authorization_endpoint"], code_verifier=verifier)
            await page.goto(url)
            assert await page.locator("input[name=password]").count() == 0  # codes only
            await page.fill("input[name=email]", USER_EMAIL)
            await page.get_by_role("button", name="Email me a code").click()
            await page.get_by_role("heading", name="Check your email").wait_for()

            code = code_in(await smtp.receive(USER_EMAIL))
            await page.fill("input[name=code]", code)
            await page.get_by_role("button", name="Continue").click()
            await page.wait_for_url(f"{app_server.callback}**")

            claims = await _id_token_claims(oidc, app, discovery, _callback(app_server), verifier, state)
            assert claims["email"] == USER_EMAIL
    assert code not in server.logs()


async def test_sign_up_asks_for_exactly_the_required_fields_and_stops_when_disabled(
    server: LiveServer, page: Page, callback_uri: str, app_server: AppServer, smtp: SmtpSink
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(150):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            sign_up = await call_ok(
                mcp,
                "updateSignUpMethod",
                {"enabled": True, "identifiers": ["email", "username"], "password": True, "verifyEmail": True},
            )
            assert sign_up["signUp"]["enabled"] is True
            app = await call_ok(
                mcp, "createApplication", {"name": "Sign-up app", "type": "spa", "redirectUris": [app_server.callback]}
            )

            async with _oidc(app, app_server) as oidc:
                discovery = await _discovery(app["discoveryUrl"])
                verifier = generate_token(48)
                url, state = oidc.create_authorization_url(discovery["authorization_endpoint"], code_verifier=verifier)
                await page.goto(url)
                await page.get_by_role("link", name="Create account").click()
                form = page.locator("form[action$='/sign-up']")
                fields = await form.locator("input:not([type=hidden])").evaluate_all("els => els.map(e => e.name)")
                assert fields == ["email", "username", "password"]
                await page.fill("input[name=email]", "erin@example.com")
                await page.fill("input[name=username]", "erin")
                await page.fill("input[name=password]", USER_PASSWORD)
                await page.get_by_role("button", name="Create account").click()
                await page.get_by_role("heading", name="Check your email").wait_for()
                code = code_in(await smtp.receive("erin@example.com"))
                await page.fill("input[name=code]", code)
                await page.get_by_role("button", name="Continue").click()
                await page.wait_for_url(f"{app_server.callback}**")
                claims = await _id_token_claims(oidc, app, discovery, _callback(app_server), verifier, state)

            listed = await call_ok(mcp, "listUsers", {})
            [erin] = listed["users"]
            assert (erin["email"], erin["username"], erin["name"]) == ("erin@example.com", "erin", None)
            assert claims["sub"] == erin["userId"] and claims["email"] == "erin@example.com"

            await call_ok(mcp, "updateSignUpMethod", {"enabled": False})
            await page.context.clear_cookies()  # a new visitor, without erin's session
            async with _oidc(app, app_server) as oidc:
                url, _state = oidc.create_authorization_url(
                    discovery["authorization_endpoint"], code_verifier=generate_token(48)
                )
                await page.goto(url)
                await page.locator("h1").wait_for()
                assert await page.get_by_role("link", name="Create account").count() == 0
                response = await page.goto(page.url + "/sign-up")
                assert response is not None and response.status == 403
                assert "not available" in await page.content()
            assert len((await call_ok(mcp, "listUsers", {}))["users"]) == 1

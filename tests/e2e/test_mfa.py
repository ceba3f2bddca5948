"""Multi-factor authentication end to end: an agent sets the tenant's MFA policy through the MCP SDK client, and a
person in Chromium signs in on the real server's hosted pages. Under ``required`` they enroll an authenticator app
(the test reads the key from #totp-secret and computes codes with pyotp, as the app would), then sign in with a code;
the same code is refused the second time; a backup code works once. An application asking for MFA with acr_values
gets an ID token whose amr says so, after the user without a factor was asked to enroll. A code sent by email through
a real SMTP server (aiosmtpd) is a second factor too. Every MFA page passes axe-core's WCAG 2 A/AA rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pyotp
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from playwright.async_api import Page

from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.app_server import AppServer
from tests.support.axe import axe_violations, describe
from tests.support.browser import BrowserAuthorizer
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.mcp_client import MemoryTokenStorage, call_ok, connect
from tests.support.smtp import SmtpSink, code_in

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PASSWORD = "a long secret passphrase 9"
MFA_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"


@pytest.fixture
def server(tmp_path: Path, database_url: str, smtp: SmtpSink) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "server", database_url, extra_env=smtp.env()) as live:
        created = live.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield live
    assert_no_secrets_in_logs(live)
    assert PASSWORD not in live.logs()


async def _accessible(page: Page, what: str) -> None:
    await page.locator("h1").wait_for()
    violations = await axe_violations(page)
    assert not violations, f"{what}:\n{describe(violations)}"


class Sign:
    """One application's sign-ins in the browser, each ending with the ID token's claims."""

    def __init__(self, page: Page, app: dict[str, Any], app_server: AppServer) -> None:
        self.page = page
        self.app = app
        self.app_server = app_server

    async def start(self, email: str, **extra: str) -> tuple[AsyncOAuth2Client, str, str]:
        """Open the authorization request and sign in with the password; returns the client, verifier and state."""
        await self.page.context.clear_cookies()  # a new visit, without the previous session
        async with httpx.AsyncClient() as http:
            self.discovery = (await http.get(self.app["discoveryUrl"])).json()
        oidc = AsyncOAuth2Client(
            client_id=self.app["clientId"], redirect_uri=self.app_server.callback, scope="openid email",
            code_challenge_method="S256", token_endpoint_auth_method="none",
        )  # fmt: skip
        verifier = generate_token(48)
        url, state = oidc.create_authorization_url(
            self.discovery["authorization_endpoint"], code_verifier=verifier, **extra
        )
        await self.page.goto(url)
        await self.page.fill("input[name=identifier]", email)
        await self.page.fill("input[name=password]", PASSWORD)
        async with self.page.expect_navigation():  # to the MFA page, or straight back to the application
            await self.page.get_by_role("button", name="Sign in").click()
        return oidc, verifier, state

    async def claims(self, oidc: AsyncOAuth2Client, verifier: str, state: str) -> dict[str, Any]:
        await self.page.wait_for_url(f"{self.app_server.callback}**")
        callback = next(u for u in reversed(self.app_server.received) if u.startswith(self.app_server.callback))
        token = await oidc.fetch_token(
            self.discovery["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
        )
        await oidc.aclose()
        async with httpx.AsyncClient() as http:
            jwks = (await http.get(self.discovery["jwks_uri"])).json()
        kid = jwt.get_unverified_header(token["id_token"])["kid"]
        key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))
        return dict(
            jwt.decode(token["id_token"], key.key, algorithms=[key.algorithm_name], audience=self.app["clientId"])
        )

    async def enroll(self) -> tuple[str, list[str]]:
        """On the enrollment page: add the key to 'the app' (pyotp), confirm a code, save the backup codes."""
        page = self.page
        assert await page.locator("h1").inner_text() == "Set up an authenticator app"
        await _accessible(page, "TOTP enrollment")
        assert await page.locator("img[src^='data:image/svg+xml']").count() == 1
        secret = (await page.locator("#totp-secret").inner_text()).strip()
        await page.fill("input[name=code]", pyotp.TOTP(secret).now())
        await page.get_by_role("button", name="Turn on").click()
        await page.get_by_role("heading", name="Save your backup codes").wait_for()
        await _accessible(page, "backup codes")
        codes = [code.strip() for code in await page.locator("#backup-codes li").all_inner_texts()]
        await page.get_by_role("button", name="I saved them, continue").click()
        return secret, codes


async def test_required_totp_enrollment_then_codes_once_and_backup_codes_once(
    server: LiveServer, page: Page, callback_uri: str, app_server: AppServer
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(180):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            updated = await call_ok(mcp, "updateMfaPolicy", {"policy": "required", "factors": ["totp"]})
            assert updated["mfa"]["policy"] == "required"
            dana = await call_ok(mcp, "createUser", {"email": "dana@example.com", "password": PASSWORD})
            app = await call_ok(mcp, "createApplication", {"name": "Bank", "type": "spa",
                                                         "redirectUris": [app_server.callback]})  # fmt: skip
            sign = Sign(page, app, app_server)

            flow = await sign.start("dana@example.com")
            secret, codes = await sign.enroll()
            assert len(codes) == 10
            claims = await sign.claims(*flow)
            assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == MFA_ACR

            # The next sign-in: a code from the app (the next 30-second step: the last one was spent enrolling).
            code = pyotp.TOTP(secret).at(time.time() + 30)
            flow = await sign.start("dana@example.com")
            assert await page.locator("h1").inner_text() == "Confirm it is you"
            await _accessible(page, "TOTP challenge")
            await page.fill("input[name=code]", code)
            await page.get_by_role("button", name="Continue").click()
            assert "otp" in (await sign.claims(*flow))["amr"]

            # The same code again: refused, nothing signed in.
            await sign.start("dana@example.com")
            await page.fill("input[name=code]", code)
            await page.get_by_role("button", name="Continue").click()
            alert = page.get_by_role("alert")
            assert "used already" in await alert.inner_text()

            # A backup code instead, from the same page; then the same backup code again is refused.
            await page.get_by_role("link", name="Use a backup code").click()
            await page.get_by_label("Backup code").fill(codes[0])
            await page.get_by_role("button", name="Continue").click()
            await page.wait_for_url(f"{app_server.callback}**")
            flow = await sign.start("dana@example.com")
            await page.get_by_role("link", name="Use a backup code").click()
            await _accessible(page, "backup code challenge")
            await page.get_by_label("Backup code").fill(codes[0])
            await page.get_by_role("button", name="Continue").click()
            assert "works once" in await page.get_by_role("alert").inner_text()

            details = await call_ok(mcp, "getUser", {"userId": dana["userId"]})
            kinds = {factor["kind"]: factor for factor in details["mfaFactors"]}
            assert set(kinds) == {"totp", "backup_codes"} and kinds["backup_codes"]["remaining"] == 9
    logs = server.logs()
    assert secret not in logs and code not in logs and not any(c in logs for c in codes)


async def test_step_up_with_acr_values_and_an_email_code_as_second_factor(
    server: LiveServer, page: Page, callback_uri: str, app_server: AppServer, smtp: SmtpSink
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(180):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            await call_ok(mcp, "createUser", {"email": "erin@example.com", "password": PASSWORD})
            app = await call_ok(mcp, "createApplication", {"name": "Admin area", "type": "spa",
                                                         "redirectUris": [app_server.callback]})  # fmt: skip
            sign = Sign(page, app, app_server)

            # Policy off: a plain sign-in is single-factor ...
            flow = await sign.start("erin@example.com")
            claims = await sign.claims(*flow)
            assert claims["amr"] == ["pwd"] and claims["acr"] == "1fa"
            # ... and an application asking for MFA makes the user without a factor enroll one.
            flow = await sign.start("erin@example.com", acr_values=MFA_ACR)
            await sign.enroll()
            claims = await sign.claims(*flow)
            assert "otp" in claims["amr"] and "mfa" in claims["amr"] and claims["acr"] == MFA_ACR

            # An email code as the second factor, for a user whose address is proven.
            await call_ok(mcp, "updateMfaPolicy", {"policy": "required", "factors": ["email"]})
            frank = await call_ok(mcp, "createUser", {"email": "frank@example.com", "password": PASSWORD})
            await call_ok(mcp, "updateUser", {"userId": frank["userId"], "emailVerified": True})
            flow = await sign.start("frank@example.com")
            assert "f***@example.com" in await page.content()
            await _accessible(page, "email challenge")
            await page.get_by_role("button", name="Email me a code").click()
            await page.get_by_role("status").wait_for()
            code = code_in(await smtp.receive("frank@example.com"))
            await page.fill("input[name=code]", "000000" if code != "000000" else "111111")
            await page.get_by_role("button", name="Continue").click()
            assert "not right" in await page.get_by_role("alert").inner_text()
            await page.fill("input[name=code]", code)
            await page.get_by_role("button", name="Continue").click()
            claims = await sign.claims(*flow)
            assert claims["amr"] == ["pwd", "email", "mfa"]
    assert code not in server.logs()

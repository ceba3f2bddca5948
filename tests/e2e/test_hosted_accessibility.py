"""The tenant's hosted pages pass axe-core's WCAG 2 A/AA rules in Chromium after an agent sets brand colours that
would not be readable as given (yellow on the light page, navy in dark mode): the sign-in page, the sign-up page,
the email-code page, the forgot-password pages, the second-factor pages (enrollment offer, email-code challenge)
and the previews, at desktop and phone widths, in light and dark mode (pinned or following the device)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from playwright.async_api import Page

from tests.e2e.conftest import assert_no_secrets_in_logs
from tests.support.axe import axe_violations, describe
from tests.support.browser import BrowserAuthorizer
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.mcp_client import MemoryTokenStorage, call_ok, connect
from tests.support.smtp import SmtpSink

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MFA_PASSWORD = "a long secret passphrase 9"
CALLBACK = "http://127.0.0.1:9/callback"  # never reached: the pages are checked before any redirect
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
# (darkMode set through updateBranding, the device's colour scheme): pinned light, pinned dark, and following the
# device both ways.
MODES = [("off", "light"), ("on", "dark"), ("auto", "light"), ("auto", "dark")]


@pytest.fixture
def server(tmp_path: Path, database_url: str, smtp: SmtpSink) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "server", database_url, extra_env=smtp.env()) as live:
        created = live.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield live
    assert_no_secrets_in_logs(live)


async def _authorization_url(app: dict[str, Any], page: Page) -> str:
    discovery = await (await page.context.request.get(app["discoveryUrl"])).json()
    async with AsyncOAuth2Client(
        client_id=app["clientId"], redirect_uri=CALLBACK, scope="openid email", code_challenge_method="S256",
        token_endpoint_auth_method="none",
    ) as oidc:  # fmt: skip
        url, _ = oidc.create_authorization_url(discovery["authorization_endpoint"], code_verifier=generate_token(48))
    return str(url)


async def _assert_accessible(page: Page, what: str) -> None:
    await page.locator("h1").wait_for()
    violations = await axe_violations(page)
    assert not violations, f"{what}:\n{describe(violations)}"


async def _check_hosted_pages(visitor: Page, preview: str, app: dict[str, Any], scheme: str, where: str,
                              email: str) -> None:  # fmt: skip
    """Both previews, then a real sign-in page (with its passkey button), its sign-up page, the email-code page,
    the recovery pages and the second-factor pages (an authenticator app or a passkey): each free of violations."""
    await visitor.goto(preview)
    await _assert_accessible(visitor, f"preview of sign-in ({where})")
    await visitor.goto(f"{preview}?screen=sign-up")
    await _assert_accessible(visitor, f"preview of sign-up ({where})")

    await visitor.goto(await _authorization_url(app, visitor))
    await _assert_accessible(visitor, f"sign-in ({where})")
    sign_in_url = visitor.url
    # The link really is in the readable variant (#747400 light, #7373ff dark), not the colour as given.
    link = visitor.get_by_role("link", name="Create account")
    colour = await link.evaluate("el => getComputedStyle(el).color")
    assert colour == ("rgb(116, 116, 0)" if scheme == "light" else "rgb(115, 115, 255)"), where
    await link.click()
    await _assert_accessible(visitor, f"sign-up ({where})")

    await visitor.goto(sign_in_url)
    await visitor.fill("form[action$='/sign-in/code'] input[name=email]", email)
    await visitor.get_by_role("button", name="Email me a code").click()
    await visitor.get_by_role("heading", name="Check your email").wait_for()
    await _assert_accessible(visitor, f"email code ({where})")

    await visitor.goto(sign_in_url)  # account recovery: ask for a code, then the code and new password form
    await visitor.get_by_role("link", name="Forgot password?").click()
    await _assert_accessible(visitor, f"forgot password ({where})")
    await visitor.fill("input[name=email]", email)
    await visitor.get_by_role("button", name="Email me a code").click()
    await visitor.get_by_role("heading", name="Choose a new password").wait_for()
    await _assert_accessible(visitor, f"reset password ({where})")

    # The second-factor pages: the offer to set up an authenticator app, and the challenge with an email code.
    for user, heading in (
        ("gina@example.com", "Set up an authenticator app"),
        ("frank@example.com", "Confirm it is you"),
    ):
        await visitor.context.clear_cookies()
        await visitor.goto(await _authorization_url(app, visitor))
        await visitor.fill("form[action$='/sign-in'] input[name=identifier]", user)
        await visitor.fill("input[name=password]", MFA_PASSWORD)
        await visitor.get_by_role("button", name="Sign in", exact=True).click()
        await visitor.get_by_role("heading", name=heading).wait_for()
        await _assert_accessible(visitor, f"{heading} ({where})")
        if user == "gina@example.com":  # the passkey way to set up a factor, offered next to the app
            await visitor.get_by_role("link", name="Use a passkey instead").click()
            await visitor.locator("[data-passkey]").first.wait_for()
            await _assert_accessible(visitor, f"set up a passkey ({where})")


async def test_hosted_pages_have_no_wcag_violations_after_low_contrast_branding(
    server: LiveServer, page: Page, callback_uri: str
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    browser = page.context.browser
    assert browser is not None
    checked: list[str] = []
    with anyio.fail_after(300):
        async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            await call_ok(mcp, "updateSignUpMethod", {"enabled": True, "identifiers": ["email"], "password": True})
            await call_ok(
                mcp, "updateSignInMethod",
                {"methods": [{"identifier": "email", "password": True, "verificationCode": True},
                             {"identifier": "username", "password": True}]},
            )  # fmt: skip
            app = await call_ok(
                mcp, "createApplication", {"name": "Acme shop", "type": "spa", "redirectUris": [CALLBACK]}
            )
            mfa = {"policy": "optional", "factors": ["totp", "email", "passkey"], "passkeyFirst": True}
            await call_ok(mcp, "updateMfaPolicy", mfa)
            await call_ok(mcp, "createUser", {"email": "gina@example.com", "password": MFA_PASSWORD})
            frank = await call_ok(mcp, "createUser", {"email": "frank@example.com", "password": MFA_PASSWORD})
            await call_ok(mcp, "updateUser", {"userId": frank["userId"], "emailVerified": True})
            for dark_mode, scheme in MODES:
                branded = await call_ok(
                    mcp, "updateBranding",
                    {"displayName": "Acme", "primaryColor": "#ffff00", "darkPrimaryColor": "#000080",
                     "darkMode": dark_mode, "termsOfUseUrl": "https://acme.example/terms",
                     "privacyPolicyUrl": "https://acme.example/privacy"},
                )  # fmt: skip
                shown = {"off": {"light"}, "on": {"dark"}, "auto": {"light", "dark"}}[dark_mode]
                assert {item["mode"] for item in branded["adjusted"]} == shown, branded["adjusted"]
                for width, viewport in WIDTHS.items():
                    context = await browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
                    where = f"darkMode {dark_mode}, device {scheme}, {width}"
                    try:
                        # One address per round: codes asked for one address are rate-limited.
                        email = f"dana{len(checked)}@example.com"
                        await _check_hosted_pages(await context.new_page(), branded["previewUrl"], app, scheme, where,
                                                  email)  # fmt: skip
                    finally:
                        await context.close()
                    checked.append(where)
    assert len(checked) == len(MODES) * len(WIDTHS)

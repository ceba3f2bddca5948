"""The sign-in experience tools over /mcp with a real token: partial updates merge and move the version, every
contradiction is an actionable tool error that writes nothing (the version stays), updates are audited, and the
hosted page (and its stylesheet) render what was set."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.support import hosted
from tests.support.inprocess import PUBLIC_URL
from tests.support.mcp_http import McpSession, text_of
from tests.support.smtp import SENDER
from tests.support.tokens import obtain_access_token

TENANT = "default"
PREVIEW = f"{PUBLIC_URL}/t/{TENANT}/preview"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
LOGO = "https://cdn.example.com/acme/logo.png"


@pytest.fixture
def smtp_configured() -> bool:
    return True


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_configured: bool) -> Settings:
    # Nothing is sent in these tests: the connector only has to be configured for email codes to be allowed.
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": 2525, "smtp_from": SENDER} if smtp_configured else {}
    return Settings(public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url, **smtp)  # type: ignore[arg-type]


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def refused(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    return text_of(result)


def stored(core: IdentityCore) -> tuple[Any, ...]:
    """The stored experience and the audit rows of its changes."""
    experience = core.sign_in_experiences.get(TENANT)
    updates = [
        entry.details for entry in core.audit.recent(TENANT, limit=500) if entry.action == "sign_in_experience.update"
    ]
    return experience.version, experience.document(), updates


# --- reading and partial updates ------------------------------------------------------------------------------


def test_a_new_tenant_has_the_default_experience_at_version_zero(session: McpSession) -> None:
    experience = ok(session.call_tool("getSignInExperience", {}))

    assert experience["version"] == 0 and experience["updatedAt"] is None
    assert experience["signIn"]["methods"] == [
        {"identifier": "email", "password": True, "verificationCode": False},
        {"identifier": "username", "password": True, "verificationCode": False},
    ]
    assert experience["signUp"] == {"enabled": False, "identifiers": ["email"], "password": True, "verifyEmail": False}
    assert experience["branding"]["logoUrl"] is None and experience["branding"]["darkMode"] == "auto"
    assert experience["emailConnector"] is True
    assert experience["previewUrl"] == PREVIEW


def test_branding_updates_are_partial_bump_the_version_and_are_audited(session: McpSession, core: IdentityCore) -> None:
    first = ok(session.call_tool("updateBranding", {"logoUrl": LOGO, "primaryColor": "#FF5500"}))
    assert first["version"] == 1
    assert first["branding"]["logoUrl"] == LOGO and first["branding"]["primaryColor"] == "#ff5500"
    assert first["changed"] == ["branding.logoUrl", "branding.primaryColor"]
    assert "logoUrl" in first["summary"] and "#ff5500" in first["summary"]
    assert first["previewUrl"] == PREVIEW

    second = ok(session.call_tool("updateBranding", {"darkMode": "on", "termsOfUseUrl": "https://acme.example/terms"}))
    assert second["version"] == 2 and second["changed"] == ["branding.darkMode", "branding.termsOfUseUrl"]
    assert second["branding"]["logoUrl"] == LOGO and second["branding"]["primaryColor"] == "#ff5500"  # kept

    cleared = ok(session.call_tool("updateBranding", {"logoUrl": None, "primaryColor": None}))
    assert cleared["version"] == 3
    assert cleared["branding"]["logoUrl"] is None and cleared["branding"]["primaryColor"] == "#5d34f2"

    same = ok(session.call_tool("updateBranding", {"darkMode": "on"}))
    assert same["version"] == 3 and same["changed"] == [] and "Nothing changed" in same["summary"]

    version, document, updates = stored(core)
    assert version == 3 and document["branding"]["termsOfUseUrl"] == "https://acme.example/terms"
    assert [entry["changed"] for entry in reversed(updates)] == [
        ["branding.logoUrl", "branding.primaryColor"],
        ["branding.darkMode", "branding.termsOfUseUrl"],
        ["branding.logoUrl", "branding.primaryColor"],
    ]
    assert ok(session.call_tool("getSignInExperience", {}))["version"] == 3


def test_sign_in_methods_are_replaced_in_order_and_sign_up_merges(session: McpSession, core: IdentityCore) -> None:
    methods = [
        {"identifier": "email", "verificationCode": True, "password": True},
        {"identifier": "username", "password": True},
    ]
    updated = ok(session.call_tool("updateSignInMethod", {"methods": methods}))
    assert updated["version"] == 1 and updated["changed"] == ["signIn.methods"]
    assert updated["signIn"]["methods"][0] == {"identifier": "email", "password": True, "verificationCode": True}
    assert "email (password or code)" in updated["summary"]

    enabled = ok(session.call_tool("updateSignUpMethod", {"enabled": True, "identifiers": ["username", "email"]}))
    assert enabled["version"] == 2
    assert enabled["signUp"] == {
        "enabled": True, "identifiers": ["username", "email"], "password": True, "verifyEmail": False,
    }  # fmt: skip
    verified = ok(session.call_tool("updateSignUpMethod", {"verifyEmail": True}))
    assert verified["version"] == 3 and verified["signUp"]["identifiers"] == ["username", "email"]
    assert verified["changed"] == ["signUp.verifyEmail"]
    assert core.sign_in_experiences.get(TENANT).sign_up.verify_email is True


# --- contradictions: an actionable error, nothing written -----------------------------------------------------

EMAIL_ONLY = [{"identifier": "email", "password": True}]
USERNAME_ONLY = [{"identifier": "username", "password": True}]
EMAIL_CODE = [{"identifier": "email", "verificationCode": True}]

INVALID: list[Any] = [
    pytest.param([], "updateBranding", {"primaryColor": "red"}, "must be a colour", id="colour-not-a-colour"),
    pytest.param([], "updateBranding", {"darkPrimaryColor": "#12345"}, "#rgb or #rrggbb", id="colour-bad-length"),
    pytest.param([], "updateBranding", {"logoUrl": "http://cdn.example.com/l.png"}, "https", id="logo-not-https"),
    pytest.param([], "updateBranding", {"logoUrl": "javascript:alert(1)"}, "https", id="logo-javascript"),
    pytest.param([], "updateBranding", {"faviconUrl": "https://u:p@cdn.example.com/f.ico"}, "user name", id="creds"),
    pytest.param([], "updateBranding", {"privacyPolicyUrl": "/privacy"}, "https", id="privacy-relative"),
    pytest.param([], "updateBranding", {"colour": "#fff"}, "'colour' is not an argument", id="unknown-field"),
    pytest.param([], "updateBranding", {"customCss": "@import x;"}, "@import", id="css-import"),
    pytest.param([], "updateBranding", {"customCss": ".a { background: url(x) }"}, "url(", id="css-url"),
    pytest.param([], "updateBranding", {"customCss": ".a { width: expression(1) }"}, "expression(", id="css-expr"),
    pytest.param([], "updateBranding", {"customCss": "</style><script>"}, "</style", id="css-close-style"),
    pytest.param([], "updateBranding", {"customCss": ".a { behavior: x }"}, "behavior", id="css-behavior"),
    pytest.param([], "updateBranding", {"customCss": ".a { b: javascript:x }"}, "javascript:", id="css-js"),
    pytest.param([], "updateBranding", {"customCss": ".a { color: red; " * 400 + "}"}, "4096", id="css-long"),
    pytest.param([], "updateBranding", {"customCss": ".é { color: red }" * 230}, "4096 bytes", id="css-long-bytes"),
    pytest.param([], "updateBranding", {"customCss": ".a { .b { color: red } }"}, "plain rules", id="css-nested"),
    pytest.param([], "updateSignInMethod", {"methods": []}, "at least one sign-in method", id="no-method-left"),
    pytest.param(
        [],
        "updateSignInMethod",
        {"methods": [{"identifier": "phone", "password": True}]},
        "'email' or 'username'",
        id="phone",
    ),
    pytest.param([], "updateSignInMethod", {"methods": [{"identifier": "email"}]}, "no way to prove", id="no-proof"),
    pytest.param(
        [],
        "updateSignInMethod",
        {"methods": [{"identifier": "username", "verificationCode": True}]},
        "no address to send a code",
        id="username-code",
    ),
    pytest.param([], "updateSignInMethod", {"methods": EMAIL_ONLY * 2}, "listed twice", id="duplicate-identifier"),
    pytest.param(
        [],
        "updateSignInMethod",
        {"methods": [{"identifier": "email", "password": True, "otp": True}]},
        "'methods.0.otp' is not an argument",
        id="unknown-method-field",
    ),
    pytest.param(
        [("updateSignInMethod", {"methods": USERNAME_ONLY})],
        "updateSignUpMethod",
        {"enabled": True, "identifiers": ["email"]},
        "email is not a sign-in method",
        id="sign-up-email-not-sign-in",
    ),
    pytest.param(
        [("updateSignUpMethod", {"enabled": True, "identifiers": ["email"]})],
        "updateSignInMethod",
        {"methods": USERNAME_ONLY},
        "email is not a sign-in method",
        id="sign-in-drops-sign-up-identifier",
    ),
    pytest.param(
        [], "updateSignUpMethod", {"enabled": True, "password": False}, "without a password", id="no-password-no-code"
    ),
    pytest.param(
        [("updateSignInMethod", {"methods": EMAIL_CODE})],
        "updateSignUpMethod",
        {"enabled": True, "password": False, "verifyEmail": False},
        "without a password",
        id="no-password-unverified",
    ),
    pytest.param(
        [],
        "updateSignUpMethod",
        {"enabled": True, "identifiers": ["username"], "verifyEmail": True},
        "verifyEmail needs email",
        id="verify-without-email",
    ),
    pytest.param([], "updateSignUpMethod", {"enabled": True, "identifiers": []}, "at least one identifier", id="no-id"),
    pytest.param([], "updateSignUpMethod", {"identifiers": ["phone"]}, "'email' or 'username'", id="sign-up-phone"),
    pytest.param([], "updateSignUpMethod", {}, "at least one field", id="sign-up-nothing"),
    pytest.param([], "updateBranding", {}, "at least one field", id="branding-nothing"),
]


@pytest.mark.parametrize(("setup", "tool", "arguments", "message"), INVALID)
def test_an_invalid_update_is_an_actionable_error_that_changes_nothing(
    session: McpSession, core: IdentityCore, setup: list[tuple[str, dict[str, Any]]], tool: str,
    arguments: dict[str, Any], message: str,
) -> None:  # fmt: skip
    for setup_tool, setup_arguments in setup:
        ok(session.call_tool(setup_tool, setup_arguments))
    before = stored(core)

    error = refused(session.call_tool(tool, arguments))

    assert message in error
    assert stored(core) == before  # same version, same document, no new audit row


@pytest.mark.parametrize("smtp_configured", [False])
def test_email_codes_are_refused_while_the_server_has_no_email_connector(
    session: McpSession, core: IdentityCore
) -> None:
    assert ok(session.call_tool("getSignInExperience", {}))["emailConnector"] is False

    error = refused(session.call_tool("updateSignInMethod", {"methods": EMAIL_CODE}))
    assert "IDP_MCP_SMTP_HOST" in error and "SMTP" in error
    verify = refused(session.call_tool("updateSignUpMethod", {"enabled": True, "verifyEmail": True}))
    assert "IDP_MCP_SMTP_HOST" in verify
    assert stored(core) == (0, core.sign_in_experiences.get(TENANT).document(), [])


def test_a_read_only_connection_reads_but_cannot_update(client: TestClient, core: IdentityCore) -> None:
    mcp = McpSession(client, obtain_access_token(client, allow_write=False).access_token)
    mcp.initialize()
    assert "updateBranding" not in {tool["name"] for tool in mcp.list_tools()}
    assert ok(mcp.call_tool("getSignInExperience", {}))["version"] == 0
    assert "write access" in refused(mcp.call_tool("updateBranding", {"logoUrl": LOGO}))
    assert core.sign_in_experiences.get(TENANT).version == 0


# --- what the hosted page shows -------------------------------------------------------------------------------


def test_the_hosted_page_renders_logo_colours_dark_mode_and_links_after_updates(
    session: McpSession, client: TestClient, core: IdentityCore
) -> None:
    updated = ok(
        session.call_tool(
            "updateBranding",
            {
                "displayName": "Acme", "logoUrl": LOGO, "darkLogoUrl": "https://cdn.example.com/acme/dark.png",
                "faviconUrl": "https://cdn.example.com/acme/favicon.ico", "primaryColor": "#ff5500",
                "darkPrimaryColor": "#ffaa77", "termsOfUseUrl": "https://acme.example/terms",
                "privacyPolicyUrl": "https://acme.example/privacy", "customCss": ".card { border-radius: 2px; }",
            },
        )
    )  # fmt: skip
    app = core.applications.create(
        TENANT, name="Acme shop", app_type="traditional", actor=ACTOR, redirect_uris=[hosted.CALLBACK]
    )
    request = hosted.start(client, app.id)

    for page in (client.get(updated["previewUrl"]), request.page()):
        html = page.text
        assert page.status_code == 200
        assert "Sign in to Acme" in html
        assert f'<img class="brand-logo" src="{LOGO}" alt="Acme">' in html
        assert '<source srcset="https://cdn.example.com/acme/dark.png" media="(prefers-color-scheme: dark)">' in html
        assert '<link rel="icon" href="https://cdn.example.com/acme/favicon.ico">' in html
        assert f'<link rel="stylesheet" href="/t/{TENANT}/branding.css?v=1">' in html
        assert 'href="https://acme.example/terms"' in html and 'href="https://acme.example/privacy"' in html
        assert "style=" not in html and "<style" not in html  # the CSP allows no inline style
    assert "to continue to <strong>Acme shop</strong>" in request.page().text
    assert "forms are not active" in client.get(updated["previewUrl"]).text

    css = client.get(f"/t/{TENANT}/branding.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":root { --primary: #ff5500; --primary-ink: #1b1b1f; --primary-text: #c74200; }" in css.text
    assert ":root.dark { --primary: #ffaa77;" in css.text
    assert ".card { border-radius: 2px; }" in css.text

    ok(session.call_tool("updateBranding", {"darkMode": "on", "logoUrl": None, "darkLogoUrl": None}))
    html = client.get(updated["previewUrl"]).text
    assert re.search(r'<html lang="en" class="dark">', html)
    assert "brand-logo" not in html and '<span class="brand-name">Acme</span>' in html
    ok(session.call_tool("updateBranding", {"darkMode": "off"}))
    assert '<html lang="en" class="light">' in client.get(updated["previewUrl"]).text


def test_the_sign_in_page_offers_the_methods_in_their_order(
    session: McpSession, client: TestClient, core: IdentityCore
) -> None:
    ok(session.call_tool("updateSignInMethod", {"methods": [*EMAIL_CODE, *USERNAME_ONLY]}))
    html = client.get(PREVIEW).text
    code_form, password_form = html.index('action="/t/default/sign-in/code"'), html.index('action="/t/default/sign-in"')
    assert code_form < password_form
    assert '<label for="identifier">Username</label>' in html
    assert "Create account" not in html

    ok(session.call_tool("updateSignInMethod", {"methods": EMAIL_ONLY}))
    ok(session.call_tool("updateSignUpMethod", {"enabled": True}))
    html = client.get(PREVIEW).text
    assert 'action="/t/default/sign-in/code"' not in html
    assert '<label for="identifier">Email</label>' in html
    assert 'href="/t/default/preview?screen=sign-up">Create account</a>' in html
    sign_up = client.get(f"{PREVIEW}?screen=sign-up").text
    assert hosted.input_names(sign_up, "/t/default/sign-up") == ["email", "password"]


def test_unknown_tenants_have_no_preview_or_stylesheet(client: TestClient) -> None:
    assert client.get("/t/nope/preview").status_code == 404
    assert client.get("/t/nope/branding.css").status_code == 404
    assert client.get("/t/admin/preview").status_code == 404


# --- readable brand colours -----------------------------------------------------------------------------------


def _variables(css: str, selector: str) -> dict[str, str]:
    block = re.search(re.escape(selector) + r" \{ ([^}]*) \}", css)
    assert block, css
    return dict(part.strip().split(": ") for part in block.group(1).strip(" ;").split(";"))


def test_a_low_contrast_colour_on_the_light_page_is_adjusted_in_the_css_and_reported(
    session: McpSession, client: TestClient, core: IdentityCore
) -> None:
    updated = ok(session.call_tool("updateBranding", {"primaryColor": "#ffff00", "darkMode": "off"}))

    assert updated["adjusted"] == [
        {"field": "primaryColor", "mode": "light", "use": "text", "given": "#ffff00", "used": "#747400",
         "text": "#747400", "background": "#f4f4f7", "ratio": 4.51},
    ]  # fmt: skip
    assert "primaryColor #ffff00 as #747400 for text in light mode (4.51:1)" in updated["summary"]
    # What the user asked for is what is stored: a later background or mode change starts again from it.
    assert updated["branding"]["primaryColor"] == "#ffff00"
    assert core.sign_in_experiences.get(TENANT).document()["branding"]["primaryColor"] == "#ffff00"
    light = _variables(client.get(f"/t/{TENANT}/branding.css").text, ":root")
    # Links and text use the readable variant; the yellow button keeps its colour under near-black ink.
    assert light == {"--primary": "#ffff00", "--primary-ink": "#1b1b1f", "--primary-text": "#747400"}
    assert ok(session.call_tool("getSignInExperience", {}))["adjusted"] == updated["adjusted"]


def test_navy_in_dark_mode_is_lightened_in_the_css_and_reported(session: McpSession, client: TestClient) -> None:
    updated = ok(session.call_tool("updateBranding", {"darkPrimaryColor": "#000080", "darkMode": "on"}))

    [adjusted] = updated["adjusted"]
    assert (adjusted["field"], adjusted["mode"], adjusted["use"], adjusted["given"]) == (
        "darkPrimaryColor", "dark", "text", "#000080",
    )  # fmt: skip
    assert adjusted["used"] == "#7373ff" and adjusted["background"] == "#1c1c22" and adjusted["ratio"] >= 4.5
    assert updated["branding"]["darkPrimaryColor"] == "#000080"
    css = client.get(f"/t/{TENANT}/branding.css").text
    dark = _variables(css, ":root.dark")
    assert dark == {"--primary": "#000080", "--primary-ink": "#ffffff", "--primary-text": "#7373ff"}
    assert _variables(css, ":root:not(.light)") == dark

    # The same navy as the only primary colour: readable on the light page, lightened in dark mode (auto).
    auto = ok(session.call_tool("updateBranding", {"primaryColor": "#000080", "darkPrimaryColor": None,
                                                    "darkMode": "auto"}))  # fmt: skip
    assert [(a["field"], a["mode"], a["used"]) for a in auto["adjusted"]] == [("primaryColor", "dark", "#7373ff")]


def test_a_colour_that_reads_is_used_untouched(session: McpSession, client: TestClient) -> None:
    updated = ok(session.call_tool("updateBranding", {"primaryColor": "#1a56db", "darkPrimaryColor": "#93b4ff"}))

    assert updated["adjusted"] == []
    assert "WCAG" not in updated["summary"]
    css = client.get(f"/t/{TENANT}/branding.css").text
    assert _variables(css, ":root") == {"--primary": "#1a56db", "--primary-ink": "#ffffff", "--primary-text": "#1a56db"}
    assert _variables(css, ":root.dark") == {
        "--primary": "#93b4ff", "--primary-ink": "#1b1b1f", "--primary-text": "#93b4ff",
    }  # fmt: skip

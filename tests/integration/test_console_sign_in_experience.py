"""The console's sign-in experience page: the tenant's branding, sign-in methods and sign-up, changed through the
core use cases the tools use (the same refusals, in the same words, with nothing written), audited with the person
as actor; read-only members and other tenants' administrators change nothing; the preview may be framed by this
origin only, and only the console's experience page may frame."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.audit import AuditQuery
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.sign_in_experience import NO_SMTP
from idp_mcp.domain import DEFAULT_TENANT_ID
from tests.support.console import (
    READER_EMAIL,
    READER_PASSWORD,
    STRANGER_EMAIL,
    STRANGER_PASSWORD,
    XSS,
    Cast,
    cast,
    csrf,
    signed_in,
    text_of,
)

PAGE = f"/console/t/{DEFAULT_TENANT_ID}/sign-in-experience"
BRANDING = {
    "displayName": "", "logoUrl": "", "darkLogoUrl": "", "faviconUrl": "", "primaryColor": "#5d34f2",
    "darkPrimaryColor": "", "darkMode": "auto", "customCss": "", "termsOfUseUrl": "", "privacyPolicyUrl": "",
}  # fmt: skip
SIGN_IN = {"email_password": "on", "username_password": "on", "first": "email"}


@pytest.fixture
def people(core: IdentityCore) -> Cast:
    return cast(core)


def _post(client: TestClient, section: str, token: str | None, data: dict[str, str | list[str]]) -> tuple[int, str]:
    form = data | ({"csrf_token": token} if token is not None else {})
    response = client.post(f"{PAGE}/{section}", data=form, follow_redirects=False)
    return response.status_code, response.headers.get("location") or response.text


def _version(core: IdentityCore) -> int:
    return core.sign_in_experiences.get(DEFAULT_TENANT_ID).version


def test_the_page_shows_the_current_experience_and_frames_the_preview(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    signed_in(client)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'aria-current="page">Sign-in experience' in page.text
    assert 'value="#5d34f2"' in page.text and "Version 0" in text_of(page.text)
    assert f'<iframe class="preview-frame" src="/t/{DEFAULT_TENANT_ID}/preview?v=0"' in page.text
    assert "Save branding" in page.text and "disabled" not in page.text.split('<h2 id="branding">')[1].split("<h2")[0]
    # This page may frame this origin's pages (the preview); nothing may frame it.
    policy = page.headers["content-security-policy"]
    assert "frame-src 'self'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    assert page.headers["x-frame-options"] == "DENY"


def test_only_the_preview_may_be_framed_and_only_by_this_origin(client: TestClient, people: Cast) -> None:
    for preview in (f"/t/{DEFAULT_TENANT_ID}/preview", f"/t/{DEFAULT_TENANT_ID}/preview?screen=sign-up"):
        response = client.get(preview)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'self'" in policy and "form-action 'none'" in policy
        assert response.headers["x-frame-options"] == "SAMEORIGIN"
    signed_in(client)
    for other in ("/console", f"/console/t/{DEFAULT_TENANT_ID}/users", "/sign-in", "/t/nope/preview"):
        response = client.get(other)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], other
        assert "frame-src" not in response.headers["content-security-policy"], other
        assert response.headers["x-frame-options"] == "DENY", other


def test_saving_branding_changes_it_through_the_core_and_audits_the_person(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    signed_in(client)
    form = BRANDING | {"displayName": "Acme", "primaryColor": "#FFFF00", "customCss": ".card {\r\n  border: 0;\r\n}"}
    assert _post(client, "branding", csrf(client, PAGE), form) == (303, f"{PAGE}?saved=branding")
    experience = core.sign_in_experiences.get(DEFAULT_TENANT_ID)
    assert experience.version == 1
    assert experience.branding.display_name == "Acme" and experience.branding.primary_color == "#ffff00"
    assert experience.branding.custom_css == ".card {\n  border: 0;\n}"
    (row,) = core.audit.search(DEFAULT_TENANT_ID, AuditQuery(action="sign_in_experience.update"))
    assert row.actor_sub == people.owner_id and row.actor_client_id is None
    assert set(row.details["changed"]) == {"branding.displayName", "branding.primaryColor", "branding.customCss"}
    shown = text_of(client.get(f"{PAGE}?saved=branding").text)
    assert "Saved: the sign-in experience is now at version 1." in shown
    # Yellow is unreadable on the light page: the page says which variant the hosted pages show.
    assert "#ffff00 (primaryColor) is shown as" in shown
    # The same form again (the browser sends the CSS with CRLF again) changes nothing.
    assert _post(client, "branding", csrf(client, PAGE), form)[0] == 303
    assert _version(core) == 1


def test_a_refused_branding_change_shows_the_cores_sentence_and_keeps_what_was_typed(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    signed_in(client)
    status, body = _post(
        client, "branding", csrf(client, PAGE), BRANDING | {"displayName": "Acme", "primaryColor": "red"}
    )
    assert status == 400
    assert "primaryColor must be a colour written #rgb or #rrggbb (for example #5d34f2), not &#39;red&#39;." in body
    assert 'value="red"' in body and 'value="Acme"' in body and 'id="branding-error"' in body
    status, body = _post(client, "branding", csrf(client, PAGE), BRANDING | {"logoUrl": "http://acme.example/logo.png"})
    assert status == 400 and "logoUrl must be an https URL" in text_of(body)
    status, body = _post(
        client, "branding", csrf(client, PAGE), BRANDING | {"customCss": "@media print { .card { color: red } }"}
    )
    assert status == 400 and "at-rules" in text_of(body)
    assert _version(core) == 0
    assert not core.audit.search(DEFAULT_TENANT_ID, AuditQuery(action="sign_in_experience.update"))


def test_markup_in_branding_is_shown_as_text(client: TestClient, core: IdentityCore, people: Cast) -> None:
    signed_in(client)
    assert _post(client, "branding", csrf(client, PAGE), BRANDING | {"displayName": XSS[:60]})[0] == 303
    page = client.get(PAGE).text
    assert XSS[:60] not in page and "&lt;script&gt;" in page


def test_sign_in_methods_are_replaced_in_the_order_chosen(client: TestClient, core: IdentityCore, people: Cast) -> None:
    signed_in(client)
    form = {"username_password": "on", "email_password": "on", "first": "username"}
    assert _post(client, "sign-in", csrf(client, PAGE), form) == (303, f"{PAGE}?saved=sign-in")
    methods = core.sign_in_experiences.get(DEFAULT_TENANT_ID).sign_in_methods
    assert [method.identifier for method in methods] == ["username", "email"]
    assert _post(client, "sign-in", csrf(client, PAGE), {"email_password": "on", "first": "email"})[0] == 303
    methods = core.sign_in_experiences.get(DEFAULT_TENANT_ID).sign_in_methods
    assert [(m.identifier, m.password) for m in methods] == [("email", True)]
    assert 'id="m-username-password" name="username_password" type="checkbox">' in client.get(PAGE).text


def test_refused_sign_in_and_sign_up_changes_show_the_cores_sentences_and_write_nothing(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    signed_in(client)
    status, body = _post(client, "sign-in", csrf(client, PAGE), {"first": "email"})
    assert status == 400 and "Keep at least one sign-in method, or nobody could sign in" in text_of(body)
    assert 'id="sign-in-error"' in body
    status, body = _post(client, "sign-in", csrf(client, PAGE), {"email_code": "on", "first": "email"})
    assert status == 400 and NO_SMTP in text_of(body)
    assert 'id="m-email-code" name="email_code" type="checkbox" checked>' in body  # as ticked
    status, body = _post(client, "sign-in", csrf(client, PAGE), SIGN_IN | {"social": "not-a-connector"})
    assert status == 400 and "is not a connector of this tenant" in text_of(body)
    # Sign-up asking for a username while the username is no sign-in method.
    assert _post(client, "sign-in", csrf(client, PAGE), {"email_password": "on"})[0] == 303
    status, body = _post(
        client, "sign-up", csrf(client, PAGE), {"enabled": "on", "identifiers": ["username"], "password": "on"}
    )
    assert status == 400 and "Sign-up asks for username, but username is not a sign-in method" in text_of(body)
    assert 'id="sign-up-error"' in body
    assert _version(core) == 1
    status, _ = _post(
        client, "sign-up", csrf(client, PAGE), {"enabled": "on", "identifiers": ["email"], "password": "on"}
    )
    assert status == 303
    sign_up = core.sign_in_experiences.get(DEFAULT_TENANT_ID).sign_up
    assert sign_up.enabled and sign_up.identifiers == ("email",) and sign_up.password and not sign_up.verify_email


def test_the_mfa_policy_is_changed_through_the_core_and_audited(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    signed_in(client)
    assert 'id="mfa-policy-off" name="policy" type="radio" value="off" checked' in client.get(PAGE).text
    form: dict[str, str | list[str]] = {"policy": "required", "factors": ["totp", "passkey"], "passkeyFirst": "on"}
    assert _post(client, "mfa", csrf(client, PAGE), form) == (303, f"{PAGE}?saved=mfa")
    mfa = core.sign_in_experiences.get(DEFAULT_TENANT_ID).mfa
    assert (mfa.policy, mfa.factors, mfa.passkey_first) == ("required", ("totp", "passkey"), True)
    (row,) = core.audit.search(DEFAULT_TENANT_ID, AuditQuery(action="sign_in_experience.update"))
    assert row.actor_sub == people.owner_id and row.actor_client_id is None
    assert {"mfa.policy", "mfa.factors", "mfa.passkeyFirst"} <= set(row.details["changed"])
    page = client.get(f"{PAGE}?saved=mfa").text
    assert 'value="required" checked' in page and 'value="passkey" checked' in page


def test_a_refused_mfa_policy_shows_the_cores_sentence_and_writes_nothing(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    signed_in(client)
    status, body = _post(client, "mfa", csrf(client, PAGE), {"policy": "required"})  # no factor ticked
    assert status == 400 and 'id="mfa-error"' in body
    assert 'value="required" checked' in body  # what was chosen stays chosen
    status, body = _post(client, "mfa", csrf(client, PAGE), {"policy": "optional", "factors": ["email"]})
    assert status == 400 and "SMTP" in text_of(body)  # this server has no email connector
    status, body = _post(client, "mfa", csrf(client, PAGE), {"policy": "always", "factors": ["totp"]})
    assert status == 400 and "policy" in text_of(body)
    assert _version(core) == 0
    assert core.sign_in_experiences.get(DEFAULT_TENANT_ID).mfa.policy == "off"


def test_a_read_only_member_sees_the_page_but_cannot_save(client: TestClient, core: IdentityCore, people: Cast) -> None:
    signed_in(client, READER_EMAIL, READER_PASSWORD)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "You are a read-only member of this tenant" in page.text
    assert "Save branding" not in page.text and "Save sign-in methods" not in page.text
    assert page.text.count("<fieldset disabled>") == 7
    token = csrf(client, PAGE)
    assert _post(client, "branding", token, BRANDING | {"displayName": "Mallory"})[0] == 403
    assert _post(client, "sign-in", token, {"username_password": "on"})[0] == 403
    assert _post(client, "sign-up", token, {"enabled": "on", "identifiers": ["email"], "password": "on"})[0] == 403
    assert _post(client, "mfa", token, {"policy": "required", "factors": ["totp"]})[0] == 403
    assert _version(core) == 0


def test_other_tenants_administrators_and_forged_posts_change_nothing(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    signed_in(client, STRANGER_EMAIL, STRANGER_PASSWORD)
    assert client.get(PAGE).status_code == 403
    token = csrf(client, "/console/t/acme/sign-in-experience")
    assert _post(client, "branding", token, BRANDING | {"displayName": "Mallory"})[0] == 403
    signed_in(client)
    assert _post(client, "branding", None, BRANDING | {"displayName": "Mallory"})[0] == 403
    assert _post(client, "branding", "forged", BRANDING | {"displayName": "Mallory"})[0] == 403
    assert _version(core) == 0
    client.cookies.clear()
    response = client.get(PAGE, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/sign-in?next=")

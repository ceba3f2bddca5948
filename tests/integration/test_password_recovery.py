"""Resetting a forgotten password on the hosted page with a code sent through a real SMTP server on loopback: the new
password works and the old one stops, every session, grant and refresh token of the user ends in the same change,
the page answers the same whether or not the address has an account, requests are rate limited per address and per
client address, and wrong, expired, replayed codes and weak passwords are refused with the password unchanged.
Over HTTP through the whole app in process, on the real database."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import Actor, User
from idp_mcp.errors import InvalidCredentials
from idp_mcp.store.tables import verification_codes
from tests.support import hosted
from tests.support.clock import Clock
from tests.support.hosted import HostedRequest
from tests.support.inprocess import csrf_from
from tests.support.smtp import SmtpSink, body_of, code_in, smtp_fixtures
from tests.support.tokens import TENANT_CALLBACK, tenant_authorization_code
from tests.support.transactions import TransactionRecorder, of_requests, summary

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
CAROL = "carol@example.com"
OLD = "violet staple horizon 7"
NEW = "amber kettle meadow 42"
TOKEN_URL = f"/t/{TENANT}/oidc/token"

smtp, settings = smtp_fixtures()


@pytest.fixture
def carol(core: IdentityCore) -> User:
    return anyio.run(lambda: core.tenant_users.create(TENANT, email=CAROL, username="carol", password=OLD, actor=ACTOR))


@pytest.fixture
def app_id(core: IdentityCore) -> str:
    app = core.applications.create(
        TENANT, name="Shop", app_type="traditional", actor=ACTOR, redirect_uris=[hosted.CALLBACK, TENANT_CALLBACK]
    )
    return app.id


def ask(client: TestClient, request: HostedRequest | None, email: str, page_html: str | None = None) -> Any:
    """POST the 'Forgot password?' form (from the given page, else from the reset page of the tenant)."""
    html = page_html or client.get(f"/t/{TENANT}/forgot-password").text
    data = {"csrf_token": csrf_from(html), "interaction": request.interaction_id if request else "", "email": email}
    return client.post(f"/t/{TENANT}/forgot-password", data=data, follow_redirects=False)


def reset(
    client: TestClient, page_html: str, email: str, code: str, password: str, confirm: str | None = None,
    interaction: str = "",
) -> Any:  # fmt: skip
    data = {
        "csrf_token": csrf_from(page_html), "interaction": interaction, "email": email, "code": code,
        "password": password, "password_confirm": password if confirm is None else confirm,
    }  # fmt: skip
    return client.post(f"/t/{TENANT}/forgot-password/reset", data=data, follow_redirects=False)


def signs_in(core: IdentityCore, password: str) -> bool:
    try:
        core.users.authenticate_sync(TENANT, CAROL, password)
    except InvalidCredentials:
        return False
    return True


def tokens_for(client: TestClient, core: IdentityCore, app_id: str, password: str) -> dict[str, Any]:
    secret = core.secrets.create(TENANT, app_id, "temporary", ACTOR).value
    code, verifier = tenant_authorization_code(client, app_id, identifier=CAROL, password=password)
    response = client.post(
        TOKEN_URL,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": TENANT_CALLBACK,
              "code_verifier": verifier},
        auth=(app_id, secret),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return {**response.json(), "secret": secret}


def test_a_forgotten_password_is_reset_with_an_emailed_code_and_everything_the_old_one_led_to_ends(
    client: TestClient, core: IdentityCore, carol: User, app_id: str, smtp: SmtpSink
) -> None:
    request = hosted.start(client, app_id)
    sign_in = request.page().text
    old_tokens = tokens_for(client, core, app_id, OLD)  # signed in elsewhere too: a browser session and tokens
    link = re.search(r'href="(/t/default/forgot-password\?interaction=[^"]+)"', sign_in)
    assert link and "Forgot password?" in sign_in
    asked = client.get(link.group(1).replace("&amp;", "&"))
    assert asked.status_code == 200 and hosted.input_names(asked.text, "/t/default/forgot-password") == ["email"]

    sent = ask(client, request, "Carol@Example.com", asked.text)
    assert sent.status_code == 200 and "Choose a new password" in sent.text
    assert hosted.input_names(sent.text, "/t/default/forgot-password/reset") == [
        "username", "code", "password", "password_confirm",
    ]  # fmt: skip
    message = smtp.wait_for(CAROL)
    code = code_in(message)
    assert "Reset your" in message["Subject"] and code not in message["Subject"]
    assert f"/t/{TENANT}/forgot-password/reset?email=carol%40example.com" in body_of(message)

    done = reset(client, sent.text, CAROL, code, NEW, interaction=request.interaction_id)
    assert done.status_code == 303, done.text
    back = client.get(done.headers["location"])
    assert back.status_code == 200 and "Sign in with your new password" in back.text
    assert f'value="{request.interaction_id}"' in back.text and f'value="{CAROL}"' in back.text

    assert not signs_in(core, OLD) and signs_in(core, NEW)
    refused = client.post(
        TOKEN_URL, data={"grant_type": "refresh_token", "refresh_token": old_tokens["refresh_token"]},
        auth=(app_id, old_tokens["secret"]),
    )  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # Nobody was signed in by the reset: the pending request still asks for the password, which now works.
    hosted.redirected_with_code(request.post("sign-in", {"identifier": CAROL, "password": NEW}, back.text))

    entries = core.audit.recent(TENANT, limit=200)
    changed = next(e for e in entries if e.action == "user.password_reset")
    assert changed.target_id == carol.id and changed.details == {"method": "email_code", "revoked_grants": 1}
    everything = json.dumps([(e.details, e.target_id) for e in entries])
    assert code not in everything and NEW not in everything and OLD not in everything
    with core.db.transaction() as conn:
        rows = conn.execute(verification_codes.select()).all()
    assert all(code not in json.dumps(row._asdict(), default=str) for row in rows)


def test_an_unknown_address_gets_the_same_page_and_no_email(
    client: TestClient, carol: User, app_id: str, smtp: SmtpSink
) -> None:
    request = hosted.start(client, app_id)
    known = ask(client, request, CAROL)
    unknown = ask(client, request, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(CAROL, "X") == unknown.text.replace("nobody@example.com", "X")
    smtp.wait_for(CAROL)
    assert smtp.to("nobody@example.com") == []
    guessed = reset(client, unknown.text, "nobody@example.com", "123456", NEW, interaction=request.interaction_id)
    assert guessed.status_code == 400 and "not right" in guessed.text


def test_requests_are_limited_per_address_and_per_client_address(
    client: TestClient, core: IdentityCore, carol: User, smtp: SmtpSink, clock: Clock
) -> None:
    for _ in range(5):
        assert ask(client, None, CAROL).status_code == 200
    limited = ask(client, None, CAROL)
    assert limited.status_code == 429 and "Too many reset requests" in limited.text
    assert len(smtp.to(CAROL)) <= 5
    # Unknown addresses count the same; one client asking for many addresses is stopped too.
    answers = [ask(client, None, f"someone{n}@example.com").status_code for n in range(16)]
    assert answers == [200] * 15 + [429]
    throttled = [e for e in core.audit.recent(TENANT, limit=200) if e.action == "user.password_reset_throttled"]
    assert {e.details["limit"] for e in throttled} == {"identifier", "address"}

    clock.advance(15 * 60 + 1)
    assert ask(client, None, CAROL).status_code == 200


def test_wrong_expired_and_replayed_codes_are_refused_and_leave_the_password_unchanged(
    client: TestClient, core: IdentityCore, carol: User, smtp: SmtpSink, clock: Clock
) -> None:
    sent = ask(client, None, CAROL)
    code = code_in(smtp.wait_for(CAROL))
    wrong = "000000" if code != "000000" else "111111"
    first = reset(client, sent.text, CAROL, wrong, NEW)
    assert first.status_code == 400 and "4 attempts left" in first.text and "Choose a new password" in first.text
    for _ in range(4):
        last = reset(client, sent.text, CAROL, wrong, NEW)
    assert "last attempt" in last.text
    spent = reset(client, sent.text, CAROL, code, NEW)
    assert spent.status_code == 400 and "Too many wrong codes" in spent.text
    assert signs_in(core, OLD)

    again = ask(client, None, CAROL)
    fresh = code_in(smtp.wait_for(CAROL, count=2))
    clock.advance(10 * 60 + 1)
    expired = reset(client, again.text, CAROL, fresh, NEW)
    assert expired.status_code == 400 and "expired or was already used" in expired.text
    assert signs_in(core, OLD)

    third = ask(client, None, CAROL)
    good = code_in(smtp.wait_for(CAROL, count=3))
    assert reset(client, third.text, CAROL, good, NEW).status_code == 303
    replayed = reset(client, third.text, CAROL, good, "another secret phrase 5")
    assert replayed.status_code == 400 and "expired or was already used" in replayed.text
    assert signs_in(core, NEW) and not signs_in(core, "another secret phrase 5")


def test_a_weak_or_mistyped_new_password_is_refused_and_the_code_still_works(
    client: TestClient, core: IdentityCore, carol: User, smtp: SmtpSink
) -> None:
    sent = ask(client, None, CAROL)
    code = code_in(smtp.wait_for(CAROL))
    for weak, message in (("short", "at least 8 characters"), ("password123", "common password"),
                          ("carol-secret-2", "must not contain your email or username")):  # fmt: skip
        refused = reset(client, sent.text, CAROL, code, weak)
        assert refused.status_code == 400 and message in refused.text, refused.text
    mistyped = reset(client, sent.text, CAROL, code, NEW, confirm=NEW + "x")
    assert mistyped.status_code == 400 and "not the same" in mistyped.text
    assert signs_in(core, OLD)
    done = reset(client, sent.text, CAROL, code, NEW)
    assert done.status_code == 303
    changed = client.get(done.headers["location"])  # no pending request: a page that says what to do next
    assert "Password changed" in changed.text and "sign in with your new password" in changed.text


def test_a_reset_clears_the_lock_out_others_caused_on_the_account(
    client: TestClient, core: IdentityCore, carol: User, smtp: SmtpSink
) -> None:
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            core.users.authenticate_sync(TENANT, CAROL, "not the password", client_address="203.0.113.9")
    assert "Too many attempts" in str(_sign_in_error(core, OLD))
    sent = ask(client, None, CAROL)
    assert reset(client, sent.text, CAROL, code_in(smtp.wait_for(CAROL)), NEW).status_code == 303
    assert signs_in(core, NEW)


def _sign_in_error(core: IdentityCore, password: str) -> Exception | None:
    try:
        core.users.authenticate_sync(TENANT, CAROL, password)
    except Exception as exc:
        return exc
    return None


def test_a_suspended_user_gets_no_email_and_a_tenant_without_passwords_offers_no_reset(
    client: TestClient, core: IdentityCore, carol: User, app_id: str, smtp: SmtpSink
) -> None:
    core.tenant_users.update(TENANT, carol.id, UserChanges(suspended=True), ACTOR)
    assert ask(client, None, CAROL).status_code == 200
    assert smtp.to(CAROL) == []

    core.sign_in_experiences.update_sign_in(
        TENANT, {"methods": [{"identifier": "email", "verificationCode": True}]}, ACTOR
    )
    request = hosted.start(client, app_id)
    assert "Forgot password?" not in request.page().text
    assert client.get(f"/t/{TENANT}/forgot-password").status_code == 404


def test_the_reset_page_without_a_csrf_token_is_refused(client: TestClient, carol: User, smtp: SmtpSink) -> None:
    refused = client.post(f"/t/{TENANT}/forgot-password", data={"email": CAROL}, follow_redirects=False)
    assert refused.status_code in (400, 403) and smtp.to(CAROL) == []


def test_a_password_with_the_username_is_refused_after_the_code_and_the_code_still_works(
    client: TestClient, core: IdentityCore, smtp: SmtpSink
) -> None:
    # The username is only known once the code proved the inbox: that refusal rolls back and keeps the code.
    anyio.run(lambda: core.tenant_users.create(TENANT, email="cj@example.com", username="carolyn", password=OLD,
                                               actor=ACTOR))  # fmt: skip
    sent = ask(client, None, "cj@example.com")
    code = code_in(smtp.wait_for("cj@example.com"))
    refused = reset(client, sent.text, "cj@example.com", code, "carolyn-rules-1")
    assert refused.status_code == 400 and "must not contain your email or username" in refused.text
    assert reset(client, sent.text, "cj@example.com", code, NEW).status_code == 303
    assert core.users.authenticate_sync(TENANT, "carolyn", NEW).username == "carolyn"


def test_send_a_new_code_from_the_reset_page_replaces_the_first(
    client: TestClient, core: IdentityCore, carol: User, smtp: SmtpSink
) -> None:
    sent = ask(client, None, CAROL)
    first = code_in(smtp.wait_for(CAROL))
    data = {"csrf_token": csrf_from(sent.text), "interaction": "", "email": CAROL, "resend": "1"}
    resent = client.post(f"/t/{TENANT}/forgot-password", data=data)
    assert resent.status_code == 200 and "We sent a new code" in resent.text
    second = code_in(smtp.wait_for(CAROL, count=2))
    if first != second:
        assert reset(client, resent.text, CAROL, first, NEW).status_code == 400
    assert reset(client, resent.text, CAROL, second, NEW).status_code == 303
    assert signs_in(core, NEW)


def test_the_reset_link_of_an_email_opens_the_form_for_that_address(client: TestClient, carol: User) -> None:
    page = client.get(f"/t/{TENANT}/forgot-password/reset", params={"email": CAROL})
    assert page.status_code == 200 and f'name="email" value="{CAROL}"' in page.text
    assert "back to sign in" not in page.text  # no pending request to go back to
    empty = client.get(f"/t/{TENANT}/forgot-password/reset")
    assert empty.status_code == 200 and "Reset your password" in empty.text
    assert client.get("/t/nope/forgot-password/reset").status_code == 404


def test_the_reset_is_one_write_transaction_with_its_audit_row(
    client: TestClient, core: IdentityCore, carol: User, smtp: SmtpSink
) -> None:
    sent = ask(client, None, CAROL)
    code = code_in(smtp.wait_for(CAROL))
    core.audit.flush()
    recorder = TransactionRecorder(core.db.engine)
    try:
        with recorder.recording() as recorded:
            assert reset(client, sent.text, CAROL, code, NEW).status_code == 303
        writes = [t for t in of_requests(recorded) if not t.read_only]
    finally:
        recorder.close()
    assert len(writes) == 1, summary(of_requests(recorded))
    statements = " ".join(writes[0].statements).lower()
    for part in ("update verification_codes", "update users", "update grants", "delete from web_sessions",
                 "insert into audit"):  # fmt: skip
        assert part in statements, part

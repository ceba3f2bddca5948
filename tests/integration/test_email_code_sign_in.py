"""Signing in on the hosted page with a code sent by email, through a real SMTP server on loopback: the code signs
the user in once, within ten minutes and five attempts; sends are rate-limited; the page never says whether an
address has an account; the code is never stored, audited or logged in clear."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import jwt
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor, User
from idp_mcp.store.tables import verification_codes
from tests.support import hosted
from tests.support.clock import Clock
from tests.support.hosted import HostedRequest
from tests.support.inprocess import PUBLIC_URL
from tests.support.smtp import SmtpSink, body_of, code_in, smtp_fixtures

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
BOB = "bob@example.com"
PASSWORD = "violet staple horizon 7"


smtp, settings = smtp_fixtures()


@pytest.fixture
def bob(core: IdentityCore) -> User:
    return anyio.run(
        lambda: core.tenant_users.create(TENANT, email=BOB, username="bob", password=PASSWORD, actor=ACTOR)
    )


@pytest.fixture
def app(core: IdentityCore) -> Application:
    core.sign_in_experiences.update_sign_in(
        TENANT,
        {"methods": [{"identifier": "email", "verificationCode": True}, {"identifier": "username", "password": True}]},
        ACTOR,
    )
    return core.applications.create(
        TENANT, name="Shop", app_type="traditional", actor=ACTOR, redirect_uris=[hosted.CALLBACK]
    )


def ask_for_code(request: HostedRequest, email: str) -> Any:
    page = request.page()
    return request.post("sign-in/code", {"email": email}, page.text)


def enter_code(request: HostedRequest, email: str, code: str, page_html: str) -> Any:
    return request.post("sign-in/code/verify", {"email": email, "code": code}, page_html)


def test_a_user_signs_in_with_the_code_emailed_to_them(
    client: TestClient, core: IdentityCore, app: Application, bob: User, smtp: SmtpSink
) -> None:
    request = hosted.start(client, app.id)
    page = request.page().text
    assert hosted.input_names(page, "/t/default/sign-in/code") == ["email"]
    assert page.index("sign-in/code") < page.index('action="/t/default/sign-in"')  # the order of the methods

    sent = ask_for_code(request, "Bob@Example.com")
    assert sent.status_code == 200 and "Check your email" in sent.text
    assert 'autocomplete="one-time-code"' in sent.text
    message = smtp.wait_for(BOB)
    assert message["From"] == "no-reply@idp.example.com" and "sign-in code" in message["Subject"]
    code = code_in(message)
    assert code not in message["Subject"]

    done = enter_code(request, BOB, code, sent.text)
    query = hosted.redirected_with_code(done)
    tokens = client.post(
        "/t/default/oidc/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": hosted.CALLBACK,
              "code_verifier": request.verifier},
        auth=(app.id, core.secrets.create(TENANT, app.id, "temporary", ACTOR).value),
    )  # fmt: skip
    assert tokens.status_code == 200, tokens.text

    entries = core.audit.recent(TENANT, limit=100)
    actions = [(entry.action, entry.outcome) for entry in entries]
    assert ("verification_code.send", "success") in actions and ("verification_code.verify", "success") in actions
    sign_in = next(entry for entry in entries if entry.action == "session.sign_in")
    assert sign_in.target_id == bob.id and sign_in.details == {"method": "email_code"}
    everything = json.dumps([entry.details for entry in entries]) + json.dumps([e.target_id for e in entries])
    assert code not in everything
    with core.db.transaction() as conn:
        rows = conn.execute(verification_codes.select()).all()
    assert rows and all(code not in json.dumps(row._asdict(), default=str) for row in rows)


def test_an_unknown_address_gets_the_same_answer_and_no_email(
    client: TestClient, app: Application, bob: User, smtp: SmtpSink
) -> None:
    request = hosted.start(client, app.id)
    known = ask_for_code(request, BOB)
    unknown = ask_for_code(request, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(BOB, "X") == unknown.text.replace("nobody@example.com", "X")
    smtp.wait_for(BOB)
    assert smtp.to("nobody@example.com") == []
    wrong = enter_code(request, "nobody@example.com", "123456", unknown.text)
    assert wrong.status_code == 400 and "not right" in wrong.text


def test_a_wrong_code_is_refused_and_five_wrong_codes_end_it(
    client: TestClient, app: Application, bob: User, smtp: SmtpSink
) -> None:
    request = hosted.start(client, app.id)
    sent = ask_for_code(request, BOB)
    code = code_in(smtp.wait_for(BOB))
    wrong = "000000" if code != "000000" else "111111"

    first = enter_code(request, BOB, wrong, sent.text)
    assert first.status_code == 400 and "4 attempts left" in first.text and "Check your email" in first.text
    for _ in range(4):
        last = enter_code(request, BOB, wrong, sent.text)
    assert "last attempt" in last.text
    refused = enter_code(request, BOB, code, sent.text)
    assert refused.status_code == 400 and "Too many wrong codes" in refused.text

    again = ask_for_code(request, BOB)  # a new code starts afresh
    fresh = code_in(smtp.wait_for(BOB, count=2))
    hosted.redirected_with_code(enter_code(request, BOB, fresh, again.text))


def test_an_expired_code_is_refused(
    client: TestClient, app: Application, bob: User, smtp: SmtpSink, clock: Clock
) -> None:
    request = hosted.start(client, app.id)
    sent = ask_for_code(request, BOB)
    code = code_in(smtp.wait_for(BOB))
    clock.advance(10 * 60 + 1)
    expired = enter_code(request, BOB, code, sent.text)
    assert expired.status_code == 400 and "expired or was already used" in expired.text


def test_a_code_works_once_and_a_new_code_replaces_the_old_one(
    client: TestClient, app: Application, bob: User, smtp: SmtpSink
) -> None:
    first_request = hosted.start(client, app.id)
    sent = ask_for_code(first_request, BOB)
    old = code_in(smtp.wait_for(BOB))
    resent = first_request.post("code/resend", {"email": BOB, "purpose": "sign_in"}, sent.text)
    assert resent.status_code == 200 and "We sent a new code" in resent.text
    new = code_in(smtp.wait_for(BOB, count=2))
    if old != new:
        assert enter_code(first_request, BOB, old, sent.text).status_code == 400
    hosted.redirected_with_code(enter_code(first_request, BOB, new, sent.text))

    second_request = hosted.start(client, app.id)
    reused = second_request.post("sign-in/code/verify", {"email": BOB, "code": new}, sent.text)
    assert reused.status_code == 400 and "expired or was already used" in reused.text


def test_sends_are_limited_per_address_whether_or_not_it_has_an_account(
    client: TestClient, app: Application, bob: User, smtp: SmtpSink, clock: Clock, core: IdentityCore
) -> None:
    request = hosted.start(client, app.id)
    for address in (BOB, "nobody@example.com"):
        for _ in range(5):
            assert ask_for_code(request, address).status_code == 200
        limited = ask_for_code(request, address)
        assert limited.status_code == 429 and "Too many codes" in limited.text
    smtp.wait_for(BOB, count=5)
    assert len(smtp.to(BOB)) == 5
    refusals = [e for e in core.audit.recent(TENANT, limit=100) if e.action == "verification_code.send"]
    assert sum(1 for e in refusals if e.outcome == "failure") == 2

    clock.advance(15 * 60 + 1)
    later = hosted.start(client, app.id)  # the first request expired meanwhile
    assert ask_for_code(later, BOB).status_code == 200


def test_password_sign_in_accepts_only_the_identifiers_the_experience_allows(
    client: TestClient, app: Application, bob: User
) -> None:
    request = hosted.start(client, app.id)
    page = request.page().text
    by_email = request.post("sign-in", {"identifier": BOB, "password": PASSWORD}, page)
    assert by_email.status_code == 401 and "Sign in with your username and password" in by_email.text
    hosted.redirected_with_code(request.post("sign-in", {"identifier": "bob", "password": PASSWORD}, page))


def test_the_code_never_reaches_the_log(
    client: TestClient, app: Application, bob: User, smtp: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request = hosted.start(client, app.id)
    sent = ask_for_code(request, BOB)
    code = code_in(smtp.wait_for(BOB))
    enter_code(request, BOB, code, sent.text)
    # Everything the server logged (aiosmtpd, the test's own mail server, logs what it receives under mail.log).
    logged = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("mail.log"))
    assert "email delivered" in logged
    assert code not in logged and body_of(smtp.wait_for(BOB)).strip() not in logged


def id_token_claims(client: TestClient, core: IdentityCore, app: Application, request: HostedRequest, done: Any) -> Any:
    """The verified claims of the ID token the code in ``done``'s redirect is exchanged for, and the userinfo."""
    query = hosted.redirected_with_code(done)
    tokens = client.post(
        "/t/default/oidc/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": hosted.CALLBACK,
              "code_verifier": request.verifier},
        auth=(app.id, core.secrets.create(TENANT, app.id, "temporary", ACTOR).value),
    ).json()  # fmt: skip
    jwks = client.get("/t/default/oidc/jwks").json()
    kid = jwt.get_unverified_header(tokens["id_token"])["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    claims = jwt.decode(
        tokens["id_token"], key, algorithms=["ES256"], audience=app.id, issuer=f"{PUBLIC_URL}/t/default/oidc"
    )
    userinfo = client.get("/t/default/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    return claims, userinfo.json()


def test_email_verified_is_false_until_a_code_proves_the_address_then_true(
    client: TestClient, core: IdentityCore, app: Application, bob: User, smtp: SmtpSink
) -> None:
    assert bob.email_verified is False
    by_password = hosted.start(client, app.id)
    page = by_password.page().text
    done = by_password.post("sign-in", {"identifier": "bob", "password": PASSWORD}, page)
    claims, userinfo = id_token_claims(client, core, app, by_password, done)
    assert (claims["email"], claims["email_verified"]) == (BOB, False)
    assert userinfo["email_verified"] is False

    client.cookies.clear()  # signed out: the next request asks again
    by_code = hosted.start(client, app.id)
    sent = ask_for_code(by_code, BOB)
    done = enter_code(by_code, BOB, code_in(smtp.wait_for(BOB)), sent.text)

    claims, userinfo = id_token_claims(client, core, app, by_code, done)
    assert (claims["email"], claims["email_verified"]) == (BOB, True)
    assert (userinfo["email"], userinfo["email_verified"]) == (BOB, True)
    assert core.tenant_users.get(TENANT, bob.id).email_verified is True


def test_email_verified_is_left_out_without_the_email_scope(
    client: TestClient, core: IdentityCore, app: Application, bob: User, smtp: SmtpSink
) -> None:
    request = hosted.start(client, app.id, scope="openid")
    sent = ask_for_code(request, BOB)
    done = enter_code(request, BOB, code_in(smtp.wait_for(BOB)), sent.text)

    claims, userinfo = id_token_claims(client, core, app, request, done)

    assert "email" not in claims and "email_verified" not in claims
    assert "email_verified" not in userinfo

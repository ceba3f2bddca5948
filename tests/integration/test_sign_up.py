"""Creating an account on the hosted page: offered only when sign-up is enabled, asking exactly for the identifiers
(and password) the tenant chose, with the email confirmed by a code from a real SMTP server when asked; an address
that has an account already gets a notice instead of a code, and the page looks the same."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.sign_in import SignUpForm
from idp_mcp.domain import Actor, User
from idp_mcp.errors import InvalidCredentials
from idp_mcp.store.tables import users
from tests.support import hosted
from tests.support.hosted import HostedRequest
from tests.support.smtp import SmtpSink, body_of, code_in, smtp_fixtures

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
PASSWORD = "violet staple horizon 7"
SIGN_UP = "/t/default/sign-up"


smtp, settings = smtp_fixtures()


@pytest.fixture
def app(core: IdentityCore) -> Application:
    return core.applications.create(TENANT, name="Shop", app_type="spa", actor=ACTOR, redirect_uris=[hosted.CALLBACK])


def configure(core: IdentityCore, *, methods: list[dict[str, Any]] | None = None, **sign_up: Any) -> None:
    if methods is not None:
        core.sign_in_experiences.update_sign_in(TENANT, {"methods": methods}, ACTOR)
    core.sign_in_experiences.update_sign_up(TENANT, sign_up, ACTOR)


def tenant_users(core: IdentityCore) -> list[User]:
    return core.tenant_users.list(TENANT, query=None, page=1, page_size=100)[0]


def password_hash_of(core: IdentityCore, user_id: str) -> str | None:
    with core.db.transaction() as conn:
        return conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar_one()  # type: ignore[no-any-return]


def sign_up_page(request: HostedRequest) -> Any:
    return request.page(f"{request.path}/sign-up")


def test_sign_up_is_refused_while_it_is_disabled(client: TestClient, core: IdentityCore, app: Application) -> None:
    request = hosted.start(client, app.id)
    page = request.page()
    assert "Create account" not in page.text and "/sign-up" not in page.text
    assert sign_up_page(request).status_code == 403

    refused = request.post("sign-up", {"email": "new@example.com", "password": PASSWORD}, page.text)
    assert refused.status_code == 403 and "not available" in refused.text
    assert tenant_users(core) == []

    configure(core, enabled=True)
    configure(core, enabled=False)
    assert sign_up_page(request).status_code == 403
    assert request.post("sign-up", {"email": "new@example.com", "password": PASSWORD}, page.text).status_code == 403
    assert tenant_users(core) == []


def test_username_and_password_sign_up_creates_a_user_with_exactly_those(
    client: TestClient, core: IdentityCore, app: Application, smtp: SmtpSink
) -> None:
    configure(core, enabled=True, identifiers=["username"], password=True)
    request = hosted.start(client, app.id)
    assert f'href="{request.path}/sign-up">Create account</a>' in request.page().text
    form = sign_up_page(request)
    assert form.status_code == 200 and "Create your Default account" in form.text
    assert hosted.input_names(form.text, SIGN_UP) == ["username", "password"]

    # An email sent anyway (a tampered form) is not kept: the tenant does not ask for one.
    done = request.post("sign-up", {"username": "carol", "password": PASSWORD, "email": "c@example.com"}, form.text)
    hosted.redirected_with_code(done)

    [carol] = tenant_users(core)
    assert (carol.username, carol.email, carol.name) == ("carol", None, None)
    assert password_hash_of(core, carol.id)
    assert anyio.run(core.users.authenticate, TENANT, "carol", PASSWORD).id == carol.id
    audit = [e for e in core.audit.recent(TENANT) if e.action == "user.sign_up"]
    assert len(audit) == 1 and audit[0].target_id == carol.id
    assert smtp.messages == []


def test_a_sign_up_with_missing_or_taken_fields_is_refused_and_creates_nothing(
    client: TestClient, core: IdentityCore, app: Application
) -> None:
    anyio.run(lambda: core.tenant_users.create(TENANT, username="carol", password=PASSWORD, actor=ACTOR))
    configure(core, enabled=True, identifiers=["username", "email"], password=True)
    request = hosted.start(client, app.id)
    form = sign_up_page(request)
    assert hosted.input_names(form.text, SIGN_UP) == ["username", "email", "password"]

    cases = [
        ({"username": "dave", "password": PASSWORD}, "Enter your email address"),
        ({"username": "dave", "email": "dave@example.com"}, "too weak"),
        ({"username": "x", "email": "dave@example.com", "password": PASSWORD}, "A username is 3 to 64"),
        ({"username": "carol", "email": "dave@example.com", "password": PASSWORD}, "username is taken"),
        ({"username": "dave", "email": "not-an-email", "password": PASSWORD}, "not a valid email"),
    ]
    for fields, message in cases:
        response = request.post("sign-up", fields, form.text)
        assert response.status_code in (400, 409) and message in response.text, (fields, response.text)
    assert [user.username for user in tenant_users(core)] == ["carol"]


def test_email_sign_up_without_password_is_confirmed_by_a_code(
    client: TestClient, core: IdentityCore, app: Application, smtp: SmtpSink
) -> None:
    configure(
        core, methods=[{"identifier": "email", "verificationCode": True}], enabled=True, identifiers=["email"],
        password=False, verifyEmail=True,
    )  # fmt: skip
    request = hosted.start(client, app.id)
    form = sign_up_page(request)
    assert hosted.input_names(form.text, SIGN_UP) == ["email"]

    sent = request.post("sign-up", {"email": "Erin@Example.com"}, form.text)
    assert sent.status_code == 200 and "erin@example.com" in sent.text and "create your account" in sent.text
    assert tenant_users(core) == []  # nothing exists before the code is entered
    message = smtp.wait_for("erin@example.com")
    assert "Confirm your email" in message["Subject"]
    code = code_in(message)

    wrong = request.post("sign-up/verify", {"email": "erin@example.com", "code": "12345x"}, sent.text)
    assert wrong.status_code == 400 and tenant_users(core) == []
    done = request.post("sign-up/verify", {"email": "erin@example.com", "code": code}, sent.text)
    hosted.redirected_with_code(done)

    [erin] = tenant_users(core)
    assert (erin.email, erin.username) == ("erin@example.com", None)
    assert erin.email_verified is True  # the code proved the address
    assert password_hash_of(core, erin.id) is None
    reused = request.post("sign-up/verify", {"email": "erin@example.com", "code": code}, sent.text)
    assert reused.status_code == 410 or "expired or was already used" in reused.text


def test_a_pending_sign_up_keeps_its_password_through_a_new_code(
    client: TestClient, core: IdentityCore, app: Application, smtp: SmtpSink
) -> None:
    configure(core, enabled=True, identifiers=["email"], password=True, verifyEmail=True)
    request = hosted.start(client, app.id)
    form = sign_up_page(request)
    assert hosted.input_names(form.text, SIGN_UP) == ["email", "password"]
    sent = request.post("sign-up", {"email": "fay@example.com", "password": PASSWORD}, form.text)
    smtp.wait_for("fay@example.com")
    resent = request.post("code/resend", {"email": "fay@example.com", "purpose": "sign_up"}, sent.text)
    assert resent.status_code == 200 and "We sent a new code" in resent.text
    code = code_in(smtp.wait_for("fay@example.com", count=2))
    hosted.redirected_with_code(request.post("sign-up/verify", {"email": "fay@example.com", "code": code}, sent.text))
    [fay] = tenant_users(core)
    assert fay.email_verified is True
    assert anyio.run(core.users.authenticate, TENANT, "fay@example.com", PASSWORD).id == fay.id


def test_signing_up_with_an_address_that_has_an_account_sends_a_notice_and_looks_the_same(
    client: TestClient, core: IdentityCore, app: Application, smtp: SmtpSink
) -> None:
    anyio.run(lambda: core.tenant_users.create(TENANT, email="gus@example.com", password=PASSWORD, actor=ACTOR))
    configure(core, enabled=True, identifiers=["email"], password=True, verifyEmail=True)
    request = hosted.start(client, app.id)
    form = sign_up_page(request)

    existing = request.post("sign-up", {"email": "gus@example.com", "password": PASSWORD}, form.text)
    fresh = request.post("sign-up", {"email": "hal@example.com", "password": PASSWORD}, form.text)
    assert existing.status_code == fresh.status_code == 200
    assert existing.text.replace("gus@", "X@") == fresh.text.replace("hal@", "X@")

    notice = smtp.wait_for("gus@example.com")
    assert "already have an account" in notice["Subject"] and not any(ch.isdigit() for ch in body_of(notice))
    smtp.wait_for("hal@example.com")
    assert [user.email for user in tenant_users(core)] == ["gus@example.com"]


def test_unverified_sign_up_answers_alike_for_new_and_taken_addresses_and_never_takes_one_over(
    client: TestClient, core: IdentityCore, app: Application, smtp: SmtpSink
) -> None:
    """Without email verification, a sign-up with an address that has an account (here a proven one) creates
    nothing, does not sign in, and answers exactly like a sign-up with a new address; the owner gets a notice."""
    owner = anyio.run(
        lambda: core.tenant_users.create(
            TENANT, email="ivy@example.com", password=PASSWORD, actor=ACTOR, email_verified=True
        )
    )
    configure(core, enabled=True, identifiers=["email"], password=True, verifyEmail=False)
    request = hosted.start(client, app.id)
    form = sign_up_page(request)
    other_password = "a different passphrase 9"

    taken = request.post("sign-up", {"email": "Ivy@Example.com", "password": other_password}, form.text)
    fresh = request.post("sign-up", {"email": "jon@example.com", "password": PASSWORD}, form.text)

    assert taken.status_code == fresh.status_code == 200
    assert "location" not in taken.headers and "location" not in fresh.headers  # nobody is signed in by it
    assert taken.text.replace("ivy@", "X@") == fresh.text.replace("jon@", "X@")
    assert "Sign in with your email address to continue" in fresh.text
    assert not [c for c in client.cookies.jar if c.name.startswith("idp_session")]
    ivy, jon = sorted(tenant_users(core), key=lambda user: user.email or "")
    assert ivy == owner and ivy.email_verified is True
    assert (jon.email, jon.email_verified) == ("jon@example.com", False)  # stored, unproven
    assert password_hash_of(core, ivy.id) == password_hash_of(core, owner.id)
    with pytest.raises(InvalidCredentials):
        anyio.run(core.users.authenticate, TENANT, "ivy@example.com", other_password)
    notice = smtp.wait_for("ivy@example.com")
    assert "already have an account" in notice["Subject"]
    assert smtp.to("jon@example.com") == []

    # The new account signs in with its password; its address stays unproven until a code proves it.
    page = request.page()
    hosted.redirected_with_code(
        request.post("sign-in", {"identifier": "jon@example.com", "password": PASSWORD}, page.text)
    )


def test_unverified_sign_up_over_a_taken_address_sends_nothing_without_an_email_connector(
    core: IdentityCore, app: Application
) -> None:
    """Without SMTP there is nobody to tell, and the answer is still the one a new address gets."""
    anyio.run(lambda: core.tenant_users.create(TENANT, email="kim@example.com", password=PASSWORD, actor=ACTOR))
    configure(core, enabled=True, identifiers=["email"], password=True, verifyEmail=False)
    core.sign_in_experiences.email_connector = False

    started = anyio.run(core.hosted_sign_in.start_sign_up, TENANT, SignUpForm("kim@example.com", None, PASSWORD))

    assert (started.user, started.pending_email, started.email) == (None, None, None)
    assert started.sign_in_email == "kim@example.com"
    assert [user.email for user in tenant_users(core)] == ["kim@example.com"]

"""Second factors on the hosted pages, in process on a clock the test controls: every first factor meets the tenant's
MFA policy; TOTP enrollment (QR code, key, first code, backup codes shown once); a TOTP code works once; backup codes
work once; an application's acr_values asks for MFA (step-up) even when the policy is off; a code by email through a
real SMTP server; wrong, expired and replayed codes are refused with a clear message and add nothing; the ID token
carries amr and acr, and its refresh tokens keep them."""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import urlsplit

import anyio
import jwt
import pyotp
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.mfa import ACR_MFA, ACR_SINGLE_FACTOR
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import Actor, User
from idp_mcp.store.tables import mfa_factors, refresh_tokens
from tests.support import hosted
from tests.support.clock import Clock
from tests.support.hosted import HostedRequest
from tests.support.inprocess import csrf_from, pkce_pair
from tests.support.smtp import SmtpSink, code_in, smtp_fixtures

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
BOB = "bob@example.com"
PASSWORD = "violet staple horizon 7"

smtp, settings = smtp_fixtures()


@pytest.fixture
def bob(core: IdentityCore) -> User:
    user = anyio.run(
        lambda: core.tenant_users.create(TENANT, email=BOB, username="bob", password=PASSWORD, actor=ACTOR)
    )
    return user


@pytest.fixture
def app(core: IdentityCore) -> Application:
    return core.applications.create(
        TENANT, name="Shop", app_type="traditional", actor=ACTOR, redirect_uris=[hosted.CALLBACK]
    )


def policy(core: IdentityCore, **changes: Any) -> None:
    core.sign_in_experiences.update_mfa(TENANT, changes, ACTOR)


def start(client: TestClient, app: Application, **extra: str) -> HostedRequest:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": app.id, "redirect_uri": hosted.CALLBACK,
        "scope": "openid email offline_access", "state": "st", "code_challenge": challenge,
        "code_challenge_method": "S256", **extra,
    }  # fmt: skip
    response = client.get(f"/t/{TENANT}/oidc/authorize", params=params, follow_redirects=False)
    assert response.status_code == 302, response.text
    return HostedRequest(client, urlsplit(response.headers["location"]).path, verifier, TENANT)


def password(request: HostedRequest, identifier: str = BOB, secret: str = PASSWORD) -> Any:
    page = request.page()
    return request.post("sign-in", {"identifier": identifier, "password": secret}, page.text)


def to_second_factor(response: Any, request: HostedRequest) -> Any:
    """Follow the redirect to the second-factor page."""
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{request.path}/mfa"
    page = request.client.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return page


def secret_of(page_html: str) -> str:
    match = re.search(r'id="totp-secret">([A-Z2-7]+)<', page_html)
    assert match, "no #totp-secret on the page"
    return match.group(1)


def backup_codes_of(page_html: str) -> list[str]:
    block = re.search(r'id="backup-codes">(.*?)</ul>', page_html, re.DOTALL)
    assert block
    return re.findall(r"<li>([0-9a-f]{5}-[0-9a-f]{5})</li>", block.group(1))


def code_at(secret: str, clock: Clock, offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock().timestamp() + offset)


def tokens(client: TestClient, core: IdentityCore, app: Application, request: HostedRequest, done: Any) -> Any:
    query = hosted.redirected_with_code(done)
    response = client.post(
        f"/t/{TENANT}/oidc/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": hosted.CALLBACK,
              "code_verifier": request.verifier},
        auth=(app.id, core.secrets.create(TENANT, app.id, "temporary", ACTOR).value),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def id_claims(token: dict[str, Any]) -> dict[str, Any]:
    return dict(jwt.decode(token["id_token"], options={"verify_signature": False}))


def enroll(client: TestClient, request: HostedRequest, clock: Clock) -> tuple[str, list[str], Any]:
    """Enroll TOTP from the enrollment page; returns the secret, the backup codes and the finished redirect."""
    page = to_second_factor(password(request), request)
    assert "Set up an authenticator app" in page.text
    secret = secret_of(page.text)
    assert 'src="data:image/svg+xml' in page.text  # the QR code, made here
    assert page.headers["cache-control"] == "no-store"  # it shows the secret
    codes_page = request.post("mfa/enroll", {"code": code_at(secret, clock)}, page.text)
    assert codes_page.status_code == 200, codes_page.text
    assert codes_page.headers["cache-control"] == "no-store"
    codes = backup_codes_of(codes_page.text)
    done = request.post("mfa/continue", {}, codes_page.text)
    return secret, codes, done


def fresh_browser(client: TestClient) -> None:
    client.cookies.clear()


# --- required: enrollment, then codes --------------------------------------------------------------------------


def test_under_required_a_user_enrolls_totp_and_gets_an_id_token_with_mfa(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    policy(core, policy="required", factors=["totp"])
    request = start(client, app)
    page = to_second_factor(password(request), request)
    secret = secret_of(page.text)

    wrong = request.post(
        "mfa/enroll", {"code": "000000" if code_at(secret, clock) != "000000" else "111111"}, page.text
    )
    assert wrong.status_code == 400 and "not right" in wrong.text
    assert core.mfa.factors(TENANT, bob.id) == []  # nothing enrolled by a wrong code

    page = request.page(f"{request.path}/mfa")  # a new key after a failure
    secret = secret_of(page.text)
    codes_page = request.post("mfa/enroll", {"code": code_at(secret, clock)}, page.text)
    codes = backup_codes_of(codes_page.text)
    assert len(codes) == len(set(codes)) == 10
    done = request.post("mfa/continue", {}, codes_page.text)
    token = tokens(client, core, app, request, done)
    claims = id_claims(token)
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == ACR_MFA

    kinds = {factor.kind: factor for factor in core.mfa.factors(TENANT, bob.id)}
    assert set(kinds) == {"totp", "backup_codes"} and kinds["backup_codes"].remaining == 10
    with core.db.read() as conn:
        stored = conn.execute(select(mfa_factors)).all()
        refresh_rows = conn.execute(select(refresh_tokens.c.amr, refresh_tokens.c.acr)).all()
    assert secret not in json.dumps([row._asdict() for row in stored], default=str)  # sealed, not in clear
    assert [(list(row.amr), row.acr) for row in refresh_rows] == [(["pwd", "otp", "mfa"], ACR_MFA)]

    refreshed = client.post(
        f"/t/{TENANT}/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(app.id, core.secrets.create(TENANT, app.id, "temporary", ACTOR).value),
    )
    assert refreshed.status_code == 200, refreshed.text
    with core.db.read() as conn:
        amrs = [list(row.amr) for row in conn.execute(select(refresh_tokens.c.amr))]
    assert amrs == [["pwd", "otp", "mfa"]] * 2  # the rotated token keeps how the user signed in

    everything = json.dumps([(e.action, e.details) for e in core.audit.recent(TENANT, limit=200)])
    assert secret not in everything and not any(code in everything for code in codes)
    assert '"mfa.enroll"' in everything


def test_under_required_enrollment_cannot_be_skipped(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    policy(core, policy="required", factors=["totp"])
    request = start(client, app)
    page = to_second_factor(password(request), request)
    assert "Not now" not in page.text
    refused = request.post("mfa/skip", {}, page.text)
    assert refused.status_code == 403 and "needs a second factor" in refused.text
    assert "idp_session_default" not in client.cookies


def test_a_totp_code_works_once_and_a_backup_code_works_once(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    policy(core, policy="required", factors=["totp"])
    secret, codes, done = enroll(client, start(client, app), clock)
    hosted.redirected_with_code(done)

    clock.advance(30)
    fresh_browser(client)
    request = start(client, app)
    page = to_second_factor(password(request), request)
    assert "Code from your authenticator app" in page.text and "Use a backup code" in page.text
    code = code_at(secret, clock)
    first = request.post("mfa/verify", {"factor": "totp", "code": code}, page.text)
    claims = id_claims(tokens(client, core, app, request, first))
    assert claims["amr"] == ["pwd", "otp", "mfa"]

    fresh_browser(client)  # the same code again, from another browser, in the same 30 seconds: refused
    request = start(client, app)
    page = to_second_factor(password(request), request)
    replay = request.post("mfa/verify", {"factor": "totp", "code": code}, page.text)
    assert replay.status_code == 400 and "used already" in replay.text
    assert "Confirm it is you" in replay.text

    backup_page = request.page(f"{request.path}/mfa?use=backup_code")
    assert 'name="factor" value="backup_code"' in backup_page.text
    used = request.post("mfa/verify", {"factor": "backup_code", "code": codes[0].upper()}, backup_page.text)
    hosted.redirected_with_code(used)
    remaining = {factor.kind: factor.remaining for factor in core.mfa.factors(TENANT, bob.id)}
    assert remaining["backup_codes"] == 9

    fresh_browser(client)
    request = start(client, app)
    to_second_factor(password(request), request)
    backup_page = request.page(f"{request.path}/mfa?use=backup_code")
    again = request.post("mfa/verify", {"factor": "backup_code", "code": codes[0]}, backup_page.text)
    assert again.status_code == 400 and "works once" in again.text


def test_wrong_codes_are_limited_per_partial_sign_in_and_an_expired_one_starts_again(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    policy(core, policy="required", factors=["totp"])
    secret, _codes, _done = enroll(client, start(client, app), clock)
    clock.advance(60)
    fresh_browser(client)
    request = start(client, app)
    page = to_second_factor(password(request), request)
    good = code_at(secret, clock)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(4):
        answer = request.post("mfa/verify", {"factor": "totp", "code": wrong}, page.text)
        assert answer.status_code == 400 and "not right" in answer.text
    last = request.post("mfa/verify", {"factor": "totp", "code": wrong}, page.text)
    assert "Sign in again" in last.text and "Sign in to" in last.text  # back to the first factor
    refused = request.post("mfa/verify", {"factor": "totp", "code": good}, page.text)
    assert "Sign in again" in refused.text and refused.status_code == 400

    fresh_browser(client)  # a new partial sign-in does not reset the user's count of wrong codes
    request = start(client, app)
    page = to_second_factor(password(request), request)
    throttled = request.post("mfa/verify", {"factor": "totp", "code": code_at(secret, clock)}, page.text)
    assert throttled.status_code == 429 and "Too many attempts" in throttled.text

    clock.advance(901)  # the per-user limit's window passes
    fresh_browser(client)
    request = start(client, app)
    page = to_second_factor(password(request), request)
    clock.advance(11 * 60)  # the partial sign-in lives ten minutes
    late = request.post("mfa/verify", {"factor": "totp", "code": code_at(secret, clock)}, page.text)
    assert late.status_code == 400 and "expired" in late.text
    assert "Set up" not in late.text


def test_the_partial_sign_in_is_bound_to_its_authorization_request(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    policy(core, policy="required", factors=["totp"])
    secret, _codes, _done = enroll(client, start(client, app), clock)
    clock.advance(30)
    fresh_browser(client)
    first = start(client, app)
    to_second_factor(password(first), first)
    other = start(client, app)  # same browser (same pending cookie), another request
    page = other.page()
    answer = other.post("mfa/verify", {"factor": "totp", "code": code_at(secret, clock)}, page.text)
    assert answer.status_code == 400 and "Sign in again" in answer.text
    assert client.get(f"{other.path}/mfa").text.count("Sign in again") == 1


# --- off and optional; step-up ---------------------------------------------------------------------------------


def test_without_a_policy_sign_in_is_single_factor(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    request = start(client, app)
    claims = id_claims(tokens(client, core, app, request, password(request)))
    assert claims["amr"] == ["pwd"] and claims["acr"] == ACR_SINGLE_FACTOR
    discovery = client.get(f"/t/{TENANT}/oidc/.well-known/openid-configuration").json()
    assert ACR_MFA in discovery["acr_values_supported"] and {"amr", "acr"} <= set(discovery["claims_supported"])


def test_optional_policy_lets_a_user_without_a_factor_in_and_challenges_one_with_a_factor(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    policy(core, policy="optional", factors=["totp"])
    request = start(client, app)
    offer = to_second_factor(password(request), request)  # enrollment is offered ...
    assert "Set up an authenticator app" in offer.text and "Not now" in offer.text
    skipped = request.post("mfa/skip", {}, offer.text)  # ... and may be skipped
    assert id_claims(tokens(client, core, app, request, skipped))["amr"] == ["pwd"]
    assert core.mfa.factors(TENANT, bob.id) == []
    again = start(client, app)  # the session is enough afterwards: no offer on every visit
    hosted.redirected_with_code(client.get(again.path, follow_redirects=False))

    fresh_browser(client)
    stepped = start(client, app, acr_values="mfa")
    _secret, _codes, done = enroll(client, stepped, clock)  # the application's step-up makes them enroll
    assert id_claims(tokens(client, core, app, stepped, done))["amr"] == ["pwd", "otp", "mfa"]
    clock.advance(30)
    fresh_browser(client)
    request = start(client, app)
    page = to_second_factor(password(request), request)  # optional, but enrolled: asked
    assert "Code from your authenticator app" in page.text


def test_step_up_with_acr_values_under_off_enrolls_then_challenges_and_the_id_token_says_so(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    request = start(client, app)
    hosted.redirected_with_code(password(request))  # signed in with a password only

    stepped = start(client, app, acr_values=ACR_MFA)
    page = to_second_factor(client.get(stepped.path, follow_redirects=False), stepped)  # the session is not enough
    assert "Set up an authenticator app" in page.text  # no factor yet: asked to enroll
    secret = secret_of(page.text)
    codes_page = stepped.post("mfa/enroll", {"code": code_at(secret, clock)}, page.text)
    done = stepped.post("mfa/continue", {}, codes_page.text)
    claims = id_claims(tokens(client, core, app, stepped, done))
    assert "otp" in claims["amr"] and "mfa" in claims["amr"] and claims["acr"] == ACR_MFA

    again = start(client, app, acr_values="mfa")  # the session has MFA now: straight through, alias echoed
    claims = id_claims(tokens(client, core, app, again, client.get(again.path, follow_redirects=False)))
    assert claims["acr"] == "mfa" and "otp" in claims["amr"]

    clock.advance(30)
    fresh_browser(client)
    request = start(client, app, acr_values="mfa")
    page = to_second_factor(password(request), request)  # enrolled now: a challenge
    done = request.post("mfa/verify", {"factor": "totp", "code": code_at(secret, clock)}, page.text)
    assert id_claims(tokens(client, core, app, request, done))["amr"] == ["pwd", "otp", "mfa"]


def test_max_age_asks_for_the_password_again_when_the_session_is_older(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    request = start(client, app)
    hosted.redirected_with_code(password(request))
    clock.advance(120)
    recent = start(client, app, max_age="600")
    assert client.get(recent.path, follow_redirects=False).status_code == 303  # young enough: straight through
    old = start(client, app, max_age="60")
    page = client.get(old.path)
    assert page.status_code == 200 and 'name="password"' in page.text


# --- email as second factor -----------------------------------------------------------------------------------


def test_an_email_code_is_a_second_factor_for_a_proven_address(
    client: TestClient, core: IdentityCore, app: Application, bob: User, smtp: SmtpSink, clock: Clock
) -> None:
    core.tenant_users.update(TENANT, bob.id, UserChanges(email_verified=True), ACTOR)
    policy(core, policy="required", factors=["email"])
    request = start(client, app)
    page = to_second_factor(password(request), request)
    assert "b***@example.com" in page.text and BOB not in page.text
    sent = request.post("mfa/email", {}, page.text)
    assert sent.status_code == 200 and "We sent a code" in sent.text
    code = code_in(smtp.wait_for(BOB))

    wrong = request.post(
        "mfa/verify", {"factor": "email", "code": "000000" if code != "000000" else "111111"}, sent.text
    )
    assert wrong.status_code == 400 and "not right" in wrong.text
    done = request.post("mfa/verify", {"factor": "email", "code": code}, sent.text)
    claims = id_claims(tokens(client, core, app, request, done))
    assert claims["amr"] == ["pwd", "email", "mfa"]

    fresh_browser(client)  # the code is spent
    request = start(client, app)
    page = to_second_factor(password(request), request)
    replay = request.post("mfa/verify", {"factor": "email", "code": code}, page.text)
    assert replay.status_code == 400 and "already used" in replay.text

    clock.advance(1)
    sent = request.post("mfa/email", {}, page.text)
    late_code = code_in(smtp.wait_for(BOB, count=2))
    clock.advance(11 * 60)  # the email code expired (and the partial sign-in with it)
    late = request.post("mfa/verify", {"factor": "email", "code": late_code}, sent.text)
    assert late.status_code == 400 and "expired" in late.text


def test_email_factor_policy_needs_the_smtp_connector_and_a_factor(core: IdentityCore) -> None:
    with pytest.raises(Exception, match="at least one factor"):
        policy(core, policy="required", factors=[])
    with pytest.raises(Exception, match="passkeyFirst needs 'passkey'"):
        policy(core, passkeyFirst=True)
    assert core.sign_in_experiences.get(TENANT).mfa.policy == "off"


def test_reset_removes_factors_and_the_user_enrolls_again(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    policy(core, policy="required", factors=["totp"])
    enroll(client, start(client, app), clock)
    assert core.mfa.reset(TENANT, bob.id, ACTOR) == 1
    assert core.mfa.factors(TENANT, bob.id) == []
    fresh_browser(client)
    request = start(client, app)
    page = to_second_factor(password(request), request)
    assert "Set up an authenticator app" in page.text
    assert html.unescape(page.text).count("totp-secret") == 1


def test_a_session_from_before_the_policy_cannot_skip_the_second_factor(
    client: TestClient, core: IdentityCore, app: Application, bob: User, clock: Clock
) -> None:
    request = start(client, app)
    hosted.redirected_with_code(password(request))  # a password-only session, policy off
    policy(core, policy="required", factors=["totp"])

    page = hosted.start(client, app.id).page()  # any page of ours, for its CSRF token
    for path in (start(client, app, acr_values="mfa").path, start(client, app).path):
        interaction_id = path.rsplit("/", 1)[1]
        # Straight to the step that finishes a request after enrollment, or to consent: both ask for the factor.
        for action in ("mfa/continue", f"interaction/{interaction_id}/consent"):
            answer = client.post(
                f"/t/{TENANT}/{action}",
                data={"csrf_token": csrf_from(page.text), "interaction": interaction_id, "action": "approve"},
                follow_redirects=False,
            )
            assert answer.status_code == 303 and answer.headers["location"] == f"{path}/mfa", (action, answer.text)
        assert "Set up an authenticator app" in client.get(f"{path}/mfa").text


def test_passkeys_plug_in_as_a_second_factor_through_the_hook(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    """What the passkeys module does: count its factor, render the passkey step, and finish with its amr value."""
    mfa_pages = next(
        route.endpoint.__self__  # type: ignore[attr-defined]
        for route in client.app.routes  # type: ignore[attr-defined]
        if getattr(route, "path", "") == "/t/{tenant}/interaction/{id}/mfa"
    )
    has_passkey = {bob.id: False}
    core.mfa.register_factor("passkey", lambda _conn, _tenant, user_id: has_passkey.get(user_id, False))
    seen: list[tuple[str, bool]] = []

    def passkey_page(request: Any, provider: Any, interaction: Any, pending: Any, enroll: bool, page: Any) -> Any:
        seen.append((pending.user_id, enroll))
        if enroll:  # pretend the registration ceremony succeeded, then finish like the passkeys pages do
            has_passkey[pending.user_id] = True
        # Called in the page's worker thread and transaction: the session and the code join it.
        raw = mfa_pages.cookies.mfa_pending(request, provider.tenant_id)
        decision = core.mfa.finish_with(raw, interaction.id, "hwk")
        step = mfa_pages.hosted.started_sync(provider, interaction, decision.session)
        return mfa_pages.hosted.respond(request, provider, interaction, step, "device-token-0123456789")

    mfa_pages.passkey_page = passkey_page
    policy(core, policy="required", factors=["passkey"])
    request = start(client, app)
    done = client.get(password(request).headers["location"], follow_redirects=False)  # no factor: enroll a passkey
    assert id_claims(tokens(client, core, app, request, done))["amr"] == ["pwd", "hwk", "mfa"]
    fresh_browser(client)
    request = start(client, app)
    done = client.get(password(request).headers["location"], follow_redirects=False)  # has one now: the challenge
    assert id_claims(tokens(client, core, app, request, done))["amr"] == ["pwd", "hwk", "mfa"]
    assert seen == [(bob.id, True), (bob.id, False)]

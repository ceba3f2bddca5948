"""Passkeys through the hosted pages, in process, answered by a software authenticator: a signed-in user adds one;
the JSON options endpoints check CSRF, the interaction and the session; a bad answer shows the page again with what
was wrong and adds nothing; passwordless sign-in is refused while the tenant does not offer it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor, User
from tests.support import hosted
from tests.support.hosted import HostedRequest
from tests.support.inprocess import csrf_from, pkce_pair
from tests.support.soft_authenticator import SoftAuthenticator

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
BOB = "bob@example.com"
PASSWORD = "violet staple horizon 7"


@pytest.fixture
def bob(core: IdentityCore) -> User:
    return anyio.run(
        lambda: core.tenant_users.create(TENANT, email=BOB, username="bob", password=PASSWORD, actor=ACTOR)
    )


@pytest.fixture
def app(core: IdentityCore) -> Application:
    return core.applications.create(
        TENANT, name="Shop", app_type="traditional", actor=ACTOR, redirect_uris=[hosted.CALLBACK]
    )


def _signed_in_request(client: TestClient, app: Application) -> HostedRequest:
    """Sign Bob in with his password, then start another request: the browser has a session and a pending
    interaction, as on the page that offers a passkey."""
    first = hosted.start(client, app.id)
    hosted.redirected_with_code(first.post("sign-in", {"identifier": BOB, "password": PASSWORD}, first.page().text))
    return hosted.start(client, app.id)


def _offer(request: HostedRequest) -> Any:
    page = request.page(f"{request.path}/passkey")
    assert page.status_code == 200, page.text
    return page


def _options(request: HostedRequest, path: str, page_html: str) -> Any:
    return request.client.post(
        f"/t/{TENANT}/{path}", data={"csrf_token": csrf_from(page_html), "interaction": request.interaction_id}
    )


def _authenticator(core: IdentityCore) -> SoftAuthenticator:
    return SoftAuthenticator(rp_id=core.passkeys.rp_id, origin=core.passkeys.origin)


def test_a_signed_in_user_adds_a_passkey_and_goes_on_to_the_application(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    request = _signed_in_request(client, app)
    page = _offer(request)
    assert 'data-passkey="register"' in page.text and '<script src="/static/passkeys.js" defer>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    options = _options(request, "passkeys/register/options", page.text)
    assert options.status_code == 200 and options.headers["cache-control"] == "no-store"
    assert options.json()["rp"]["id"] == "127.0.0.1"
    answer = _authenticator(core).register(options.text)
    done = request.post("passkeys/register", {"credential": answer, "name": "  Work   laptop "}, page.text)
    hosted.redirected_with_code(done)
    [passkey] = core.passkeys.of_user(TENANT, bob.id)
    assert passkey.name == "Work laptop"


def test_the_script_is_served_from_this_origin(client: TestClient) -> None:
    script = client.get("/static/passkeys.js")
    assert script.status_code == 200 and "navigator.credentials.create" in script.text


def test_a_bad_answer_shows_the_page_again_and_adds_nothing(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    request = _signed_in_request(client, app)
    page = _offer(request)
    options = _options(request, "passkeys/register/options", page.text)
    answer = _authenticator(core).register(options.text, origin="https://evil.example")
    refused = request.post("passkeys/register", {"credential": answer}, page.text)
    assert refused.status_code == 400
    assert "came from another site" in refused.text and 'role="alert"' in refused.text
    replayed = request.post("passkeys/register", {"credential": _authenticator(core).register(options.text)}, page.text)
    assert replayed.status_code == 400 and "expired or was already used" in replayed.text  # one answer per challenge
    _options(request, "passkeys/register/options", page.text)
    malformed = request.post("passkeys/register", {"credential": "{not json"}, page.text)
    assert malformed.status_code == 400 and "could not be read" in malformed.text
    assert core.passkeys.of_user(TENANT, bob.id) == []


def test_skipping_goes_on_to_the_application(client: TestClient, app: Application, bob: User) -> None:
    request = _signed_in_request(client, app)
    page = _offer(request)
    hosted.redirected_with_code(request.post("passkeys/skip", {}, page.text))


def test_the_options_endpoints_check_csrf_interaction_and_session(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    request = hosted.start(client, app.id)
    page = request.page().text
    no_session = _options(request, "passkeys/register/options", page)
    assert no_session.status_code == 401 and no_session.json()["message"] == "Sign in first, then add a passkey."
    no_csrf = client.post(f"/t/{TENANT}/passkeys/register/options", data={"interaction": request.interaction_id})
    assert no_csrf.status_code == 403 and "Reload the page" in no_csrf.json()["message"]
    unknown = client.post(
        f"/t/{TENANT}/passkeys/sign-in/options", data={"csrf_token": csrf_from(page), "interaction": "nope"}
    )
    assert unknown.status_code == 410 and unknown.json()["error"] == "interaction.expired"
    no_tenant = client.post("/t/nope/passkeys/sign-in/options", data={"csrf_token": csrf_from(page)})
    assert no_tenant.status_code == 404 and no_tenant.json()["error"] == "tenant.not_found"


def test_passwordless_is_refused_while_the_tenant_does_not_offer_it(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    request = hosted.start(client, app.id)
    shown = request.page()
    page = shown.text
    assert "Sign in with a passkey" not in page and "passkeys.js" not in page
    assert "script-src" not in shown.headers["content-security-policy"]  # a page without the script runs none
    options = _options(request, "passkeys/sign-in/options", page)
    assert options.status_code == 403 and options.json()["error"] == "sign_in.method_not_offered"
    refused = request.post("passkeys/sign-in", {"credential": "{}"}, page)
    assert refused.status_code == 403 and "not offered here" in refused.text


def _register(core: IdentityCore, user: User, interaction: str = "setup") -> SoftAuthenticator:
    authenticator = _authenticator(core)
    options = core.passkeys.registration_options(TENANT, user.id, interaction)
    core.passkeys.register(TENANT, user.id, interaction, authenticator.register(options))
    return authenticator


def test_a_passkey_confirms_the_password_and_only_the_users_own(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    eve = anyio.run(lambda: core.tenant_users.create(TENANT, email="eve@example.com", password=PASSWORD, actor=ACTOR))
    bobs, eves = _register(core, bob), _register(core, eve, "setup-2")
    core.sign_in_experiences.update_mfa(TENANT, {"policy": "optional", "factors": ["passkey"]}, ACTOR)
    request = hosted.start(client, app.id)
    signed = request.post("sign-in", {"identifier": BOB, "password": PASSWORD}, request.page().text)
    assert signed.status_code == 303 and signed.headers["location"].endswith("/mfa")
    page = request.page(signed.headers["location"])
    assert 'action="/t/default/passkeys/mfa"' in page.text and "passkeys.js" in page.text

    options = _options(request, "passkeys/mfa/options", page.text)
    assert options.status_code == 200 and len(options.json()["allowCredentials"]) == 1
    refused = request.post("passkeys/mfa", {"credential": eves.authenticate(options.text)}, page.text)
    assert refused.status_code == 400 and "not registered for this account" in refused.text
    assert ("passkey.verify", "failure") in [(e.action, e.outcome) for e in core.audit.recent(TENANT)]

    options = _options(request, "passkeys/mfa/options", page.text)
    done = request.post("passkeys/mfa", {"credential": bobs.authenticate(options.text)}, page.text)
    hosted.redirected_with_code(done)


def test_the_second_factor_endpoints_need_a_partial_sign_in(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    request = hosted.start(client, app.id)
    page = request.page().text
    options = _options(request, "passkeys/mfa/options", page)
    assert options.status_code == 400 and options.json()["error"] == "mfa.expired"
    enroll = _options(request, "passkeys/mfa/register/options", page)
    assert enroll.status_code == 400 and enroll.json()["error"] == "mfa.expired"
    answer = request.post("passkeys/mfa", {"credential": "{}"}, page)
    assert answer.status_code == 400 and "Sign in again" in answer.text


def test_a_bad_answer_at_enrollment_shows_the_page_again_and_adds_nothing(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    core.sign_in_experiences.update_mfa(TENANT, {"policy": "required", "factors": ["passkey"]}, ACTOR)
    request = hosted.start(client, app.id)
    signed = request.post("sign-in", {"identifier": BOB, "password": PASSWORD}, request.page().text)
    page = request.page(signed.headers["location"])
    assert "Add a passkey" in page.text and "totp-secret" not in page.text
    options = _options(request, "passkeys/mfa/register/options", page.text)
    answer = _authenticator(core).register(options.text, rp_id="evil.example")
    refused = request.post("passkeys/mfa/register", {"credential": answer}, page.text)
    assert refused.status_code == 400 and "made for another site" in refused.text and "Add a passkey" in refused.text
    assert core.passkeys.of_user(TENANT, bob.id) == []
    options = _options(request, "passkeys/mfa/register/options", page.text)
    added = request.post(
        "passkeys/mfa/register", {"credential": _authenticator(core).register(options.text)}, page.text
    )
    assert added.status_code == 200 and "Save your backup codes" in added.text
    assert added.headers["cache-control"] == "no-store"
    assert len(core.passkeys.of_user(TENANT, bob.id)) == 1


def test_under_the_optional_policy_passkeys_are_offered_once_with_the_other_factors(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    core.sign_in_experiences.update_mfa(
        TENANT, {"policy": "optional", "factors": ["totp", "passkey"], "passkeyFirst": True}, ACTOR
    )
    request = hosted.start(client, app.id)
    signed = request.post("sign-in", {"identifier": BOB, "password": PASSWORD}, request.page().text)
    page = request.page(signed.headers["location"])
    assert 'id="totp-secret"' in page.text and "Use a passkey instead" in page.text and "Not now" in page.text
    passkey = request.page(signed.headers["location"] + "?use=passkey")
    assert 'data-passkey="register"' in passkey.text and "Use an authenticator app instead" in passkey.text
    assert "Not now" in passkey.text
    # Not now: straight on to the application, without a second offer of a passkey.
    hosted.redirected_with_code(request.post("mfa/skip", {}, passkey.text))


def test_with_the_policy_off_a_passkey_is_offered_after_the_sign_in(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    core.sign_in_experiences.update_mfa(TENANT, {"factors": ["passkey"], "passkeyFirst": True}, ACTOR)
    request = hosted.start(client, app.id)
    page = request.page().text
    assert "Sign in with a passkey" in page and '<script src="/static/passkeys.js" defer>' in page
    signed = request.post("sign-in", {"identifier": BOB, "password": PASSWORD}, page)
    assert signed.status_code == 303 and signed.headers["location"] == f"{request.path}/passkey"


def test_passwordless_sign_in_through_the_page(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    bobs = _register(core, bob)
    core.sign_in_experiences.update_mfa(TENANT, {"factors": ["passkey"], "passkeyFirst": True}, ACTOR)
    request = hosted.start(client, app.id)
    shown = request.page()
    page = shown.text
    assert '<script src="/static/passkeys.js" defer></script>' in page
    assert "script-src 'self'; connect-src 'self'" in shown.headers["content-security-policy"]
    assert "<title>Sign in" in page and "<script" not in page.split("<title>", 1)[1].split("</title>", 1)[0]
    options = _options(request, "passkeys/sign-in/options", page)
    assert options.status_code == 200 and options.json()["allowCredentials"] == []
    refused = request.post("passkeys/sign-in", {"credential": bobs.authenticate(options.text, origin="http://x")}, page)
    assert refused.status_code == 400 and "came from another site" in refused.text and "Sign in to" in refused.text
    options = _options(request, "passkeys/sign-in/options", page)
    hosted.redirected_with_code(request.post("passkeys/sign-in", {"credential": bobs.authenticate(options.text)}, page))


def test_skipping_or_adding_a_passkey_cannot_bypass_a_step_up(
    client: TestClient, core: IdentityCore, app: Application, bob: User
) -> None:
    core.sign_in_experiences.update_mfa(TENANT, {"factors": ["totp", "passkey"]}, ACTOR)
    first = hosted.start(client, app.id)
    hosted.redirected_with_code(first.post("sign-in", {"identifier": BOB, "password": PASSWORD}, first.page().text))
    verifier, challenge = pkce_pair()  # the application now asks for MFA (acr_values): the password is not enough
    params = {
        "response_type": "code", "client_id": app.id, "redirect_uri": hosted.CALLBACK, "scope": "openid",
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256", "acr_values": "mfa",
    }  # fmt: skip
    authorize = client.get(f"/t/{TENANT}/oidc/authorize", params=params, follow_redirects=False)
    stepped = HostedRequest(client, urlsplit(authorize.headers["location"]).path, verifier)
    offer = _offer(stepped)
    skipped = stepped.post("passkeys/skip", {}, offer.text)
    assert skipped.status_code == 303 and skipped.headers["location"].endswith("/mfa")
    options = _options(stepped, "passkeys/register/options", offer.text)
    added = stepped.post("passkeys/register", {"credential": _authenticator(core).register(options.text)}, offer.text)
    assert added.status_code == 303 and added.headers["location"].endswith("/mfa")

"""Passkeys through the hosted pages, in process, answered by a software authenticator: a signed-in user adds one;
the JSON options endpoints check CSRF, the interaction and the session; a bad answer shows the page again with what
was wrong and adds nothing; passwordless sign-in is refused while the tenant does not offer it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor, User
from tests.support import hosted
from tests.support.hosted import HostedRequest
from tests.support.inprocess import csrf_from
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
    page = request.page().text
    assert "Sign in with a passkey" not in page and "passkeys.js" not in page
    options = _options(request, "passkeys/sign-in/options", page)
    assert options.status_code == 403 and options.json()["error"] == "sign_in.method_not_offered"
    refused = request.post("passkeys/sign-in", {"credential": "{}"}, page)
    assert refused.status_code == 403 and "not offered here" in refused.text

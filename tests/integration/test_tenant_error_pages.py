"""Error pages on a tenant's issuer are in the tenant's branding; the redirect URI error of a known application
shows the refused URI (escaped, never a link, never redirected to) and exactly how to register it: the
updateApplication call with its real argument names, and the application's console page. Errors elsewhere keep the
administrators' look."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.mcp_server.tools.applications import UpdateApplicationInput
from tests.support.console import text_of
from tests.support.inprocess import pkce_pair

CALLBACK = "http://127.0.0.1:7777/callback"
ACTOR = Actor(tenant_id="default", sub="test-admin")
BRANDED = '<link rel="stylesheet" href="/t/default/branding.css?v='
HOSTILE = 'https://evil.example/cb?x="><script>alert(1)</script>&y=<img src=x onerror=alert(2)>'


@pytest.fixture
def app(core: IdentityCore) -> Application:
    core.sign_in_experiences.update_branding("default", {"displayName": "Acme Shop"}, ACTOR)
    return core.applications.create("default", name="Acme web", app_type="spa", actor=ACTOR, redirect_uris=[CALLBACK])


def _authorize(client: TestClient, client_id: str, redirect_uri: str, **extra: str) -> Any:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid",
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256", **extra,
    }  # fmt: skip
    return client.get("/t/default/oidc/authorize", params=params, follow_redirects=False)


def test_an_unregistered_redirect_uri_shows_the_uri_and_how_to_register_it(
    client: TestClient, app: Application
) -> None:
    rejected = "https://shop.example.com/auth/callback"
    response = _authorize(client, app.id, rejected)
    assert response.status_code == 400 and "location" not in response.headers
    page = response.text
    shown = text_of(page)
    assert BRANDED in page and "Acme Shop" in shown and "idp-mcp" not in shown  # the tenant's look
    assert "Acme web asked to come back to an address that is not registered for it" in shown
    assert re.search(r'id="rejected-uri">https://shop.example.com/auth/callback<', page)
    call = text_of(re.search(r'id="register-call">([^<]+)<', page).group(1))  # type: ignore[union-attr]
    assert call == (
        f'updateApplication {{"applicationId": "{app.id}", "redirectUris": […the current redirectUris, "{rejected}"]}}'
    )
    # The call names the tool's real arguments.
    assert {"applicationId", "redirectUris"} <= set(UpdateApplicationInput.model_fields)
    assert f'href="/console/t/default/applications/{app.id}"' in page
    assert "Error code: invalid_request" in shown


def test_the_refused_uri_is_escaped_never_a_link_and_never_redirected_to(client: TestClient, app: Application) -> None:
    for rejected in (HOSTILE, "javascript:alert(1)", "https://evil.example/" + "a" * 5000):
        response = _authorize(client, app.id, rejected)
        assert response.status_code == 400 and "location" not in response.headers
        page = response.text
        assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
        assert 'href="javascript:' not in page and 'href="https://evil.example' not in page
        assert 'id="rejected-uri"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _authorize(client, app.id, HOSTILE).text
    long = text_of(_authorize(client, app.id, "https://evil.example/" + "a" * 5000).text)
    assert "(cut at 2048 characters)" in long


def test_a_registered_redirect_uri_still_goes_on_and_errors_of_unknown_clients_say_nothing_of_registering(
    client: TestClient, app: Application
) -> None:
    assert _authorize(client, app.id, CALLBACK).status_code == 302
    unknown = _authorize(client, "no-such-client", "https://evil.example/cb")
    assert unknown.status_code == 400 and "location" not in unknown.headers
    assert BRANDED in unknown.text and "updateApplication" not in unknown.text and "evil.example" not in unknown.text


def test_other_errors_on_the_tenants_pages_are_in_its_branding(client: TestClient, app: Application) -> None:
    expired = client.get("/t/default/interaction/no-such-interaction")
    assert expired.status_code == 410 and BRANDED in expired.text
    assert "This sign-in request expired or was already used" in text_of(expired.text)
    forged = client.post("/t/default/sign-in", data={"csrf_token": "forged", "interaction": "x"})
    assert forged.status_code == 403 and BRANDED in forged.text
    missing = client.get("/t/default/no-such-page", headers={"accept": "text/html"})
    assert missing.status_code == 404 and BRANDED in missing.text and "Acme Shop" in missing.text
    # No tenant to brand it with: the plain page.
    unknown = client.get("/t/nope/interaction/x")
    assert unknown.status_code == 404 and "branding.css" not in unknown.text and "idp-mcp" in unknown.text


def test_errors_outside_a_tenants_pages_keep_the_administrators_look(client: TestClient, app: Application) -> None:
    response = client.get("/oauth/authorize", params={"client_id": "nobody", "response_type": "code"})
    assert response.status_code == 400 and "branding.css" not in response.text and "idp-mcp" in response.text
    console = client.get("/console/t/default/applications/nope", follow_redirects=True)
    assert "branding.css" not in console.text

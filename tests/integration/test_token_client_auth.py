"""Client authentication at the token endpoint reads the client and its secrets in one transaction, for each
request: nothing is kept between requests, so a new secret works at once and a revoked or expired one is refused
at once."""

from __future__ import annotations

import base64

from starlette.requests import Request
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.oauth.endpoints import request_headers
from tests.support.clock import Clock

TOKEN = "/t/default/oidc/token"
ACTOR = Actor(tenant_id="default", sub="test-admin")


def _m2m(core: IdentityCore) -> Application:
    return core.applications.create("default", name="Worker", app_type="m2m", actor=ACTOR)


def _token(client: TestClient, client_id: str, secret: str) -> dict[str, str]:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = client.post(
        TOKEN, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    return dict(response.json())


def test_each_request_sees_the_secrets_as_they_are_now(client: TestClient, core: IdentityCore, clock: Clock) -> None:
    app = _m2m(core)
    first = core.secrets.create("default", app.id, "temporary", ACTOR)
    assert "access_token" in _token(client, app.id, first.value)

    production = core.secrets.create("default", app.id, "production", ACTOR)
    assert "access_token" in _token(client, app.id, production.value)  # new: works on the next request

    core.secrets.revoke_temporary("default", app.id, ACTOR)
    assert _token(client, app.id, first.value)["error"] == "invalid_client"  # revoked: refused on the next one
    assert "access_token" in _token(client, app.id, production.value)

    second = core.secrets.create("default", app.id, "temporary", ACTOR)
    assert "access_token" in _token(client, app.id, second.value)
    clock.advance(3601)
    assert _token(client, app.id, second.value)["error"] == "invalid_client"  # expired: refused right after
    assert "access_token" in _token(client, app.id, production.value)


def test_a_secret_of_another_application_is_refused(client: TestClient, core: IdentityCore) -> None:
    app, other = _m2m(core), _m2m(core)
    core.secrets.create("default", app.id, "temporary", ACTOR)
    foreign = core.secrets.create("default", other.id, "temporary", ACTOR)

    assert _token(client, app.id, foreign.value)["error"] == "invalid_client"


def test_a_public_application_has_no_secrets_to_check(core: IdentityCore) -> None:
    spa = core.applications.create(
        "default", name="SPA", app_type="spa", actor=ACTOR, redirect_uris=["http://127.0.0.1:7777/callback"]
    )

    found = core.secrets.client_for_authentication("default", spa.id)

    assert found is not None
    assert found.client.client_id == spa.id and found.client.is_public
    assert not found.secrets.verify("anything")
    assert core.secrets.client_for_authentication("default", "no-such-client") is None


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""})


def test_authlib_is_given_only_the_authorization_header_stripped() -> None:
    headers = request_headers(
        _request([(b"authorization", b"Basic YTpi  "), (b"content-type", b"text/plain"), (b"x-client-id", b"evil")])
    )

    assert headers == {"Authorization": "Basic YTpi"}
    assert request_headers(_request([(b"content-type", b"text/plain")])) == {}

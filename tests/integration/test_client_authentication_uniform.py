"""Client authentication fails alike whether the client exists or not: the token, revocation and introspection
endpoints must not tell an attacker which client ids exist (same status, body and headers, WWW-Authenticate
included). The unknown client also costs a digest comparison (not asserted: no timing in tests)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from tests.support.inprocess import register_client

ACTOR = Actor("default", "test")
VOLATILE = {"date", "content-length"}


def _answer(response: Any) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    headers = sorted((name, value) for name, value in response.headers.items() if name not in VOLATILE)
    return response.status_code, response.text, tuple(headers)


def _attempts(client: TestClient, path: str, form: dict[str, str], client_id: str) -> dict[str, Any]:
    secret = "a wrong secret of a plausible length 0123456789"
    return {
        "basic": client.post(path, data=form, auth=(client_id, secret)),
        "post": client.post(path, data={**form, "client_id": client_id, "client_secret": secret}),
        "no secret": client.post(path, data={**form, "client_id": client_id}),
    }


def _assert_alike(client: TestClient, path: str, form: dict[str, str], known: str) -> None:
    known_answers = _attempts(client, path, form, known)
    unknown_answers = _attempts(client, path, form, "no-such-client-0123456789abcdef")
    for how, response in known_answers.items():
        assert response.json()["error"] == "invalid_client", (path, how, response.text)
        assert _answer(response) == _answer(unknown_answers[how]), (path, how)
    # One answer whatever went wrong: a wrong method or a missing secret reads like an unknown client.
    assert len({_answer(r) for r in [*known_answers.values(), *unknown_answers.values()]}) == 1, path


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
def test_the_mcp_issuer_answers_unknown_clients_and_wrong_secrets_alike(client: TestClient, path: str) -> None:
    confidential = register_client(client, token_endpoint_auth_method="client_secret_basic")
    form = {"grant_type": "refresh_token", "refresh_token": "x"} if path.endswith("token") else {"token": "x"}
    _assert_alike(client, path, form, confidential["client_id"])


@pytest.mark.parametrize("endpoint", ["token", "revoke", "introspect"])
def test_a_tenant_issuer_answers_unknown_clients_and_wrong_secrets_alike(
    client: TestClient, core: IdentityCore, endpoint: str
) -> None:
    m2m = core.applications.create("default", name="Backend", app_type="m2m", actor=ACTOR, redirect_uris=[])
    core.secrets.create("default", m2m.id, "temporary", ACTOR)
    form = {"grant_type": "client_credentials"} if endpoint == "token" else {"token": "x"}
    _assert_alike(client, f"/t/default/oidc/{endpoint}", form, m2m.id)


def test_the_right_secret_still_authenticates(client: TestClient, core: IdentityCore) -> None:
    m2m = core.applications.create("default", name="Backend", app_type="m2m", actor=ACTOR, redirect_uris=[])
    secret = core.secrets.create("default", m2m.id, "temporary", ACTOR)
    response = client.post(
        "/t/default/oidc/token", data={"grant_type": "client_credentials"}, auth=(m2m.id, secret.value)
    )
    assert response.status_code == 200, response.text

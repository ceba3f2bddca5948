"""Names and other metadata people read (the consent page shows the client's name and where it returns) refuse
control characters and invisible formatting: bidi overrides and isolates, zero-width characters, the BOM, line
separators. At dynamic registration (``invalid_client_metadata``, ``invalid_redirect_uri`` for redirect URIs), in
a client ID metadata document (see test_oauth_client_metadata_documents.py) and at createApplication."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import ApplicationChanges
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.errors import ValidationFailed
from tests.support.inprocess import REDIRECT_URI

HIDDEN = {
    "right-to-left override": "\u202e",
    "left-to-right embedding": "\u202a",
    "first strong isolate": "\u2068",
    "pop directional isolate": "\u2069",
    "zero width space": "\u200b",
    "zero width joiner": "\u200d",
    "byte order mark": "\ufeff",
    "bell": "\x07",
    "escape": "\x1b",
    "line separator": "\u2028",
    "delete": "\x7f",
}
ACTOR = Actor("default", "test")


def _register(client: TestClient, **metadata: object) -> dict[str, str]:
    body = {"client_name": "Agent", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", **metadata}
    response = client.post("/oauth/register", json=body)
    assert response.status_code == 400, response.text
    return dict(response.json())


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_registration_refuses_hidden_characters_in_the_client_name(client: TestClient, name: str) -> None:
    error = _register(client, client_name=f"Claude{HIDDEN[name]}tneg")
    assert error["error"] == "invalid_client_metadata"
    assert "client_name" in error["error_description"] and "U+" in error["error_description"]


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("client_uri", "https://exa\u202emple.com/"),
        ("logo_uri", "https://example.com/\u200blogo.png"),
        ("software_id", "agent\u2066"),
        ("contacts", ["ops\u202e@example.com"]),
    ],
)
def test_registration_refuses_hidden_characters_in_other_metadata(
    client: TestClient, member: str, value: object
) -> None:
    error = _register(client, **{member: value})
    assert error["error"] == "invalid_client_metadata" and member in error["error_description"]


def test_registration_refuses_hidden_characters_in_redirect_uris(client: TestClient) -> None:
    error = _register(client, redirect_uris=["https://app.example/\u202ecallback"])
    assert error["error"] == "invalid_redirect_uri"


def test_ordinary_non_ascii_names_are_accepted(client: TestClient) -> None:
    response = client.post(
        "/oauth/register",
        json={
            "client_name": "Agent für Ärzte · 代理 🚀",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
        },
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("name", ["\u202e", "\u200b", "\x07"])
def test_create_application_refuses_hidden_characters(core: IdentityCore, name: str) -> None:
    with pytest.raises(ValidationFailed, match="control or invisible formatting character"):
        core.applications.create(
            "default", name=f"Web{name}app", app_type="spa", actor=ACTOR, redirect_uris=[REDIRECT_URI]
        )
    with pytest.raises(ValidationFailed, match="invisible"):
        core.applications.create(
            "default", name="Web", app_type="spa", actor=ACTOR, redirect_uris=[REDIRECT_URI],
            description=f"About{name}",
        )  # fmt: skip
    app = core.applications.create(
        "default", name="Web", app_type="spa", actor=ACTOR, redirect_uris=[REDIRECT_URI],
        description="Two\nlines\tand a tab",
    )  # fmt: skip
    with pytest.raises(ValidationFailed, match="name contains"):
        core.applications.update("default", app.id, ApplicationChanges(name=f"Renamed{name}"), ACTOR)
    with pytest.raises(ValidationFailed, match="Redirect URIs must not contain"):
        core.applications.create(
            "default", name="Web", app_type="spa", actor=ACTOR, redirect_uris=[f"https://app.example/{name}cb"]
        )

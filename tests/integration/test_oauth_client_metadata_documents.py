"""Clients identified by a metadata document URL (CIMD), fetched from a loopback TLS server, in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from tests.support.inprocess import (
    PUBLIC_URL,
    REDIRECT_URI,
    authorization_params,
    authorize,
    exchange_code,
    start_authorization,
)
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.tls import Document, DocumentServer, https_document_server


@pytest.fixture
def documents(tmp_path: Path) -> Iterator[DocumentServer]:
    with https_document_server(tmp_path) as server:
        yield server


@pytest.fixture
def cimd_client(tmp_path: Path, database_url: str, documents: DocumentServer) -> Iterator[TestClient]:
    settings = Settings(
        public_url=PUBLIC_URL,
        data_dir=tmp_path,
        database_url=database_url,
        cimd_allow_private_addresses=True,  # the document server is on loopback in tests
        cimd_ca_bundle=documents.ca_bundle,
        cimd_timeout=2,
    )
    core = IdentityCore.from_settings(settings)
    core.bootstrap()
    anyio.run(core.users.create_administrator, ADMIN_EMAIL, ADMIN_PASSWORD)
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as test_client:
        yield test_client


def document_for(client_id: str) -> dict[str, object]:
    return {
        "client_id": client_id,
        "client_name": "CIMD agent",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


def test_client_known_by_its_metadata_document_completes_the_flow(
    cimd_client: TestClient, documents: DocumentServer
) -> None:
    client_id = documents.serve_json("/client.json", document_for(documents.url("/client.json")))

    result = authorize(cimd_client, client_id)
    response = exchange_code(cimd_client, client_id, result)

    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]


def test_document_naming_another_client_id_is_refused_with_an_error_page(
    cimd_client: TestClient, documents: DocumentServer
) -> None:
    client_id = documents.serve_json("/client.json", document_for("https://elsewhere.example/client.json"))

    response = start_authorization(cimd_client, authorization_params(client_id))

    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_client" in response.text


@pytest.mark.parametrize(
    "body",
    [b"[" * 4000, b"{not json", b"[]", b"\xff\xfe"],
    ids=["deeply-nested", "broken", "array", "bad-bytes"],
)
def test_malformed_document_is_an_invalid_client_never_a_server_error(
    cimd_client: TestClient, documents: DocumentServer, body: bytes
) -> None:
    documents.documents["/client.json"] = Document(body, headers={"Content-Type": "application/json"})
    client_id = documents.url("/client.json")

    page = start_authorization(cimd_client, authorization_params(client_id))
    token = cimd_client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "client_id": client_id, "code": "x", "code_verifier": "y" * 43},
    )

    assert page.status_code == 400
    assert "invalid_client" in page.text
    assert token.status_code in (400, 401), token.text
    assert token.json()["error"] == "invalid_client"


def test_document_with_a_hidden_character_in_its_name_is_refused(
    cimd_client: TestClient, documents: DocumentServer
) -> None:
    client_id = documents.url("/client.json")
    documents.serve_json("/client.json", {**document_for(client_id), "client_name": "CIMD\u202e tnega"})

    response = start_authorization(cimd_client, authorization_params(client_id))

    assert response.status_code == 400 and "location" not in response.headers
    assert "invalid_client" in response.text and "U+202E" in response.text


@pytest.mark.parametrize(
    "overrides",
    [
        {"response_type": "token"},
        {"scope": "idp:read nonsense"},
        {"code_challenge_method": "plain"},
        {"prompt": "none"},
    ],
    ids=["implicit", "unknown scope", "plain PKCE", "prompt none, never approved"],
)
def test_errors_of_a_metadata_document_client_are_shown_not_redirected(
    cimd_client: TestClient, documents: DocumentServer, overrides: dict[str, str]
) -> None:
    """Anyone can publish a document naming any redirect URI: its errors stay on our page (RFC 9700 §4.11.2)."""
    client_id = documents.serve_json("/client.json", document_for(documents.url("/client.json")))

    response = start_authorization(cimd_client, authorization_params(client_id, **overrides))

    assert response.status_code == 400 and "location" not in response.headers, response.headers.get("location")
    assert response.headers["content-type"].startswith("text/html")

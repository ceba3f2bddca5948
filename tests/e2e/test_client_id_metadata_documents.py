"""Clients identified by an https URL (client ID metadata documents), fetched by the real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from playwright.async_api import Page

from tests.support.browser import BrowserAuthorizer
from tests.support.inprocess import pkce_pair
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.mcp_client import MemoryTokenStorage, connect
from tests.support.tls import Document, DocumentServer, https_document_server

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def documents(tmp_path: Path) -> Iterator[DocumentServer]:
    with https_document_server(tmp_path) as server:
        yield server


@pytest.fixture
def cimd_server(tmp_path: Path, database_url: str, documents: DocumentServer) -> Iterator[LiveServer]:
    env = {
        "IDP_MCP_CIMD_ALLOW_PRIVATE_ADDRESSES": "true",  # the document server is on loopback in tests
        "IDP_MCP_CIMD_CA_BUNDLE": str(documents.ca_bundle),
        "IDP_MCP_CIMD_TIMEOUT": "2",
    }
    with run_live_server(tmp_path / "server", database_url, extra_env=env) as server:
        assert server.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD).returncode == 0
        yield server


def _document(client_id: str, redirect_uri: str) -> dict[str, object]:
    return {
        "client_id": client_id,
        "client_name": "CIMD agent",
        "client_uri": "https://agent.example/",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


@pytest.mark.anyio
async def test_sdk_client_with_a_metadata_document_url_connects_without_registration(
    cimd_server: LiveServer, documents: DocumentServer, page: Page, callback_uri: str
) -> None:
    client_id = documents.url("/oauth/client.json")
    documents.serve_json("/oauth/client.json", _document(client_id, callback_uri))
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    storage = MemoryTokenStorage()
    with anyio.fail_after(60):
        async with connect(
            cimd_server.mcp_url, authorizer, storage, redirect_uri=callback_uri, client_metadata_url=client_id
        ) as client:
            result = await client.call_tool("getTenantInfo", {})
            assert not result.is_error
            assert result.structured_content is not None
            assert result.structured_content["agent"] == "CIMD agent"
    assert storage.client_info is not None and storage.client_info.client_id == client_id
    assert "CIMD agent" in authorizer.consent_html and "https://agent.example/" in authorizer.consent_html


def _authorize_url(server: LiveServer, client_id: str, redirect_uri: str) -> str:
    _, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{server.url}/oauth/authorize?{urlencode(query)}"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("lies about client_id", "does not equal the URL"),
        ("redirects", "redirects; refused"),
        ("is too large", "larger than"),
        ("is slow", "timed out"),
        ("is not JSON", "not valid JSON"),
        ("describes a confidential client", "public client"),
        ("answers 404", "HTTP 404"),
    ],
)
def test_unacceptable_metadata_documents_are_refused_with_a_clear_error(
    cimd_server: LiveServer, documents: DocumentServer, callback_uri: str, case: str, expected: str
) -> None:
    path = f"/clients/{case.replace(' ', '-')}.json"
    client_id = documents.url(path)
    if case == "lies about client_id":
        documents.serve_json(path, _document(documents.url("/someone-else.json"), callback_uri))
    elif case == "redirects":
        documents.documents[path] = Document(b"", status=302, headers={"Location": documents.url("/x.json")})
    elif case == "is too large":
        documents.serve_json(path, {**_document(client_id, callback_uri), "padding": "x" * 10_000})
    elif case == "is slow":
        documents.documents[path] = Document(b"{" + b" " * 400 + b"}", delay_per_chunk=0.2)
    elif case == "is not JSON":
        documents.documents[path] = Document(b"<html>hello</html>")
    elif case == "describes a confidential client":
        documents.serve_json(
            path, {**_document(client_id, callback_uri), "token_endpoint_auth_method": "client_secret_basic"}
        )
    # "answers 404": nothing served at that path

    response = httpx.get(_authorize_url(cimd_server, client_id, callback_uri), timeout=15)

    assert response.status_code == 400
    assert "invalid_client" in response.text
    assert expected in response.text
    assert "location" not in response.headers  # never redirect to an unverified client


def test_metadata_documents_on_loopback_are_refused_without_the_test_setting(
    tmp_path: Path, database_url: str, documents: DocumentServer, callback_uri: str
) -> None:
    client_id = documents.serve_json("/client.json", {})
    documents.serve_json("/client.json", _document(client_id, callback_uri))
    with run_live_server(tmp_path / "strict", database_url) as server:
        response = httpx.get(_authorize_url(server, client_id, callback_uri), timeout=15)
    assert response.status_code == 400
    assert "non-public address" in response.text

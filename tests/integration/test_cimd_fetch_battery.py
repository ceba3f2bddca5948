"""Client ID metadata documents must never become a way to make this server fetch from inside its own network
(SSRF): every non-public address is refused, whether the URL names it directly, spells it oddly, or reaches it
through a host name, and the address that was checked is the one connected to (no DNS rebinding).

Covered elsewhere, not repeated here: tests/unit/test_cimd.py classifies addresses one by one and refuses URLs
that are not https, carry credentials, a query, a fragment or dot segments; tests/e2e/test_client_id_metadata_
documents.py refuses documents that redirect, are too large, are slow, are not JSON, lie about their client_id or
describe a confidential client, and a loopback document server without the test setting;
tests/integration/test_oauth_client_metadata_documents.py refuses malformed documents at both endpoints.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.errors import ClientMetadataDocumentError
from idp_mcp.oauth.cimd import MetadataDocumentResolver
from idp_mcp.settings import Settings
from tests.support.inprocess import REDIRECT_URI, pkce_pair
from tests.support.tls import DocumentServer, https_document_server

REAL_GETADDRINFO = socket.getaddrinfo

NON_PUBLIC = {
    "ipv4_loopback": "127.0.0.1",
    "ipv4_loopback_range": "127.1.2.3",
    "private_10": "10.0.0.5",
    "private_172_16": "172.16.0.1",
    "private_172_31": "172.31.255.255",
    "private_192_168": "192.168.1.1",
    "cloud_metadata_link_local": "169.254.169.254",
    "carrier_grade_nat": "100.64.0.1",
    "unspecified": "0.0.0.0",
    "ipv6_loopback": "::1",
    "ipv6_link_local": "fe80::1",
    "ipv6_unique_local_fc": "fc00::1",
    "ipv6_unique_local_fd": "fd12:3456::1",
    "ipv6_site_local": "fec0::1",
    "ipv4_mapped_loopback": "::ffff:127.0.0.1",
    "ipv4_mapped_cloud_metadata": "::ffff:169.254.169.254",
    "ipv4_mapped_private": "::ffff:10.0.0.1",
    "six_to_four_of_a_private_address": "2002:a00:1::1",
    "six_to_four_of_the_cloud_metadata_address": "2002:a9fe:a9fe::1",
    "nat64_of_the_cloud_metadata_address": "64:ff9b::a9fe:a9fe",
}


def _info(address: str, port: int) -> tuple[Any, ...]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
    return (family, socket.SOCK_STREAM, 6, "", sockaddr)


class FakeDns:
    """Answers chosen addresses for chosen names (a list per name: one answer per lookup, the last one repeats)
    and the real resolver for everything else; records every lookup."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.lookups.append(name)
        if name not in self.answers:
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        answers = self.answers[name]
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [_info(address, int(port or 443)) for address in addresses]


@pytest.fixture
def resolver(core: IdentityCore) -> MetadataDocumentResolver:
    """The resolver as production runs it: public addresses only."""
    return MetadataDocumentResolver(core.settings, core.clients)


def fetch(resolver: MetadataDocumentResolver, url: str) -> str:
    """The refusal's message (the test fails if the document is accepted)."""
    with pytest.raises(ClientMetadataDocumentError) as refused:
        resolver.resolve("admin", url)
    assert refused.value.oauth_error == "invalid_client"
    return refused.value.message


# --- non-public addresses, by name and by literal ---------------------------------------------------------


@pytest.mark.parametrize("address", NON_PUBLIC.values(), ids=NON_PUBLIC.keys())
def test_a_host_name_resolving_to_a_non_public_address_is_refused(
    resolver: MetadataDocumentResolver, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"agent.example": [[address]]}))

    message = fetch(resolver, "https://agent.example/client.json")

    assert message == "The client ID metadata document host agent.example resolves to a non-public address; refused."


def test_a_host_name_resolving_to_a_public_and_a_private_address_is_refused(
    resolver: MetadataDocumentResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"agent.example": [["93.184.215.14", "10.0.0.7"]]}))

    assert "non-public address" in fetch(resolver, "https://agent.example/client.json")


LITERALS = {
    "ipv4_loopback": "https://127.0.0.1/client.json",
    "ipv4_loopback_with_port": "https://127.0.0.1:8443/client.json",
    "cloud_metadata": "https://169.254.169.254/latest/meta-data.json",
    "ipv6_loopback": "https://[::1]/client.json",
    "ipv4_mapped_in_ipv6_literal": "https://[::ffff:a9fe:a9fe]/client.json",
    "decimal_ipv4": "https://2130706433/client.json",
    "octal_ipv4": "https://0177.0.0.1/client.json",
    "hex_ipv4": "https://0x7f.0.0.1/client.json",
    "short_ipv4": "https://127.1/client.json",
    "localhost": "https://localhost/client.json",
    "localhost_with_a_trailing_dot": "https://localhost./client.json",
    "localhost_in_capitals": "https://LOCALHOST/client.json",
}


@pytest.mark.parametrize("url", LITERALS.values(), ids=LITERALS.keys())
def test_non_public_addresses_however_spelled_are_refused(resolver: MetadataDocumentResolver, url: str) -> None:
    message = fetch(resolver, url)

    # Refused at the address check, or (spellings httpx will not even parse) as an invalid URL.
    assert any(
        reason in message
        for reason in ("resolves to a non-public address; refused", "does not resolve", "not a valid URL")
    ), message


def test_a_host_that_does_not_resolve_is_refused_clearly(
    resolver: MetadataDocumentResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nowhere(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nowhere)

    assert fetch(resolver, "https://nowhere.example/client.json") == (
        "The host nowhere.example of the client ID metadata document does not resolve."
    )


def test_the_authorization_endpoint_shows_the_refusal_and_never_redirects(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"agent.example": [["169.254.169.254"]]}))
    _, challenge = pkce_pair()
    query = {
        "response_type": "code", "client_id": "https://agent.example/client.json", "redirect_uri": REDIRECT_URI,
        "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip

    response = client.get(f"/oauth/authorize?{urlencode(query)}", follow_redirects=False)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_client" in response.text and "non-public address" in response.text


# --- DNS rebinding: the checked address is the one connected to -------------------------------------------


def test_the_connection_goes_to_the_address_that_was_checked(
    resolver: MetadataDocumentResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebinding DNS server answers a public address to the check and loopback to any later lookup. The fetch
    must connect to the checked address, not look the name up again."""
    dns = FakeDns({"rebind.example": [["93.184.215.14"], ["127.0.0.1"]]})
    connected: list[tuple[str, int]] = []

    def no_network(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        connected.append((address[0], address[1]))
        raise OSError("no network in this test")

    async def no_async_network(remote_host: str, remote_port: int, **kwargs: Any) -> Any:
        # The fetch is async (httpx.AsyncClient): its connections go through anyio.
        return no_network((remote_host, remote_port))

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(anyio, "connect_tcp", no_async_network)

    message = fetch(resolver, "https://rebind.example/client.json")

    assert dns.lookups.count("rebind.example") == 1
    assert connected == [("93.184.215.14", 443)]
    assert "could not be fetched" in message


# --- the pinned connection still verifies the certificate for the name -------------------------------------


@pytest.fixture
def documents(tmp_path: Path) -> Iterator[DocumentServer]:
    with https_document_server(tmp_path) as server:
        yield server


@pytest.fixture
def loopback_resolver(core: IdentityCore, documents: DocumentServer, tmp_path: Path) -> MetadataDocumentResolver:
    """Loopback allowed (the document server is there) and its test CA trusted: the TLS side only."""
    settings = Settings(
        public_url=core.settings.public_url,
        data_dir=tmp_path,
        cimd_allow_private_addresses=True,
        cimd_ca_bundle=documents.ca_bundle,
        cimd_timeout=3,
    )
    return MetadataDocumentResolver(settings, core.clients)


def _document(url: str) -> dict[str, object]:
    return {"client_id": url, "client_name": "CIMD agent", "redirect_uris": [REDIRECT_URI], "response_types": ["code"],
            "grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"}  # fmt: skip


def test_a_name_is_fetched_from_its_checked_address_with_the_certificate_verified_for_the_name(
    loopback_resolver: MetadataDocumentResolver, documents: DocumentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``localhost`` resolves to an address nothing listens on, then to the document server: the fetch moves on to
    the next checked address, and verifies the certificate (which names localhost, not 127.0.0.1) for the name."""
    port = int(documents.base_url.rsplit(":", 1)[1])
    url = f"https://localhost:{port}/client.json"
    documents.serve_json("/client.json", _document(url))
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"localhost": [["127.0.0.2", "127.0.0.1"]]}))

    client = loopback_resolver.resolve("admin", url)

    assert client.client_id == url and client.name == "CIMD agent"


def test_a_certificate_for_another_name_is_refused_even_at_the_checked_address(
    loopback_resolver: MetadataDocumentResolver, documents: DocumentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(documents.base_url.rsplit(":", 1)[1])
    url = f"https://agent.example:{port}/client.json"
    documents.serve_json("/client.json", _document(url))
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"agent.example": [["127.0.0.1"]]}))

    assert "could not be fetched" in fetch(loopback_resolver, url)

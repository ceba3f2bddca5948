"""Client ID metadata documents: which URLs may be fetched, and which addresses they may reach."""

from __future__ import annotations

import pytest

from idp_mcp.errors import ClientMetadataDocumentError
from idp_mcp.oauth.cimd import _is_public_address, check_metadata_url, looks_like_metadata_url, resolve_host

# --- check_metadata_url --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/oauth/client-metadata.json",
        "https://app.example.com/client",
        "https://app.example.com:8443/.well-known/client.json",
    ],
)
def test_https_url_with_a_path_is_an_acceptable_metadata_url(url: str) -> None:
    check_metadata_url(url)  # raises when refused
    assert looks_like_metadata_url(url) is True


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("http://app.example.com/client.json", "must be an https URL", id="http"),
        pytest.param("ftp://app.example.com/client.json", "must be an https URL", id="ftp"),
        pytest.param("https:///client.json", "must be an https URL", id="no-host"),
        pytest.param("https://app.example.com", "path without dot segments", id="no-path"),
        pytest.param("https://app.example.com/", "path without dot segments", id="root-path"),
        pytest.param("https://app.example.com/client.json?v=1", "credentials, a query or a fragment", id="query"),
        pytest.param("https://app.example.com/client.json#x", "credentials, a query or a fragment", id="fragment"),
        pytest.param("https://user@app.example.com/client.json", "credentials, a query or a fragment", id="user"),
        pytest.param("https://u:p@app.example.com/client.json", "credentials, a query or a fragment", id="user-pass"),
        pytest.param("https://app.example.com/a/../client.json", "dot segments", id="dot-dot-segment"),
        pytest.param("https://app.example.com/a/./client.json", "dot segments", id="dot-segment"),
        pytest.param("https://app.example.com/a/..", "dot segments", id="trailing-dot-dot"),
        pytest.param("https://app.example.com/a/.", "dot segments", id="trailing-dot"),
        pytest.param("https://app.example.com/" + "a" * 2048, "credentials, a query or a fragment", id="too-long"),
    ],
)
def test_unacceptable_metadata_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(ClientMetadataDocumentError, match=message) as excinfo:
        check_metadata_url(url)
    assert excinfo.value.oauth_error == "invalid_client"


def test_only_https_client_ids_look_like_metadata_urls() -> None:
    assert looks_like_metadata_url("https://app.example.com/client.json") is True
    assert looks_like_metadata_url("http://app.example.com/client.json") is False
    assert looks_like_metadata_url("3f9c2a1b7d") is False


# --- _is_public_address --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("127.0.0.1", id="ipv4-loopback"),
        pytest.param("127.8.9.10", id="ipv4-loopback-range"),
        pytest.param("10.1.2.3", id="rfc1918-10"),
        pytest.param("172.16.0.1", id="rfc1918-172-16"),
        pytest.param("172.31.255.254", id="rfc1918-172-31"),
        pytest.param("192.168.1.1", id="rfc1918-192-168"),
        pytest.param("169.254.169.254", id="link-local-cloud-metadata"),
        pytest.param("100.64.0.1", id="carrier-grade-nat"),
        pytest.param("0.0.0.0", id="unspecified-ipv4"),
        pytest.param("224.0.0.1", id="multicast"),
        pytest.param("255.255.255.255", id="broadcast"),
        pytest.param("::1", id="ipv6-loopback"),
        pytest.param("::", id="unspecified-ipv6"),
        pytest.param("fe80::1", id="ipv6-link-local"),
        pytest.param("fc00::1", id="ipv6-unique-local"),
        pytest.param("::ffff:127.0.0.1", id="ipv4-mapped-loopback"),
        pytest.param("::ffff:10.0.0.1", id="ipv4-mapped-private"),
        pytest.param("::ffff:169.254.169.254", id="ipv4-mapped-link-local"),
    ],
)
def test_non_public_address_is_refused(address: str) -> None:
    assert _is_public_address(address) is False


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("8.8.8.8", id="ipv4-public"),
        pytest.param("1.1.1.1", id="ipv4-public-2"),
        pytest.param("2606:4700:4700::1111", id="ipv6-public"),
        pytest.param("::ffff:8.8.8.8", id="ipv4-mapped-public"),
    ],
)
def test_public_address_is_accepted(address: str) -> None:
    assert _is_public_address(address) is True


# --- resolve_host ---------------------------------------------------------------------------------------------


def test_localhost_is_refused_as_a_metadata_document_host() -> None:
    with pytest.raises(ClientMetadataDocumentError, match="resolves to a non-public address"):
        resolve_host("localhost", 443)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "::1", "169.254.169.254"])
def test_ip_literal_hosts_that_are_not_public_are_refused(host: str) -> None:
    with pytest.raises(ClientMetadataDocumentError, match="non-public address"):
        resolve_host(host, 443)

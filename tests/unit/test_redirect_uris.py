"""Redirect URI rules: what a client may register, and which requested URI matches a registered one."""

from __future__ import annotations

import pytest

from idp_mcp.core.redirect_uris import MAX_URI_LENGTH, redirect_uri_matches, validate_redirect_uri
from idp_mcp.errors import InvalidRedirectUri

# --- validate_redirect_uri: accepted -------------------------------------------------------------------------

ACCEPTED_FOR_ANY_CLIENT = [
    pytest.param("https://app.example.com/callback", id="https"),
    pytest.param("https://app.example.com:8443/oauth/cb?tenant=a", id="https-port-and-query"),
    pytest.param("https://claude.ai/api/mcp/auth_callback", id="claude-hosted-callback"),
    pytest.param("https://chatgpt.com/connector_platform_oauth_redirect", id="chatgpt-hosted-callback"),
    pytest.param("https://vscode.dev/redirect", id="vscode-dev-hosted-callback"),
    pytest.param("http://127.0.0.1/callback", id="http-loopback-ipv4"),
    pytest.param("http://127.0.0.1:33418/callback", id="http-loopback-ipv4-port"),
    pytest.param("http://[::1]:8080/callback", id="http-loopback-ipv6-port"),
    pytest.param("http://localhost:6274/oauth/callback", id="http-localhost-port"),
]


@pytest.mark.parametrize("uri", ACCEPTED_FOR_ANY_CLIENT)
@pytest.mark.parametrize("public_client", [True, False], ids=["public", "confidential"])
def test_https_and_loopback_http_redirect_uris_are_accepted_for_every_client(uri: str, public_client: bool) -> None:
    assert validate_redirect_uri(uri, public_client=public_client) == uri


PRIVATE_USE_SCHEMES = [
    pytest.param("cursor://anysphere.cursor-mcp/oauth/callback", id="cursor"),
    pytest.param("vscode://vscode.github-authentication/did-authenticate", id="vscode"),
    pytest.param("com.example.app:/oauth2redirect", id="reverse-domain"),
]


@pytest.mark.parametrize("uri", PRIVATE_USE_SCHEMES)
def test_private_use_scheme_is_accepted_for_a_public_client(uri: str) -> None:
    assert validate_redirect_uri(uri, public_client=True) == uri


@pytest.mark.parametrize("uri", PRIVATE_USE_SCHEMES)
def test_private_use_scheme_is_refused_for_a_confidential_client(uri: str) -> None:
    with pytest.raises(InvalidRedirectUri, match="private-use scheme, allowed only for public clients"):
        validate_redirect_uri(uri, public_client=False)


# --- validate_redirect_uri: refused --------------------------------------------------------------------------

REFUSED = [
    pytest.param("http://app.example.com/callback", "non-loopback host", id="http-public-host"),
    pytest.param("http://10.0.0.5/callback", "non-loopback host", id="http-private-ip"),
    pytest.param("http://127.0.0.1.evil.com/callback", "non-loopback host", id="http-loopback-lookalike"),
    pytest.param("http://localhost.evil.com/callback", "non-loopback host", id="http-localhost-lookalike"),
    pytest.param("https://app.example.com/callback#frag", "fragment", id="fragment"),
    pytest.param("https://app.example.com/callback#", "fragment", id="empty-fragment"),
    pytest.param("https://*.example.com/callback", "wildcards", id="wildcard-host"),
    pytest.param("https://app.example.com/*", "wildcards", id="wildcard-path"),
    pytest.param("https://app.example.com/call back", "spaces", id="space"),
    pytest.param("https://app.example.com/callback\n", "spaces", id="newline"),
    pytest.param("https://user:pass@app.example.com/callback", "user information", id="userinfo"),
    pytest.param("https://app.example.com@evil.com/callback", "user information", id="userinfo-host-trick"),
    pytest.param("http://evil.com@127.0.0.1/callback", "user information", id="userinfo-on-loopback"),
    pytest.param("javascript:alert(1)", "not allowed", id="javascript"),
    pytest.param("JavaScript:alert(1)", "not allowed", id="javascript-mixed-case"),
    pytest.param("data:text/html,<script>alert(1)</script>", "not allowed", id="data"),
    pytest.param("file:///etc/passwd", "not allowed", id="file"),
    pytest.param("vbscript:msgbox(1)", "not allowed", id="vbscript"),
    pytest.param("/relative/callback", "absolute URI", id="relative"),
    pytest.param("https:///callback", "no host", id="https-without-host"),
    pytest.param("", "non-empty", id="empty"),
    pytest.param("https://app.example.com/" + "a" * MAX_URI_LENGTH, "at most", id="too-long"),
]


@pytest.mark.parametrize(("uri", "reason"), REFUSED)
@pytest.mark.parametrize("public_client", [True, False], ids=["public", "confidential"])
def test_unsafe_redirect_uri_is_refused_with_the_reason(uri: str, reason: str, public_client: bool) -> None:
    with pytest.raises(InvalidRedirectUri, match=reason) as excinfo:
        validate_redirect_uri(uri, public_client=public_client)
    assert excinfo.value.oauth_error == "invalid_redirect_uri"


# --- redirect_uri_matches ------------------------------------------------------------------------------------

MATCHES = [
    pytest.param(["https://app.example.com/callback"], "https://app.example.com/callback", id="exact-https"),
    pytest.param(
        ["https://a.example.com/cb", "https://b.example.com/cb"], "https://b.example.com/cb", id="exact-second-of-two"
    ),
    pytest.param(
        ["cursor://anysphere.cursor-mcp/oauth/callback"],
        "cursor://anysphere.cursor-mcp/oauth/callback",
        id="exact-private-use-scheme",
    ),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1:51234/callback", id="loopback-ipv4-port-added"),
    pytest.param(["http://127.0.0.1:1111/callback"], "http://127.0.0.1:2222/callback", id="loopback-ipv4-port-changed"),
    pytest.param(["http://127.0.0.1:1111/callback"], "http://127.0.0.1/callback", id="loopback-ipv4-port-removed"),
    pytest.param(["http://[::1]/callback"], "http://[::1]:8080/callback", id="loopback-ipv6-port-added"),
    pytest.param(["http://[::1]:9/callback"], "http://[::1]:65535/callback", id="loopback-ipv6-port-changed"),
    pytest.param(["http://localhost:3000/callback"], "http://localhost:4000/callback", id="localhost-port-changed"),
    pytest.param(["http://127.0.0.1:5/cb?x=1"], "http://127.0.0.1:6/cb?x=1", id="loopback-same-query"),
]


@pytest.mark.parametrize(("registered", "requested"), MATCHES)
def test_redirect_uri_matches_exactly_or_on_loopback_with_any_port(registered: list[str], requested: str) -> None:
    assert redirect_uri_matches(registered, requested) is True
    assert redirect_uri_matches(tuple(registered), requested) is True


MISMATCHES = [
    pytest.param(["https://app.example.com/callback"], "https://app.example.com/callback/", id="trailing-slash"),
    pytest.param(["https://app.example.com/callback"], "https://app.example.com/Callback", id="path-case"),
    pytest.param(["https://app.example.com/callback"], "https://APP.example.com/callback", id="host-case"),
    pytest.param(["https://app.example.com/callback"], "https://app.example.com/callback2", id="path-suffix"),
    pytest.param(["https://app.example.com/callback"], "https://app.example.com/other", id="other-path"),
    pytest.param(["https://app.example.com/callback"], "https://app.example.com/callback?x=1", id="query-added"),
    pytest.param(["https://app.example.com/cb?x=1"], "https://app.example.com/cb?x=2", id="query-changed"),
    pytest.param(["https://app.example.com/callback"], "https://app.example.com:8443/callback", id="https-port-added"),
    pytest.param(["https://app.example.com:443/cb"], "https://app.example.com:8443/cb", id="https-port-changed"),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1:8080/other", id="loopback-other-path"),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1:8080/callback/", id="loopback-trailing-slash"),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1:8080/callback?x=1", id="loopback-query-added"),
    pytest.param(["http://127.0.0.1/callback"], "http://localhost:8080/callback", id="loopback-other-host"),
    pytest.param(["http://127.0.0.1/callback"], "http://[::1]:8080/callback", id="loopback-ipv4-vs-ipv6"),
    pytest.param(["http://127.0.0.1/callback"], "https://127.0.0.1:8080/callback", id="loopback-https"),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1.evil.com/callback", id="loopback-suffix-host"),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1.evil.com:80/callback", id="loopback-suffix-port"),
    pytest.param(["http://127.0.0.1/callback"], "http://evil.com@127.0.0.1:80/callback", id="userinfo-before"),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1:80@evil.com/callback", id="userinfo-after"),
    pytest.param(["http://127.0.0.1/callback"], "http://127.0.0.1:80x/callback", id="non-numeric-port"),
    pytest.param(["http://localhost/callback"], "http://localhost.evil.com:80/callback", id="localhost-suffix"),
    pytest.param(["http://app.example.com/callback"], "http://app.example.com:8080/callback", id="non-loopback-http"),
    pytest.param([], "https://app.example.com/callback", id="nothing-registered"),
]


@pytest.mark.parametrize(("registered", "requested"), MISMATCHES)
def test_redirect_uri_that_differs_from_the_registered_one_does_not_match(
    registered: list[str], requested: str
) -> None:
    assert redirect_uri_matches(registered, requested) is False

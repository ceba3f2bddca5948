"""RFC 7591 client metadata: defaults, and the precise error for each kind of bad registration."""

from __future__ import annotations

from typing import Any

import pytest

from idp_mcp.core.clients import parse_client_metadata
from idp_mcp.errors import InvalidClientMetadata, InvalidRedirectUri

CALLBACK = "https://app.example.com/callback"


def test_minimal_registration_gets_the_rfc_7591_defaults() -> None:
    metadata = parse_client_metadata({"redirect_uris": [CALLBACK]})
    assert metadata.redirect_uris == [CALLBACK]
    assert metadata.token_endpoint_auth_method == "client_secret_basic"
    assert metadata.grant_types == ["authorization_code"]
    assert metadata.response_types == ["code"]
    assert metadata.client_name is None
    assert metadata.scope is None


def test_full_public_client_registration_is_accepted() -> None:
    metadata = parse_client_metadata(
        {
            "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback", "http://127.0.0.1:33418/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Cursor",
            "client_uri": "https://cursor.com",
            "scope": "openid idp:read idp:write offline_access",
        }
    )
    assert metadata.token_endpoint_auth_method == "none"
    assert metadata.grant_types == ["authorization_code", "refresh_token"]
    assert metadata.client_name == "Cursor"
    assert metadata.scope == "openid idp:read idp:write offline_access"


def test_unknown_extra_members_are_ignored() -> None:
    metadata = parse_client_metadata(
        {"redirect_uris": [CALLBACK], "jwks_uri": "https://app.example.com/jwks", "x-vendor": {"a": 1}}
    )
    assert metadata.redirect_uris == [CALLBACK]
    dumped = metadata.model_dump()
    assert "jwks_uri" not in dumped and "x-vendor" not in dumped


# --- invalid_redirect_uri ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="missing"),
        pytest.param({"redirect_uris": []}, id="empty-list"),
        pytest.param({"redirect_uris": None}, id="null"),
        pytest.param({"redirect_uris": CALLBACK}, id="string-not-list"),
        pytest.param({"redirect_uris": [42]}, id="not-a-string"),
        pytest.param({"redirect_uris": [f"{CALLBACK}/{i}" for i in range(21)]}, id="too-many"),
        pytest.param({"redirect_uris": ["http://app.example.com/callback"]}, id="http-non-loopback"),
        pytest.param({"redirect_uris": [CALLBACK, "https://app.example.com/cb#frag"]}, id="second-has-fragment"),
        pytest.param({"redirect_uris": ["https://*.example.com/cb"]}, id="wildcard"),
        pytest.param({"redirect_uris": ["javascript:alert(1)"]}, id="javascript"),
        pytest.param(
            {"redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"]}, id="private-use-confidential"
        ),
    ],
)
def test_missing_empty_or_unsafe_redirect_uris_raise_invalid_redirect_uri(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidRedirectUri) as excinfo:
        parse_client_metadata(payload)
    assert excinfo.value.oauth_error == "invalid_redirect_uri"
    assert excinfo.value.code == "client.invalid_redirect_uri"
    assert excinfo.value.message


def test_private_use_redirect_uri_is_accepted_for_a_public_client() -> None:
    uri = "cursor://anysphere.cursor-mcp/oauth/callback"
    metadata = parse_client_metadata({"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
    assert metadata.redirect_uris == [uri]


# --- invalid_client_metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        pytest.param({"redirect_uris": [CALLBACK], "grant_types": ["client_credentials"]}, "grant_types",
                     id="unknown-grant-type"),
        pytest.param({"redirect_uris": [CALLBACK], "grant_types": ["implicit"]}, "grant_types", id="implicit-grant"),
        pytest.param({"redirect_uris": [CALLBACK], "grant_types": []}, "grant_types", id="empty-grant-types"),
        pytest.param({"redirect_uris": [CALLBACK], "response_types": ["token"]}, "response_types",
                     id="implicit-response-type"),
        pytest.param({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "private_key_jwt"},
                     "token_endpoint_auth_method", id="unknown-auth-method"),
        pytest.param({"redirect_uris": [CALLBACK], "scope": "openid admin:all"}, "scope", id="unknown-scope"),
        pytest.param({"redirect_uris": [CALLBACK], "client_uri": "http://app.example.com"}, "client_uri",
                     id="http-client-uri"),
        pytest.param({"redirect_uris": [CALLBACK], "client_uri": "javascript:alert(1)"}, "client_uri",
                     id="javascript-client-uri"),
        pytest.param({"redirect_uris": [CALLBACK], "logo_uri": "ftp://app.example.com/logo.png"}, "logo_uri",
                     id="ftp-logo-uri"),
        pytest.param({"redirect_uris": [CALLBACK], "client_name": "x" * 201}, "client_name", id="name-too-long"),
    ],
)  # fmt: skip
def test_bad_client_metadata_raises_invalid_client_metadata_naming_the_field(
    payload: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidClientMetadata) as excinfo:
        parse_client_metadata(payload)
    assert not isinstance(excinfo.value, InvalidRedirectUri)
    assert excinfo.value.oauth_error == "invalid_client_metadata"
    assert excinfo.value.code == "client.invalid_metadata"
    assert excinfo.value.message.startswith(where)


def test_unknown_scope_error_lists_the_supported_scopes() -> None:
    with pytest.raises(InvalidClientMetadata, match=r"unknown scope\(s\) admin:all; supported: .*idp:read"):
        parse_client_metadata({"redirect_uris": [CALLBACK], "scope": "admin:all"})


@pytest.mark.parametrize("payload", [None, [], "redirect_uris", 42, [{"redirect_uris": [CALLBACK]}]])
def test_payload_that_is_not_a_json_object_raises_invalid_client_metadata(payload: Any) -> None:
    with pytest.raises(InvalidClientMetadata, match="must be a JSON object") as excinfo:
        parse_client_metadata(payload)
    assert excinfo.value.oauth_error == "invalid_client_metadata"


def test_loopback_http_client_uri_is_accepted() -> None:
    metadata = parse_client_metadata({"redirect_uris": [CALLBACK], "client_uri": "http://127.0.0.1:8080/"})
    assert metadata.client_uri == "http://127.0.0.1:8080/"

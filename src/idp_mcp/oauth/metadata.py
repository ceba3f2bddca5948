"""Discovery documents: RFC 8414 authorization server metadata and OpenID Connect discovery."""

from __future__ import annotations

from typing import Any

from idp_mcp.oauth.server import IdpAuthorizationServer

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


CLAIMS_SUPPORTED = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "email",
    "email_verified",
    "name",
)


def authorization_server_metadata(
    server: IdpAuthorizationServer, base: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Metadata for the issuer served by ``server``; endpoint URLs hang off ``base``."""
    grant_types = ["authorization_code", "refresh_token"]
    if server.client_credentials:
        grant_types.append("client_credentials")
    return {
        "issuer": server.issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "revocation_endpoint": f"{base}/revoke",
        "jwks_uri": f"{base}/jwks",
        "scopes_supported": list(server.scopes_supported),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": server.cimd is not None,
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "claims_supported": list(CLAIMS_SUPPORTED),
        **({"registration_endpoint": f"{base}/register"} if server.dynamic_registration else {}),
        **(extra or {}),
    }

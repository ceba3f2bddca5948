"""OpenID Connect for the code grant: ID tokens (nonce, auth_time, at_hash) signed with the issuer's key."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode

from idp_mcp.core.keys import SigningKey
from idp_mcp.domain import SCOPE_EMAIL, SCOPE_PROFILE, split_scope
from idp_mcp.oauth.tokens import TokenSubject

if TYPE_CHECKING:
    from idp_mcp.oauth.server import IdpAuthorizationServer

ID_TOKEN_TTL = 3600


class IdTokens(OpenIDCode):  # type: ignore[misc]
    def __init__(self, server: IdpAuthorizationServer) -> None:
        super().__init__(require_nonce=False)
        self._server = server
        self._chosen = threading.local()  # the key named in the header being encoded on this thread

    def _key_alg(self, client: Any) -> str:
        alg = client.client.metadata.get("id_token_signed_response_alg") if hasattr(client, "client") else None
        return alg if alg in ("ES256", "RS256") else "ES256"

    def resolve_client_private_key(self, client: Any) -> Any:
        # authlib asks for the header first and the key later: sign with the key the header named, even if a
        # rotation was picked up in between.
        chosen: SigningKey | None = getattr(self._chosen, "key", None)
        self._chosen.key = None
        key = chosen or self._server.core.keys.signing_key(self._server.tenant_id, self._key_alg(client))
        return key.jose_key

    def get_client_algorithm(self, client: Any) -> str:
        return self._key_alg(client)

    def get_encode_header(self, client: Any) -> dict[str, str]:
        key = self._server.core.keys.signing_key(self._server.tenant_id, self._key_alg(client))
        self._chosen.key = key
        return {"alg": key.alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        now = int(self._server.core.clock().timestamp())
        return {"iss": self._server.issuer, "aud": [client.get_client_id()], "iat": now, "exp": now + ID_TOKEN_TTL}

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # Nonce replay is the client's check (OIDC Core §3.1.3.7); we only bind the nonce into the ID token.
        return False

    def generate_user_info(self, user: TokenSubject, scope: str) -> UserInfo:
        scopes = split_scope(scope)
        # Read with the code (one transaction fewer); look it up only for a subject that came without it.
        record = (
            user.user if user.user is not None else self._server.core.users.get(self._server.tenant_id, user.user_id)
        )
        info = UserInfo(sub=user.user_id)
        if record is not None and SCOPE_EMAIL in scopes and record.email:
            info["email"] = record.email
            # Apps that link accounts by email must only trust a proven address (OIDC Core §5.1).
            info["email_verified"] = record.email_verified
        if record is not None and SCOPE_PROFILE in scopes:
            if record.name:
                info["name"] = record.name
            if record.username:
                info["preferred_username"] = record.username
        return info

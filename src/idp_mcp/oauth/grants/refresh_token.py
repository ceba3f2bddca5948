"""Refresh token grant with rotation; a reused token revokes its whole family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from authlib.oauth2.rfc6749 import InvalidGrantError, grants

from idp_mcp.oauth.checks import InvalidTargetError
from idp_mcp.oauth.models import RefreshToken
from idp_mcp.oauth.tokens import TokenSubject

if TYPE_CHECKING:
    from idp_mcp.oauth.server import IdpAuthorizationServer


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: IdpAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        if not refresh_token or len(refresh_token) > 256:
            return None
        # Only look here: a request refused for its scope or resource must not spend the client's token.
        record = self.server.core.grants.find_refresh_token(
            self.server.tenant_id, refresh_token, self.request.client.client_id
        )
        return RefreshToken(record) if record else None

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.datalist.get("resource", [])
        bound = self.request.refresh_token.record.resource
        if requested and (len(set(requested)) > 1 or requested[0] != bound):
            raise InvalidTargetError(description="The resource does not match the original grant.")
        # The request is valid: rotate the token out now, atomically (a concurrent use of it counts as reuse).
        record = self.server.core.grants.claim_refresh_token(
            self.server.tenant_id, self.request.form["refresh_token"], self.request.client.client_id
        )
        if record is None:
            raise InvalidGrantError()
        self.request.refresh_token = RefreshToken(record)

    def authenticate_user(self, refresh_token: RefreshToken) -> TokenSubject | None:
        record = refresh_token.record
        # The people who consent to this issuer are users of its own tenant (administrators for /mcp).
        user = self.server.core.users.get(self.server.tenant_id, record.user_id)
        if user is None or user.suspended:
            return None
        return TokenSubject(
            user_id=record.user_id,
            family_id=record.family_id,
            resource=record.resource,
            acting_tenant_id=record.acting_tenant_id,
            auth_time=record.auth_time,
            grant_scope=record.scope,
        )

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Nothing to do: the token was rotated out atomically when it was claimed."""

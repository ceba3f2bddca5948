"""Refresh token grant with rotation; a reused token revokes its whole family."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidGrantError, grants

from idp_mcp.core.permissions import Subject
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
        # Only look here: a request refused for its scope or resource must not spend the client's token. It is
        # rotated out in save_token, in the transaction that stores its successor.
        found = self.server.core.grants.find_refresh_token(
            self.server.tenant_id, refresh_token, self.request.client.client_id
        )
        return RefreshToken(found.record, found.user) if found else None

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.datalist.get("resource", [])
        record = self.request.refresh_token.record
        bound = record.resource
        if self.server.targets is not None:
            # Any resource the grant was authorized for; its permissions are evaluated again for this token.
            self.request.target = self.server.targets.token(bound, requested, Subject("user", record.user_id))
        elif requested and (len(set(requested)) > 1 or requested[0] != bound):
            raise InvalidTargetError(description="The resource does not match the original grant.")

    def authenticate_user(self, refresh_token: RefreshToken) -> TokenSubject | None:
        record = refresh_token.record
        # The people who consent to this issuer are users of its own tenant (administrators for /mcp); read with
        # the token.
        user = refresh_token.user
        if user is None or user.suspended:
            return None
        audience, api = getattr(self.request, "target", (None, None))
        return TokenSubject(
            user_id=record.user_id,
            family_id=record.family_id,
            resource=record.resource,
            acting_tenant_id=record.acting_tenant_id,
            auth_time=record.auth_time,
            grant_scope=record.scope,
            user=user,
            audience=audience,
            api=api,
            amr=record.amr,
            acr=record.acr,
        )

    def save_token(self, token: dict[str, Any]) -> None:
        successor = self.server.successor(token, self.request)
        # Rotation and successor in one transaction. A token used concurrently (claimed in the meantime) counts as
        # reuse: its family has been revoked, and this request gets nothing.
        if not self.server.core.grants.rotate_refresh_token(
            self.server.tenant_id, self.request.form["refresh_token"], self.request.client.client_id, successor
        ):
            raise InvalidGrantError()

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Nothing to do: the token was rotated out in save_token, with its successor."""

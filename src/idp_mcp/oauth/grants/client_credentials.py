"""Client credentials grant for machine-to-machine applications (RFC 6749 §4.4), with resource indicators."""

from __future__ import annotations

from typing import TYPE_CHECKING

from authlib.oauth2.rfc6749 import grants

from idp_mcp.core.crypto import new_id
from idp_mcp.oauth.checks import choose_resource
from idp_mcp.oauth.tokens import TokenSubject

if TYPE_CHECKING:
    from idp_mcp.oauth.server import IdpAuthorizationServer


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: IdpAuthorizationServer

    def validate_requested_scope(self) -> None:
        if self.server.targets is None:
            super().validate_requested_scope()
            return
        # A tenant issuer: the resource (one of the tenant's API resources, or the issuer) and the permissions the
        # application holds on it, read once; the scope must name permissions of that resource.
        self.request.target = self.server.targets.client_credentials(
            self.request.payload.datalist.get("resource", []),
            self.request.payload.scope,
            self.request.client.client_id,
            prefetched=getattr(self.request, "prefetched_access", None),
        )

    def validate_token_request(self) -> None:
        super().validate_token_request()
        target = getattr(self.request, "target", None)
        if target is not None:
            resource, api = target
        else:
            resource = choose_resource(
                self.request.payload.datalist.get("resource", []), self.server.resources, self.server.default_resource
            )
            api = None
        # The token is about the application itself: it is its own subject, and each token its own grant.
        self.request.user = TokenSubject(
            user_id=self.request.client.client_id,
            family_id=new_id(16),
            resource=resource,
            acting_tenant_id=None,
            auth_time=None,
            api=api,
        )

    def create_token_response(self) -> tuple[int, dict[str, object], list[tuple[str, str]]]:
        scope = self.request.payload.scope or ""  # already checked against the issuer's scopes
        token = self.generate_token(user=self.request.user, scope=scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER

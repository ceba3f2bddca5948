"""Authorization code grant with PKCE (S256 only), resource indicators and code-replay revocation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, OAuth2Error, grants

from idp_mcp.core.grants import CodeRecord
from idp_mcp.core.permissions import Subject
from idp_mcp.oauth.checks import InvalidTargetError, choose_resource
from idp_mcp.oauth.models import AuthorizationCode
from idp_mcp.oauth.tokens import TokenSubject

if TYPE_CHECKING:
    from idp_mcp.oauth.server import IdpAuthorizationServer


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    server: IdpAuthorizationServer
    _found: tuple[str, str] | None = None  # (code, client id) once the code was found valid for this request

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: Any) -> str:
        # authlib's own quotes the requested URI in the error description, which may only hold printable ASCII
        # without '"' and '\\': a URI with any other character turned into a server error. Say it without quoting.
        requested = request.payload.redirect_uri
        if requested and not client.check_redirect_uri(requested):
            raise InvalidRequestError("The redirect_uri is not one registered for this client.")
        redirect_uri: str = grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)
        return redirect_uri

    def validate_requested_scope(self) -> None:
        if self.server.targets is None:
            super().validate_requested_scope()
            return
        # A tenant issuer: permissions are scopes of the API resources named with them.
        self.request.resource = self.server.targets.authorization(
            self.request.payload.datalist.get("resource", []), self.request.payload.scope
        )

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        if self.server.targets is not None:
            return redirect_uri  # the resources were checked with the scope
        try:
            self.request.resource = choose_resource(
                self.request.payload.datalist.get("resource", []),
                self.server.resources,
                self.server.default_resource,
            )
        except InvalidTargetError as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        decision = request.extra  # set by the consent step: who approved what
        data = request.payload.data
        self.server.core.grants.save_code(
            code,
            CodeRecord(
                tenant_id=self.server.tenant_id,
                client_id=request.client.client_id,
                user_id=decision["user_id"],
                grant_id=decision["grant_id"],
                redirect_uri=request.payload.redirect_uri,
                scope=decision["scope"],
                resource=request.resource,
                acting_tenant_id=decision.get("acting_tenant_id"),
                # Empty for a confidential client that chose not to use PKCE (where the issuer allows it).
                code_challenge=data.get("code_challenge") or "",
                code_challenge_method=data.get("code_challenge_method") or "",
                nonce=data.get("nonce"),
                auth_time=decision["auth_time"],
                expires_at=self.server.code_expiry(),
                amr=tuple(decision.get("amr") or ()),
                acr=decision.get("acr"),
            ),
        )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        if not code or len(code) > 256:
            return None
        # Only look here: a valid request spends the code in save_token, in the transaction that stores the refresh
        # token issued for it; a refused one spends it in validate_token_request.
        found = self.server.core.grants.find_code(self.server.tenant_id, code, client.client_id)
        if found is None:
            return None
        self._found = (code, client.client_id)
        return AuthorizationCode(found.record, found.user)

    def validate_token_request(self) -> None:
        self._found = None
        try:
            super().validate_token_request()  # the client, the code, the redirect URI, then PKCE (a hook)
            # RFC 8707 §2.2: a resource named at the token endpoint must be the one the code was issued for.
            requested = self.request.payload.datalist.get("resource", [])
            record = self.request.authorization_code.record
            bound = record.resource
            if self.server.targets is not None:
                self.request.target = self.server.targets.token(bound, requested, Subject("user", record.user_id))
            elif requested and (len(set(requested)) > 1 or requested[0] != bound):
                raise InvalidTargetError(description="The resource does not match the authorization request.")
        except OAuth2Error:
            if self._found is not None:
                # A refused exchange still spends the code: one try per code, so a verifier cannot be guessed at.
                code, client_id = self._found
                self.server.core.grants.redeem_code(self.server.tenant_id, code, client_id, None)
            raise

    def save_token(self, token: dict[str, Any]) -> None:
        # Always called before the response is built (with or without a refresh token): spend the code here, once.
        # A code spent in the meantime (a concurrent replay) has revoked its grant, and this request gets nothing.
        if not self.server.core.grants.redeem_code(
            self.server.tenant_id,
            self.request.form["code"],
            self.request.client.client_id,
            self.server.successor(token, self.request),
        ):
            raise InvalidGrantError("Invalid 'code' in request.")

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: the code was spent in save_token, in the transaction that stored its refresh token."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> TokenSubject:
        record = authorization_code.record
        audience, api = getattr(self.request, "target", (None, None))
        return TokenSubject(
            user_id=record.user_id,
            family_id=record.grant_id,
            resource=record.resource,
            acting_tenant_id=record.acting_tenant_id,
            auth_time=record.auth_time,
            nonce=record.nonce,
            user=authorization_code.user,
            audience=audience,
            api=api,
            amr=record.amr,
            acr=record.acr,
        )

"""An authlib AuthorizationServer for one issuer (a tenant), wired to the identity core."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.base import invalid_error_characters
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Error, UnsupportedResponseTypeError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter

from idp_mcp.core.crypto import digest, digests_equal, new_secret
from idp_mcp.core.grants import RefreshRecord, Successor
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import SCOPE_OFFLINE, Client, join_scope, split_scope
from idp_mcp.errors import ClientMetadataDocumentError
from idp_mcp.oauth.checks import S256CodeChallenge
from idp_mcp.oauth.cimd import MetadataDocumentResolver, looks_like_metadata_url
from idp_mcp.oauth.grants.authorization_code import AuthorizationCodeGrant
from idp_mcp.oauth.grants.client_credentials import ClientCredentialsGrant
from idp_mcp.oauth.grants.openid import IdTokens
from idp_mcp.oauth.grants.refresh_token import RefreshTokenGrant
from idp_mcp.oauth.models import OAuthClient
from idp_mcp.oauth.requests import PlainOAuth2Request
from idp_mcp.oauth.resources import ApiTargets
from idp_mcp.oauth.tokens import AccessTokenIssuer, TokenSubject
from idp_mcp.oauth.verifier import decode_signed

# Compared against when client authentication fails, so an unknown client costs a digest and a compare as well.
_DUMMY_DIGEST = digest("no client has this secret")
CLIENT_AUTHENTICATION_FAILED = "Client authentication failed."
#: The token request whose client is being authenticated (query_client reads what the grant will need with it).
_authenticating: ContextVar[Any] = ContextVar("idp_mcp_authenticating", default=None)
#: Where a token response keeps its access token's scope while the grant's scope is still needed (see handle_response).
ACCESS_TOKEN_SCOPE = "_access_token_scope"


class EndpointResult:
    """What authlib answered, before it becomes an HTTP response. ``location`` is writable because authlib's
    RFC 9207 extension adds ``iss`` to it."""

    def __init__(self, status: int, body: Any, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def location(self) -> str | None:
        return next((value for name, value in self.headers if name.lower() == "location"), None)

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(n, v) for n, v in self.headers if n.lower() != "location"] + [("Location", value)]


class _Issuer(IssuerParameter):  # type: ignore[misc]
    def __init__(self, issuer: str) -> None:
        self._issuer = issuer

    def get_issuer(self) -> str:
        return self._issuer


class IdpRevocationEndpoint(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    server: IdpAuthorizationServer

    def check_params(self, request: Any, client: OAuthClient) -> None:
        # RFC 7009 §2.2: an invalid token_type_hint is ignored and does not influence the response. (authlib
        # refuses it with a 401; query_token below finds either kind of token whatever the hint says.)
        if "token" not in request.form:
            raise InvalidRequestError("Missing 'token'.")

    def query_token(self, token_string: str, token_type_hint: str | None) -> _RevocableToken | None:
        if not token_string or len(token_string) > 4096:
            return None
        found = self.server.core.grants.find_refresh_family(self.server.tenant_id, token_string)
        if found is not None:
            return _RevocableToken(family_id=found[0], client_id=found[1])
        claims = self.server.peek_access_token(token_string)
        if claims is not None:
            return _RevocableToken(family_id=str(claims["gid"]), client_id=str(claims["client_id"]))
        return None

    def revoke_token(self, token: _RevocableToken, request: Any) -> None:
        # Revoking either token of a grant ends the grant: its refresh tokens and its access tokens.
        self.server.core.grants.revoke_family(
            self.server.tenant_id, token.family_id, reason="revocation_request", client_id=token.client_id
        )


@dataclass(frozen=True)
class _RevocableToken:
    family_id: str
    client_id: str

    def check_client(self, client: OAuthClient) -> bool:
        return client.client_id == self.client_id


class IdpAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        *,
        core: IdentityCore,
        cimd: MetadataDocumentResolver | None,
        tenant_id: str,
        issuer: str,
        resources: tuple[str, ...],
        default_resource: str | None,
        scopes_supported: tuple[str, ...],
        default_scopes: tuple[str, ...],
        client_credentials: bool = False,
        pkce_optional_for_confidential: bool = False,
        dynamic_registration: bool = True,
        api_resources: bool = False,
    ) -> None:
        super().__init__(scopes_supported=list(scopes_supported))
        self.core = core
        self.cimd = cimd
        self.tenant_id = tenant_id
        self.issuer = issuer
        self.resources = resources
        self.default_resource = default_resource
        self.default_scopes = default_scopes
        self.access_tokens = AccessTokenIssuer(core.keys, core.clock)
        # A tenant's issuer also issues tokens for the tenant's API resources; the MCP issuer only for /mcp.
        self.targets = ApiTargets(core, tenant_id, issuer, scopes_supported) if api_resources else None
        pkce = S256CodeChallenge(optional_for_confidential=pkce_optional_for_confidential)
        self.register_grant(AuthorizationCodeGrant, [pkce, IdTokens(self)])
        self.register_grant(RefreshTokenGrant)
        self.client_credentials = client_credentials
        self.dynamic_registration = dynamic_registration
        if client_credentials:
            self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(IdpRevocationEndpoint)
        self.register_extension(_Issuer(issuer))
        self.register_token_generator("default", self._generate_token)

    # --- authlib hooks -------------------------------------------------------------------------------

    def get_authorization_grant(self, request: Any) -> Any:
        response_type = request.payload.response_type
        if response_type and invalid_error_characters(response_type):
            # authlib quotes the response_type in an error description, which may only hold printable ASCII
            # without '"' and '\\': any other character turned a bad request into a server error. Refuse it without
            # quoting it, on the error page (no redirect for a request this malformed).
            raise UnsupportedResponseTypeError("(not printable)", "The response type is not supported.")
        return super().get_authorization_grant(request)

    async def prefetch_client(self, client_id: str | None) -> None:
        """Fetch a client ID metadata document on the event loop, ahead of the blocking work (authlib, in a worker
        thread) that will ask for the client: a slow document host then holds a socket, not a shared thread."""
        if self.cimd is not None and client_id and looks_like_metadata_url(client_id):
            await self.cimd.prefetch(self.tenant_id, client_id)

    def client_due(self, client_id: str) -> bool:
        """Whether looking ``client_id`` up would fetch its metadata document: :meth:`prefetch_client` first."""
        return self.cimd is not None and looks_like_metadata_url(client_id) and self.cimd.due(self.tenant_id, client_id)

    def query_client(self, client_id: str) -> OAuthClient | None:
        if not client_id or len(client_id) > 2048 or "\x00" in client_id:  # NUL: from a Basic header's base64
            return None
        client: Client | None
        if self.cimd is not None and looks_like_metadata_url(client_id):
            try:
                client = self.cimd.resolve(self.tenant_id, client_id)
            except ClientMetadataDocumentError as exc:
                raise InvalidClientError(description=exc.message) from None
            if client is None:
                return None
            return OAuthClient(client, self.core.clock, self.default_scopes)
        # The client and its secrets in one read transaction, for this request only; for a client-credentials
        # request naming an API, what the application holds on it too (the grant takes it from the request).
        request = _authenticating.get()
        resource = self._api_of_client_credentials(request)
        found = self.core.secrets.client_for_authentication(self.tenant_id, client_id, resource=resource)
        if found is None:
            return None
        if request is not None and found.resource is not None:
            request.prefetched_access = (client_id, found.resource, found.access)
        secrets = found.secrets
        return OAuthClient(
            found.client, self.core.clock, self.default_scopes, lambda _client, secret: secrets.verify(secret)
        )

    def _api_of_client_credentials(self, request: Any) -> str | None:
        """The one API a client-credentials token request names, when this issuer has API resources."""
        if self.targets is None or request is None or request.payload.grant_type != "client_credentials":
            return None
        requested = [value for value in request.payload.datalist.get("resource", []) if value != self.issuer]
        return requested[0] if len(requested) == 1 else None

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> OAuthClient:
        """authlib's client authentication, with one answer for every failure: an unknown client, a wrong or
        expired secret and a wrong method must look alike (same status, body and WWW-Authenticate), or the token,
        revocation and introspection endpoints tell which client ids exist."""
        authenticating = _authenticating.set(request if endpoint == "token" else None)
        try:
            client: OAuthClient = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            # An unknown client did no secret comparison: do one, so the failure takes about as long either way.
            _client_id, presented = extract_basic_authorization(request.headers)
            digests_equal(digest(presented or request.form.get("client_secret") or ""), _DUMMY_DIGEST)
            raise InvalidClientError(
                status_code=401 if "client_secret_basic" in methods else 400,
                description=CLIENT_AUTHENTICATION_FAILED,
            ) from None
        finally:
            _authenticating.reset(authenticating)
        return client

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        # The code and refresh grants store their refresh token themselves, in the transaction that spends the
        # code or rotates the old token; client credentials issues none.
        successor = self.successor(token, request)
        if successor is not None:
            self.core.grants.save_refresh_token(successor.token, successor.record)

    def successor(self, token: dict[str, Any], request: Any) -> Successor | None:
        """The refresh token in ``token`` with what it grants, or None when the response has none."""
        refresh_token = token.get("refresh_token")
        if not refresh_token:
            return None
        subject: TokenSubject = request.user
        previous = getattr(request, "refresh_token", None)
        return Successor(
            refresh_token,
            RefreshRecord(
                tenant_id=self.tenant_id,
                family_id=subject.family_id,
                client_id=request.client.client_id,
                user_id=subject.user_id,
                # A narrower refresh keeps the family's original scope for the next rotation.
                scope=previous.get_scope() if previous is not None else token["scope"],
                resource=subject.resource,
                acting_tenant_id=subject.acting_tenant_id,
                auth_time=subject.auth_time,
                expires_at=self.core.clock() + timedelta(seconds=self.core.settings.refresh_token_ttl),
                amr=subject.amr,
                acr=subject.acr,
            ),
        )

    def create_oauth2_request(self, request: Any) -> PlainOAuth2Request:
        assert isinstance(request, PlainOAuth2Request)
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError  # registration is handled outside authlib

    def handle_response(self, status: int, body: Any, headers: Any) -> EndpointResult:
        if isinstance(body, dict) and ACCESS_TOKEN_SCOPE in body:
            # The response names the access token's scope (RFC 6749 §5.1); until now the grant's scope was needed
            # (the ID token's claims, the refresh token's record).
            body = {**body, "scope": body[ACCESS_TOKEN_SCOPE]}
            del body[ACCESS_TOKEN_SCOPE]
        return EndpointResult(status, body, [(str(k), str(v)) for k, v in headers])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def _generate_token(
        self,
        grant_type: str,
        client: OAuthClient,
        user: TokenSubject | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        assert user is not None
        granted = scope or ""
        ttl = self.core.settings.access_token_ttl
        access_scope = granted
        if user.api is not None:
            # A token for an API resource carries the requested permissions the subject holds now (client
            # credentials without a scope: all it holds); OpenID scopes stay with the ID token and userinfo.
            wanted = None if grant_type == "client_credentials" and not granted else split_scope(granted)
            access_scope = join_scope(user.api.granted(wanted))
            ttl = user.api.access_token_ttl or ttl
        elif self.targets is not None:
            access_scope = join_scope([item for item in split_scope(granted) if item in self.scopes_supported])
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": self.access_tokens.issue(
                signing_tenant_id=self.tenant_id,
                issuer=self.issuer,
                subject=user,
                client_id=client.client_id,
                scope=access_scope,
                ttl_seconds=ttl,
            ),
            "expires_in": ttl,
            "scope": granted,
        }
        if access_scope != granted:
            token[ACCESS_TOKEN_SCOPE] = access_scope
        # Refresh tokens only when the grant has offline_access and the client may refresh. A narrower refresh
        # request narrows the access token, not the grant: rotation goes on with the grant's scope.
        grant_scope = split_scope(user.grant_scope if user.grant_scope is not None else granted)
        if include_refresh_token and SCOPE_OFFLINE in grant_scope and client.check_grant_type("refresh_token"):
            token["refresh_token"] = new_secret(32)
        return token

    # --- used by our endpoints -----------------------------------------------------------------------

    def code_expiry(self) -> datetime:
        return self.core.clock() + timedelta(seconds=self.core.settings.authorization_code_ttl)

    def peek_access_token(self, token: str) -> dict[str, Any] | None:
        """Claims of an access token this server signed (signature checked, expiry not), else None."""
        return decode_signed(self.core.keys, token, tenant_id=self.tenant_id, issuer=self.issuer, verify_exp=False)

    def error_result(self, request: PlainOAuth2Request, error: OAuth2Error) -> EndpointResult:
        result: EndpointResult = self.handle_error_response(request, error)
        return result

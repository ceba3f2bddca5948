"""Each tenant is an OpenID Provider of its own at ``<PUBLIC_URL>/t/<tenant>/oidc``.

One :class:`IdpAuthorizationServer` per tenant is built on first use and kept. The routes below dispatch on
the tenant in the path; a tenant that does not exist answers 404 before anything else happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.mfa import ACR_VALUES_SUPPORTED
from idp_mcp.domain import SCOPE_EMAIL, SCOPE_OFFLINE, SCOPE_OPENID, SCOPE_PROFILE, split_scope
from idp_mcp.errors import TenantNotFound
from idp_mcp.oauth.endpoints import (
    NO_STORE,
    AuthorizationServerEndpoints,
    ErrorPage,
    RedirectUriErrorPage,
    read_form,
    request_headers,
)
from idp_mcp.oauth.flow import AuthorizationFlow
from idp_mcp.oauth.lane import run_token_work
from idp_mcp.oauth.requests import PlainOAuth2Request
from idp_mcp.oauth.server import IdpAuthorizationServer
from idp_mcp.oauth.verifier import decode_signed
from idp_mcp.store.db import Database
from idp_mcp.store.transaction_tally import apart

T = TypeVar("T")

TENANT_SCOPES = (SCOPE_OPENID, SCOPE_PROFILE, SCOPE_EMAIL, SCOPE_OFFLINE)
CORS_CACHE_SECONDS = 5.0


def tenant_issuer(public_url: str, tenant_id: str) -> str:
    return f"{public_url}/t/{tenant_id}/oidc"


@dataclass(frozen=True)
class TenantProvider:
    tenant_id: str
    issuer: str
    server: IdpAuthorizationServer
    flow: AuthorizationFlow
    endpoints: AuthorizationServerEndpoints


class TenantProviders:
    def __init__(
        self, core: IdentityCore, error_page: ErrorPage, redirect_uri_error_page: RedirectUriErrorPage | None = None
    ) -> None:
        self.core = core
        self._error_page = error_page
        self._redirect_uri_error_page = redirect_uri_error_page
        self._providers: dict[str, TenantProvider] = {}
        self._lock = threading.Lock()
        self._cors: dict[str, tuple[float, frozenset[str]]] = {}

    def known(self, tenant_id: str) -> TenantProvider | None:
        """The provider of a tenant already served by this process: a dict hit, safe on the event loop."""
        return self._providers.get(tenant_id)

    def get(self, tenant_id: str) -> TenantProvider:
        """The tenant's provider; :class:`TenantNotFound` for an unknown (or the admin) tenant."""
        provider = self._providers.get(tenant_id)
        if provider is not None:
            return provider
        if tenant_id == "admin" or len(tenant_id) > 64 or "\x00" in tenant_id:  # NUL: PostgreSQL refuses it
            raise TenantNotFound(f"Tenant '{tenant_id[:64]}' does not exist.")
        # Built once per tenant and process, whatever the request: a cache fill, not the request's use case.
        with apart("building a tenant's provider (its first request in this process)"):
            return self._build(tenant_id)

    def _build(self, tenant_id: str) -> TenantProvider:
        self.core.tenants.get(tenant_id)  # raises TenantNotFound
        issuer = tenant_issuer(self.core.settings.public_url, tenant_id)
        server = IdpAuthorizationServer(
            core=self.core,
            cimd=None,
            tenant_id=tenant_id,
            issuer=issuer,
            resources=(issuer,),
            default_resource=issuer,
            scopes_supported=TENANT_SCOPES,
            default_scopes=(SCOPE_OPENID,),
            client_credentials=True,
            pkce_optional_for_confidential=True,
            dynamic_registration=False,
            api_resources=True,
        )
        self.core.keys.ensure(tenant_id)
        flow = AuthorizationFlow(server, f"{self.core.settings.public_url}/t/{tenant_id}/interaction")
        endpoints = AuthorizationServerEndpoints(
            server, flow, base_url=issuer, error_page=self._error_page,
            redirect_uri_error_page=self._redirect_uri_error_page,
        )  # fmt: skip
        provider = TenantProvider(tenant_id, issuer, server, flow, endpoints)
        with self._lock:
            return self._providers.setdefault(tenant_id, provider)

    def allowed_origins(self, tenant_id: str) -> frozenset[str]:
        """Origins that may call the token, userinfo and revocation endpoints: the SPAs' CORS origins."""
        cached = self._cors.get(tenant_id)
        if cached and time.monotonic() - cached[0] < CORS_CACHE_SECONDS:
            return cached[1]
        with apart("the tenant's CORS origins, public and cached for a few seconds (a cache fill)"):
            applications = self.core.applications.list(tenant_id)
        origins = frozenset(origin for app in applications if app.type == "spa" for origin in app.cors_origins)
        self._cors[tenant_id] = (time.monotonic(), origins)
        return origins


Handler = Callable[[TenantProvider, Request], Awaitable[Response]]


class TenantEndpoints:
    """Routes under /t/{tenant}/oidc for every tenant."""

    def __init__(self, providers: TenantProviders) -> None:
        self.providers = providers
        # A tenant's discovery document depends only on its issuer and this server's configuration: rendered once.
        self._discovery: dict[str, bytes] = {}

    def routes(self) -> list[BaseRoute]:
        prefix = "/t/{tenant}/oidc"
        cors = ["GET", "POST", "OPTIONS"]
        return [
            Route(f"{prefix}/.well-known/openid-configuration", self._wrap(self.discovery, True), methods=cors),
            Route(f"{prefix}/jwks", self._wrap(lambda p, r: p.endpoints.jwks(r), True), methods=cors),
            Route(f"{prefix}/authorize", self._wrap(lambda p, r: p.endpoints.authorize(r)), methods=["GET", "POST"]),
            Route(f"{prefix}/token", self._wrap(lambda p, r: p.endpoints.token(r), True), methods=cors),
            Route(f"{prefix}/revoke", self._wrap(lambda p, r: p.endpoints.revoke(r), True), methods=cors),
            Route(f"{prefix}/userinfo", self._wrap(self.userinfo, True), methods=cors),
            Route(f"{prefix}/introspect", self._wrap(self.introspect), methods=["POST"]),
        ]

    def _wrap(self, handler: Handler, cors: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            tenant_id = request.path_params["tenant"]
            try:
                # Known tenants are a dict hit: no thread hop on the hot path.
                provider = self.providers.known(tenant_id)
                if provider is None:
                    provider = await run_in_threadpool(self.providers.get, tenant_id)
            except TenantNotFound as exc:
                return JSONResponse({"error": "not_found", "error_description": exc.message}, status_code=404)
            origin = request.headers.get("origin")
            allowed = False
            if cors and origin:
                allowed = origin in await run_in_threadpool(self.providers.allowed_origins, tenant_id)
            if request.method == "OPTIONS":
                return _preflight(origin if allowed else None)
            response = await handler(provider, request)
            if allowed and origin:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Vary"] = "Origin"
            return response

        return endpoint

    async def discovery(self, provider: TenantProvider, request: Request) -> Response:
        body = self._discovery.get(provider.tenant_id)
        if body is None:
            body = self._discovery[provider.tenant_id] = bytes(JSONResponse(self._discovery_document(provider)).body)
        return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=300"})

    def _discovery_document(self, provider: TenantProvider) -> dict[str, Any]:
        base = provider.issuer
        document = provider.endpoints.metadata()
        document.update(
            {
                "userinfo_endpoint": f"{base}/userinfo",
                "introspection_endpoint": f"{base}/introspect",
                "end_session_endpoint": f"{base}/end-session",
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
                                     "email", "email_verified", "name", "preferred_username", "amr", "acr"],
                # Ask for MFA (step-up) with acr_values; the ID token's acr and amr say what happened (core.mfa).
                "acr_values_supported": list(ACR_VALUES_SUPPORTED),
                "request_parameter_supported": False,
            }
        )  # fmt: skip
        return document

    async def userinfo(self, provider: TenantProvider, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        db = self.providers.core.db
        claims = await run_token_work(db, _one_read, db, self._userinfo_claims, provider, token)
        if claims is None:
            return JSONResponse(
                {"error": "invalid_token", "error_description": "The access token is invalid, expired or revoked."},
                status_code=401,
                headers={**NO_STORE, "WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return JSONResponse(claims, headers=NO_STORE)

    def _userinfo_claims(self, provider: TenantProvider, token: str) -> dict[str, Any] | None:
        core = self.providers.core
        claims = decode_signed(
            core.keys, token, tenant_id=provider.tenant_id, issuer=provider.issuer, audience=provider.issuer
        )
        if claims is None or SCOPE_OPENID not in split_scope(str(claims["scope"])):
            return None
        if core.grants.is_family_revoked(str(claims["gid"])):
            return None
        if core.clients.get(provider.tenant_id, str(claims["client_id"])) is None:
            return None  # the application was deleted
        user = core.users.get(provider.tenant_id, str(claims["sub"]))
        if user is None or user.suspended:
            return None
        scopes = split_scope(str(claims["scope"]))
        info: dict[str, Any] = {"sub": user.id}
        if SCOPE_EMAIL in scopes and user.email:
            info["email"] = user.email
            info["email_verified"] = user.email_verified
        if SCOPE_PROFILE in scopes:
            # Claims without a value are left out rather than sent as null (OIDC Core §5.3.2).
            info |= {key: value for key, value in (("name", user.name), ("preferred_username", user.username)) if value}
        return info

    async def introspect(self, provider: TenantProvider, request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        oauth_request = PlainOAuth2Request("POST", f"{provider.issuer}/introspect", request_headers(request), {}, form)
        try:
            db = self.providers.core.db
            result = await run_token_work(db, _one_read, db, self._introspect, provider, oauth_request)
        except OAuth2Error as error:
            status, body, headers = error()
            return JSONResponse(body, status_code=status, headers={**dict(headers), **NO_STORE})
        return JSONResponse(result, headers=NO_STORE)

    def _introspect(self, provider: TenantProvider, request: PlainOAuth2Request) -> dict[str, Any]:
        """RFC 7662. A client learns only about its own tokens; anything else is simply inactive."""
        client = provider.server.authenticate_client(
            request, ["client_secret_basic", "client_secret_post"], "introspection"
        )
        token = request.form.get("token")
        if not token:
            return {"active": False}
        core = self.providers.core
        claims = decode_signed(core.keys, token, tenant_id=provider.tenant_id, issuer=provider.issuer)
        if claims is not None:
            if claims["client_id"] != client.client_id:
                return {"active": False}
            # A client-credentials token is its application's own (sub = client_id); any other is a user's, who must
            # still exist and not be suspended (suspension also revokes the grant; this holds for older grants too).
            user_id = None if claims["sub"] == claims["client_id"] else str(claims["sub"])
            if not core.grants.access_token_active(provider.tenant_id, str(claims["gid"]), user_id):
                return {"active": False}
            return {
                "active": True, "token_type": "Bearer", "client_id": claims["client_id"], "sub": claims["sub"],
                "scope": claims["scope"], "aud": claims["aud"], "iss": claims["iss"], "exp": claims["exp"],
                "iat": claims["iat"], "jti": claims["jti"],
            }  # fmt: skip
        record = core.grants.peek_refresh_token(provider.tenant_id, token)
        if record is None or record.client_id != client.client_id:
            return {"active": False}
        return {
            "active": True, "token_type": "refresh_token", "client_id": record.client_id, "sub": record.user_id,
            "scope": record.scope, "exp": int(record.expires_at.timestamp()),
        }  # fmt: skip


def _one_read(db: Database, work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in one read transaction: its look-ups (grant, client, user) see one snapshot."""
    with db.unit_of_work(writes=False):
        return work(*args)


def _preflight(origin: str | None) -> Response:
    if origin is None:
        return Response(status_code=400)
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )

"""Composition root: settings → core → authorization server → pages → MCP app → one Starlette app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, MCP_SCOPES, SCOPE_EMAIL, SCOPE_OFFLINE, SCOPE_OPENID, SCOPE_PROFILE
from idp_mcp.guides import GuideLibrary, default_directory
from idp_mcp.logs import configure_logging
from idp_mcp.mcp_server.front import MCP_METHODS, McpFront
from idp_mcp.mcp_server.registry import ToolRegistry
from idp_mcp.mcp_server.tools import all_tools
from idp_mcp.oauth.body_limit import BodyLimit, BodyLimits
from idp_mcp.oauth.cimd import MetadataDocumentResolver
from idp_mcp.oauth.endpoints import AuthorizationServerEndpoints, with_cors
from idp_mcp.oauth.flow import AuthorizationFlow
from idp_mcp.oauth.server import IdpAuthorizationServer
from idp_mcp.oauth.tenants import TenantEndpoints, TenantProviders
from idp_mcp.oauth.upstream import UpstreamSignIn
from idp_mcp.oauth.upstream_http import UpstreamHttp
from idp_mcp.settings import Settings
from idp_mcp.store.transaction_tally import tallied
from idp_mcp.web.connectors import ConnectorPages
from idp_mcp.web.console import Console
from idp_mcp.web.console_sign_in_experience import ConsoleSignInExperience
from idp_mcp.web.docs import Docs
from idp_mcp.web.hosted import HostedPages
from idp_mcp.web.hosted_experience import HostedExperiencePages
from idp_mcp.web.mfa import MfaPages
from idp_mcp.web.pages import Pages
from idp_mcp.web.passkeys import PasskeyPages
from idp_mcp.web.recovery import RecoveryPages
from idp_mcp.web.security import PAGE_CSP
from idp_mcp.web.session import CookieJar
from idp_mcp.web.tenant_errors import TenantErrorPages

if TYPE_CHECKING:
    from idp_mcp.mcp_server.server import McpApp

logger = logging.getLogger(__name__)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", PAGE_CSP.encode()),
]


class SecurityHeaders:
    """Pages must not be framed (clickjacking on consent) and must not leak URLs through Referer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: Requests whose use case opens more than one transaction, and why (IDP_MCP_DEBUG_TRANSACTION_TALLY; every other
#: request, and every MCP tool call, is one transaction at most).
TRANSACTION_BUDGETS: dict[str, tuple[int, str]] = {
    "POST /console/t/{tenant}/users": (
        2,
        "a read (the write role, checked before any hashing, and the list the form is on, shown again on a refusal), "
        "Argon2id outside any transaction (~50 ms: it must not hold SQLite's write lock), then the insert",
    ),
    "POST /console/t/{tenant}/users/{user_id}/password": (
        2,
        "a read (the write role, checked before any hashing, and the user's page, shown again on a refusal), "
        "Argon2id outside any transaction (~50 ms: it must not hold SQLite's write lock), then the write",
    ),
    "POST /sign-in": (
        2,
        "find the administrator and count the attempt; check the password (Argon2id, ~50 ms) outside any "
        "transaction; then record the success and start the session",
    ),
    "POST /setup": (
        2,
        "check that no administrator exists and the setup code; hash the password (Argon2id) outside any "
        "transaction; then create the administrator (checking again) and start the session",
    ),
    "GET /interaction/{id}": (
        2,
        "only when the client's metadata document is due for a refresh: it is fetched (network, on the event loop) "
        "between reading the interaction, which names the client, and the page's look-ups",
    ),
    "POST /interaction/{id}/consent": (
        2,
        "as GET /interaction/{id}: a client metadata document due for a refresh is fetched between reading the "
        "interaction and deciding",
    ),
    "POST /t/{tenant}/sign-in": (
        2,
        "a password sign-in: read the account and count the attempt, verify the Argon2id hash outside any "
        "transaction (tens of ms: it must not hold SQLite's write lock), then record the sign-in and the session",
    ),
    "POST /t/{tenant}/sign-up": (
        2,
        "a sign-up that sets a password: the checks read, the password is hashed with Argon2id outside any "
        "transaction (tens of ms: it must not hold SQLite's write lock), then the account and its session are written",
    ),
    "POST /t/{tenant}/forgot-password/reset": (
        2,
        "a password reset: the checks that need no account read, the new password is hashed with Argon2id "
        "outside any transaction (tens of ms: it must not hold SQLite's write lock), then the code is spent and "
        "the password set",
    ),
    "GET /t/{tenant}/oidc/connectors/{connector}/callback": (
        2,
        "an upstream sign-in's return: the state is used up (with the connector, its client secret and the "
        "interaction) in one transaction; the code is exchanged and the ID token checked against the provider's "
        "keys (network fetches, which must hold no transaction); then the user is found, linked or created and "
        "signed in (session, code for the application) in the other",
    ),
}


def route_label(scope: Scope) -> str:
    """``POST /t/{tenant}/sign-in``: the method and the path with each path parameter's value put back as its name."""
    path = scope["path"]
    for name, value in (scope.get("path_params") or {}).items():
        if isinstance(value, str) and value:
            path = path.replace(f"/{value}", f"/{{{name}}}", 1)
    return f"{scope['method']} {path}"


class IdpApp(Starlette):
    """The app, with one fast path: a request to exactly ``/mcp`` goes straight to the MCP endpoint (bearer check,
    then the SDK's transport), past the router's route table and the middleware. Those add nothing there: the
    security headers are for HTML pages (an MCP client neither frames nor renders JSON-RPC), and the SDK answers
    its own errors. Anything else at /mcp (another method, a root path) takes the ordinary way to the same endpoint.
    The body limit applies on both ways: the fast path wraps the endpoint in it too.
    """

    def __init__(
        self, *args: Any, mcp_endpoint: ASGIApp, mcp_methods: tuple[str, ...], tally: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._mcp_endpoint = mcp_endpoint
        self._mcp_methods = frozenset(mcp_methods)
        self._tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._tally and scope["type"] == "http":
            # IDP_MCP_DEBUG_TRANSACTION_TALLY: a request is one use case, one transaction (see transaction_tally).
            with tallied(f"{scope['method']} {scope['path']}") as tally:
                try:
                    await self._dispatch(scope, receive, send)
                finally:
                    tally.label = route_label(scope)
                    tally.budget = TRANSACTION_BUDGETS.get(tally.label, (1, ""))[0]
            return
        await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/mcp"
            and not scope.get("root_path")
            and scope["method"] in self._mcp_methods
        ):
            scope["app"] = self
            await self._mcp_endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, core: IdentityCore | None = None, *, announce_setup_code: bool = True
) -> Starlette:
    """The whole app. ``announce_setup_code``: while no administrator exists, log a fresh one-time setup code for
    the first-administrator page (off for ``idp-mcp serve``, which prints it in its start-up block, and in uvicorn's
    worker processes, whose parent announced one already)."""
    settings = settings or Settings()
    core = core or IdentityCore.from_settings(settings)
    core.bootstrap()
    if announce_setup_code:
        _announce_setup_code(core, settings)

    registry = ToolRegistry(all_tools())
    guides = GuideLibrary.load(default_directory(), registry.names())

    cimd = MetadataDocumentResolver(settings, core.clients)
    # One per app, like the resolver's fetcher: its DNS threads and caps in flight are shared by every request.
    upstream_http = UpstreamHttp(settings)
    server = IdpAuthorizationServer(
        core=core,
        cimd=cimd,
        tenant_id=ADMIN_TENANT_ID,
        issuer=settings.issuer,
        resources=(settings.mcp_resource,),
        default_resource=settings.mcp_resource,
        scopes_supported=(*MCP_SCOPES, SCOPE_OFFLINE, SCOPE_OPENID, SCOPE_PROFILE, SCOPE_EMAIL),
        default_scopes=MCP_SCOPES,
    )
    flow = AuthorizationFlow(server, settings.url("/interaction"))
    pages = Pages(core, flow, CookieJar(settings), settings.mcp_resource)
    endpoints = AuthorizationServerEndpoints(
        server, flow, base_url=settings.url("/oauth"), error_page=pages.error_page, signed_in=pages.signed_in
    )

    def load_mcp() -> McpApp:
        # In a worker thread once the server is up (McpFront.lifespan): the MCP SDK is ~0.5 s of imports that the
        # 401 to a client without a token, the pages and the OAuth endpoints do not need.
        from idp_mcp.mcp_server.server import McpApp

        return McpApp(settings, core, registry, guides, upstream=upstream_http)

    mcp = McpFront(settings, load_mcp)
    tenant_errors = TenantErrorPages(pages)  # a tenant's error pages in its branding
    pages.tenant_error_page = tenant_errors.error_page
    providers = TenantProviders(core, pages.error_page, redirect_uri_error_page=tenant_errors.redirect_uri_error)
    hosted = HostedPages(pages, providers)
    console = Console(pages, settings)
    upstream = UpstreamSignIn(upstream_http, allow_http_loopback=settings.cimd_allow_private_addresses)
    connector_pages = ConnectorPages(hosted, console, upstream, settings)
    mfa_pages = MfaPages(hosted)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    metadata = with_cors(endpoints.metadata_endpoint, ["GET"])
    routes = [
        Route("/healthz", health, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET", "OPTIONS"]),
        Route("/.well-known/openid-configuration", metadata, methods=["GET", "OPTIONS"]),
        *endpoints.routes("/oauth"),
        *mcp.routes(),
        *TenantEndpoints(providers).routes(),
        *hosted.routes(),
        *HostedExperiencePages(hosted).routes(),
        *RecoveryPages(hosted).routes(),
        *mfa_pages.routes(),
        *connector_pages.routes(),
        *PasskeyPages(hosted, mfa_pages).routes(),
        *pages.routes(),
        *console.routes(),
        *ConsoleSignInExperience(console).routes(),
        *Docs(pages, guides, settings).routes(),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp.lifespan():
            yield
        cimd.close()
        upstream_http.close()
        core.close()

    limits = BodyLimits(default=settings.max_body_bytes, mcp=settings.mcp_max_body_bytes)
    app = IdpApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders), Middleware(BodyLimit, limits=limits)],
        mcp_endpoint=BodyLimit(mcp, limits),
        mcp_methods=MCP_METHODS,
        tally=settings.debug_transaction_tally,
        exception_handlers={404: pages.not_found},
    )
    app.state.core = core
    app.state.settings = settings
    return app


def _announce_setup_code(core: IdentityCore, settings: Settings) -> None:
    code = core.setup_codes.issue()
    if code is None:
        return
    # Shown on purpose, once, like Jupyter's token: whoever reads this console may create the first administrator.
    logger.warning(
        "No administrator yet. Create the first one at %s/setup and give this one-time setup code on the page: %s "
        "(not needed from this machine when the public URL is a loopback one; or run: idp-mcp admin create)",
        settings.public_url,
        code,
    )


def create_app_from_env() -> Starlette:
    """The app from the environment, for ``uvicorn --factory idp_mcp.app:create_app_from_env``: each of uvicorn's
    worker processes imports and calls it (workers need an import string, not an app object)."""
    settings = Settings()
    configure_logging(settings.log_level)  # workers are fresh processes: their logging is set up here
    return create_app(settings, announce_setup_code=False)

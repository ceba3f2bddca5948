"""Starlette handlers for the authorization server: thin conversions around authlib and the core."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, QueryParams
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp

from idp_mcp.core.clients import parse_client_metadata
from idp_mcp.domain import contains_nul
from idp_mcp.errors import IdpError, RegistrationThrottled
from idp_mcp.oauth.flow import AuthorizationFlow
from idp_mcp.oauth.lane import run_token_work
from idp_mcp.oauth.metadata import authorization_server_metadata
from idp_mcp.oauth.requests import PlainOAuth2Request
from idp_mcp.oauth.server import EndpointResult, IdpAuthorizationServer

T = TypeVar("T")

ErrorPage = Callable[[Request, str, str, int], Awaitable[Response]]
# (request, client id, the redirect URI refused, error, description): the page for a known client's unregistered
# redirect URI, which shows the URI and how to register it.
RedirectUriErrorPage = Callable[[Request, str, str, str, str], Awaitable[Response]]
# Whether the browser has a session at this issuer: called in the worker thread, inside the authorization
# request's transaction (the web layer knows its cookies).
SignedIn = Callable[[Request], bool]

MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


NUL_REFUSED = "Parameters must not contain NUL characters."


def oauth_error(error: str, description: str, status: int = 400, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def _multi(params: QueryParams | FormData) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in params.multi_items():
        if isinstance(value, str):
            values.setdefault(key, []).append(value)
    return values


def request_headers(request: Request) -> dict[str, str]:
    """The headers authlib reads: only ``Authorization`` (client authentication; the body is parsed here)."""
    # Value stripped as HTTP servers do (RFC 9110 §5.5): authlib splits "Authorization: Basic " on whitespace
    # and expects two parts, so a bare scheme with a trailing space raised instead of failing client auth.
    authorization = request.headers.get("authorization")
    return {} if authorization is None else {"Authorization": authorization.strip()}


async def read_form(request: Request) -> dict[str, list[str]] | JSONResponse:
    """The urlencoded body of an OAuth request, or the OAuth error to answer with."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "Send the parameters as application/x-www-form-urlencoded.")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return oauth_error("invalid_request", "The request body is too large.")
    try:
        form = await request.form()
    except Exception:  # starlette raises several parser errors for malformed bodies
        return oauth_error("invalid_request", "The request body is not valid form data.")
    params = _multi(form)
    if contains_nul(params):
        return oauth_error("invalid_request", NUL_REFUSED)
    return params


def to_response(result: EndpointResult) -> Response:
    headers = {name: value for name, value in result.headers if name.lower() != "content-type"}
    if result.status in (301, 302, 303, 307):
        return RedirectResponse(result.location or "/", status_code=302, headers=headers)
    body = result.body if isinstance(result.body, str) else json.dumps(result.body)
    return Response(body, status_code=result.status, headers=headers, media_type="application/json")


def with_cors(endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]) -> ASGIApp:
    """Browser-based clients (MCP Inspector) call these endpoints cross-origin. No cookies are involved."""
    return CORSMiddleware(
        request_response(endpoint),
        allow_origins=["*"],
        allow_methods=[*methods, "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "MCP-Protocol-Version"],
        max_age=600,
    )


class AuthorizationServerEndpoints:
    """The endpoints of one issuer, mounted under ``prefix`` (for the MCP issuer: ``/oauth``)."""

    def __init__(
        self,
        server: IdpAuthorizationServer,
        flow: AuthorizationFlow,
        *,
        base_url: str,
        error_page: ErrorPage,
        signed_in: SignedIn | None = None,
        redirect_uri_error_page: RedirectUriErrorPage | None = None,
    ) -> None:
        self.server = server
        self.flow = flow
        self.base_url = base_url
        self.error_page = error_page
        self.redirect_uri_error_page = redirect_uri_error_page
        self._signed_in = signed_in
        # An issuer that resolves client ID metadata documents may wait on the network in a token request.
        self._lane_db = server.core.db if server.cimd is None else None

    def routes(self, prefix: str) -> list[BaseRoute]:
        return [
            Route(f"{prefix}/authorize", self.authorize, methods=["GET", "POST"]),
            Route(f"{prefix}/token", with_cors(self.token, ["POST"]), methods=["POST", "OPTIONS"]),
            Route(f"{prefix}/revoke", with_cors(self.revoke, ["POST"]), methods=["POST", "OPTIONS"]),
            Route(f"{prefix}/register", with_cors(self.register, ["POST"]), methods=["POST", "OPTIONS"]),
            Route(f"{prefix}/jwks", with_cors(self.jwks, ["GET"]), methods=["GET", "OPTIONS"]),
        ]

    def metadata(self) -> dict[str, Any]:
        return authorization_server_metadata(self.server, self.base_url)

    async def metadata_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.metadata(), headers={"Cache-Control": "public, max-age=300"})

    async def authorize(self, request: Request) -> Response:
        if request.method == "POST":
            form = await read_form(request)
            if isinstance(form, Response):
                return await self.error_page(request, "invalid_request", "The authorization request is malformed.", 400)
            params = form
        else:
            params = _multi(request.query_params)
            if contains_nul(params):
                return await self.error_page(request, "invalid_request", NUL_REFUSED, 400)
        await self._prefetch_client(params)
        oauth_request = PlainOAuth2Request("GET", f"{self.base_url}/authorize", request_headers(request), params)
        session_check = self._signed_in
        signed_in = (lambda: session_check(request)) if session_check is not None else (lambda: False)
        outcome = await run_in_threadpool(lambda: self.flow.start(oauth_request, signed_in=signed_in))
        if outcome.redirect_to:
            return RedirectResponse(outcome.redirect_to, status_code=302, headers={"Cache-Control": "no-store"})
        description = outcome.error_description or "The authorization request is invalid."
        error = outcome.error or "invalid_request"
        if outcome.rejected_redirect_uri and outcome.client_id and self.redirect_uri_error_page is not None:
            return await self.redirect_uri_error_page(
                request, outcome.client_id, outcome.rejected_redirect_uri, error, description
            )
        return await self.error_page(request, error, description, 400)

    async def token(self, request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        await self._prefetch_client(form)
        oauth_request = PlainOAuth2Request("POST", f"{self.base_url}/token", request_headers(request), {}, form)
        # Client credentials only read; the other grants spend a code or a refresh token and store its successor.
        writes = form.get("grant_type") != ["client_credentials"]
        result = await run_token_work(
            self._lane_db, self._one_transaction, writes, self.server.create_token_response, oauth_request
        )
        return to_response(result)

    async def revoke(self, request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        await self._prefetch_client(form)
        oauth_request = PlainOAuth2Request("POST", f"{self.base_url}/revoke", request_headers(request), {}, form)
        result = await run_token_work(
            self._lane_db,
            self._one_transaction,
            True,
            self.server.create_endpoint_response,
            "revocation",
            oauth_request,
        )
        return to_response(result)

    def _one_transaction(self, writes: bool, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` as one transaction: authlib's look-ups and the grant's writes commit together. (A client
        ID metadata document was fetched before, on the event loop: see ``_prefetch_client``.)"""
        with self.server.core.db.unit_of_work(writes=writes):
            return work(*args)

    async def _prefetch_client(self, params: dict[str, list[str]]) -> None:
        client_ids = params.get("client_id") or []
        if len(client_ids) == 1:
            await self.server.prefetch_client(client_ids[0])

    async def jwks(self, request: Request) -> Response:
        keys = await run_in_threadpool(self.server.core.keys.jwks, self.server.tenant_id)
        return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300"})

    async def register(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return oauth_error("invalid_client_metadata", "Send the client metadata as application/json.")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return oauth_error("invalid_client_metadata", "The client metadata is too large.")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # deeply nested arrays exhaust the parser's recursion limit
            return oauth_error("invalid_client_metadata", "The request body is not valid JSON.")
        if contains_nul(payload):
            return oauth_error("invalid_client_metadata", NUL_REFUSED)
        # The address uvicorn reports (behind a trusted proxy: X-Forwarded-For), counted against the registration limit.
        address = request.client.host if request.client else ""
        try:
            metadata = parse_client_metadata(payload)
            registration = await run_in_threadpool(
                lambda: self.server.core.clients.register(self.server.tenant_id, metadata, client_address=address)
            )
        except RegistrationThrottled as exc:
            return oauth_error(exc.oauth_error, exc.message, exc.status, {"Retry-After": str(exc.retry_after)})
        except IdpError as exc:
            return oauth_error(exc.oauth_error, exc.message)
        client = registration.client
        document: dict[str, Any] = {
            **client.metadata,
            "client_id": client.client_id,
            "client_id_issued_at": int(client.created_at.timestamp()) if client.created_at else None,
            "client_name": client.name,
            "redirect_uris": list(client.redirect_uris),
            "grant_types": list(client.grant_types),
            "response_types": list(client.response_types),
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
        }
        if registration.client_secret:
            document["client_secret"] = registration.client_secret
            document["client_secret_expires_at"] = 0
        return JSONResponse(document, status_code=201, headers=NO_STORE)

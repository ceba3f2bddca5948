"""/mcp before the MCP SDK is loaded: the SDK and its protocol types cost ~0.5 s of imports, so the server starts
without them, loads them in a worker thread once it is up, and answers what needs no SDK in the meantime.

What needs no SDK: the 401 to a request without a bearer token (the first thing every client sends, and what
start-up is measured to) and the RFC 9728 metadata. This module imports nothing of ``mcp``: keep it that way.
A request with a bearer token waits for the load; once loaded, every request goes to the SDK's endpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from idp_mcp.domain import MCP_SCOPES, SCOPE_OFFLINE
from idp_mcp.oauth.endpoints import with_cors
from idp_mcp.settings import Settings

if TYPE_CHECKING:
    from idp_mcp.mcp_server.server import McpApp

logger = logging.getLogger(__name__)

#: Methods the transport serves at /mcp.
MCP_METHODS = ("GET", "POST", "DELETE")
#: The ``scope`` a 401 tells a client to ask for (RFC 6750 §3).
CHALLENGE_SCOPE = " ".join((*MCP_SCOPES, SCOPE_OFFLINE))


def resource_metadata_url(settings: Settings) -> str:
    return f"{settings.public_url}/.well-known/oauth-protected-resource/mcp"


def protected_resource_routes(settings: Settings) -> list[BaseRoute]:
    """RFC 9728 metadata, written by hand rather than with the SDK's route: pydantic's AnyHttpUrl would add a
    trailing slash to the issuer, and issuers are compared as exact strings."""
    document = {
        "resource": settings.mcp_resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": [*MCP_SCOPES, SCOPE_OFFLINE],
        "bearer_methods_supported": ["header"],
        "resource_name": "idp-mcp",
        "resource_documentation": settings.url("/"),
    }

    async def protected_resource_metadata(request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})

    prm = with_cors(protected_resource_metadata, ["GET"])
    return [
        Route("/.well-known/oauth-protected-resource/mcp", prm, methods=["GET", "OPTIONS"]),
        # Also at the bare well-known path, for clients that look there first.
        Route("/.well-known/oauth-protected-resource", prm, methods=["GET", "OPTIONS"]),
    ]


Headers = list[tuple[bytes, bytes]]


def bearer_refusal(error: str, description: str, metadata_url: str, scope: str) -> tuple[Headers, bytes]:
    """Headers and body of a 401/403 from /mcp (RFC 6750 §3 with RFC 9728's ``resource_metadata``): the same bytes
    before the SDK is loaded (McpFront) and after (BearerGate)."""
    www_authenticate = (
        f'Bearer error="{error}", error_description="{description}", resource_metadata="{metadata_url}"'
        f', scope="{scope}"'
    )
    body = json.dumps({"error": error, "error_description": description}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", www_authenticate.encode()),
    ]
    return headers, body


def _has_bearer(scope: Scope) -> bool:
    """Whether the SDK's BearerAuthBackend would look at a token: the first Authorization header starts with
    ``Bearer `` (any case). Without one it refuses the request without calling the verifier."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name.lower() == b"authorization":
            return value[:7].lower() == b"bearer "
    return False


class McpFront:
    """The /mcp route and the metadata routes, the SDK loaded in the background by :meth:`lifespan`."""

    def __init__(self, settings: Settings, load: Callable[[], McpApp]) -> None:
        self.settings = settings
        self._load = load
        self._endpoint: ASGIApp | None = None
        self._ready: anyio.Event | None = None  # set once the load succeeded or failed; made by the lifespan
        self._failed: BaseException | None = None
        self._unauthorized = bearer_refusal(
            "invalid_token", "Authentication required", resource_metadata_url(settings), CHALLENGE_SCOPE
        )

    def routes(self) -> list[BaseRoute]:
        return [*protected_resource_routes(self.settings), Route("/mcp", endpoint=self, methods=list(MCP_METHODS))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            if not _has_bearer(scope):
                headers, body = self._unauthorized
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            endpoint = await self._wait()
        await endpoint(scope, receive, send)

    async def _wait(self) -> ASGIApp:
        if self._ready is None:
            raise RuntimeError("the MCP endpoint is not running: the app's lifespan must be entered first")
        await self._ready.wait()
        if self._endpoint is None:
            raise RuntimeError("the MCP server failed to load; see the log") from self._failed
        return self._endpoint

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Load the SDK in a worker thread and run its session manager until the app stops."""
        stop, ready = anyio.Event(), anyio.Event()
        self._ready, self._failed = ready, None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._run, stop, ready)
            try:
                yield
            finally:
                stop.set()
        self._ready = None

    async def _run(self, stop: anyio.Event, ready: anyio.Event) -> None:
        try:
            mcp = await anyio.to_thread.run_sync(self._load)
        except Exception as exc:
            logger.exception("the MCP server failed to load")
            self._failed = exc
            ready.set()
            return
        if stop.is_set():  # the app stopped while the SDK was loading
            ready.set()
            return
        try:
            async with mcp.lifespan():
                self._endpoint = mcp.endpoint
                ready.set()
                await stop.wait()
        finally:
            self._endpoint = None

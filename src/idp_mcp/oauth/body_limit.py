"""Request body limits, enforced while the body arrives: a request whose body is larger than its limit is answered
413 without being read further, so memory stays flat whatever a client sends.

A declared ``Content-Length`` over the limit is refused before a byte of the body is read. A body without one
(chunked) is counted as ``receive()`` yields it and refused as soon as the count passes the limit. A body within
the limit is read here (it is at most the limit) and handed to the app unchanged, so no handler, and not the MCP
SDK that reads bodies itself, can be made to buffer more, and none needs a limit of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Tenant issuers' endpoints live under /t/<tenant>/oidc/.
_OAUTH_SEGMENT = "/oidc/"


@dataclass(frozen=True)
class BodyLimits:
    """Largest accepted request body, in bytes: at ``/mcp`` (JSON-RPC) and everywhere else (forms, OAuth, DCR)."""

    default: int
    mcp: int

    def for_path(self, path: str) -> int:
        return self.mcp if path == "/mcp" or path.startswith("/mcp/") else self.default


class _TooLarge(Exception):
    pass


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed Content-Length before we are called
    return None


def _is_oauth_path(path: str) -> bool:
    """Whether errors at ``path`` are OAuth-style JSON (RFC 6749 §5.2): the MCP issuer's and tenant issuers'."""
    return path.startswith("/oauth/") or (path.startswith("/t/") and _OAUTH_SEGMENT in path)


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    path: str = scope["path"]
    description = f"The request body is larger than {limit} bytes."
    if _is_oauth_path(path) or path == "/mcp":
        body = json.dumps({"error": "invalid_request", "error_description": description}).encode()
        content_type = b"application/json"
    else:
        body = f"413 Request body too large: at most {limit} bytes.\n".encode()
        content_type = b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        # The rest of the body is never read: the connection cannot carry another request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_within(receive: Receive, limit: int) -> list[Message]:
    """The request's body messages, read until the last one, or :class:`_TooLarge` as soon as they pass ``limit``."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages  # the client went away: the app sees the disconnect
        size += len(message.get("body", b""))
        if size > limit:
            raise _TooLarge
        if not message.get("more_body", False):
            return messages


class BodyLimit:
    """ASGI middleware applying :class:`BodyLimits` to every HTTP request it passes on."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, limit)
            return
        try:
            messages = await _read_within(receive, limit)
        except _TooLarge:
            await _refuse(scope, send, limit)
            return
        if len(messages) > 1:
            # Hand the app one message with the whole body, as a server does for a small Content-Length body.
            last = messages[-1]
            body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
            first: Message = {"type": "http.request", "body": body, "more_body": False}
            messages = [first] if last["type"] == "http.request" else [first, last]

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

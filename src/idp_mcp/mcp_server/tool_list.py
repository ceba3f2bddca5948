"""``tools/list`` answered from memory, in its wire form.

The SDK shapes every result for the wire on every request: it dumps the handler's model, then validates and dumps
it again against the protocol version's schema. For ``tools/list`` that is every tool's JSON schema, three passes
of pydantic over ~50 tools: 10-12 ms of CPU per call (bench/inprocess.py), against ~1 ms for a tool call, and
stateless clients list often. The answer depends only on the scopes the token was granted (which tools it may see)
and the protocol version (the schema the SDK shapes it to), and the registry does not change while the process
runs, so the first answer the SDK shapes for a (scopes, version) pair is kept and returned as it is afterwards.

Only a plain listing is answered from memory: a request with a cursor, or one on a connection whose handshake is
not done (the SDK refuses those), takes the SDK's full path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

TokenOf = Callable[[ServerRequestContext[Any]], AccessToken | None]


class ToolListAnswers:
    """A server middleware (``Server.middleware``) that keeps the wire form of ``tools/list`` per scopes and version."""

    def __init__(self, token_of: TokenOf) -> None:
        self._token_of = token_of
        self._answers: dict[tuple[frozenset[str], str], dict[str, Any]] = {}

    async def __call__(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list" or not _plain_listing(ctx.params) or not _handshake_done(ctx):
            return await call_next(ctx)
        token = self._token_of(ctx)
        if token is None:
            return await call_next(ctx)
        key = (frozenset(token.scopes), ctx.protocol_version)
        answer = self._answers.get(key)
        if answer is None:
            result = await call_next(ctx)
            if not isinstance(result, dict):
                return result
            # The SDK copies the top level of what a middleware returns; nothing below it is ever changed.
            answer = self._answers.setdefault(key, result)
        return answer


def _plain_listing(params: Any) -> bool:
    return params is None or (isinstance(params, dict) and set(params) <= {"_meta"})


def _handshake_done(ctx: ServerRequestContext[Any]) -> bool:
    """Whether the SDK would serve a request on this connection: 2026-07-28 connections need no handshake; older
    ones once ``initialize`` recorded the client's parameters."""
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS or ctx.session.client_params is not None

"""The streamable-HTTP MCP app at /mcp: bearer auth with the SDK's middleware, tools from the registry."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any

import anyio
import mcp_types as types
from mcp.server.auth.middleware.auth_context import auth_context_var, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.authentication import AuthCredentials
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from idp_mcp import __version__
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.tenants import withheld_scopes
from idp_mcp.domain import ADMIN_TENANT_ID, Actor, contains_nul, split_scope
from idp_mcp.errors import IdpError
from idp_mcp.guides import GuideLibrary
from idp_mcp.mcp_server.front import (
    CHALLENGE_SCOPE,
    bearer_refusal,
    resource_metadata_url,
)
from idp_mcp.mcp_server.registry import Confirm, OpenUrl, ToolContext, ToolFailure, ToolRegistry, ToolSpec
from idp_mcp.mcp_server.tool_list import ToolListAnswers
from idp_mcp.oauth.upstream_http import UpstreamHttp
from idp_mcp.oauth.verifier import McpTokenVerifier
from idp_mcp.settings import Settings
from idp_mcp.store.transaction_tally import apart, tallied

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "This server administers an identity provider (OAuth 2.1 / OpenID Connect). Call getTenantInfo first, "
    "then listInstructions and getInstructions to read the guide for the task before changing anything. "
    "Secrets returned by tools are temporary; long-lived secrets exist only in the web console."
)

#: How long a confirmation question waits for the human before it counts as "no".
CONFIRM_TIMEOUT_SECONDS = 300.0
#: How long the agent's name and the human's email (labels of audit rows and of getTenantInfo) are reused.
NAMES_TTL_SECONDS = 30.0
CONFIRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "confirm": {"type": "boolean", "title": "Yes, go ahead", "description": "Tick to confirm.", "default": False}
    },
    "required": ["confirm"],
}


class BearerGate:
    """The bearer check in front of the SDK's transport, as one ASGI callable instead of a nested Starlette app with
    the SDK's AuthenticationMiddleware, AuthContextMiddleware and RequireAuthMiddleware, with the same behaviour:

    - the token is the value after ``Bearer `` (any case) in the first Authorization header, checked by the verifier
      and refused once its ``expires_at`` has passed (as ``BearerAuthBackend``);
    - without a valid token: 401, ``{"error": "invalid_token", ...}`` and ``WWW-Authenticate: Bearer error=...,
      error_description=..., resource_metadata="<RFC 9728 URL>", scope="<scopes to ask for>"`` (RFC 6750 §3);
    - with one lacking a scope in ``required_scopes``: 403 ``insufficient_scope`` (as ``RequireAuthMiddleware``);
    - otherwise the request goes on with ``scope["user"]`` (an ``AuthenticatedUser``: the SDK binds sessions to its
      principal), ``scope["auth"]`` and the SDK's auth context variable set.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: McpTokenVerifier,
        *,
        resource_metadata_url: str,
        scope: str,
        required_scopes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.required_scopes = required_scopes
        self._resource_metadata_url = resource_metadata_url
        self._scope = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = await self._authenticate(scope)
        if info is None:
            await self._refuse(send, 401, "invalid_token", "Authentication required")
            return
        for required in self.required_scopes:
            if required not in info.scopes:
                await self._refuse(send, 403, "insufficient_scope", f"Required scope: {required}")
                return
        user = AuthenticatedUser(info)
        scope["user"] = user
        scope["auth"] = AuthCredentials(info.scopes)
        reset = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(reset)

    async def _authenticate(self, scope: Scope) -> AccessToken | None:
        header = next((value for name, value in scope["headers"] if name.lower() == b"authorization"), None)
        if header is None or header[:7].lower() != b"bearer ":
            return None
        info = await self.verifier.verify_token(header[7:].decode("latin-1"))
        if info is None or (info.expires_at and info.expires_at < int(time.time())):
            return None
        return info

    async def _refuse(self, send: Send, status: int, error: str, description: str) -> None:
        headers, body = bearer_refusal(error, description, self._resource_metadata_url, self._scope)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _access_token(ctx: ServerRequestContext[Any]) -> AccessToken | None:
    request = ctx.request
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if isinstance(user, AuthenticatedUser):
        return user.access_token
    return get_access_token()


class McpApp:
    def __init__(
        self,
        settings: Settings,
        core: IdentityCore,
        registry: ToolRegistry,
        guides: GuideLibrary,
        *,
        upstream: UpstreamHttp,
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.core = core
        self.registry = registry
        self.guides = guides
        self.verifier = McpTokenVerifier(
            core.keys,
            core.grants,
            tenant_id=ADMIN_TENANT_ID,
            issuer=settings.issuer,
            resource=settings.mcp_resource,
            subject_active=self._subject_active,
        )
        self.server: Server[Any] = Server(
            "idp-mcp",
            version=__version__,
            title="idp-mcp",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.server.middleware.append(ToolListAnswers(_access_token))
        self._names: dict[tuple[str, str, str], tuple[float, Actor, str | None]] = {}
        self.session_manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=settings.mcp_stateless,
            security_settings=self._transport_security(),
        )
        # /mcp itself: the bearer check, then straight into the SDK's transport. app.py also calls it before its
        # router and middleware for requests to exactly /mcp.
        self.endpoint = BearerGate(
            self.session_manager.handle_request,
            self.verifier,
            resource_metadata_url=resource_metadata_url(settings),
            scope=CHALLENGE_SCOPE,
        )
        self._tool_names: dict[frozenset[str], tuple[str, ...]] = {}
        self._tool_lists: dict[frozenset[str], types.ListToolsResult] = {}

    def _subject_active(self, sub: str, client_id: str, tenant: str) -> frozenset[str] | None:
        """A token speaks for an administrator who may still act on its tenant, through a client that still exists;
        the scopes their role there withholds (a read-only member's write access) are not usable, whatever the
        consent granted."""
        with self.core.db.unit_of_work(writes=False):
            role = self.core.users.administrator_role(sub, tenant)
            if role is None or self.core.clients.get(ADMIN_TENANT_ID, client_id) is None:
                return None
        return withheld_scopes(role)

    def _transport_security(self) -> TransportSecuritySettings:
        """DNS-rebinding protection that follows PUBLIC_URL: its host, and browser origins of itself only."""
        host = self.settings.public_host
        hosts = [host]
        origins = [self.settings.public_url]
        if host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]"):
            hosts += ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
            origins += ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        )

    # --- routes -------------------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        try:
            async with self.session_manager.run():
                yield
        finally:
            # Commit the tool calls' queued audit rows before the process (and the database engine) goes away, even
            # when shutdown cancels this task.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self.core.audit.close)

    # --- handlers -----------------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        token = _access_token(ctx)
        scopes = frozenset(token.scopes if token else ())
        # The registry does not change while the process runs, and building every tool's JSON schema costs
        # ~1 ms a tool: describe each set of scopes once (and ToolListAnswers keeps the SDK's wire form of it).
        listed = self._tool_lists.get(scopes)
        if listed is None:
            listed = types.ListToolsResult(tools=[_describe(tool) for tool in self.registry.allowed(scopes)])
            self._tool_lists[scopes] = listed
        return listed

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        token = _access_token(ctx)
        if token is None:  # the bearer gate already refused requests without a token; belt and braces
            return _error("Not authenticated: reconnect this MCP server to sign in again.")
        context = await self._context(token, _confirmer(ctx), _url_opener(ctx))
        name = params.name[:64]
        # Argument names only until they are validated: a value could be a password.
        names = {"argument_names": sorted(str(key)[:64] for key in (params.arguments or {}))[:20]}
        tool = self.registry.get(params.name)
        # Refused calls and read tools change nothing: their rows are queued (committed within the audit log's flush
        # interval, without a write transaction per call). A write tool's row is committed before its answer.
        if tool is None:
            self._audit_call(context, name, names, "failure", "tool.unknown")
            return _error(f"Unknown tool '{name}'. Call tools/list to see the tools you can use.")
        if tool.scope not in token.scopes:
            self._audit_call(context, name, names, "failure", "auth.insufficient_scope")
            if tool.scope in split_scope(str((token.claims or {}).get("scope", ""))):
                # Granted at consent, withheld by the administrator's role in the tenant now.
                return _error(
                    f"{tool.name} changes the tenant, and your role in tenant '{context.actor.tenant_id}' is "
                    "read-only. Ask one of its owners to make you an admin; until then, only read tools work."
                )
            return _error(
                f"{tool.name} needs the '{tool.scope}' permission, which this connection was not granted. "
                "Reconnect this MCP server and allow write access on the consent page."
            )
        if contains_nul(params.arguments):
            # PostgreSQL refuses NUL in text (SQLite would store it): refuse it here, the same on both.
            self._audit_call(context, name, names, "failure", "request.invalid")
            return _error(
                "Invalid arguments: text must not contain NUL characters (\\u0000). Remove them and call again."
            )
        try:
            args = tool.input_model.model_validate(params.arguments or {})
        except ValidationError as exc:
            self._audit_call(context, name, names, "failure", "request.invalid")
            return _error(_explain(exc))
        arguments = {"arguments": args.model_dump(mode="json")}
        durable = not tool.read_only
        with (
            self._tallied(name),
            self.core.audit.riding(
                context.actor, f"tool.{name}", target_type="tool", target_id=name, details=arguments
            ) as call_row,
        ):
            # A write tool's change commits with this call's audit row (one transaction); a read tool's row is
            # queued below. Failures are recorded after the change rolled back: apart from the use case.
            try:
                result = await tool.handler(context, args)
            except (ToolFailure, IdpError) as exc:
                message = exc.message if isinstance(exc, IdpError) else str(exc)
                code = exc.code if isinstance(exc, IdpError) else "tool.failed"
                with apart("the audit row of a failed call"):
                    await self._audited(context, name, arguments, "failure", code, durable=durable)
                return _error(message)
            except Exception:
                # A bug. Left to the SDK it would become a JSON-RPC error carrying the exception's text (SQL and its
                # parameters included); the agent gets a tool error without internals, the log gets the traceback.
                logger.exception("tool %s failed unexpectedly", name)
                with apart("the audit row of a failed call"):
                    await self._audited(context, name, arguments, "failure", "internal", durable=durable)
                return _error(f"{name} failed on the server (an internal error, now logged). Try again later.")
            if not call_row.written:
                await self._audited(context, name, arguments, "success", None, durable=durable)
        structured = result.model_dump(mode="json")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=to_json(structured).decode())],
            structured_content=structured,
        )

    def _tallied(self, tool_name: str) -> AbstractContextManager[object]:
        """IDP_MCP_DEBUG_TRANSACTION_TALLY: a tool call is one use case, one transaction (see transaction_tally)."""
        return tallied(f"tool {tool_name}") if self.settings.debug_transaction_tally else nullcontext()

    def _audit_call(
        self, context: ToolContext, tool_name: str, details: dict[str, Any], outcome: str, error: str | None
    ) -> None:
        """Every tool call is audited with the human and the agent; argument values pass through the scrubber."""
        if error:
            details = {**details, "error": error}
        self.core.audit.enqueue(
            context.actor, f"tool.{tool_name}", target_type="tool", target_id=tool_name, outcome=outcome,
            details=details,
        )  # fmt: skip

    async def _audited(
        self,
        context: ToolContext,
        tool_name: str,
        details: dict[str, Any],
        outcome: str,
        error: str | None,
        *,
        durable: bool,
    ) -> None:
        """Audit the call; when ``durable``, its row (and any queued before it) is committed before this returns."""
        self._audit_call(context, tool_name, details, outcome, error)
        if durable:
            await run_in_threadpool(self.core.audit.flush)

    async def _context(
        self, token: AccessToken, confirm: Confirm | None = None, open_url: OpenUrl | None = None
    ) -> ToolContext:
        claims = token.claims or {}
        client_id = token.client_id
        tenant_id = str(claims.get("tenant"))
        key = (client_id, token.subject or "", tenant_id)
        cached = self._names.get(key)
        if cached is None or time.monotonic() - cached[0] > NAMES_TTL_SECONDS:
            # One thread hop and one read for both lookups, and only every 30 s per (agent, human): names only label
            # audit rows.
            def lookup() -> tuple[str | None, str | None]:
                with self.core.db.unit_of_work(writes=False):
                    client = self.core.clients.get(ADMIN_TENANT_ID, client_id)
                    user = self.core.users.get(ADMIN_TENANT_ID, token.subject or "")
                return (client.name if client else None, user.email if user else None)

            with apart("the names that label the audit rows, read once per 30 s"):
                client_name, user_email = await run_in_threadpool(lookup)
            actor = Actor(tenant_id=tenant_id, sub=token.subject, client_id=client_id, client_name=client_name)
            cached = (time.monotonic(), actor, user_email)
            if len(self._names) > 4096:
                self._names.clear()
            self._names[key] = cached
        _, actor, user_email = cached
        scopes = frozenset(token.scopes)
        tool_names = self._tool_names.get(scopes)
        if tool_names is None:
            tool_names = self._tool_names[scopes] = tuple(tool.name for tool in self.registry.allowed(scopes))
        return ToolContext(
            core=self.core,
            settings=self.settings,
            guides=self.guides,
            actor=actor,
            scopes=scopes,
            user_email=user_email,
            tool_names=tool_names,
            upstream=self.upstream,
            confirm=confirm,
            open_url=open_url,
        )


def _confirmer(ctx: ServerRequestContext[Any]) -> Confirm | None:
    """A yes/no question to the user through form elicitation, when the client declared it and this request has a
    channel back to the client (not in stateless mode); otherwise None."""
    session = ctx.session
    capabilities = session.client_capabilities
    elicitation = capabilities.elicitation if capabilities else None
    # An empty ``elicitation: {}`` means form mode (MCP 2025-11-25); a client that declares only ``url`` has no forms.
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return None
    if not session.can_send_request:
        return None

    async def confirm(question: str) -> bool | None:
        try:
            with anyio.move_on_after(CONFIRM_TIMEOUT_SECONDS):
                answer = await session.elicit_form(question, CONFIRM_SCHEMA, related_request_id=ctx.request_id)
                return answer.action == "accept" and (answer.content or {}).get("confirm") is True
            return False  # no answer in time: not confirmed
        except (MCPError, ValidationError) as exc:
            logger.info("elicitation failed, falling back to the confirm argument: %s", type(exc).__name__)
            return None

    return confirm


def _url_opener(ctx: ServerRequestContext[Any]) -> OpenUrl | None:
    """Send the user to a URL through URL-mode elicitation, when the client declared it and this request has a
    channel back to the client; otherwise None."""
    session = ctx.session
    capabilities = session.client_capabilities
    elicitation = capabilities.elicitation if capabilities else None
    if elicitation is None or elicitation.url is None or not session.can_send_request:
        return None

    async def open_url(message: str, url: str) -> bool | None:
        try:
            with anyio.move_on_after(CONFIRM_TIMEOUT_SECONDS):
                answer = await session.elicit_url(
                    message, url, elicitation_id=secrets.token_hex(8), related_request_id=ctx.request_id
                )
                return answer.action == "accept"
            return False
        except (MCPError, ValidationError) as exc:
            logger.info("URL elicitation failed: %s", type(exc).__name__)
            return None

    return open_url


def _describe(tool: ToolSpec[Any]) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_model.model_json_schema(),
        output_schema=tool.output_model.model_json_schema(),
        annotations=types.ToolAnnotations(
            title=tool.title,
            read_only_hint=tool.read_only,
            destructive_hint=tool.destructive,
            idempotent_hint=tool.idempotent_hint,
            open_world_hint=False,
        ),
    )


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _explain(exc: ValidationError) -> str:
    """One sentence per bad argument, naming the field and what is wrong, never echoing the value."""
    problems = []
    for error in exc.errors()[:5]:
        field = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "is not an argument of this tool"
        problems.append(f"'{field}' {message[0].lower() + message[1:] if message else 'is invalid'}")
    return "Invalid arguments: " + "; ".join(problems) + ". Fix them and call the tool again."

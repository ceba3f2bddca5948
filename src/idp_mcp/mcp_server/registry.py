"""The tool inventory. Each tool declares its scope, toolset and hints; filtering by scope happens here,
not inside the tools."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.guides import GuideLibrary
from idp_mcp.oauth.upstream_http import UpstreamHttp
from idp_mcp.settings import Settings
from idp_mcp.store.transaction_tally import apart

TOOL_NAME = re.compile(r"^[a-z]+[A-Za-z0-9]*$")  # lowerCamelCase verbNoun

InputT = TypeVar("InputT", bound=BaseModel)
T = TypeVar("T")

#: Ask the human behind the agent a yes/no question through the MCP client (form elicitation): True when they
#: confirmed, False when they declined, cancelled or did not answer, None when the client could not ask them.
Confirm = Callable[[str], Awaitable[bool | None]]

#: Ask the human behind the agent to open a URL in their browser (URL-mode elicitation, MCP 2025-11-25), for what
#: must not pass through the chat (a secret): True when they accepted, False when they declined, None when the client
#: could not ask them.
OpenUrl = Callable[[str, str], Awaitable[bool | None]]


@dataclass(frozen=True)
class ToolContext:
    """What a tool may use: the core, settings, guides, and who is calling."""

    core: IdentityCore
    settings: Settings
    guides: GuideLibrary
    actor: Actor
    scopes: frozenset[str]
    user_email: str | None
    tool_names: tuple[str, ...]  # the tools this connection may call
    upstream: UpstreamHttp  # the app's one client of upstream identity providers (testConnector)
    confirm: Confirm | None = None  # set when the client can ask its user (form elicitation)
    open_url: OpenUrl | None = None  # set when the client can send its user to a URL (URL-mode elicitation)


class ToolFailure(Exception):
    """A failure the agent can act on; becomes an ``isError`` result with this sentence."""


def confirm_field() -> Any:
    """The ``confirm`` argument of every destructive tool (see :func:`require_confirmation`)."""
    return Field(
        default=False,
        description="true once the user you act for has confirmed the deletion. Clients that can ask them "
        "directly are asked instead.",
    )


async def require_confirmation(ctx: ToolContext, question: str, *, confirmed: bool, tool: str) -> None:
    """Go on only when the human confirmed a destructive change, or raise :class:`ToolFailure`.

    When the client can ask its user (form elicitation), the user's answer decides and ``confirmed`` (the agent's
    ``confirm: true``) is not enough on its own. Otherwise the agent must have asked and pass ``confirm: true``.
    """
    if ctx.confirm is not None:
        answer = await ctx.confirm(question)
        if answer is True:
            return
        if answer is False:
            raise ToolFailure(
                "The user did not confirm, so nothing was changed. Do not call this again unless the user asks for it."
            )
        # None: the client declared elicitation but could not ask; fall back to the agent's confirmation.
    if not confirmed:
        raise ToolFailure(
            f'This cannot be undone, so nothing was changed yet. Ask the user: "{question}" Only if they say yes, '
            f"call {tool} again with confirm: true."
        )


async def confirm_first(ctx: ToolContext, question: Callable[[], str], *, confirmed: bool, tool: str) -> None:
    """:func:`require_confirmation` for a question that names what goes, which takes a look-up (``question`` runs in a
    worker thread).

    When nobody is to be asked (the agent passed ``confirm: true`` and its client cannot ask the user), nothing is
    read: the change finds what it removes in its own transaction. Otherwise the look-up is a read of its own, apart
    from the use case: the human answers between it and the change, which checks again in its transaction.
    """
    if confirmed and ctx.confirm is None:
        return
    with apart("the confirmation question: the human answers between this read and the change"):
        text = await run_in_threadpool(question)
    await require_confirmation(ctx, text, confirmed=confirmed, tool=tool)


async def read_once(ctx: ToolContext, read: Callable[[], T]) -> T:
    """Run a read tool's look-ups with one thread hop, in one read-only transaction: one consistent view."""

    def run() -> T:
        with ctx.core.db.unit_of_work(writes=False):
            return read()

    return await run_in_threadpool(run)


@dataclass(frozen=True)
class ToolSpec(Generic[InputT]):
    name: str
    description: str
    input_model: type[InputT]
    output_model: type[BaseModel]
    handler: Callable[[ToolContext, InputT], Awaitable[BaseModel]]
    scope: str
    toolset: str
    read_only: bool
    destructive: bool = False
    #: Calling it again with the same arguments changes nothing more (MCP's idempotentHint). Read-only tools are.
    idempotent: bool = False
    title: str | None = None

    @property
    def idempotent_hint(self) -> bool:
        return self.read_only or self.idempotent

    def __post_init__(self) -> None:
        if not TOOL_NAME.match(self.name) or len(self.name) > 64:
            raise ValueError(f"tool name {self.name!r} must be lowerCamelCase verbNoun")
        if self.read_only and self.destructive:
            raise ValueError(f"tool {self.name} cannot be both read-only and destructive")
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", self.description.strip()) if s]
        if not 1 <= len(sentences) <= 2:
            raise ValueError(f"tool {self.name}: the description must be one or two sentences")


class ToolRegistry:
    def __init__(self, tools: Iterable[ToolSpec[Any]]) -> None:
        self._tools: dict[str, ToolSpec[Any]] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"duplicate tool {tool.name}")
            self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> ToolSpec[Any] | None:
        return self._tools.get(name)

    def all(self) -> list[ToolSpec[Any]]:
        return list(self._tools.values())

    def allowed(self, scopes: Iterable[str]) -> list[ToolSpec[Any]]:
        """The tools a token with ``scopes`` may see and call."""
        granted = set(scopes)
        return [tool for tool in self._tools.values() if tool.scope in granted]

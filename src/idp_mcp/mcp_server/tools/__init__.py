"""Tools, one module per business area. Each tool: parse input, call one core function, shape the result."""

from __future__ import annotations

from typing import Any

from idp_mcp.mcp_server.registry import ToolSpec
from idp_mcp.mcp_server.tools import (
    api_resources,
    applications,
    audit,
    connectors,
    guides,
    mfa,
    roles,
    sign_in_experience,
    tenant,
    users,
)


def all_tools() -> list[ToolSpec[Any]]:
    return [
        *tenant.TOOLS, *guides.TOOLS, *applications.TOOLS, *users.TOOLS, *sign_in_experience.TOOLS, *mfa.TOOLS,
        *connectors.TOOLS, *api_resources.TOOLS, *roles.TOOLS, *audit.TOOLS,
    ]  # fmt: skip

"""The bare ``mcp`` SDK baseline for bench/run: one trivial tool, no auth, the same transport settings as
idp-mcp's /mcp (lowlevel Server, StreamableHTTPSessionManager stateful with SSE responses, DNS-rebinding
protection for the loopback host) under uvicorn with the same options as ``idp-mcp serve``.

    python bench/sdk_server.py PORT [--stateless]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route

TOOL = types.Tool(
    name="ping",
    title="Ping",
    description="Answer pong.",
    input_schema={"type": "object", "properties": {}, "additionalProperties": False},
)


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[TOOL])


async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text="pong")], structured_content={"ok": True})


def build(port: int, stateless: bool) -> Starlette:
    server: Server[Any] = Server("sdk-baseline", version="0", on_list_tools=list_tools, on_call_tool=call_tool)
    hosts = [f"127.0.0.1:{port}", "127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
    origins = [f"http://127.0.0.1:{port}", "http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    manager = StreamableHTTPSessionManager(
        app=server,
        stateless=stateless,
        security_settings=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        ),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route("/mcp", endpoint=StreamableHTTPASGIApp(manager))], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--stateless", action="store_true")
    args = parser.parse_args()
    print(f"sdk baseline on 127.0.0.1:{args.port}", flush=True)
    uvicorn.run(
        build(args.port, args.stateless),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        access_log=False,
    )


if __name__ == "__main__":
    main()

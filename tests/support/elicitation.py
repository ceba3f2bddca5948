"""An MCP client that can answer elicitation requests, against the app served by uvicorn in a thread of the test
process.

Server-to-client requests such as ``elicitation/create`` ride the SSE stream of the POST that is still open, so the
client must read that stream while the response is unfinished. Starlette's TestClient and httpx's ASGITransport
both buffer a response until the app returns, which would deadlock; a loopback socket does not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx2
import mcp_types as types
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp

from tests.support.live_server import free_port

Answer = Callable[[Any, types.ElicitRequestParams], Awaitable[types.ElicitResult | types.ErrorData]]


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on a free loopback port from a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@asynccontextmanager
async def eliciting_client(base_url: str, access_token: str, answer: Answer) -> AsyncIterator[Client]:
    """An SDK client (initialize handshake) that declares elicitation and answers with ``answer``."""
    headers = {"Authorization": f"Bearer {access_token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        Client(
            streamable_http_client(f"{base_url}/mcp", http_client=http), mode="legacy", elicitation_callback=answer
        ) as client,
    ):
        yield client

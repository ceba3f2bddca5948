"""Request bodies are limited while they arrive: a body over its limit is answered 413 and not read further, at every
endpoint (MCP issuer, tenant issuers, DCR, pages, /mcp on its fast path), whether its length is declared or not.

The app is called as a server calls it (ASGI), with a ``receive`` that counts what the app takes, so each test sees
how much of the body was read, not only the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.types import ASGIApp, Message

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from tests.support.inprocess import PUBLIC_URL, REDIRECT_URI

CHUNK = 16 * 1024
FORM = [(b"content-type", b"application/x-www-form-urlencoded")]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks_read: int
    messages: list[Message] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


def endless(chunk: bytes = b"a" * CHUNK) -> Iterator[bytes]:
    """A body far larger than any limit (8 MiB, finite so that a server that reads it all still ends)."""
    yield from [chunk] * 512


def call(
    app: ASGIApp,
    method: str,
    path: str,
    chunks: Iterator[bytes],
    headers: list[tuple[bytes, bytes]] = FORM,
    *,
    declared_length: int | None = None,
) -> Answer:
    """One request to ``app``; the body comes from ``chunks`` as the server would pass it (``more_body`` until the
    iterator ends). Without ``declared_length`` the body is chunked (no Content-Length)."""
    answer = Answer(status=0, headers={}, body=b"", chunks_read=0)
    all_headers = [(b"host", b"testserver"), *headers]
    if declared_length is not None:
        all_headers.append((b"content-length", str(declared_length).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": all_headers,
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    iterator = iter(chunks)
    pending = next(iterator, None)
    done = False

    async def receive() -> Message:
        nonlocal pending, done
        await anyio.lowlevel.checkpoint()
        if done:
            await anyio.sleep_forever()
        if pending is None:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk, pending = pending, next(iterator, None)
        answer.chunks_read += 1
        done = pending is None
        return {"type": "http.request", "body": chunk, "more_body": pending is not None}

    async def send(message: Message) -> None:
        answer.messages.append(message)
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    async def run() -> None:
        with anyio.fail_after(10):
            await app(scope, receive, send)

    anyio.run(run)
    return answer


@pytest.fixture
def app(settings: Settings, core: IdentityCore) -> ASGIApp:
    return create_app(settings, core)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/register", "/t/default/oidc/token"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(app: ASGIApp, path: str) -> None:
    answer = call(app, "POST", path, endless(), declared_length=200 * 1024 * 1024)

    assert answer.status == 413
    assert answer.chunks_read == 0
    assert answer.json()["error"] == "invalid_request"
    assert answer.headers["connection"] == "close"


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/authorize", "/oauth/register", "/t/default/oidc/token"])
def test_a_chunked_body_over_the_limit_is_refused_once_the_limit_is_passed(app: ASGIApp, path: str) -> None:
    answer = call(app, "POST", path, endless())

    assert answer.status == 413
    assert answer.json()["error"] == "invalid_request"
    # 64 KiB allowed: reading stops at the chunk that passes it, not at the end of an endless body.
    assert answer.chunks_read == 64 * 1024 // CHUNK + 1


PAGES = ["/sign-in", "/setup", "/interaction/x/consent", "/console/t/default/applications/x/secrets"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_refuse_an_oversized_form_with_a_plain_413(app: ASGIApp, path: str) -> None:
    answer = call(app, "POST", path, endless())

    assert answer.status == 413
    assert answer.headers["content-type"].startswith("text/plain")
    assert b"too large" in answer.body
    assert answer.chunks_read == 64 * 1024 // CHUNK + 1
    assert answer.headers["x-content-type-options"] == "nosniff"  # the pages' headers are still added


def test_mcp_on_its_fast_path_refuses_a_body_over_its_own_limit(app: ASGIApp) -> None:
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer x")]

    declared = call(app, "POST", "/mcp", endless(), headers, declared_length=2 * 1024 * 1024)
    chunked = call(app, "POST", "/mcp", endless(), headers)

    assert (declared.status, declared.chunks_read) == (413, 0)
    assert chunked.status == 413
    assert chunked.chunks_read == 1024 * 1024 // CHUNK + 1
    assert chunked.json()["error"] == "invalid_request"


def test_mcp_accepts_a_body_larger_than_the_form_limit(app: ASGIApp) -> None:
    # 256 KiB of JSON-RPC reaches the endpoint (here: the 401 for a request without a token), not a 413.
    answer = call(app, "POST", "/mcp", iter([b" " * CHUNK] * 16), [(b"content-type", b"application/json")])

    assert answer.status == 401


def test_a_body_within_the_limit_reaches_the_handler_whole_whatever_its_chunks(app: ASGIApp) -> None:
    document = json.dumps(
        {"client_name": "Chunked", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    ).encode()
    pieces = iter([document[i : i + 7] for i in range(0, len(document), 7)])

    answer = call(app, "POST", "/oauth/register", pieces, [(b"content-type", b"application/json")])

    assert answer.status == 201, answer.body
    assert answer.json()["client_name"] == "Chunked"


def test_a_normal_token_request_is_unaffected(app: ASGIApp) -> None:
    body = b"grant_type=client_credentials&client_id=nobody&client_secret=wrong"

    answer = call(app, "POST", "/t/default/oidc/token", iter([body]), declared_length=len(body))

    assert answer.status in (400, 401)
    assert answer.json()["error"] == "invalid_client"


def test_the_limits_are_settings(tmp_path: Any, database_url: str) -> None:
    settings = Settings(
        public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url,
        max_body_bytes=2048, mcp_max_body_bytes=4096,
    )  # fmt: skip
    core = IdentityCore.from_settings(settings)
    core.bootstrap()
    try:
        app = create_app(settings, core)
        form = call(app, "POST", "/oauth/token", iter([b"a" * 1024] * 3))
        mcp = call(app, "POST", "/mcp", iter([b" " * 1024] * 3), [(b"content-type", b"application/json")])
        mcp_over = call(app, "POST", "/mcp", iter([b" " * 1024] * 5), [(b"content-type", b"application/json")])
    finally:
        core.close()

    assert form.status == 413
    assert b"2048" in form.body
    assert mcp.status == 401
    assert mcp_over.status == 413

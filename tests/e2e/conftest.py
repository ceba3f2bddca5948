from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.support.app_server import AppServer, run_app_server
from tests.support.browser import launch_browser
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port, run_live_server
from tests.support.smtp import SmtpSink, run_smtp_server

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")


def assert_no_secrets_in_logs(server: LiveServer) -> None:
    """Whatever a test did, the server's log (at DEBUG) holds no token and no password."""
    logs = server.logs()
    assert not JWT_SHAPE.search(logs), "a JWT (access or ID token) was written to the server log"
    assert ADMIN_PASSWORD not in logs, "the administrator's password was written to the server log"


def assert_guards_held(server: LiveServer) -> None:
    """The server's debugging guards (on in every server the tests start) found nothing: no database work on the
    event loop, no request or tool call with more transactions than its use case's budget."""
    logs = server.logs()
    assert "blocking database work on the event loop" not in logs, logs
    assert "a use case is one transaction" not in logs, "\n".join(
        line for line in logs.splitlines() if "a use case is one transaction" in line
    )


@pytest.fixture
def live_server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "server", database_url) as server:
        created = server.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        assert created.returncode == 0, created.stderr
        yield server
    assert_no_secrets_in_logs(server)
    assert_guards_held(server)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with launch_browser() as browser:
        context = await browser.new_context()
        yield await context.new_page()
        await context.close()


@pytest.fixture
def callback_uri() -> str:
    # Nothing listens here: the browser intercepts the redirect, as a native client's listener would get it.
    return f"http://127.0.0.1:{free_port()}/callback"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a loopback port; ``smtp.env()`` points a server at it."""
    with run_smtp_server() as sink:
        yield sink


@pytest.fixture
def app_server() -> Iterator[AppServer]:
    """A relying party's own web server on a loopback port (the application that signs users in)."""
    with run_app_server() as server:
        yield server
